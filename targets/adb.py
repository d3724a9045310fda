"""An Android device over adb, through the `adb` binary.

Every adb call goes through `_adb`, which builds `[adb, (-P PORT), -s SERIAL, ...]`; the device-side shell string is
built in one place (`_shell_command`) with `shlex.quote`. Files go with `adb push/pull` (the sync protocol takes
paths verbatim, no shell), by default under /data/local/tmp/edgeseq, the one place a stock phone lets the shell user
write and execute.

Many devices (and every device without the shell_v2 feature) run `adb shell` in legacy mode: no exit status, stdout
and stderr merged. So the command's stderr goes to a file on the device, the shell prints a marker with `$?` after
it, and the host splits the output at that marker. A missing marker means the device went away mid-command.
"""

from __future__ import annotations

import math
import re
import secrets
import shlex
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edgeseq.core.errors import InputError, TargetError
from edgeseq.targets import device_shell
from edgeseq.targets.base import RunResult, TargetSpec
from edgeseq.targets.trust import system_program

DEFAULT_WORKDIR = "/data/local/tmp/edgeseq"
_PROP_RE = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")
_NETWORK_SERIAL_RE = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d+$")
_GONE = re.compile(
    r"device offline|device '[^']*' not found|no devices/emulators found|error: closed|protocol fault"
)
PROPS = {
    "model": "ro.product.model",
    "manufacturer": "ro.product.manufacturer",
    "device_name": "ro.product.device",
    "android": "ro.build.version.release",
    "sdk": "ro.build.version.sdk",
    "abi": "ro.product.cpu.abi",
    "soc": "ro.soc.model",
    "hardware": "ro.hardware",
    "fingerprint": "ro.build.fingerprint",
}


def parse_url(url: str) -> str:
    """`adb://SERIAL` or `adb://host:port` -> the serial adb knows the device by."""
    parts = urlsplit(url)
    serial = unquote(parts.netloc)
    if parts.scheme != "adb" or not serial or parts.path not in ("", "/") or serial.startswith("-"):
        raise InputError(
            f"not an adb URL: {url!r}", "use adb://SERIAL (see `adb devices`) or adb://host:port"
        )
    return serial


def parse_getprop(text: str) -> dict[str, str]:
    props = {}
    for line in text.replace("\r", "").splitlines():
        m = _PROP_RE.match(line.strip())
        if m:
            props[m.group(1)] = m.group(2)
    return props


