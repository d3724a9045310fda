"""The sane range of every numeric run option (`profile`, `deploy`, fleets), checked before anything runs.

A bad number (NaN, inf, a negative count, a crossed bound) is refused with one error that states the range, before
any model, target or results store is touched.
"""

from __future__ import annotations

from edgeseq.core.errors import InputError, check_finite, check_int

# option -> (lowest, highest, example)
INT_LIMITS: dict[str, tuple[int, int, int]] = {
    "runs": (1, 1_000_000_000, 200),  # a huge --runs with --max-secs is a time-boxed run
    "warmup": (0, 10_000_000, 20),
    "threads": (1, 1024, 1),
    "repeat": (1, 10_000, 3),
    "cpus": (1, 4096, 2),
    "steps": (1, 1_000_000, 64),
}
# option -> (exclusive lower bound, inclusive upper bound, example)
FLOAT_LIMITS: dict[str, tuple[float, float, str]] = {
    "max_secs": (0.0, 86_400.0, "30"),
    "cpu_quota": (0.0, 64.0, "0.5"),
    "hop_ms": (0.0, 3_600_000.0, "10"),
}
MEMORY_LIMIT_BYTES = (1 << 20, 1 << 44)  # 1 MiB .. 16 TiB
TIMEOUT_LIMITS = (0.0, 86_400.0)  # seconds: above 0, at most a day

# The keyword arguments of `check_profile_options`: what a fleet passes on from its own keyword arguments.
PROFILE_OPTIONS = ("runs", "warmup", "threads", "max_secs", "cpus", "memory_limit", "cpu_quota", "repeat", "steps",
                   "hop_ms")


def check_profile_options(
    runs: int = 200,
    warmup: int = 20,
    threads: int | None = 1,
    max_secs: float | None = None,
    cpus: int | None = None,
    memory_limit: str | int | None = None,
    cpu_quota: float | None = None,
    repeat: int = 1,
    steps: int | None = None,
    hop_ms: float | None = None,
) -> None:
    """Every numeric option of `profile` finite and in its sane range (the error states the range), before any
    model, target or store is touched."""
    given = dict(runs=runs, warmup=warmup, threads=threads, repeat=repeat, cpus=cpus, steps=steps)
    for name, value in given.items():
        if value is not None:
            low, high, example = INT_LIMITS[name]
            check_int("--" + name.replace("_", "-"), value, low, high, example)
    for name, value in dict(max_secs=max_secs, cpu_quota=cpu_quota, hop_ms=hop_ms).items():
        if value is not None:
            low, high, example = FLOAT_LIMITS[name]
            check_finite("--" + name.replace("_", "-"), value, min=low, min_open=True, max=high, example=example)
    if memory_limit is not None:
        memory_limit_bytes(memory_limit)


def check_deploy_options(runs: int, warmup: int, threads: int | None, timeout: float) -> None:
    """The numeric options of `deploy`, finite and in range (the error states the range), before anything runs."""
    for option, value in (("runs", runs), ("warmup", warmup), ("threads", threads)):
        if value is not None:
            check_int(f"--{option}", value, *INT_LIMITS[option])
    check_finite("--timeout", timeout, min=TIMEOUT_LIMITS[0], min_open=True, max=TIMEOUT_LIMITS[1], example="600")


def memory_limit_bytes(text: str | int) -> int:
    """--memory-limit in bytes, refused unless finite and between 1 MiB and 16 TiB."""
    from edgeseq.targets.local import parse_size

    try:
        size = parse_size(text)
    except (OverflowError, ValueError):  # inf, nan: not a size
        size = None
    low, high = MEMORY_LIMIT_BYTES
    if size is None or isinstance(size, bool) or not low <= size <= high:
        raise InputError(
            f"--memory-limit must be a size from 1M to 16T, got {str(text)[:40]!r}",
            "write e.g. 256M, 1G or a number of bytes",
        )
    return size
