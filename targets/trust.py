"""Host keys for SSH targets: fetch (ssh-keyscan), fingerprint, and record into known_hosts only when asked.

Nothing here runs implicitly: an SSH target with an unknown or changed key is refused, and the only way a key gets
into known_hosts is `edgeseq targets trust NAME` (`trust_target`), which shows the fingerprints first (and can check
one given out of band with `--fingerprint`) and records only what its caller confirms.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgeseq.core.errors import TargetError

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
KEY_TYPES = "ed25519,ecdsa,rsa"


@dataclass(frozen=True)
class HostKey:
    host: str  # known_hosts form: host, or [host]:port
    key_type: str  # ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa
    key_b64: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key_b64)

    def line(self) -> str:
        return f"{self.host} {self.key_type} {self.key_b64}"


def system_program(name: str) -> str | None:
    """`name` looked up on $PATH's absolute folders only: an empty or relative entry (".") would find a program
    planted in the working directory. An absolute `name` (or ~/...) is taken as it is (when executable)."""
    name = os.path.expanduser(name)
    if os.path.isabs(name):
        return shutil.which(name)
    folders = [d for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if os.path.isabs(d)]
    return shutil.which(name, path=os.pathsep.join(folders)) if folders else None


def known_hosts_path(configured: str | None) -> Path:
    return Path(configured or DEFAULT_KNOWN_HOSTS).expanduser()


def host_pattern(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: bare on port 22, `[host]:port` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key_b64: str) -> str:
    """OpenSSH's SHA256 fingerprint (what `ssh-keygen -lf` prints) of a base64 public key blob."""
    try:
        blob = base64.b64decode(key_b64, validate=True)
    except binascii.Error as exc:
        raise TargetError(f"malformed host key {key_b64[:20]}...", "re-run `edgeseq targets trust`") from exc
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def scan(host: str, port: int, timeout: float = 5.0) -> list[HostKey]:
    """The host keys a server offers right now (unauthenticated: verify the fingerprint out of band)."""
    keyscan = system_program("ssh-keyscan")
    if not keyscan:
        raise TargetError(
            "ssh-keyscan not found", "install the OpenSSH client (apt-get install openssh-client)"
        )
    argv = [keyscan, "-T", str(max(1, int(timeout))), "-p", str(port), "-t", KEY_TYPES, "--", host]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5)
    except subprocess.TimeoutExpired as exc:
        raise TargetError(
            f"no answer from {host}:{port} within {timeout:.0f} s", "check the host and port"
        ) from exc
    keys = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            keys.append(HostKey(parts[0], parts[1], parts[2]))
    if not keys:
        detail = proc.stderr.strip().splitlines()[-1:] or ["no keys offered"]
        raise TargetError(
            f"could not fetch host keys from {host}:{port}: {detail[0]}", "is sshd running and reachable?"
        )
    return keys


def fingerprints_text(keys: list[HostKey]) -> str:
    return ", ".join(f"{k.key_type} {k.fingerprint}" for k in keys)


def recorded(known_hosts: Path, host: str, port: int) -> list[HostKey]:
    """Keys already in known_hosts for this host (plain or hashed entries), via `ssh-keygen -F`."""
    if not known_hosts.is_file():
        return []
    proc = subprocess.run(
        [_keygen(), "-F", host_pattern(host, port), "-f", str(known_hosts)], capture_output=True, text=True
    )
    keys = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            keys.append(HostKey(parts[0], parts[1], parts[2]))
    return keys


def record(known_hosts: Path, host: str, port: int, keys: list[HostKey]) -> None:
    """Replace this host's entries in known_hosts with `keys` (other hosts' lines are kept as they are)."""
    known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pattern = host_pattern(host, port)
    if known_hosts.is_file():
        subprocess.run([_keygen(), "-R", pattern, "-f", str(known_hosts)], capture_output=True)
    with open(known_hosts, "a", encoding="utf-8") as fh:
        for key in keys:
            fh.write(f"{pattern} {key.key_type} {key.key_b64}\n")
    os.chmod(known_hosts, 0o600)


@dataclass
class TrustPlan:
    """What `trust_target` found for one SSH target, and what it did."""

    name: str
    host: str  # as known_hosts names it: host, or [host]:port
    known_hosts: Path
    offered: list[HostKey]  # every key the server offers now
    keys: list[HostKey] = field(default_factory=list)  # those to record (the one matching --fingerprint, if given)
    already_trusted: bool = False  # known_hosts holds these keys already: nothing to do
    replaces: bool = False  # known_hosts holds a DIFFERENT key for this host, which recording replaces
    recorded: bool = False


def trust_target(
    name: str,
    fingerprint: str | None = None,
    path: Path | None = None,
    *,
    show: Callable[[TrustPlan], None] = lambda plan: None,
    confirm: Callable[[TrustPlan], bool] = lambda plan: False,
) -> TrustPlan:
    """Fetch NAME's host keys and record them in its known_hosts file, only when `confirm(plan)` says so.

    `show(plan)` is called once the keys are fetched (before any check). With `fingerprint`, only the key that has
    it is recorded, and none matching is an error. Keys already recorded are left as they are (`already_trusted`)."""
    from edgeseq.core.errors import InputError
    from edgeseq.targets import config
    from edgeseq.targets.ssh import parse_url

    spec = config.get(name, path)
    if not spec.url.startswith("ssh://"):
        raise InputError(f"{name} is not an SSH target ({spec.url})", "host keys apply to ssh:// targets only")
    _user, host, port = parse_url(spec.url)
    known_hosts = known_hosts_path(spec.known_hosts)
    keys = scan(host, port)
    old = {(k.key_type, k.key_b64) for k in recorded(known_hosts, host, port)}
    plan = TrustPlan(name, host_pattern(host, port), known_hosts, keys, list(keys))
    show(plan)
    if fingerprint:
        if fingerprint not in {k.fingerprint for k in keys}:
            raise TargetError(
                f"{name}: no host key matches {fingerprint} (offered: {fingerprints_text(keys)})",
                "the device is not the one you expect, or the fingerprint was mistyped; nothing was recorded",
            )
        plan.keys = [k for k in keys if k.fingerprint == fingerprint]
    if old and {(k.key_type, k.key_b64) for k in plan.keys} <= old:
        plan.already_trusted = True
        return plan
    plan.replaces = bool(old)
    if confirm(plan):
        record(known_hosts, host, port, plan.keys)
        plan.recorded = True
    return plan


def _keygen() -> str:
    keygen = system_program("ssh-keygen")
    if not keygen:
        raise TargetError("ssh-keygen not found", "install the OpenSSH client (apt-get install openssh-client)")
    return keygen
