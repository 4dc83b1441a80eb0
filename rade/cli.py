"""The `rade` command frame: global options, the subcommand table, and the one place errors become exit codes.

Each group of subcommands lives in a module of `rade.commands` with a `register(subparsers)` function that
adds its parsers and sets `func` (args -> exit code). Command modules import the packages they drive
inside their functions, so `rade run --rm` does not pay for importing the scheduler's dependencies; and
only the modules that register the command word given are imported and registered (about fifty commands'
parsers cost a start more than the command itself), the whole table only for `rade --help` or a word
the table does not know.

Errors: a `RadeError` prints one line, `rade: error: ...`, and exits with its code (125, or 2 for usage);
anything else is a bug and says so in one line; `--debug` shows the traceback either way.

As the program (`main()` with no arguments), the process ends as soon as its output is flushed and its
exit handlers have run: tearing down an interpreter that imported a hundred modules costs a short
command like `rade run --rm` a tenth of its time, and frees nothing the kernel would not. A process
that used ZeroMQ or still runs threads ends the ordinary way, so queued messages are sent and threads
joined.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from jobs.errors import EXIT_RADE, EXIT_USAGE, RadeError
from rade import __version__
from rade.commands import COMMANDS, modules_for


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors in rade's one-line form (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"rade: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_USAGE)


def default_root() -> str:
    """Where state lives: `RADE_ROOT`, else /var/lib/rade for root, else ~/.local/share/rade."""
    if os.environ.get("RADE_ROOT"):
        return os.environ["RADE_ROOT"]
    if os.geteuid() == 0:
        return "/var/lib/rade"
    return os.path.join(os.path.expanduser("~"), ".local", "share", "rade")


def command_word(argv: Sequence[str]) -> str | None:
    """The command word of a command line: the first argument that is neither a global option nor the
    value of `--root`; None when there is none or help/version is asked for before it."""
    args = iter(argv)
    for arg in args:
        if arg in ("-h", "--help", "--version"):
            return None
        if len(arg) > 2 and "--root".startswith(arg):  # `--root X`, or an abbreviation argparse accepts
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


class _Unused:
    """Stands in for the parser of a command that is not being run: whatever a module's `register` asks
    of it (arguments, groups, defaults, nested subparsers), it does nothing and hands back itself."""

    def __getattr__(self, name: str) -> Callable[..., _Unused]:
        return self._ignore

    def _ignore(self, *args: object, **kwargs: object) -> _Unused:
        return self


class _OneCommand:
    """The subparsers action as a module's `register` sees it when one word is being run: only that
    word's parser is built (a module registers up to nine, and argparse's add_argument is not cheap)."""

    def __init__(self, sub: argparse._SubParsersAction, word: str) -> None:
        self._sub = sub
        self._word = word

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser | _Unused:
        if name == self._word or self._word in kwargs.get("aliases", ()):
            return self._sub.add_parser(name, **kwargs)
        return _Unused()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sub, name)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line: global options, then the subparsers of the modules that register `command`
    (every module's when None or a word no module claims); of a module that registers `command`, only
    that word's parser is built."""
    parser = _Parser(prog="rade", description="HPC cluster containers: jobs, nodes, images and containers.")
    parser.add_argument("--version", action="version", version=f"rade {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--root", default=None, help="where state lives (default: $RADE_ROOT or /var/lib/rade)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    modules = modules_for(command)
    if command is not None and len(modules) < len(COMMANDS):
        for module in modules:
            module.register(_OneCommand(sub, command))
    else:
        for module in modules:
            module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code. Without `argv` (the console script), run `sys.argv` and
    end the process with the code (see the module docstring)."""
    if argv is not None:
        return run(argv)
    code = run(sys.argv[1:])
    end_process(code)
    return code


def end_process(code: int) -> None:
    """Flush, run the exit handlers and leave without the interpreter's teardown, when that loses nothing."""
    import atexit

    if "zmq" in sys.modules or ("threading" in sys.modules and sys.modules["threading"].active_count() > 1):
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed pipe or stream: the ordinary exit would not have written it either
    atexit._run_exitfuncs()  # logging.shutdown and any finalizers registered to run at exit
    os._exit(code)


def run(argv: Sequence[str]) -> int:
    """Parse `argv`, run the command, and map its errors to one line and an exit code."""
    parser = build_parser(command_word(argv))
    args = parser.parse_args(argv)
    if args.root is None:
        args.root = default_root()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="rade: %(levelname)s: %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except RadeError as err:
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(f"rade: error: {err}\n")
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `rade queue | head`: the reader left; nothing to report.
        sys.stderr.close()
        return 0
    except Exception as err:  # noqa: BLE001 - the one place a bug becomes a message
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(f"rade: error: internal error: {type(err).__name__}: {err} "
                         "(run with --debug for the traceback)\n")
        return EXIT_RADE