class AdbTarget:
    """One Android device known to the local adb server (USB or TCP)."""

    def __init__(self, spec: TargetSpec):
        from edgeseq.targets.config import check_fields

        self.spec = check_fields(spec)  # types and ranges; options.adb, when set, an absolute path
        self.serial = parse_url(spec.url)
        self.network = bool(_NETWORK_SERIAL_RE.match(self.serial))
        self.base = spec.workdir or DEFAULT_WORKDIR
        self.python = spec.python or "python3"
        port = spec.options.get("adb_server_port")
        self.server_port = int(port) if port else None
        adb = spec.options.get("adb", "adb")
        self._adb_path = system_program(adb)
        if not self._adb_path:
            raise TargetError(
                f"the adb client ({adb}) is not installed", "apt-get install adb, or set options.adb"
            )
        self._connected = False

    # -- the only places that build what adb and the device see --------------------------------------------
    def _adb(self, args: list[str], timeout: float, serial: bool = True) -> subprocess.CompletedProcess:
        """Every adb call: `[adb, (-P port), -s SERIAL, *args]`. Device-gone errors raise TargetError here."""
        argv = [self._adb_path]
        if self.server_port:
            argv += ["-P", str(self.server_port)]
        if serial:
            argv += ["-s", self.serial]
        argv += args
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise TargetError(
                f"{self.spec.name}: adb {args[0]} timed out after {timeout:.0f} s ({self.serial})",
                "check the device is connected and awake (`adb devices`); raise --timeout for slow devices",
            ) from exc
        if proc.returncode != 0:
            text = (proc.stderr + proc.stdout).decode("utf-8", "replace")
            low = text.lower()
            if "unauthorized" in low:
                raise TargetError(
                    f"{self.spec.name}: device {self.serial} has not authorized this computer",
                    "unlock the phone and accept the 'Allow USB debugging' prompt",
                )
            if _GONE.search(low):
                raise TargetError(
                    f"{self.spec.name}: adb device {self.serial} is offline or gone ({device_shell.last_line(text)})",
                    "reconnect it (USB cable, or `adb connect HOST:PORT`) and check `adb devices`",
                )
        return proc

    def _shell_command(self, argv: list[str], token: str) -> str:
        """The one place an argv list becomes a device shell string: each word quoted; stderr to a file; `$?` after
        a marker, because legacy `adb shell` reports no exit status."""
        if not argv:
            raise InputError("empty remote command", None)
        q = shlex.quote
        err = f"{self.base.rstrip('/')}/.stderr-{token}"
        command = " ".join(q(str(a)) for a in argv)
        return (
            f"mkdir -p {q(self.base)} 2>/dev/null; {command} 2>{q(err)}; rc=$?; "
            f"printf '\\n{_marker(token)}%s\\n' \"$rc\"; cat {q(err)} 2>/dev/null; rm -f {q(err)}"
        )

    # -- Target protocol ---------------------------------------------------------------------------------------
    def run(self, argv: list[str], timeout: float) -> RunResult:
        self._ensure_connected()
        token = secrets.token_hex(6)
        wrapped = ["sh", "-c", device_shell.WITH_DEADLINE, str(max(1, math.ceil(timeout))), *argv]
        started = time.monotonic()
        proc = self._adb(["shell", self._shell_command(wrapped, token)], timeout=timeout + 30)
        wall = time.monotonic() - started
        text = proc.stdout.decode("utf-8", "replace").replace("\r\n", "\n")
        marker = _marker(token)
        at = text.rfind("\n" + marker)
        if at < 0:
            raise TargetError(
                f"{self.spec.name}: the adb connection to {self.serial} ended before {argv[0]} finished "
                f"(adb exit {proc.returncode}; {device_shell.last_line(text + proc.stderr.decode('utf-8', 'replace')) or 'no output'})",
                "the device went offline or the shell was killed; reconnect it and check `adb devices`",
            )
        stdout = text[:at]
        rest = text[at + 1 + len(marker) :]
        code_text, _, stderr = rest.partition("\n")
        code = int(code_text) if code_text.strip().isdigit() else 255
        if code == 124:
            raise TargetError(
                f"{self.spec.name}: {argv[0]} did not finish within {timeout:.0f} s and was stopped on the device",
                "raise --timeout, or check that the device is not overloaded",
            )
        return RunResult(code, stdout, stderr, wall)

    def push(self, local: Path, remote: str) -> None:
        local = Path(local)
        if not local.is_file():
            raise InputError(f"no such file: {local}", None)
        self._ensure_connected()
        timeout = 60.0 + local.stat().st_size / (1 << 20)
        proc = self._adb(["push", str(local), remote], timeout=timeout)
        if proc.returncode != 0:
            raise device_shell.file_error(self.spec.name, "upload", remote, _text(proc))

    def pull(self, remote: str, local: Path) -> None:
        self._ensure_connected()
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.part")
        try:
            proc = self._adb(["pull", remote, str(tmp)], timeout=300)
            if proc.returncode != 0:
                raise device_shell.file_error(self.spec.name, "download", remote, _text(proc))
            tmp.replace(local)
        finally:
            tmp.unlink(missing_ok=True)

    def workdir(self) -> str:
        result = self.run(["sh", "-c", device_shell.MKTEMP_SCRIPT, "sh", self.base], timeout=30)
        path = result.stdout.strip().splitlines()[-1:] or [""]
        if result.returncode != 0 or not path[0].startswith("/"):
            raise device_shell.file_error(
                self.spec.name, "create a work directory in", self.base, result.stderr
            )
        return path[0]

    def cleanup(self, remote_dir: str) -> None:
        if not device_shell.is_run_dir(remote_dir):
            raise TargetError(f"refusing to delete {remote_dir!r}: not an edgeseq run directory", None)
        self.run(["rm", "-rf", "--", remote_dir], timeout=60)

    def info(self) -> dict:
        """Device facts from getprop and /proc (and the device's Python, when the runner is the agent)."""
        python = self.python if self.spec.runner == "agent" else ""
        script = "getprop 2>/dev/null\n" + device_shell.FACTS_SCRIPT
        result = self.run(["sh", "-c", script, "sh", python, self.base, device_shell.PY_FACTS], timeout=120)
        props = parse_getprop(result.stdout)
        facts: dict = {"transport": "adb", "target": self.spec.name, "serial": self.serial}
        facts.update(
            device_shell.parse_facts(
                "\n".join(ln for ln in result.stdout.splitlines() if not ln.startswith("["))
            )
        )
        for key, prop in PROPS.items():
            if props.get(prop):
                facts[key] = props[prop]
        if facts.get("sdk", "").isdigit():
            facts["sdk"] = int(facts["sdk"])
        return facts

    def require_runtime(self, facts: dict | None = None) -> dict:
        facts = facts or self.info()
        return device_shell.require_runtime(self.spec.name, self.python, facts)

    # -- plumbing ------------------------------------------------------------------------------------------
    def _ensure_connected(self) -> None:
        """For host:port serials, `adb connect` first (idempotent); then the device must be in state `device`."""
        if self._connected:
            return
        if self.network:
            proc = self._adb(["connect", self.serial], timeout=30, serial=False)
            out = _text(proc).lower()
            if proc.returncode != 0 or not (
                "connected to" in out and "cannot" not in out and "failed" not in out
            ):
                raise TargetError(
                    f"{self.spec.name}: cannot reach adb device {self.serial} ({device_shell.last_line(_text(proc))})",
                    "is the device on the network with `adb tcpip` enabled, and the port right?",
                )
        proc = self._adb(["get-state"], timeout=30)
        state = _text(proc).strip().splitlines()[-1:] or [""]
        if proc.returncode != 0 or state[0].strip() != "device":
            raise TargetError(
                f"{self.spec.name}: adb device {self.serial} is not ready ({state[0].strip() or 'unknown state'})",
                "check `adb devices`: it must be listed as 'device'",
            )
        self._connected = True


def _marker(token: str) -> str:
    return f"EDGESEQ-{token}-EXIT="


def _text(proc: subprocess.CompletedProcess) -> str:
    return (proc.stdout + b"\n" + proc.stderr).decode("utf-8", "replace")
