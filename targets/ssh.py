"""A Raspberry Pi (or any Linux box) over SSH, through the OpenSSH client binary.

Why the binary and not a Python SSH library: it honours the user's keys, agent and known_hosts exactly as `ssh` on the
command line does, and its host-key checking is the one people already trust. Every call is an argv list with
`StrictHostKeyChecking=yes` and `BatchMode=yes`: an unknown or changed host key is refused (with its fingerprint and
the `edgeseq targets trust NAME` command), never added. The remote side sees one shell string, built in exactly one
place (`_remote_command`) with `shlex.quote`, so paths with spaces or shell metacharacters arrive intact.

Files move over the same channel (`cat > FILE` / `cat FILE`), so there is no second quoting convention (scp's
remote-path rules differ between its SFTP and legacy modes).
"""

from __future__ import annotations

import math
import re
import shlex
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edgeseq.core.errors import InputError, TargetError
from edgeseq.targets import device_shell, trust
from edgeseq.targets.base import RunResult, TargetSpec

DEFAULT_WORKDIR = "/tmp/edgeseq"
_DROPPED = (
    "connection closed by",
    "connection reset",
    "broken pipe",
    "kex_exchange_identification",
    "connection to .* closed by remote host",
    "ssh_exchange_identification",
    "client_loop: send disconnect",
)
_UNREACHABLE = (
    "connection refused",
    "connection timed out",
    "operation timed out",
    "no route to host",
    "network is unreachable",
    "could not resolve hostname",
    "name or service not known",
    "temporary failure in name resolution",
)
_FINGERPRINT_RE = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


