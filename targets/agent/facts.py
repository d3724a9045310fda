"""Device facts: `device_facts()`, the `device` block (fields named in edgeseq.targets.facts), and /proc readers.

Part of the device agent (see the package docstring); standard library, numpy and a TFLite runtime only."""

from __future__ import annotations

import os
import platform


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


_STATUS_KEYS = {"VmRSS:": "vm_rss_kb", "VmHWM:": "vm_hwm_kb", "RssAnon:": "rss_anon_kb", "RssFile:": "rss_file_kb"}


def _proc_status_kb() -> dict:
    """VmRSS, VmHWM and the anonymous / file-backed parts of the RSS (Linux >= 4.5), kB; None where unreadable."""
    text = _read("/proc/self/status") or ""
    out = dict.fromkeys(_STATUS_KEYS.values())
    for line in text.splitlines():
        key = _STATUS_KEYS.get(line[: line.find(":") + 1])
        if key:
            out[key] = int(line.split()[1])
    return out


def device_facts() -> dict:
    """What a reader needs to know about the machine to trust (or distrust) a figure measured on it."""
    cpuinfo = _read("/proc/cpuinfo") or ""
    cpu_model, mhz, hardware = None, None, None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "processor") and not cpu_model and value and not value.isdigit():
            cpu_model = value
        elif key in ("hardware", "model") and not hardware and value and not value.isdigit():
            hardware = value
        elif key == "cpu mhz" and mhz is None:
            try:
                mhz = float(value)
            except ValueError:
                pass
        elif key == "cpu part" and not cpu_model:
            cpu_model = f"ARM part {value}"
    max_mhz = None
    raw = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if raw and raw.strip().isdigit():
        max_mhz = int(raw.strip()) / 1000.0
    raw = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    if raw and raw.strip().isdigit():
        mhz = int(raw.strip()) / 1000.0
    board = (_read("/proc/device-tree/model") or "").strip("\x00\n ") or hardware
    mem_total = None
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem_total = int(line.split()[1])
    os_release = None
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_release = line.split("=", 1)[1].strip().strip('"')
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = None
    return {
        "hostname": platform.node(),
        "machine": platform.machine(),
        "cpu_model": cpu_model or platform.processor() or None,
        "board": board,
        "cpu_count": os.cpu_count(),
        "cpus_allowed": allowed,
        "cpu_mhz": mhz,
        "cpu_max_mhz": max_mhz,
        "mem_total_kb": mem_total,
        "os": platform.system(),
        "os_release": os_release,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "libc": " ".join(platform.libc_ver()).strip() or None,
    }
