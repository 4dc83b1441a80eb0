"""The container's PID 1: starts the command, forwards signals to it, reaps zombies, exits with its status.

Why a PID 1 of our own: the kernel delivers to a namespace's init only the signals it has handlers for,
and orphans in the container are reparented to it; a command that is not written to be an init (a shell
script, mpirun) would ignore `rade stop`'s SIGTERM and leave zombies. This loop is tini's: block every
forwardable signal, start the command (posix_spawn, or fork for a terminal; either way with signals
reset and unblocked), then `sigwaitinfo` — a signal
is forwarded, SIGCHLD reaps everything that exited, and when the command itself exits PID 1 exits with
its code (128+N for a signal N), which takes the rest of the namespace with it.

Runs in the launch child after every other step, already inside the container; it imports nothing new.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import termios
from collections.abc import Mapping, Sequence
from typing import NoReturn

from engine.child_errors import KIND_LAUNCH, KIND_NOT_EXECUTABLE, KIND_NOT_FOUND, report
from engine.syscalls import LINUX, PR_SET_NAME

# Signals PID 1 passes on rather than acts on (SIGKILL and SIGSTOP cannot be caught, and act on PID 1).
FORWARDED = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD,
                                                  signal.SIGSEGV, signal.SIGBUS, signal.SIGILL,
                                                  signal.SIGFPE, signal.SIGTRAP, signal.SIGSYS}
# Signals Python or the caller may have set to SIG_IGN: an ignored disposition survives execve.
_RESET = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP,
          signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD)

_SPAWN_DEFAULT = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}
# What the container's PID 1 is called in ps (as docker-init, tini, catatonit).
TITLE = "rade-init"



def exec_command(argv: Sequence[str], env: Mapping[str, str], tty: bool, err_fd: int) -> NoReturn:
    """In the command's process: restore signals, take the terminal, exec. Never returns."""
    try:
        for sig in _RESET:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        if tty:
            os.setsid()
            try:
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            except OSError as err:
                report(err_fd, KIND_LAUNCH, "terminal", f"stdin cannot be the controlling terminal: {err.strerror}",
                       "give a pty slave as stdin when asking for a tty")
                os._exit(125)
        os.execvpe(argv[0], list(argv), dict(env))
    except OSError as err:
        _report_exec_failure(argv, err, err_fd)
    except BaseException as err:  # noqa: BLE001 - anything here must become a report, not a traceback
        report(err_fd, KIND_LAUNCH, "exec", f"{type(err).__name__}: {err}")
        os._exit(125)


def spawn_command(argv: Sequence[str], env: Mapping[str, str], err_fd: int) -> int:
    """Start the command with posix_spawn: glibc's vfork-style clone does not copy this Python process's
    page tables as fork would (about 1 ms saved). Signals are reset and unblocked in the new process."""
    # posix_spawnp searches the caller's PATH: make ours the container's.
    os.environ["PATH"] = env.get("PATH", "")
    try:
        return os.posix_spawnp(argv[0], list(argv), dict(env), setsigmask=(), setsigdef=_SPAWN_DEFAULT)
    except OSError as err:
        _report_exec_failure(argv, err, err_fd)
    except BaseException as err:  # noqa: BLE001 - anything here must become a report, not a traceback
        report(err_fd, KIND_LAUNCH, "exec", f"{type(err).__name__}: {err}")
        os._exit(125)


def _report_exec_failure(argv: Sequence[str], err: OSError, err_fd: int) -> NoReturn:
    if err.errno in (errno.ENOENT, errno.ENOTDIR):
        where = "" if "/" in argv[0] else " in $PATH"
        report(err_fd, KIND_NOT_FOUND, "exec", f"'{argv[0]}' not found{where}",
               "check the command and the image's PATH")
        os._exit(127)
    report(err_fd, KIND_NOT_EXECUTABLE, "exec", f"'{argv[0]}' cannot be executed: {err.strerror}",
           "make it executable, or run it through its interpreter")
    os._exit(126)


def run(argv: Sequence[str], env: Mapping[str, str], tty: bool, err_fd: int) -> NoReturn:
    """Be PID 1: start the command and serve it until it exits. Never returns."""
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED | {signal.SIGCHLD})
    retitle(TITLE)
    if tty:
        # The command must take the terminal in its own new session, which posix_spawn cannot do.
        child = os.fork()
        if child == 0:
            exec_command(argv, env, tty, err_fd)
    else:
        child = spawn_command(argv, env, err_fd)
    # The command's copy closes on exec; once ours is closed too, the parent's read sees end-of-file.
    os.close(err_fd)
    os._exit(serve(child))


def retitle(title: str) -> None:
    """Show this process as `title` in ps, in and out of the container: its name (comm) and its command
    line, which are otherwise the caller's (an agent's or a `rade run`'s, host paths and options included).
    The command line is the argv strings the kernel laid out at exec, rewritten in place, as setproctitle
    does; /proc/PID/stat says where they are. Best effort: a failure changes nothing else."""
    import ctypes

    raw = title.encode()
    name = ctypes.create_string_buffer(raw[:15])  # comm holds 15 bytes
    try:
        LINUX.prctl(PR_SET_NAME, ctypes.addressof(name))
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        # arg_start and arg_end are fields 48 and 49 of proc(5); fields[0] is field 3.
        start, end = int(fields[45]), int(fields[46])
    except (OSError, ValueError, IndexError):
        return
    if end - start > len(raw):
        ctypes.memset(start, 0, end - start)
        ctypes.memmove(start, raw, len(raw))


def serve(child: int) -> int:
    """Forward signals to `child` and reap until it exits; return the status PID 1 should exit with."""
    waited = FORWARDED | {signal.SIGCHLD}
    while True:
        info = signal.sigwaitinfo(waited)
        if info.si_signo != signal.SIGCHLD:
            try:
                os.kill(child, info.si_signo)
            except ProcessLookupError:
                pass
            continue
        status = _reap(child)
        if status is not None:
            return status


def _reap(child: int) -> int | None:
    """Reap every exited process; the command's exit code if it was among them."""
    result = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return result
        if pid == 0:
            return result
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            result = 128 - code if code < 0 else code
