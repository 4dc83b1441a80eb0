"""Run a command under rade's default seccomp filter, and nothing else of a container.

bench/mpi.py runs the native ranks through this (`mpi_seccomp.py python3 pingpong.py ...`) for its
`native+seccomp` column: the same hosts, binaries and CPUs as the native column, with only the filter a
rade container's processes get (engine.seccomp, installed the way the launch does: no_new_privs, then the
filter), so the cost of the filter on the ranks' hot path is measured on its own. The filter is
installed before `exec`, so it holds for the command and all it starts, and costs nothing before.

    .venv/bin/python bench/mpi_seccomp.py COMMAND [ARGS...]
"""

from __future__ import annotations

import os
import sys

PR_SET_NO_NEW_PRIVS = 38


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: mpi_seccomp.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    from engine import seccomp
    from engine.errors import LaunchError
    from engine.syscalls import LINUX

    try:
        program = seccomp.program()
        LINUX.prctl(PR_SET_NO_NEW_PRIVS, 1)
        LINUX.seccomp_filter(program.fprog)
    except (LaunchError, OSError) as err:
        print(f"mpi_seccomp: cannot install the filter: {err}", file=sys.stderr)
        return 125
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        print(f"mpi_seccomp: {argv[0]}: {err.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
