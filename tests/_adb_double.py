"""A device-side ADB TEST DOUBLE: speaks the ADB wire protocol over TCP, so the real `adb` client and server can
connect to it (`adb connect 127.0.0.1:PORT`). No Android emulator or system image can run here; this double stands in
for `adbd` on a phone. It is not Android: its shell is the host's `sh` (or, given `root`, `chroot ROOT sh`), its files
are the host's (or ROOT's), and `getprop` is a stub script that prints fixed Pixel-like properties.

What it implements, from the protocol description in AOSP (packages/modules/adb/protocol.txt, SYNC.TXT):
- transport: 24-byte messages (command, arg0, arg1, length, checksum, magic); CNXN answered without AUTH; OPEN /
  OKAY / WRTE / CLSE streams with one-WRTE-in-flight flow control in both directions;
- services: `shell:CMD` (legacy: stdout and stderr merged, no exit status, as on devices without shell_v2) and
  `exec:CMD` (stdout only); `sync:` with STAT, LIST, SEND (DATA chunks, DONE + mtime), RECV and QUIT.
- faults: `go_offline()` drops every connection and stops listening (a device unplugged or its Wi-Fi gone);
  `offline_when(pred)` does that when a shell command matching `pred` arrives; a write that fails on the host
  (e.g. ENOSPC on a full filesystem) answers SEND with FAIL and the host's message, as adbd does.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

A_CNXN, A_OPEN, A_OKAY, A_CLSE, A_WRTE, A_AUTH = (
    0x4E584E43,
    0x4E45504F,
    0x59414B4F,
    0x45534C43,
    0x45545257,
    0x48545541,
)
A_VERSION = 0x01000001  # skips checksums, as adbd >= 1.0.39 does
MAX_PAYLOAD = 256 * 1024
SYNC_DATA_MAX = 64 * 1024

DEFAULT_PROPS = {
    "ro.product.manufacturer": "Google",
    "ro.product.model": "Pixel 7 (adb test double)",
    "ro.product.name": "panther",
    "ro.product.device": "panther",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.build.fingerprint": "google/panther/panther:14/UQ1A.240105.004/11206848:user/release-keys",
    "ro.hardware": "panther",
    "ro.soc.manufacturer": "Google",
    "ro.soc.model": "GS201",
    "ro.board.platform": "gs201",
}


def _msg(cmd: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    return struct.pack("<6I", cmd, arg0, arg1, len(data), 0, cmd ^ 0xFFFFFFFF) + data


class _Stream:
    """One OPEN'ed service on one connection: its ids, an OKAY gate for our writes, a queue of the host's writes."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.okay = threading.Event()
        self.okay.set()
        self.inbox: list[bytes] = []
        self.cond = threading.Condition()
        self.closed = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            chunk, view = bytes(view[: self.conn.max_payload]), view[self.conn.max_payload :]
            if not self.okay.wait(timeout=60) or self.closed:
                raise ConnectionError("stream closed")
            self.okay.clear()
            self.conn.send(_msg(A_WRTE, self.local_id, self.remote_id, chunk))

    def read_exact(self, n: int) -> bytes:
        buf = bytearray()
        with self.cond:
            while len(buf) < n:
                while not self.inbox and not self.closed:
                    self.cond.wait(timeout=60)
                if not self.inbox:
                    raise ConnectionError("stream closed")
                head = self.inbox[0]
                take = min(n - len(buf), len(head))
                buf += head[:take]
                if take == len(head):
                    self.inbox.pop(0)
                else:
                    self.inbox[0] = head[take:]
        return bytes(buf)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.conn.send(_msg(A_CLSE, self.local_id, self.remote_id))
        with self.cond:
            self.cond.notify_all()


