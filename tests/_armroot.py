"""An emulated arm64 Raspberry Pi for tests: a Debian arm64 userland run by qemu-user-static, with sshd inside.

Built once and cached under a directory keyed by `VERSION` (bump it when the recipe changes), so only the first run
pays for it (about a minute: debootstrap's first stage downloads the debs, `dpkg-deb -x` unpacks them instead of the
slow emulated second stage, and pip fetches the aarch64 ai-edge-litert wheel). Timings measured inside are
meaningless (every instruction is emulated); the fake Pi checks deploy/profile/parse correctness, never figures.

Needs root (debootstrap, chroot, mount proc) and binfmt_misc with qemu-aarch64 registered; `unavailable_reason()`
says which is missing so the test can skip with that reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

VERSION = "v1-bookworm-py311-litert2.3"
SUITE = "bookworm"
MIRROR = os.environ.get("EDGESEQ_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ["python3", "openssh-server"]
PIP_PLATFORMS = ["manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64", "linux_aarch64"]
PIP_REQUIREMENTS = ["ai-edge-litert>=2.3,<2.4", "numpy>=1.26,<3"]
BINFMT = Path("/proc/sys/fs/binfmt_misc")
USER = "pi"


def cache_root() -> Path:
    base = os.environ.get("EDGESEQ_TEST_CACHE")
    if base:
        return Path(base) / "armroot"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "edgeseq-test" / "armroot"


def rootfs_dir() -> Path:
    return cache_root() / VERSION / "root"


def _binfmt_enabled() -> bool:
    entry = BINFMT / "qemu-aarch64"
    try:
        return entry.read_text().splitlines()[0].strip() == "enabled"
    except OSError:
        return False


def _try_enable_binfmt() -> None:
    """Mount binfmt_misc and register qemu-aarch64 when we may (root, packages installed); errors are left to the check."""
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True)
    if not _binfmt_enabled() and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)


def unavailable_reason() -> str | None:
    """Why the emulated Pi cannot run here, or None when it can."""
    if sys.platform != "linux":
        return "the emulated arm64 Pi needs Linux"
    if os.geteuid() != 0:
        return "the emulated arm64 Pi needs root (debootstrap, chroot, mount proc); CI runs as root"
    for tool in ("debootstrap", "dpkg-deb", "chroot"):
        if not shutil.which(tool):
            return f"{tool} not installed (run .ci/setup-system.sh)"
    if not Path("/usr/bin/qemu-aarch64-static").exists():
        return "qemu-user-static not installed (run .ci/setup-system.sh)"
    _try_enable_binfmt()
    if not _binfmt_enabled():
        return "binfmt_misc has no enabled qemu-aarch64 entry (update-binfmts --enable qemu-aarch64)"
    return None


def _is_mounted(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/mounts") as fh:
        return any(line.split()[1] == target for line in fh)


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} failed ({proc.returncode}): {proc.stderr[-2000:] or proc.stdout[-2000:]}"
        )
    return proc


def ensure_rootfs(log=print) -> Path:
    """Return the cached rootfs, building it first if this VERSION has none. Safe against concurrent callers."""
    root = rootfs_dir()
    stamp = root.parent / "complete"
    if stamp.exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return root
        started = time.monotonic()
        staging = root.parent / "staging"
        if staging.exists():
            if _is_mounted(staging / "proc"):
                subprocess.run(["umount", str(staging / "proc")])
            shutil.rmtree(staging)
        _build(staging, log)
        if root.exists():
            if _is_mounted(root / "proc"):
                subprocess.run(["umount", str(root / "proc")])
            shutil.rmtree(root)
        staging.rename(root)
        stamp.write_text(f"{VERSION} built in {time.monotonic() - started:.0f} s\n")
        log(f"armroot: built {root} in {time.monotonic() - started:.0f} s")
    return root


def _build(root: Path, log) -> None:
    t0 = time.monotonic()
    _run(
        [
            "debootstrap", "--arch=arm64", "--foreign", "--variant=minbase",
            f"--include={','.join(PACKAGES)}", SUITE, str(root), MIRROR,
        ]
    )  # fmt: skip
    log(f"armroot: debootstrap --foreign {time.monotonic() - t0:.0f} s")
    # Unpack every downloaded deb instead of running the emulated second stage (minutes -> seconds). No maintainer
    # scripts run, so the few files they would create are written below by hand.
    debs = sorted((root / "var/cache/apt/archives").glob("*.deb"))
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(root)])
    for deb in debs:
        deb.unlink()
    shutil.rmtree(root / "debootstrap", ignore_errors=True)
    etc = root / "etc"
    shutil.copy(root / "usr/share/base-passwd/passwd.master", etc / "passwd")
    shutil.copy(root / "usr/share/base-passwd/group.master", etc / "group")
    with open(etc / "passwd", "a") as fh:
        fh.write("sshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n")
        fh.write(f"{USER}:x:1000:1000:Pi:/home/{USER}:/bin/sh\n")
    with open(etc / "group", "a") as fh:
        fh.write(f"{USER}:x:1000:\n")
    (etc / "shadow").write_text(f"root:*:20000:0:99999:7:::\n{USER}:*:20000:0:99999:7:::\n")
    (etc / "hostname").write_text("raspberrypi\n")
    home = root / "home" / USER
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, 1000, 1000)
    (root / "run/sshd").mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    # Minimal /dev; the host /dev is never bind-mounted.
    dev = root / "dev"
    dev.mkdir(exist_ok=True)
    for name, minor in (("null", 3), ("zero", 5), ("random", 8), ("urandom", 9)):
        node = dev / name
        if not node.exists():
            os.mknod(node, 0o666 | 0o020000, os.makedev(1, minor))
            node.chmod(0o666)
    # A 4-core "Pi" without the host /sys (ai_edge_litert segfaults on a bind-mounted one).
    cpu = root / "sys/devices/system/cpu"
    cpu.mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present", "online"):
        (cpu / name).write_text("0-3\n")
    (root / "proc").mkdir(exist_ok=True)
    # The aarch64 runtime, fetched from the host with pip's cross-platform download, made visible through a .pth file.
    t1 = time.monotonic()
    site = root / "opt/site"
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(site)]
    for platform in PIP_PLATFORMS:
        argv += ["--platform", platform]
    argv += ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", *PIP_REQUIREMENTS]
    _run(argv)
    log(f"armroot: pip aarch64 wheels {time.monotonic() - t1:.0f} s")
    dist = root / "usr/lib/python3/dist-packages"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "zz_edgeseq_test_site.pth").write_text("/opt/site\n")


def chroot_python(root: Path, code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run python3 inside the rootfs (emulated); for sanity checks."""
    return subprocess.run(
        ["chroot", str(root), "/usr/bin/python3", "-c", code], capture_output=True, text=True, timeout=timeout
    )


