"""Memory: `MemoryMeter`, VmRSS and resident code per stage, the model's own peak without the runtime's code.

Part of the device agent (see the package docstring); standard library, numpy and a TFLite runtime only."""

from __future__ import annotations

import os

from .facts import _proc_status_kb

# What a model costs is the process's peak minus what Python, numpy and the runtime hold before it loads (~35 MB on
# x86_64, most of any figure). Linux keeps one high-water mark per process (VmHWM); writing "5" to
# /proc/self/clear_refs (Linux >= 4.0) resets it to the current RSS, so the peak after the baseline is measured, not
# inferred. Where that write fails, the lifetime VmHWM still gives the model's peak when it rose past its value at
# the baseline ("hwm-inferred"); when it did not, only the sampled stages bound it from below ("rss-sampled").
#
# Code pages. Loading, allocating and running a first model pages in more of the runtime's shared libraries (~3 MB of
# machine code on x86_64 LiteRT). Those pages are file-backed and shared, and how many of them are already resident
# at the baseline depends on the page cache, not on the model: the kernel's fault-around maps up to 16 neighbouring
# pages per fault when they are cached, so a freshly installed venv showed 30 MB file-backed at the baseline against
# 22 MB in an old one, and the same tiny model measured 1.9 MB there and 3.3 MB here. So every stage also reads the
# resident code (`code_rss_kb`: the file-backed pages of every mapping of a shared object or with execute
# permission, /proc/self/smaps) and `model_peak_kb` is the peak of (RSS - code) over the baseline's (RSS - code).
# Both runtimes memory-map the .tflite itself (a read-only shared mapping of the model file): those pages are the
# model's weights, file-backed but not code, and stay in `model_peak_kb`. The peak is taken per interval between
# stages (the mark is reset at each stage under clear_refs) less the code resident at the interval's end: code only
# grows, so this is exact at the stage readings and at most the code paged in within one interval low in between.
# Where smaps is unreadable (kernels without CONFIG_PROC_PAGE_MONITOR, which also lack clear_refs) but
# /proc/self/status has RssFile (Linux >= 4.5), the agent loads the model from bytes instead of by path, so nothing
# file-backed is the model's, and the code is RssFile ("rss-file"). With neither, code is not separated
# (`code_method` null, `code_kb` null, `model_peak_kb` includes it as schema edgeseq.agent/2 did).
METHOD_CLEAR_REFS, METHOD_HWM, METHOD_SAMPLED = "clear_refs", "hwm-inferred", "rss-sampled"
CODE_SMAPS, CODE_RSS_FILE = "smaps", "rss-file"
_HEX = frozenset(b"0123456789abcdef")


def _is_code(perms: bytes, path: bytes) -> bool:
    """A mapping of machine code: a shared object file (name ending .so or .so.N) or any file mapped executable."""
    if not path.startswith(b"/"):
        return False  # anonymous, [heap], [stack], [vdso]: not file-backed
    if path.endswith(b" (deleted)"):
        path = path[:-10]
    if b"x" in perms:
        return True
    name = path.rsplit(b"/", 1)[-1]
    head, dot_so, tail = name.partition(b".so")
    while head and dot_so:
        if not tail or (tail[:1] == b"." and tail[1:].replace(b".", b"").isdigit()):
            return True
        head, dot_so, tail = tail.partition(b".so")
    return False


