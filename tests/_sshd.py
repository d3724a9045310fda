"""A real OpenSSH server for tests: Debian's sshd on 127.0.0.1, throwaway keys, a free port, strict known_hosts.

Started as a child of the test process (`sshd -D`, no daemonising) and reaped with wait(), because PID 1 here does
not reap orphans. Also hosts the same server inside the emulated arm64 rootfs (`chroot ROOT /usr/sbin/sshd`), and a
TCP proxy that drops the first N connections, to exercise the client's single retry against the real server.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def unavailable_reason() -> str | None:
    if not Path(SSHD).exists():
        return "openssh-server is not installed (run .ci/setup-system.sh)"
    for tool in ("ssh", "ssh-keygen", "ssh-keyscan"):
        if not shutil.which(tool):
            return f"{tool} is not installed (apt-get install openssh-client)"
    if not Path("/run/sshd").is_dir():
        if os.geteuid() != 0:
            return "sshd needs /run/sshd, which only root can create (run .ci/setup-system.sh as root once)"
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, comment: str = "edgeseq-test") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


@dataclass
class SshServer:
    port: int
    user: str
    host_key: Path  # private; .pub beside it
    client_key: Path
    known_hosts: Path  # holds exactly this server's host key
    proc: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def host_key_line(self) -> str:
        kind, b64 = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {b64}"


def _write_config(path: Path, port: int, host_key: str, authorized_keys: str, pid_file: str) -> None:
    path.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized_keys}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "StrictModes no",
                f"PidFile {pid_file}",
                "LogLevel ERROR",
                "MaxStartups 50",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(timeout)
            if s.recv(64).startswith(b"SSH-"):
                return
        time.sleep(0.1)
    raise RuntimeError(f"sshd did not listen on {port} within {timeout} s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def sshd(workdir: Path, user: str | None = None):
    """A host sshd on a free port; logs in as the current user with a throwaway key."""
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    workdir.mkdir(parents=True, exist_ok=True)
    host_key = keygen(workdir / "host_ed25519")
    client_key = keygen(workdir / "client_ed25519")
    authorized = workdir / "authorized_keys"
    shutil.copy(client_key.with_suffix(".pub"), authorized)
    port = free_port()
    config = workdir / "sshd_config"
    _write_config(config, port, str(host_key), str(authorized), str(workdir / "sshd.pid"))
    log = workdir / "sshd.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=fh, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, proc, log, timeout=15)
        server = SshServer(
            port, user or getpass.getuser(), host_key, client_key, workdir / "known_hosts", proc, log
        )
        server.known_hosts.write_text(server.host_key_line() + "\n")
        yield server
    finally:
        _stop(proc)


@contextlib.contextmanager
def sshd_in_rootfs(root: Path, workdir: Path, user: str = "pi"):
    """sshd inside the emulated arm64 rootfs (chroot; qemu-user via binfmt). Keys live in ROOT/etc/edgeseq-test."""
    workdir.mkdir(parents=True, exist_ok=True)
    host_key = keygen(workdir / "host_ed25519")
    client_key = keygen(workdir / "client_ed25519")
    port = free_port()
    inside = root / "etc/edgeseq-test" / str(port)  # per server: test sessions may share the cached rootfs
    inside.mkdir(parents=True, exist_ok=True)
    shutil.copy(host_key, inside / "host_ed25519")
    (inside / "host_ed25519").chmod(0o600)
    shutil.copy(client_key.with_suffix(".pub"), inside / "authorized_keys")
    rel = f"/etc/edgeseq-test/{port}"
    _write_config(inside / "sshd_config", port, f"{rel}/host_ed25519", f"{rel}/authorized_keys", "none")
    log = workdir / "sshd.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            ["chroot", str(root), SSHD, "-D", "-e", "-f", f"{rel}/sshd_config"],
            stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_listening(port, proc, log, timeout=60)
        server = SshServer(port, user, host_key, client_key, workdir / "known_hosts", proc, log)
        server.known_hosts.write_text(server.host_key_line() + "\n")
        yield server
    finally:
        _stop(proc)
        shutil.rmtree(inside, ignore_errors=True)


class DroppingProxy:
    """Forwards 127.0.0.1:port to a server, but closes the first `drop` connections at once (a flaky link)."""

    def __init__(self, upstream_port: int, drop: int = 1):
        self.upstream_port = upstream_port
        self.drop = drop
        self.accepted = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.drop:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._sock.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