class _Connection:
    def __init__(self, double: AdbDeviceDouble, sock: socket.socket):
        self.double, self.sock = double, sock
        self.lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.max_payload = 4096

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            part = self.sock.recv(n - len(buf))
            if not part:
                raise ConnectionError("host closed")
            buf += part
        return bytes(buf)

    def serve(self) -> None:
        try:
            while True:
                cmd, arg0, arg1, length, _crc, magic = struct.unpack("<6I", self._recv_exact(24))
                data = self._recv_exact(length) if length else b""
                if magic != cmd ^ 0xFFFFFFFF:
                    return
                self._dispatch(cmd, arg0, arg1, data)
        except (ConnectionError, OSError):
            pass
        finally:
            for s in list(self.streams.values()):
                s.closed = True
                s.okay.set()
                with s.cond:
                    s.cond.notify_all()
            with contextlib.suppress(OSError):
                self.sock.close()

    def _dispatch(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        if cmd == A_CNXN:
            self.max_payload = max(4096, min(arg1, MAX_PAYLOAD))
            props = ";".join(
                f"{k}={self.double.props[k]}"
                for k in ("ro.product.name", "ro.product.model", "ro.product.device")
            )
            banner = f"device::{props};features=cmd\0".encode()
            self.send(_msg(A_CNXN, A_VERSION, self.max_payload, banner))
        elif cmd == A_OPEN:
            local_id = self.next_id
            self.next_id += 1
            stream = _Stream(self, local_id, arg0)
            service = data.rstrip(b"\0").decode("utf-8", "replace")
            handler = self.double._handler(service)
            if handler is None:
                self.send(_msg(A_CLSE, 0, arg0))
                return
            self.streams[local_id] = stream
            self.send(_msg(A_OKAY, local_id, arg0))
            threading.Thread(target=self._run, args=(handler, stream, service), daemon=True).start()
        elif cmd == A_OKAY:
            stream = self.streams.get(arg1)
            if stream:
                stream.okay.set()
        elif cmd == A_WRTE:
            stream = self.streams.get(arg1)
            if stream:
                with stream.cond:
                    stream.inbox.append(data)
                    stream.cond.notify_all()
                self.send(_msg(A_OKAY, arg1, arg0))
        elif cmd == A_CLSE:
            stream = self.streams.pop(arg1, None)
            if stream:
                stream.closed = True
                stream.okay.set()
                with stream.cond:
                    stream.cond.notify_all()

    def _run(self, handler, stream: _Stream, service: str) -> None:
        try:
            handler(stream, service)
        except (ConnectionError, OSError):
            pass
        finally:
            stream.close()
            self.streams.pop(stream.local_id, None)


class AdbDeviceDouble:
    """Listen on 127.0.0.1:port and act as one device. `serial` is what the adb server will call it."""

    def __init__(self, workdir: Path, root: Path | None = None, props: dict | None = None, port: int = 0):
        self.root = root
        self.props = {**DEFAULT_PROPS, **(props or {})}
        self.commands: list[str] = []  # every shell/exec command received, for assertions
        self._offline_when: Callable[[str], bool] | None = None
        self._connections: list[_Connection] = []
        self._children: set[subprocess.Popen] = set()
        self.bin = Path(workdir) / "double-bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        self._write_getprop()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self.serial = f"127.0.0.1:{self.port}"
        self.online = True
        threading.Thread(target=self._accept, daemon=True).start()

    # -- faults --------------------------------------------------------------------------------------------
    def go_offline(self) -> None:
        """Drop every connection and stop listening: to the adb server the device is gone."""
        self.online = False
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread; close() alone would not
        with contextlib.suppress(OSError):
            self._sock.close()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
                conn.sock.close()
        for child in list(self._children):
            with contextlib.suppress(OSError):
                child.kill()

    def offline_when(self, predicate: Callable[[str], bool]) -> None:
        self._offline_when = predicate

    def close(self) -> None:
        self.go_offline()

    # -- plumbing ------------------------------------------------------------------------------------------
    def _write_getprop(self) -> None:
        lines = "".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.props.items()))
        script = self.bin / "getprop"
        with tempfile.NamedTemporaryFile("w", dir=self.bin, delete=False) as fh:
            fh.write('#!/bin/sh\nif [ -n "$1" ]; then\n  case "$1" in\n')
            for k, v in sorted(self.props.items()):
                fh.write(f"    {k}) echo '{v}' ;;\n")
            fh.write("  esac\n  exit 0\nfi\ncat <<'EOF'\n" + lines + "EOF\n")
        os.replace(fh.name, script)
        script.chmod(0o755)

    def _accept(self) -> None:
        while self.online:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            conn = _Connection(self, sock)
            self._connections.append(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    def _handler(self, service: str):
        if service.startswith("shell:") or service.startswith("exec:"):
            return self._shell
        if service == "sync:":
            return self._sync
        return None

    def host_path(self, device_path: str) -> Path:
        return Path(device_path) if self.root is None else self.root / device_path.lstrip("/")

    def _shell(self, stream: _Stream, service: str) -> None:
        kind, _, command = service.partition(":")
        self.commands.append(command)
        if self._offline_when is not None and self._offline_when(command):
            self.go_offline()
            return
        env = {**os.environ, "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin", "ANDROID_DATA": "/data"}
        argv = ["sh", "-c", command or "true"]
        if self.root is not None:
            argv = ["chroot", str(self.root), *argv]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if kind == "shell" else subprocess.DEVNULL,
            env=env,
        )
        self._children.add(proc)
        try:
            while chunk := proc.stdout.read1(65536):
                stream.write(chunk)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            self._children.discard(proc)

    def _sync(self, stream: _Stream, service: str) -> None:
        while True:
            ident, length = struct.unpack("<4sI", stream.read_exact(8))
            if ident == b"QUIT":
                return
            path = stream.read_exact(length).decode("utf-8", "replace")
            if ident == b"STAT":
                try:
                    st = os.stat(self.host_path(path))
                    stream.write(
                        struct.pack("<4sIII", b"STAT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime))
                    )
                except OSError:
                    stream.write(struct.pack("<4sIII", b"STAT", 0, 0, 0))
            elif ident == b"LIST":
                base = self.host_path(path)
                with contextlib.suppress(OSError):
                    for name in sorted(os.listdir(base)):
                        st = os.lstat(base / name)
                        raw = name.encode()
                        stream.write(
                            struct.pack(
                                "<4sIIII",
                                b"DENT",
                                st.st_mode,
                                st.st_size & 0xFFFFFFFF,
                                int(st.st_mtime),
                                len(raw),
                            )
                            + raw
                        )
                stream.write(struct.pack("<4sIIII", b"DONE", 0, 0, 0, 0))
            elif ident == b"SEND":
                self._recv_file(stream, path)
            elif ident == b"RECV":
                self._send_file(stream, path)
            else:
                self._fail(stream, f"unknown sync request {ident!r}")
                return

    def _recv_file(self, stream: _Stream, spec: str) -> None:
        path, _, mode_text = spec.rpartition(",")
        mode = int(mode_text) if mode_text.isdigit() else 0o644
        target = self.host_path(path)
        error = None
        fh = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fh = open(target, "wb")  # noqa: SIM115 - closed below, after the DATA stream ends
        except OSError as exc:
            error = f"{path}: {exc.strerror}"
        while True:
            ident, length = struct.unpack("<4sI", stream.read_exact(8))
            if ident == b"DATA":
                data = stream.read_exact(length)
                if fh is not None and error is None:
                    try:
                        fh.write(data)
                        fh.flush()
                    except OSError as exc:
                        error = f"{path}: {exc.strerror}"
            elif ident == b"DONE":
                mtime = length
                break
            else:
                error = f"unexpected {ident!r} in SEND"
                break
        if fh is not None:
            try:
                fh.close()
            except OSError as exc:
                error = error or f"{path}: {exc.strerror}"
        if error is None:
            with contextlib.suppress(OSError):
                os.chmod(target, stat.S_IMODE(mode) or 0o644)
                os.utime(target, (mtime, mtime))
            stream.write(struct.pack("<4sI", b"OKAY", 0))
        else:
            with contextlib.suppress(OSError):
                target.unlink()
            self._fail(stream, error)

    def _send_file(self, stream: _Stream, path: str) -> None:
        try:
            with open(self.host_path(path), "rb") as fh:
                while chunk := fh.read(SYNC_DATA_MAX):
                    stream.write(struct.pack("<4sI", b"DATA", len(chunk)) + chunk)
        except OSError as exc:
            self._fail(stream, f"{path}: {exc.strerror}")
            return
        stream.write(struct.pack("<4sI", b"DONE", 0))

    @staticmethod
    def _fail(stream: _Stream, message: str) -> None:
        raw = message.encode()
        stream.write(struct.pack("<4sI", b"FAIL", len(raw)) + raw)


class AdbServer:
    """The real adb server (`adb -P PORT nodaemon server`) as a child of the test, with its own HOME for keys."""

    def __init__(self, workdir: Path, adb: str = "adb"):
        from _sshd import free_port  # the same free-port helper the sshd fixture uses

        self.port = free_port()
        self.adb = adb
        self.home = Path(workdir) / "adb-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.log = Path(workdir) / "adb-server.txt"
        self.env = {**os.environ, "HOME": str(self.home), "ANDROID_USER_HOME": str(self.home / ".android")}
        self.env.pop("ANDROID_ADB_SERVER_PORT", None)
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(
                [adb, "-P", str(self.port), "nodaemon", "server"],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        self._wait()

    def _wait(self, timeout: float = 20.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"adb server exited {self.proc.returncode}: {self.log.read_text()[-1000:]}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.1)
        raise RuntimeError("adb server did not start")

    def client(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.adb, "-P", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


BENCHMARK_MODEL_DOUBLE = r"""
# A benchmark_model TEST DOUBLE: LiteRT's native benchmark_model is in no package installable here, so this stand-in
# really loads and times the model (ai_edge_litert) and logs in the upstream tool's format
# (tensorflow/lite/tools/benchmark), on stderr as the tool's LOG(INFO) does.
import os, statistics, sys, time

t_start = time.perf_counter()
flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
graph = flags["graph"]
runs, warmup = int(flags.get("num_runs", 50)), int(flags.get("warmup_runs", 1))
threads = int(flags.get("num_threads", -1))
max_secs = float(flags.get("max_secs", 150))


def log(msg=""):
    print(f"INFO: {msg}" if msg else "", file=sys.stderr, flush=True)


def stat_line(us):
    if len(us) == 1:
        return f"count=1 curr={us[0]} p5={us[0]} median={us[0]} p95={us[0]}"
    s = sorted(us)
    pct = lambda q: s[min(len(s) - 1, int(q * len(s)))]
    return (f"count={len(us)} first={us[0]} curr={us[-1]} min={s[0]} max={s[-1]} avg={statistics.mean(us):g} "
            f"std={int(statistics.pstdev(us))} p5={pct(0.05)} median={pct(0.5)} p95={pct(0.95)}")


def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


log("STARTING!")
log("Log parameter values verbosely: [0]")
log(f"Min num runs: [{runs}]")
log(f"Num threads: [{threads}]")
log(f"Min warmup runs: [{warmup}]")
log(f"Graph: [{graph}]")
log(f"#threads used for CPU inference: [{threads}]")
if not os.path.isfile(graph):
    log(f"Failed to mmap model {graph}")
    log("Benchmarking failed.")
    sys.exit(1)
mem0 = hwm_mb()
t0 = time.perf_counter()
from ai_edge_litert.interpreter import Interpreter
import numpy as np

interp = Interpreter(model_path=graph, num_threads=threads if threads > 0 else None)
interp.allocate_tensors()
init_us = int((time.perf_counter() - t0) * 1e6)
log(f"Loaded model {graph}")
log(f"The input model file size (MB): {os.path.getsize(graph) / 1e6:g}")
log(f"Initialized session in {init_us / 1000:.3f}ms.")
mem_init = hwm_mb() - mem0
for d in interp.get_input_details():
    interp.set_tensor(d["index"], np.random.default_rng(0).standard_normal(d["shape"]).astype(d["dtype"]))


def timed(n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        interp.invoke()
        out.append(int((time.perf_counter() - t) * 1e6))
    return out


log(f"Running benchmark for at least {warmup} iterations and at least 0 seconds but terminate if exceeding {max_secs:g} seconds.")
warm = timed(max(1, warmup))
log(stat_line(warm))
log()
log(f"Running benchmark for at least {runs} iterations and at least 0 seconds but terminate if exceeding {max_secs:g} seconds.")
steady = timed(runs)
log(stat_line(steady))
log()
log(f"Inference timings in us: Init: {init_us}, First inference: {warm[0]}, Warmup (avg): {statistics.mean(warm):g}, "
    f"Inference (avg): {statistics.mean(steady):g}")
log("Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual "
    "memory footprint of the model at runtime. Take the information at your discretion.")
log(f"Memory footprint delta from the start of the tool (MB): init={mem_init:g} overall={hwm_mb() - mem0:g}")
log(f"Overall peak memory footprint (MB) via periodic monitoring: {hwm_mb():g}")
"""


def write_benchmark_model_double(path: Path, python: str) -> Path:
    """Write the benchmark_model test double as an executable script run by `python` (which has ai_edge_litert)."""
    path.write_text(f"#!{python}\n" + BENCHMARK_MODEL_DOUBLE)
    path.chmod(0o755)
    return path
