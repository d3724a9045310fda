"""`edgeseq calibrate`: build the grid's models (edgeseq.estimate.grid) and time them op by op on a target.

Bounded and resumable: files already built (in the store's folder, `edgeseq-calibration/<target>-<grid key>/`) are not
rebuilt, and a (file, XNNPACK on/off) pair that already has a per-op run on the target is not run again, so a
stopped calibration goes on where it stopped. Runs land in the store like any `profile --ops` run (keyed by target,
device, runtime and its version: the toolchain), and the estimate reads them together with the user's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from edgeseq.core.errors import ConversionError, TargetError
from edgeseq.core.fsio import childproc, sha256_file
from edgeseq.estimate.grid import CALIBRATION_DIR, RECIPES, grid, grid_key

BUILD_TIMEOUT_S = 900.0
CAL_RUNS = 40  # the agent times each op over as many invokes: 40 keeps a 512-step attention block in seconds
CAL_PASSES = 3  # every (file, XNNPACK) pair is timed this many times, a pass over the grid apart; the fit takes the
# mean of each op's quickest two passes (edgeseq.estimate.fit.quickest): on a shared machine a burst of load slows
# whatever runs during it (measured here: one calibration 2 minutes after another fitted files 20-30 % slower)


def calibration_dir(db_path: Path, target: str, quick: bool) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in target)
    return db_path.resolve().parent / CALIBRATION_DIR / f"{safe}-{grid_key(quick)}"


def _build(specs: list[dict], out: Path, note: Callable[[str], None]) -> dict:
    """The grid's missing files, converted in one child process (TensorFlow imported once); {"made", "failed"}."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeseq-cal-") as tmp:
        job = Path(tmp)
        (job / "job.json").write_text(json.dumps({"out": str(out), "specs": specs, "recipes": list(RECIPES)}))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=tmp)
        proc = subprocess.Popen([sys.executable, "-m", "edgeseq.estimate.calib_child", str(job)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                                start_new_session=True)
        childproc.track(proc)
        started = time.monotonic()
        try:
            for line in proc.stdout:  # one line per file made: the progress of the build
                if line.startswith("made "):
                    note(f"built {line[5:].strip()}")
                if time.monotonic() - started > BUILD_TIMEOUT_S:
                    raise ConversionError("building the calibration models ran past "
                                          f"{BUILD_TIMEOUT_S:.0f} s", "run `edgeseq calibrate` again: it resumes")
            proc.wait()
        except BaseException:
            childproc.kill_group(proc)
            raise
        finally:
            childproc.untrack(proc)
        report_path = job / "report.json"
        if proc.returncode != 0 or not report_path.exists():
            raise ConversionError(f"the calibration build child stopped ({childproc.signal_name(proc.returncode)})"
                                  if proc.returncode and proc.returncode < 0 else
                                  f"the calibration build child failed (exit {proc.returncode})",
                                  "run `edgeseq calibrate` again: it resumes with the files already built")
        return json.loads(report_path.read_text())


def _done(db_path: Path, target: str) -> Counter:
    """(sha256, xnnpack) -> how many per-op runs the pair already has on `target`."""
    from edgeseq.store.results import ResultsStore

    if not db_path.exists():
        return Counter()
    with ResultsStore(db_path, create=False) as store:
        rows = store.runs(target=target)
    return Counter((r["model_sha256"], (r.get("options") or {}).get("xnnpack") is not False) for r in rows
                   if ((r.get("agent") or {}).get("ops") or {}).get("route"))


def calibrate(target: str = "local", *, db: str | os.PathLike | None = None, quick: bool = False,
              runs: int = CAL_RUNS, passes: int = CAL_PASSES, xnnpack: tuple[bool, ...] = (True, False),
              threads: int | None = 1, progress=None) -> dict:
    """Build what is missing, time what is not timed (`passes` times, pass after pass over the grid); {"folder",
    "files", "runs_added", "skipped", "failed", "seconds"}. `progress`: an edgeseq.core.progress.Progress-like
    factory taking the step count."""
    from edgeseq.core.progress import Progress
    from edgeseq.profiling.run import open_targets, profile_models
    from edgeseq.store.results import preflight

    t0 = time.monotonic()
    open_targets([target], None, None, None)  # an unknown or malformed target is refused before minutes of building
    db_path = preflight(db)
    folder = calibration_dir(db_path, target, quick)
    specs = grid(quick)
    missing = [s for s in specs if any(not (folder / f"{s['name']}-{r}.tflite").exists() for r in RECIPES)]
    failed: dict[str, str] = {}
    make = progress or (lambda n: Progress(n))
    if missing:
        bar = make(len(missing) * len(RECIPES))
        report = _build(missing, folder, lambda text: bar.step(text))
        failed.update(report.get("failed") or {})
        for name, why in failed.items():
            bar.note(f"not built: {name}: {why[:120]}")
    files = sorted(folder.glob("*.tflite"))
    done = _done(db_path, target)
    sums = {f: sha256_file(f) for f in files}
    todo = [(f, x) for p in range(passes) for f in files for x in xnnpack if done[(sums[f], x)] <= p]
    added = 0
    if todo:
        bar = make(len(todo))
        for f, x in todo:
            try:
                rows = profile_models([f], target, runs=runs, warmup=10, threads=threads, db=db_path, xnnpack=x,
                                      ops=True)
            except TargetError:
                raise  # the device is gone or refuses: every later file would fail the same way
            except Exception as exc:  # noqa: BLE001 - one file that cannot run leaves the rest of the grid
                failed[f"{f.name} xnnpack={'on' if x else 'off'}"] = f"{type(exc).__name__}: {exc}"[:200]
                bar.step(f"{f.stem} xnnpack {'on' if x else 'off'}", "failed")
                continue
            added += len(rows)
            p50 = rows[0].get("p50_us") if rows else None
            bar.step(f"{f.stem} xnnpack {'on' if x else 'off'}", f"p50 {p50:.1f} µs" if p50 else "")
    if todo and not added:
        first = next(iter(failed.items()))
        raise TargetError(f"no calibration file ran on {target}: {first[0]}: {first[1]}",
                          f"check the target with `edgeseq targets check {target}`, then rerun (built files are kept)")
    return {"target": target, "folder": str(folder), "files": len(files), "runs_added": added,
            "skipped": len(files) * len(xnnpack) * passes - len(todo), "failed": failed,
            "seconds": round(time.monotonic() - t0, 1)}
