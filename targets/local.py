"""The local target: this machine, with optional emulation of a smaller device.

Every command runs as a fresh child process (never in-process), so a model that crashes the interpreter kills only
that child. Constraint emulation, applied to the child only:

- `cpus=N`: CPU affinity to the first N CPUs this process may use (`sched_setaffinity`).
- `memory_limit` (bytes): a memory cgroup (v1 `memory.limit_in_bytes`, or v2 `memory.max`) nested under this
  process's own; the kernel OOM-kills the child at the limit, which is reported as such.
- `cpu_quota` (fraction of one CPU, e.g. 0.5): a CFS quota (v1 `cpu.cfs_quota_us`, v2 `cpu.max`). A quota is
  *bursty*, not a slower core: the child runs at full speed until it has used its share of each 100 ms period and
  is then paused, so medians barely move while p99 grows by whole periods.

Where the kernel offers no writable controller (no cgroup mount, cgroup v2 without the controller delegated, not
root) the target raises a TargetError that says so before anything runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeseq.core.errors import InputError, TargetError
from edgeseq.core.fsio import childproc
from edgeseq.targets.base import RunResult, TargetSpec

CFS_PERIOD_US = 100_000


def parse_size(text: str | int | None) -> int | None:
    """'256M' / '1G' / '512k' / plain bytes -> bytes."""
    if text is None or isinstance(text, int):
        return text
    raw = str(text).strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    if raw and raw[-1] in "KMGT":
        mult = 1024 ** ("KMGT".index(raw[-1]) + 1)
        raw = raw[:-1]
    try:
        value = float(raw)
    except ValueError:
        raise InputError(
            f"cannot read memory size {text!r}", "write e.g. 256M, 1G or a number of bytes"
        ) from None
    if value <= 0:
        raise InputError(f"memory size must be positive, got {text!r}")
    return int(value * mult)


@dataclass
class _Cgroup:
    """One cgroup directory we created; `procs` is the file the child writes its pid to."""

    path: Path
    procs: Path
    version: int
    kind: str  # memory | cpu


@dataclass
class LocalTarget:
    """Runs argv lists on this machine as child processes; see the module doc for constraint emulation."""

    cpus: int | None = None
    memory_limit: int | str | None = None
    cpu_quota: float | None = None
    python: str | None = None
    spec: TargetSpec = field(init=False)

    def __post_init__(self) -> None:
        self.memory_limit = parse_size(self.memory_limit)
        self.spec = TargetSpec(name="local", url="local", python=self.python or sys.executable)
        self._affinity: list[int] | None = None
        if self.cpus is not None:
            self._affinity = _pick_cpus(self.cpus)
        if self.cpu_quota is not None and not (0 < self.cpu_quota <= 64):
            raise InputError(f"--cpu-quota must be a fraction of one CPU in (0, 64], got {self.cpu_quota}")
        if self.memory_limit is not None:
            _cgroup_root("memory")  # fail before anything runs
        if self.cpu_quota is not None:
            _cgroup_root("cpu")

    # ------------------------------------------------------------------ Target protocol
    def workdir(self) -> str:
        return tempfile.mkdtemp(prefix="edgeseq-run-")

    def cleanup(self, remote_dir: str) -> None:
        path = Path(remote_dir)
        if path.name.startswith("edgeseq-run-"):
            shutil.rmtree(path, ignore_errors=True)

    def push(self, local: Path, remote: str) -> None:
        try:
            Path(remote).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, remote)
        except OSError as exc:
            raise TargetError(f"cannot copy {local} to {remote}: {exc.strerror or exc}") from None

    def pull(self, remote: str, local: Path) -> None:
        try:
            Path(local).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(remote, local)
        except OSError as exc:
            raise TargetError(f"cannot copy {remote} to {local}: {exc.strerror or exc}") from None

    def info(self) -> dict:
        return {
            "name": self.spec.name,
            "url": self.spec.url,
            "python": self.spec.python,
            "constraints": self.constraints(),
        }

    def constraints(self) -> dict:
        return {
            "cpus": self.cpus,
            "cpu_list": self._affinity,
            "memory_limit_bytes": self.memory_limit,
            "cpu_quota": self.cpu_quota,
        }

    def run(self, argv: list[str], timeout: float) -> RunResult:
        if not argv or not all(isinstance(a, str) for a in argv):
            raise TargetError("a command must be a non-empty list of strings")
        groups = self._make_cgroups()
        procs_files = [str(g.procs) for g in groups]
        affinity = self._affinity

        def _enter() -> None:  # runs in the child between fork and exec: raw syscalls only
            pid = str(os.getpid()).encode()
            for f in procs_files:
                fd = os.open(f, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)
            if affinity is not None:
                os.sched_setaffinity(0, affinity)

        need_pre = bool(procs_files) or affinity is not None
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                preexec_fn=_enter if need_pre else None,
                start_new_session=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            self._drop_cgroups(groups)
            raise TargetError(f"cannot start {argv[0]}: {exc}") from None
        childproc.track(proc)  # SIGTERM to edgeseq kills it too (its own session keeps it from the terminal)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            self._drop_cgroups(groups)
            raise TargetError(
                f"{Path(argv[0]).name} ran past its {timeout:.0f} s limit and was killed",
                "lower --runs or set --max-secs",
            ) from None
        except BaseException:  # Ctrl-C, SIGTERM: take the child down with us, leave no cgroup behind
            _kill_group(proc)
            proc.wait()
            self._drop_cgroups(groups)
            raise
        finally:
            childproc.untrack(proc)
        wall = time.monotonic() - start
        notes = self._cgroup_notes(groups, proc.returncode)
        self._drop_cgroups(groups)
        if notes:
            err = (err or "") + "".join(f"edgeseq-local: {n}\n" for n in notes)
        return RunResult(returncode=proc.returncode, stdout=out or "", stderr=err or "", wall_s=wall)

    # ------------------------------------------------------------------ cgroups
    def _make_cgroups(self) -> list[_Cgroup]:
        groups: list[_Cgroup] = []
        try:
            if self.memory_limit is not None:
                groups.append(_make_group("memory", self.memory_limit))
            if self.cpu_quota is not None:
                groups.append(_make_group("cpu", self.cpu_quota))
        except BaseException:
            self._drop_cgroups(groups)
            raise
        return groups

    def _cgroup_notes(self, groups: list[_Cgroup], returncode: int) -> list[str]:
        notes = []
        for g in groups:
            if g.kind != "memory":
                continue
            oom, hit_limit = _oom_kills(g)
            if oom or (returncode == -signal.SIGKILL and hit_limit):
                notes.append(f"killed by the OOM killer at --memory-limit {_fmt_bytes(self.memory_limit)}")
        return notes

    @staticmethod
    def _drop_cgroups(groups: list[_Cgroup]) -> None:
        for g in groups:
            for _ in range(50):  # the child's exit can lag the rmdir by a moment
                try:
                    g.path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _pick_cpus(n: int) -> list[int]:
    if not hasattr(os, "sched_setaffinity"):
        raise TargetError("--cpus needs CPU affinity, which this OS does not offer (Linux only)")
    allowed = sorted(os.sched_getaffinity(0))
    if n < 1 or n > len(allowed):
        raise InputError(f"--cpus must be between 1 and {len(allowed)} here, got {n}")
    return allowed[:n]


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "none"
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n} bytes"


# cgroup discovery: {kind: (version, directory where we may create children)}
def _mounts() -> list[tuple[str, str, str]]:
    try:
        text = Path("/proc/self/mounts").read_text()
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            rows.append((parts[1], parts[2], parts[3]))
    return rows


def _own_cgroups() -> dict[str, str]:
    """controller name (or '' for v2) -> this process's path in that hierarchy."""
    out: dict[str, str] = {}
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