@contextlib.contextmanager
def mounted_proc(root: Path):
    """A procfs at ROOT/proc for the duration (the agent reads /proc/self/status, facts read /proc/meminfo).

    Counted under a lock: several test sessions may share the cached rootfs, and only the last one out unmounts."""
    target = root / "proc"
    with open(root.parent / ".proc.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        users = root.parent / ".proc.users"
        count = int(users.read_text() or 0) if users.exists() else 0
        if not _is_mounted(target):
            _run(["mount", "-t", "proc", "proc", str(target)])
            count = 0  # whoever counted before is gone (a crashed session never decremented)
        users.write_text(str(count + 1))
    try:
        yield
    finally:
        with open(root.parent / ".proc.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            count = int(users.read_text() or 1) - 1
            users.write_text(str(max(0, count)))
            if count <= 0 and _is_mounted(target):
                subprocess.run(["umount", "-l", str(target)], capture_output=True)


_MODEL_SCRIPT = """
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, numpy as np, tensorflow as tf
from edgeseq.models.zoo import build_model
keras.utils.set_random_seed(0)
model = build_model("gru", "tiny", seq_len=16, num_features=4, num_outputs=3, unroll=True)
conv = tf.lite.TFLiteConverter.from_keras_model(model)  # weights frozen as constants (signature batch 1)
conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
open(sys.argv[1], "wb").write(conv.convert())
"""


def tiny_model(dest: Path) -> Path:
    """A converted zoo model (GRU, tiny preset, unrolled, batch 1, builtin ops only, weights as constants: v1 kept them
    in resource variables nothing initialised and computed NaN), cached by TF version: the
    TF import and conversion (~10 s) run once per cache, in a child process so tests never import TensorFlow."""
    from importlib import metadata

    try:
        tf_version = metadata.version("tensorflow-cpu")
    except metadata.PackageNotFoundError:
        tf_version = metadata.version("tensorflow")
    cached = cache_root().parent / "models" / f"gru-tiny-unrolled-b1-v2-tf{tf_version}.tflite"
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # no writable home (CI users, sandboxes): cache per user in the temp dir instead
        import tempfile

        cached = Path(tempfile.gettempdir()) / f"edgeseq-test-{os.getuid()}" / cached.name
        cached.parent.mkdir(parents=True, exist_ok=True)
    if not cached.exists():
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        _run([sys.executable, "-c", _MODEL_SCRIPT, str(tmp)])
        os.replace(tmp, cached)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(cached, dest)
    return dest


if __name__ == "__main__":  # `python tests/_armroot.py` builds (or reports) the cache by hand
    reason = unavailable_reason()
    if reason:
        sys.exit(f"unavailable: {reason}")
    t = time.monotonic()
    r = ensure_rootfs()
    print(f"{r} ready in {time.monotonic() - t:.1f} s")