def parse_url(url: str) -> tuple[str | None, str, int]:
    """`ssh://user@host[:port]` -> (user, host, port). IPv6 hosts go in brackets, as in any URL."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        raise InputError(f"not an SSH URL: {url!r}", "use ssh://user@host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InputError(
            f"unexpected path or query in {url!r}", "use ssh://user@host[:port]; set workdir separately"
        )
    try:
        port = parts.port or 22
    except ValueError as exc:
        raise InputError(f"bad port in {url!r}", "use ssh://user@host[:port]") from exc
    user = unquote(parts.username) if parts.username else None
    if user is not None and (user.startswith("-") or not user):
        raise InputError(f"bad user name in {url!r}", "use ssh://user@host[:port]")
    if parts.hostname.startswith("-"):
        raise InputError(f"bad host name in {url!r}", "use ssh://user@host[:port]")
    return user, parts.hostname, port


class SshTarget:
    """One SSH-reachable device. Host-key policy, timeouts and the single retry live here; runners see argv lists."""

    def __init__(self, spec: TargetSpec, connect_timeout: float = 10.0, retry_delay_s: float = 1.0):
        from edgeseq.targets.config import check_fields

        self.spec = check_fields(spec)  # types and ranges; options.ssh, when set, an absolute path
        self.user, self.host, self.port = parse_url(spec.url)
        self.known_hosts = trust.known_hosts_path(spec.known_hosts)
        self.connect_timeout = float(spec.options.get("connect_timeout", connect_timeout))
        self.retry_delay_s = retry_delay_s
        self.python = spec.python or "python3"
        ssh = spec.options.get("ssh", "ssh")
        self._ssh = trust.system_program(ssh)
        if not self._ssh:
            raise TargetError(
                f"the OpenSSH client ({ssh}) is not installed", "apt-get install openssh-client, or set options.ssh"
            )

    # -- the only places that build what the device sees ------------------------------------------------------
    def ssh_argv(self, remote_command: str) -> list[str]:
        argv = [
            self._ssh,
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "UpdateHostKeys=no",
            "-o", f"ConnectTimeout={max(1, math.ceil(self.connect_timeout))}",
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3",
            "-o", "LogLevel=ERROR",
            "-p", str(self.port),
        ]  # fmt: skip
        if self.spec.key_file:
            argv += ["-i", str(Path(self.spec.key_file).expanduser()), "-o", "IdentitiesOnly=yes"]
        if self.user:
            argv += ["-l", self.user]
        return [*argv, "--", self.host, remote_command]

    @staticmethod
    def _remote_command(argv: list[str]) -> str:
        """The one place an argv list becomes a remote shell string: every word quoted, nothing interpolated."""
        if not argv:
            raise InputError("empty remote command", None)
        return " ".join(shlex.quote(str(a)) for a in argv)

    # -- Target protocol ---------------------------------------------------------------------------------------
    def run(self, argv: list[str], timeout: float) -> RunResult:
        """Run argv on the device; its exit status comes back in RunResult. Transport failures raise TargetError."""
        wrapped = ["sh", "-c", device_shell.WITH_DEADLINE, str(max(1, math.ceil(timeout))), *argv]
        result = self._call(
            self._remote_command(wrapped), timeout=timeout + self.connect_timeout + 10, what=argv[0]
        )
        if result.returncode == 124:
            raise TargetError(
                f"{self.spec.name}: {argv[0]} did not finish within {timeout:.0f} s and was stopped on the device",
                "raise --timeout, or check that the device is not overloaded",
            )
        return result

    def push(self, local: Path, remote: str) -> None:
        local = Path(local)
        if not local.is_file():
            raise InputError(f"no such file: {local}", None)
        with open(local, "rb") as fh:
            result = self._call(
                self._remote_command(["sh", "-c", device_shell.PUSH_SCRIPT, "sh", remote]), timeout=self._transfer_timeout(local.stat().st_size),
                stdin=fh, what=f"upload of {local.name}",
            )  # fmt: skip
        if result.returncode != 0:
            raise self._file_error("upload", remote, result)

    def pull(self, remote: str, local: Path) -> None:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.part")
        try:
            with open(tmp, "wb") as fh:
                result = self._call(
                    self._remote_command(["cat", "--", remote]), timeout=self._transfer_timeout(64 << 20),
                    stdout=fh, what=f"download of {remote}",
                )  # fmt: skip
            if result.returncode != 0:
                raise self._file_error("download", remote, result)
            tmp.replace(local)
        finally:
            tmp.unlink(missing_ok=True)

    def workdir(self) -> str:
        base = self.spec.workdir or DEFAULT_WORKDIR
        result = self.run(["sh", "-c", device_shell.MKTEMP_SCRIPT, "sh", base], timeout=30)
        path = result.stdout.strip()
        if result.returncode != 0 or not path.startswith("/"):
            raise self._file_error("create a work directory in", base, result)
        return path

    def cleanup(self, remote_dir: str) -> None:
        """Remove a directory made by workdir(); anything else is refused, so a bad path cannot rm the wrong tree."""
        if not device_shell.is_run_dir(remote_dir):
            raise TargetError(f"refusing to delete {remote_dir!r}: not an edgeseq run directory", None)
        self.run(["rm", "-rf", "--", remote_dir], timeout=60)

    def info(self) -> dict:
        """Device facts for provenance and `targets check`: CPU, RAM, free disk, Python and the TFLite runtime."""
        result = self.run(
            [
                "sh",
                "-c",
                device_shell.FACTS_SCRIPT,
                "sh",
                self.python,
                self.spec.workdir or DEFAULT_WORKDIR,
                device_shell.PY_FACTS,
            ],
            120,
        )
        facts: dict = {"transport": "ssh", "target": self.spec.name, "host": self.host, "port": self.port}
        facts.update(device_shell.parse_facts(result.stdout))
        return facts

    # -- checks the runner and the CLI use -------------------------------------------------------------------
    def require_runtime(self, facts: dict | None = None) -> dict:
        """Raise a TargetError naming `targets setup` when the agent could not run: no Python, numpy or runtime."""
        facts = facts or self.info()
        return device_shell.require_runtime(self.spec.name, self.python, facts)

    # -- plumbing ------------------------------------------------------------------------------------------
    def _transfer_timeout(self, size: int) -> float:
        # Generous: a Pi on Wi-Fi moves ~2 MB/s; the deadline exists to catch a stall, not a slow link.
        return 60.0 + size / (512 * 1024)

    def _call(self, command: str, timeout: float, what: str, stdin=None, stdout=None) -> RunResult:
        """One ssh invocation, retried once when the connection dropped before or while it ran."""
        for attempt in (1, 2):
            if stdin is not None:
                stdin.seek(0)
            if stdout is not None:
                stdout.seek(0)
                stdout.truncate()
            started = time.monotonic()
            try:
                proc = subprocess.run(
                    self.ssh_argv(command),
                    stdin=stdin if stdin is not None else subprocess.DEVNULL,
                    stdout=stdout if stdout is not None else subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired as exc:
                raise TargetError(
                    f"{self.spec.name}: {what} timed out after {timeout:.0f} s ({self._where()})",
                    "check the link to the device; raise --timeout for slow devices",
                ) from exc
            wall = time.monotonic() - started
            out = "" if stdout is not None else proc.stdout.decode("utf-8", "replace")
            err = proc.stderr.decode("utf-8", "replace")
            if proc.returncode == 255:
                kind = _classify(err)
                if kind == "dropped" and attempt == 1:
                    time.sleep(self.retry_delay_s)
                    continue
                if kind is not None:
                    raise self._transport_error(kind, err)
            return RunResult(proc.returncode, out, err, wall)
        raise AssertionError("unreachable")  # pragma: no cover

    def _where(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    def _transport_error(self, kind: str, stderr: str) -> TargetError:
        name, where = self.spec.name, self._where()
        last = device_shell.last_line(stderr)
        trust_cmd = (
            f"edgeseq targets trust {name}"
            if name and not name.startswith("ssh://")
            else "edgeseq targets add NAME URL, then edgeseq targets trust NAME"
        )
        if kind == "changed":
            offered = _FINGERPRINT_RE.search(stderr)
            fp = offered.group(0) if offered else self._scan_fingerprints()
            return TargetError(
                f"{name}: the host key of {where} has CHANGED (the device now offers {fp}; known_hosts: {self.known_hosts}); "
                "this can mean the device was reinstalled, or someone is intercepting the connection",
                f"verify the fingerprint on the device, then run `{trust_cmd}`",
            )
        if kind == "unknown":
            return TargetError(
                f"{name}: the host key of {where} is not in {self.known_hosts} (the device offers {self._scan_fingerprints()})",
                f"verify the fingerprint on the device, then run `{trust_cmd}`",
            )
        if kind == "auth":
            key = self.spec.key_file or "your default ssh keys"
            return TargetError(
                f"{name}: authentication refused by {where} ({last})",
                f"check the user name and key ({key}); the device's ~/.ssh/authorized_keys must hold the public key",
            )
        if kind == "unreachable":
            return TargetError(
                f"{name}: cannot reach {where} ({last})",
                "is the device on, sshd running, and the host and port right?",
            )
        return TargetError(
            f"{name}: the connection to {where} dropped twice ({last})",
            "check the network link and the device's sshd",
        )

    def _scan_fingerprints(self) -> str:
        try:
            return trust.fingerprints_text(
                trust.scan(self.host, self.port, timeout=min(5.0, self.connect_timeout))
            )
        except TargetError:
            return "a key that could not be fetched"

    def _file_error(self, action: str, remote: str, result: RunResult) -> TargetError:
        return device_shell.file_error(self.spec.name, action, remote, result.stderr or result.stdout)


def _classify(stderr: str) -> str | None:
    text = stderr.lower()
    if "remote host identification has changed" in text:
        return "changed"
    if "host key verification failed" in text or "host key is known" in text:
        return "unknown"
    if "permission denied (" in text or "too many authentication failures" in text:
        return "auth"
    if any(re.search(p, text) for p in _UNREACHABLE):
        return "unreachable"
    if any(re.search(p, text) for p in _DROPPED):
        return "dropped"
    return None
