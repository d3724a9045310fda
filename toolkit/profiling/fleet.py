"""Fleets: profile the same models on several targets at once; one failing device does not stop the others.

Each target gets its own thread and its own results-store connection (SQLite in WAL mode serialises the writes), and
runs the ordinary single-target `profile_models`, so every completed run is committed as it finishes. A target that
fails (unreachable, host key, disk full, went offline...) is reported with its one-line error; its completed runs
stay stored, and nothing else is touched.

`profile_targets` is what `edgeseq profile` calls: the local machine alone is profiled directly (its error raised
as it is), anything else as a fleet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from edgeseq.core.errors import EdgeseqError, InputError, RuntimeMissing, TargetError
from edgeseq.profiling.run import profile_models
from edgeseq.store.results import preflight
from edgeseq.targets.device_shell import SetupNeeded
from edgeseq.targets.limits import PROFILE_OPTIONS, check_profile_options
from edgeseq.targets.resolve import open_target, spec_for


@dataclass
class FleetResult:
    targets: list[str] = field(default_factory=list)  # as asked, duplicates removed
    rows: list[dict] = field(default_factory=list)  # every stored run, grouped by target in the order given
    failures: dict[str, EdgeseqError] = field(default_factory=dict)  # target -> its error

    def error(self) -> EdgeseqError | None:
        """None when every target succeeded; a lone target's own error; else one line naming the failed targets."""
        if not self.failures:
            return None
        if len(self.targets) == 1:
            return next(iter(self.failures.values()))
        names = ", ".join(self.failures)
        return TargetError(
            f"{len(self.failures)} of {len(self.targets)} targets failed ({names}); the others' runs were stored",
            "see the error line for each above",
        )


def all_target_names() -> list[str]:
    """`--all`: every target in the targets file, in file order."""
    from edgeseq.targets import config

    names = list(config.load())
    if not names:
        raise InputError("--all: no targets defined", "add some with `edgeseq targets add NAME URL`")
    return names


def profile_fleet(
    models: Sequence[str],
    targets: Sequence[str],
    on_error: Callable[[str, EdgeseqError], None] | None = None,
    max_workers: int | None = None,
    **kwargs,
) -> FleetResult:
    """Run `edgeseq.profiling.run.profile_models(models, target=name, **kwargs)` for every target concurrently."""
    names = list(dict.fromkeys(targets))  # the same target twice would measure it against itself
    if not names:
        raise InputError("no target given")

    # Bad options, a misspelt name, a foreign or damaged store: one error before any device is touched.
    check_profile_options(**{k: v for k, v in kwargs.items() if k in PROFILE_OPTIONS})
    for name in names:
        spec_for(name)
    preflight(kwargs.get("db"))

    def one(name: str) -> list[dict]:
        try:
            return profile_models(models, target=name, **kwargs)
        except (RuntimeMissing, TargetError) as exc:
            raise _diagnose(name, exc) from exc

    result = FleetResult(targets=names)
    by_target: dict[str, list[dict]] = {}

    def collect(name: str, run) -> None:
        try:
            by_target[name] = run()
        except EdgeseqError as exc:
            result.failures[name] = exc
            if on_error is not None:
                on_error(name, exc)

    # Devices run concurrently; this machine ("local") is measured afterwards, alone, so the ssh/adb clients
    # of the others do not share its CPUs while it is timed.
    local = [n for n in names if spec_for(n).url in ("local", "local://")]
    remote = [n for n in names if n not in local]
    if remote:
        with ThreadPoolExecutor(
            max_workers=max_workers or len(remote), thread_name_prefix="edgeseq-fleet"
        ) as pool:
            futures = {name: pool.submit(one, name) for name in remote}
            for name, future in futures.items():
                collect(name, future.result)
    for name in local:
        collect(name, lambda name=name: one(name))
    result.rows = [row for name in names for row in by_target.get(name, [])]
    return result


def _diagnose(name: str, exc: EdgeseqError) -> EdgeseqError:
    """After a failed agent run on a remote device, check its Python and runtime (only then, so a healthy run pays
    nothing): when that is the cause (SetupNeeded: its hint names `edgeseq targets setup`), that error replaces the
    original; otherwise the original stands."""
    try:
        target = open_target(name)
        if getattr(target.spec, "runner", "agent") != "agent" or not hasattr(target, "require_runtime"):
            return exc
        target.require_runtime()
    except SetupNeeded as better:
        return better
    except EdgeseqError:
        pass
    return exc


def profile_targets(
    models: Sequence[str],
    targets: Sequence[str] = ("local",),
    all_targets: bool = False,
    on_error: Callable[[str, EdgeseqError], None] | None = None,
    **kwargs,
) -> FleetResult:
    """`edgeseq profile`: every model on every target (`all_targets`: each one in the targets file).

    This machine alone is profiled directly and its error raised as it is; remote targets and fleets run
    concurrently, one failing device not stopping the others (`profile_fleet`): its error is `result.error()`, after
    the others' rows, and `on_error(name, error)` is called as each fails when more than one target was asked.
    Keyword arguments are `profile_models`'."""
    names = all_target_names() if all_targets else list(targets)
    if names == ["local"]:
        return FleetResult(targets=names, rows=profile_models(models, target=names, **kwargs))
    return profile_fleet(models, names, on_error=on_error if len(names) > 1 else None, **kwargs)
