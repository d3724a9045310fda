"""Shell snippets and checks shared by the SSH and adb transports: what runs on the device, written once.

Every snippet is a constant; user-supplied values (paths, the python to use) reach it only as positional arguments
(`sh -c SNIPPET sh ARG...`), quoted by the transport's single quoting method, so nothing from the user is ever parsed
as shell syntax.
"""

from __future__ import annotations

from edgeseq.core.errors import TargetError

RUN_DIR_PREFIX = "run-"
# Wraps every remote command: `timeout` (coreutils, toybox) kills it on the device when our deadline passes, so a
# hung agent does not outlive the ssh client; where the device has no `timeout`, the command runs unwrapped.
# Not `exec`: GNU timeout re-raises a child's fatal signal on itself, and ssh reports a signal death as 255, which
# reads like a transport failure; through the shell a killed agent comes back as 128+signal (137 for SIGKILL).
WITH_DEADLINE = 'if command -v timeout >/dev/null 2>&1; then timeout -k 5 "$0" "$@"; else "$@"; fi; exit $?'
PUSH_SCRIPT = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"'
MKTEMP_SCRIPT = (
    'case "$1" in "~/"*) base="$HOME/${1#"~/"}";; *) base="$1";; esac; '
    'mkdir -p -- "$base" && mktemp -d "$base/' + RUN_DIR_PREFIX + 'XXXXXXXX"'
)
FACTS_SCRIPT = r"""
py="$1"
echo "machine=$(uname -m)"
echo "kernel=$(uname -r)"
echo "hostname=$(hostname 2>/dev/null || cat /etc/hostname)"
echo "os=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
model=$(tr -d '\0' < /proc/device-tree/model 2>/dev/null)
[ -n "$model" ] || model=$(sed -n 's/^Model[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "model=$model"
echo "cpu=$(sed -E -n 's/^(model name|Hardware|CPU part)[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || grep -c ^processor /proc/cpuinfo)"
echo "mem_total_kb=$(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo)"
echo "mem_available_kb=$(sed -n 's/^MemAvailable: *\([0-9]*\).*/\1/p' /proc/meminfo)"
d="$2"; case "$d" in "~/"*) d="$HOME/${d#"~/"}";; esac
while [ ! -d "$d" ] && [ "$d" != / ]; do d=$(dirname -- "$d"); done
st=$(stat -f -c '%a %S' -- "$d" 2>/dev/null)
case "$st" in
  *[0-9]" "[0-9]*) echo "disk_free_kb=$(( ${st% *} * (${st#* } / 1024) ))" ;;  # 32-bit shells (mksh) too
  *) echo "disk_free_kb=$(df -Pk -- "$d" 2>/dev/null | tail -n 1 | tr -s ' ' | cut -d ' ' -f 4)" ;;
esac
if [ -z "$py" ]; then :; elif command -v "$py" >/dev/null 2>&1; then "$py" -c "$3"; else echo "python_missing=$py"; fi
"""
# Run by the device's Python: what the agent will find there. Only the standard library, so it runs anywhere.
PY_FACTS = """
import sys, importlib.metadata as md
print("python=" + sys.version.split()[0])
def ver(dist):
    try:
        return md.version(dist)
    except Exception:
        return "?"
for mod, dist, key in (("numpy", "numpy", "numpy"), ("ai_edge_litert.interpreter", "ai-edge-litert", "runtime"),
                       ("tflite_runtime.interpreter", "tflite-runtime", "runtime")):
    try:
        __import__(mod)
    except Exception as exc:
        print(key + "_error=" + (type(exc).__name__ + ": " + str(exc)).splitlines()[0][:200])
        continue
    print(key + "=" + (mod.split(".")[0] + " " if key == "runtime" else "") + ver(dist))
    if key == "runtime":
        break
"""


def parse_facts(text: str) -> dict:
    """key=value lines (from FACTS_SCRIPT and PY_FACTS) into a dict; sizes and counts become ints."""
    facts: dict = {}
    for line in text.replace("\r", "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.replace("_", "").isalnum():
            facts[key] = value.strip()
    for key in ("cpus", "mem_total_kb", "mem_available_kb", "disk_free_kb"):
        if str(facts.get(key, "")).isdigit():
            facts[key] = int(facts[key])
    return facts


def file_error(name: str, action: str, remote: str, output: str) -> TargetError:
    """A failed file operation on a device, with the device's own reason; disk full gets its own advice."""
    text = output.lower()
    if "no space left" in text or "disk full" in text or "file too large" in text:
        return TargetError(
            f"{name}: the device's disk is full ({action} {remote})",
            "free space on the device, or set workdir in targets.toml to a filesystem with room",
        )
    if "read-only file system" in text or "permission denied" in text:
        return TargetError(
            f"{name}: cannot write to {remote} ({last_line(output)})",
            "set workdir in targets.toml to a writable directory",
        )
    return TargetError(f"{name}: {action} {remote} failed ({last_line(output) or 'no message'})", None)


class SetupNeeded(TargetError):
    """The device lacks what the agent runner needs (Python, numpy, a TFLite runtime): the hint names
    `edgeseq targets setup`, which installs them."""


def require_runtime(name: str, python: str, facts: dict) -> dict:
    """Turn the facts from info() into a clear error (SetupNeeded) when the agent cannot run; returns facts when it
    can."""
    setup = (
        f"run `edgeseq targets setup {name}`"
        if not name.startswith(("ssh://", "adb://"))
        else "add it with `edgeseq targets add` and run `edgeseq targets setup NAME`"
    )
    if facts.get("python_missing") or not facts.get("python"):
        raise SetupNeeded(
            f"{name}: no Python at {python!r} on the device (the agent runner needs Python 3 with numpy and ai-edge-litert)",
            f'install python3 on the device or set python = "/path/to/python3" for the target, then {setup}',
        )
    if not facts.get("numpy"):
        raise SetupNeeded(
            f"{name}: numpy is missing on the device ({facts.get('numpy_error', 'not importable')})", setup
        )
    if not facts.get("runtime"):
        raise SetupNeeded(
            f"{name}: no TFLite runtime on the device: neither ai_edge_litert nor tflite_runtime imports "
            f"({facts.get('runtime_error', 'not importable')})",
            setup,
        )
    return facts


def is_run_dir(path: str) -> bool:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return path.startswith("/") and name.startswith(RUN_DIR_PREFIX) and ".." not in path.split("/")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.replace("\r", "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def verify_sha256(target, remote: str, expected: str) -> bool:
    """Check on the device that `remote` is byte-for-byte the file we pushed (coreutils or toybox sha256sum)."""
    result = target.run(["sha256sum", "--", remote], timeout=120)
    words = result.stdout.split()
    if result.returncode != 0 or not words:
        raise TargetError(
            f"{target.spec.name}: cannot checksum {remote} on the device ({last_line(result.stderr) or 'no output'})",
            "the device needs sha256sum (coreutils, busybox or toybox)",
        )
    if words[0].lower() != expected.lower():
        raise TargetError(
            f"{target.spec.name}: {remote} differs from the host file after the upload "
            f"(sha256 {words[0][:16]} != {expected[:16]})",
            "retry; if it persists, check free space and storage health on the device",
        )
    return True
