"""Child processes that die with their parent, and SIGTERM handled like Ctrl-C.

Every helper process edgeseq starts (conversion, streaming and isolated-runtime children, the local agent, ssh and
adb clients) goes through `run()` or is `track()`ed here. Each runs in its own session, so a terminal's Ctrl-C or a
`kill` aimed at edgeseq reaches only edgeseq, which then takes its children down on purpose: on any exception while
waiting (KeyboardInterrupt, `Terminated`, a timeout) the child's whole process group gets SIGTERM, then SIGKILL
after a short grace. `install_signal_handlers()` (called by the CLI) turns SIGTERM, which `timeout`, CI cancellation
and `docker stop` send, into a `Terminated` exception in the main thread, after killing every tracked child (so
threads waiting on one return at once); `finally` blocks and temporary directories then clean up as for Ctrl-C.

A child's TMPDIR can be pointed inside a folder the parent owns (`scratch=`): what a killed child leaves there (the
converter's own temporary SavedModels) goes when the parent removes that folder.

Errors cross the process boundary as a small JSON record (`error_record` in the child, `error_from_record` in the
parent): the error's class name, message and hint, so the parent re-raises the same typed error, never a guess
from message text.
"""

from __future__ import annotations

import _thread
import atexit
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from edgeseq.core import errors

GRACE_S = 2.0

_live: set[subprocess.Popen] = set()
_lock = threading.Lock()


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived. A KeyboardInterrupt, so every Ctrl-C cleanup path also runs for it."""

    exit_code = errors.EXIT_TERMINATED


def error_record(exc: BaseException) -> dict:
    """A JSON-serialisable record of an edgeseq error; any other exception becomes a plain record naming its type."""
    from edgeseq.core.fsio.oserrors import disk_error

    exc = disk_error(exc) or exc  # a full disk in a child is the parent's DiskError, not an unknown failure
    if isinstance(exc, errors.EdgeseqError):
        return {"kind": type(exc).__name__, "message": exc.message, "hint": exc.hint}
    return {"kind": "EdgeseqError", "message": f"{type(exc).__name__}: {exc}", "hint": None}


def error_from_record(record: dict, prefix: str = "", default: type | None = None) -> Exception:
    """The typed error a child recorded (`error_record`), its message prefixed with `prefix`; an unknown or
    missing kind becomes `default` (EdgeseqError when None)."""
    cls = getattr(errors, str(record.get("kind")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.EdgeseqError)) or cls is errors.EdgeseqError:
        cls = default or errors.EdgeseqError
    return cls(f"{prefix}{record.get('message', '')}", record.get("hint") or None)


def signal_name(returncode: int) -> str:
    """'SIGSEGV' for -11; 'signal 77' for an unknown number."""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def track(proc: subprocess.Popen) -> None:
    with _lock:
        _live.add(proc)


def untrack(proc: subprocess.Popen) -> None:
    with _lock:
        _live.discard(proc)


def kill_group(proc: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """SIGTERM to the child's process group, SIGKILL after `grace_s` if anything is still alive; reaps the child."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                proc.send_signal(sig)
            except (ProcessLookupError, OSError):
                pass
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def kill_all() -> None:
    """Kill every tracked child's group (SIGKILL, no grace: this runs inside a signal handler)."""
    with _lock:
        procs = list(_live)
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass


def run(argv: Sequence[str], *, timeout: float, env: dict | None = None, cwd: str | os.PathLike | None = None,
        scratch: str | os.PathLike | None = None, text: bool = True,
        stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """`subprocess.run(argv, capture_output=True)` in a new session, killed with its group on timeout or on any
    exception (Ctrl-C, SIGTERM) while waiting. Raises subprocess.TimeoutExpired after killing it on timeout."""
    env = dict(os.environ if env is None else env)
    if scratch is not None:
        tmp = Path(scratch) / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmp)
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin, env=env,
                            cwd=cwd, text=text, start_new_session=True)
    track(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        kill_group(proc)
        proc.communicate()
        raise
    finally:
        untrack(proc)
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


_terminating = False  # the first SIGTERM has been turned into Terminated
_ended = False  # the process is on its way out (interpreter exit): no more Terminated
STICKY_S = 1.0


def terminating() -> bool:
    """True once SIGTERM has arrived: the CLI reports any failure after it as the termination it is."""
    return _terminating


def _in_cleanup() -> bool:
    """True while the main thread handles an interrupt: in a `finally` block, an `except` clause or an `__exit__`
    that a KeyboardInterrupt (Terminated included) is passing through, or in code those call."""
    exc, seen = sys.exc_info()[1], set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ if exc.__cause__ is not None else exc.__context__
    return False


def _on_sigterm(signum: int, frame: object) -> None:
    """The first SIGTERM kills the tracked children and raises Terminated. Python can lose that exception: raised
    inside a finalizer (`__del__`, a weakref callback) it is printed and dropped, and a bare `except:` in a library
    (Keras has several) swallows it; the command would then run on (a 500-epoch training did). So termination is
    sticky: a watchdog thread delivers SIGTERM again every STICKY_S seconds, and each delivery raises Terminated
    again unless the main thread is already cleaning up after it (then the cleanup is left to finish)."""
    global _terminating
    if _terminating:
        if _ended or _in_cleanup():
            return
        raise Terminated()
    _terminating = True
    kill_all()
    threading.Thread(target=_redeliver, name="edgeseq-sigterm", daemon=True).start()
    atexit.register(_end)  # registered last, so it runs first: nothing is raised into the exit handlers
    raise Terminated()


def _redeliver() -> None:
    main = threading.main_thread()
    while not _ended and main.is_alive():
        time.sleep(STICKY_S)
        if not _ended:
            signal.pthread_kill(main.ident, signal.SIGTERM)


def _end() -> None:
    global _ended
    _ended = True


def _quiet_unraisable(unraisable: object) -> None:
    """An interrupt raised inside a finalizer is not an error to print (a traceback would break the one-line
    contract): Terminated is raised again by the watchdog; a lost Ctrl-C is handed back to the main thread."""
    exc = getattr(unraisable, "exc_value", None)
    if isinstance(exc, Terminated):
        return
    if isinstance(exc, KeyboardInterrupt):
        _thread.interrupt_main()
        return
    sys.__unraisablehook__(unraisable)


def install_signal_handlers() -> None:
    """SIGTERM -> kill tracked children, then raise Terminated in the main thread (and again while it is lost).
    Main thread only."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
        sys.unraisablehook = _quiet_unraisable
