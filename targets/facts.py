"""The device facts a result carries (`device` in schema edgeseq.agent/1), named once.

Two producers fill them: the agent, on the device (`device_facts()` in targets/agent/facts.py; it is pushed alone, so
it spells the names out itself, and tests/test_agent.py checks they are exactly these), and the host, for runners that
cannot report them (benchmark_model on a phone without Python): `from_target_facts` builds them from what a transport
gathered (`info()`: getprop and /proc through `device_shell.FACTS_SCRIPT`). Every field may be None (not readable
there); the store, the reports and `device_key` read them by these names.

The transports' own facts (`info()`, printed by `edgeseq targets check`) are a different record: reachability and
setup (free disk, numpy, the runtime, the adb serial), not part of a result's `device`.
"""

from __future__ import annotations

# name -> type of its value (or None)
DEVICE_FIELDS: dict[str, type] = {
    "hostname": str,
    "machine": str,  # uname -m, or the Android ABI (arm64-v8a)
    "cpu_model": str,  # /proc/cpuinfo model name / Hardware / CPU part, or the SoC
    "board": str,  # /proc/device-tree/model, or manufacturer + model
    "cpu_count": int,
    "cpus_allowed": int,  # CPUs this process may run on (affinity)
    "cpu_mhz": float,
    "cpu_max_mhz": float,
    "mem_total_kb": int,
    "os": str,
    "os_release": str,
    "kernel": str,
    "python": str,  # the Python that ran the measurement; None for a native runner
    "python_impl": str,
    "libc": str,
}


def problems(device: dict) -> list[str]:
    """What is wrong with a `device` block: missing or extra fields, values of the wrong type ([] when none)."""
    out = [f"missing {k}" for k in DEVICE_FIELDS if k not in device]
    out += [f"unknown {k}" for k in device if k not in DEVICE_FIELDS]
    for key, kind in DEVICE_FIELDS.items():
        value = device.get(key)
        if value is None:
            continue
        ok = isinstance(value, (int, float)) if kind is float else isinstance(value, kind)
        if not ok or (kind is not str and isinstance(value, bool)):
            out.append(f"{key} is {type(value).__name__}, not {kind.__name__}")
    return out


def _int(value) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value or "").strip()
    return int(text) if text.isdigit() else None


def _text(value) -> str | None:
    return str(value) if value not in (None, "") else None


def from_target_facts(facts: dict) -> dict:
    """A `device` block (exactly DEVICE_FIELDS) from a transport's `info()` (getprop, /proc)."""
    android = _text(facts.get("android"))
    cpus = _int(facts.get("cpus"))
    return {
        "hostname": _text(facts.get("hostname")),
        "machine": _text(facts.get("abi") or facts.get("machine")),
        "cpu_model": _text(facts.get("soc") or facts.get("cpu")),
        "board": " ".join(str(v) for v in (facts.get("manufacturer"), facts.get("model")) if v) or None,
        "cpu_count": cpus,
        "cpus_allowed": cpus,
        "cpu_mhz": None,
        "cpu_max_mhz": None,
        "mem_total_kb": _int(facts.get("mem_total_kb")),
        "os": f"Android {android}" if android else _text(facts.get("os")),
        "os_release": f"Android {android} (SDK {facts.get('sdk')})" if android else _text(facts.get("os")),
        "kernel": _text(facts.get("kernel")),
        "python": None,
        "python_impl": None,
        "libc": None,
    }