def code_rss_kb(skip_inode: int | None = None) -> int | None:
    """kB of machine code resident in this process: the file-backed pages (Rss less the copy-on-write Anonymous
    ones) of every mapping `_is_code` names, the mapping of inode `skip_inode` (the model file) never; None where
    /proc/self/smaps is unreadable."""
    try:
        fh = open("/proc/self/smaps", "rb")  # noqa: SIM115 - closed below; bytes: no decoding per line
    except OSError:
        return None
    total, code, rss = 0, False, 0
    try:
        with fh:
            for line in fh:
                if line[0] in _HEX:  # a mapping's header: "start-end perms offset dev inode [path]"
                    parts = line.split(None, 5)
                    path = parts[5].strip() if len(parts) > 5 else b""
                    code = len(parts) > 4 and _is_code(parts[1], path)
                    if code and skip_inode and parts[4].isdigit() and int(parts[4]) == skip_inode:
                        code = False
                elif code and line.startswith(b"Rss:"):
                    rss = int(line.split()[1])
                    total += rss
                elif code and line.startswith(b"Anonymous:"):
                    total -= min(rss, int(line.split()[1]))
    except (OSError, ValueError, IndexError):
        return None
    return total


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS; False where the kernel or a sandbox refuses."""
    try:
        fd = os.open("/proc/self/clear_refs", os.O_WRONLY)
    except OSError:
        return False
    try:
        return os.write(fd, b"5") == 1
    except OSError:
        return False
    finally:
        os.close(fd)


class MemoryMeter:
    """VmRSS and resident code after each stage and the peak over the rest of the run, relative to a baseline.

    `baseline()` once the runtime is imported and numpy warmed up (`warm_numpy`); `mark(stage)` after load, allocate,
    the first invoke; `start_timed()` right before the timed loop; `finish()` after it. Under clear_refs each of
    these closes an interval: its VmHWM is read with the code resident at its end, and the mark is reset for the next.
    `from_bytes` says the model must be loaded from bytes (code measured as RssFile). `block()` is the document's
    `memory` section."""

    def __init__(self, model_inode: int | None = None):
        self.model_inode = model_inode
        self.code_method = None
        if code_rss_kb(model_inode) is not None:
            self.code_method = CODE_SMAPS
        elif _proc_status_kb()["rss_file_kb"] is not None:
            self.code_method = CODE_RSS_FILE
        self.from_bytes = self.code_method == CODE_RSS_FILE
        self.stages = {"start": self._snap()}
        self.method = None
        self.base = None
        self.base_code = None
        self.hwm_before = None  # the lifetime VmHWM at the baseline
        self.intervals = []  # (VmHWM over the interval, code at its end): clear_refs only
        self.timed_peak = None  # VmHWM over the timed loop (clear_refs only)
        self.harness_kb = 0  # the agent's own buffers sized by the run (a stream's input and records)

    def _snap(self) -> dict:
        snap = _proc_status_kb()  # VmHWM first: the smaps read below must not count in the interval it closes
        if self.code_method == CODE_SMAPS:
            snap["code_kb"] = code_rss_kb(self.model_inode)
        else:
            snap["code_kb"] = snap["rss_file_kb"] if self.code_method == CODE_RSS_FILE else None
        return snap

    def baseline(self) -> None:
        code_rss_kb(self.model_inode)  # once more, so the reader's own buffers are in the baseline
        snap = self._snap()
        self.stages["baseline"] = snap
        self.base, self.hwm_before, self.base_code = snap["vm_rss_kb"], snap["vm_hwm_kb"], snap["code_kb"]
        if self.base is None or self.hwm_before is None:
            return  # no /proc: no figures, method None
        if reset_peak_rss():
            after = _proc_status_kb()["vm_hwm_kb"]
            # it took effect when the mark no longer holds an earlier, higher peak
            if after is not None and (after < self.hwm_before or self.hwm_before <= self.base + 64):
                self.method = METHOD_CLEAR_REFS
                return
        self.method = METHOD_HWM

    def _close_interval(self, snap: dict) -> None:
        if self.method == METHOD_CLEAR_REFS and snap["vm_hwm_kb"] is not None:
            self.intervals.append((snap["vm_hwm_kb"], snap["code_kb"]))
            reset_peak_rss()  # if it fails, the next reading covers this interval too: still a peak, code its end

    def mark(self, stage: str) -> None:
        snap = self._snap()
        self.stages[stage] = snap
        self._close_interval(snap)

    def start_timed(self) -> None:
        self._close_interval(self._snap())

    def finish(self) -> None:
        end = self._snap()
        self.stages["end"] = end
        if self.method == METHOD_CLEAR_REFS:
            self.timed_peak = end["vm_hwm_kb"]
        self._close_interval(end)

    def block(self) -> dict:
        end = self.stages.get("end") or {}
        samples = [self.stages[k] for k in ("load", "allocate", "first_invoke", "end") if k in self.stages]
        rss = {k: (self.stages.get(k) or {}).get("vm_rss_kb") for k in ("load", "allocate", "first_invoke")}
        code_known = self.base_code is not None and all(s.get("code_kb") is not None for s in samples)
        code_end = end.get("code_kb") if code_known else None
        base_rest = self.base - (self.base_code if code_known else 0) if self.base is not None else None

        def rest(kb, code):  # RSS less the code resident then (code not separated: RSS)
            return kb - (code if code_known else 0)

        sampled = [rest(s["vm_rss_kb"], s.get("code_kb")) for s in samples if s.get("vm_rss_kb") is not None]
        peak = model = None
        method = self.method
        if method == METHOD_CLEAR_REFS and self.intervals:
            peak = max(max(h for h, _ in self.intervals), self.hwm_before)
            model = max(rest(h, c) for h, c in self.intervals) - base_rest
        elif method in (METHOD_CLEAR_REFS, METHOD_HWM) and end.get("vm_hwm_kb") is not None and sampled:
            method = METHOD_HWM
            top = max(s["vm_rss_kb"] for s in samples if s.get("vm_rss_kb") is not None)
            peak = max(end["vm_hwm_kb"], top)  # the kernel's counters may lag a sample by a few pages
            if peak > self.hwm_before:  # the lifetime peak came after the baseline: it is the model's
                model = max(rest(peak, code_end), *sampled) - base_rest
            else:  # an earlier peak hides it; the largest sampled RSS is a lower bound
                method = METHOD_SAMPLED
                model = max(sampled) - base_rest
        return {
            "baseline_kb": self.base,
            "load_kb": rss["load"],
            "allocate_kb": rss["allocate"],
            "first_invoke_kb": rss["first_invoke"],
            "timed_peak_kb": self.timed_peak,
            "model_peak_kb": max(model - self.harness_kb, 0) if model is not None else None,
            "harness_kb": self.harness_kb,
            "code_kb": code_end - self.base_code if code_end is not None else None,
            "process_peak_kb": peak,
            "method": method,
            "code_method": self.code_method if code_known else None,
            "vm_hwm_kb": peak if peak is not None else end.get("vm_hwm_kb"),
            "vm_rss_kb": end.get("vm_rss_kb"),
            "stages": self.stages,
        }