def _cgroup_root(kind: str) -> tuple[int, Path]:
    """Where a child cgroup for `kind` can be made, or a TargetError that says why not."""
    flag = "--memory-limit" if kind == "memory" else "--cpu-quota"
    if not sys.platform.startswith("linux"):
        raise TargetError(f"{flag} needs Linux cgroups; this is {sys.platform}")
    own = _own_cgroups()
    reasons = []
    for mountpoint, fstype, opts in _mounts():
        if fstype == "cgroup" and kind in opts.split(","):
            base = Path(mountpoint) / own.get(kind, "/").lstrip("/")
            if os.access(base, os.W_OK):
                return 1, base
            reasons.append(f"cgroup v1 {kind} at {base} is not writable (run as root)")
    for mountpoint, fstype, _ in _mounts():
        if fstype == "cgroup2":
            base = Path(mountpoint) / own.get("", "/").lstrip("/")
            try:
                ctrls = (base / "cgroup.controllers").read_text().split()
            except OSError:
                continue
            if kind not in ctrls:
                reasons.append(f"cgroup v2 at {mountpoint} offers no {kind} controller here")
                continue
            if not os.access(base, os.W_OK):
                reasons.append(f"cgroup v2 {base} is not writable")
                continue
            return 2, base
    detail = "; ".join(reasons) or "no cgroup filesystem is mounted"
    raise TargetError(
        f"{flag} cannot be emulated on this machine: {detail}",
        "run without it, or as root on a kernel with the cgroup controller (Docker: --privileged or --cgroupns=host)",
    )


def _make_group(kind: str, value: float | int) -> _Cgroup:
    version, base = _cgroup_root(kind)
    path = base / f"edgeseq-{os.getpid()}-{time.monotonic_ns()}"
    flag = "--memory-limit" if kind == "memory" else "--cpu-quota"
    try:
        path.mkdir()
        if version == 2:
            parent_ctl = base / "cgroup.subtree_control"
            if kind not in parent_ctl.read_text().split():
                parent_ctl.write_text(f"+{kind}")
        if kind == "memory":
            if version == 1:
                (path / "memory.limit_in_bytes").write_text(str(int(value)))
                swap = path / "memory.memsw.limit_in_bytes"
                if swap.exists():
                    swap.write_text(str(int(value)))
                swappiness = path / "memory.swappiness"
                if swappiness.exists():
                    swappiness.write_text("0")
            else:
                (path / "memory.max").write_text(str(int(value)))
                swap = path / "memory.swap.max"
                if swap.exists():
                    swap.write_text("0")
        else:
            quota = max(1000, int(float(value) * CFS_PERIOD_US))
            if version == 1:
                (path / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (path / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}")
    except OSError as exc:
        try:
            path.rmdir()
        except OSError:
            pass
        raise TargetError(
            f"{flag} cannot be emulated: writing cgroup v{version} {path} failed: {exc.strerror or exc}",
            "run without it",
        ) from None
    procs = path / "cgroup.procs"
    return _Cgroup(path=path, procs=procs, version=version, kind=kind)


def _oom_kills(g: _Cgroup) -> tuple[int, bool]:
    """(OOM kills counted by the kernel, whether the limit was ever hit)."""
    kills, hit = 0, False
    try:
        if g.version == 1:
            for line in (g.path / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    kills = int(line.split()[1])
            hit = int((g.path / "memory.failcnt").read_text().strip() or 0) > 0
        else:
            for line in (g.path / "memory.events").read_text().splitlines():
                if line.startswith("oom_kill "):
                    kills = int(line.split()[1])
                elif line.startswith("max "):
                    hit = int(line.split()[1]) > 0
    except (OSError, ValueError):
        pass
    return kills, hit
