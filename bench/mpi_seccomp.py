"""rade's default seccomp filter on its own: a wrapper that runs a command under it, and what it costs.

As a wrapper (`mpi_seccomp.py COMMAND [ARGS...]`): installs the filter a rade container's processes get
(engine.seccomp, the way the launch does: no_new_privs, then the filter) and execs COMMAND, so the filter
holds for the command and all it starts, and nothing else of a container does. bench/mpi.py runs the
native ranks through it for its `native+seccomp` column.

Alone (no arguments): the cost of the filter per system call, which is what it adds to an MPI message's
path (a few calls a message: the write, the poll that sees the answer, the read). Alternating rounds of a
`getppid` loop in a fresh interpreter, without and with the filter; prints medians and bests in
nanoseconds a call (loop included), then `ratio` lines of filtered to plain.

    .venv/bin/python bench/mpi_seccomp.py [--rounds 9] | COMMAND [ARGS...]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

PR_SET_NO_NEW_PRIVS = 38
CALLS = 1_000_000
MEASURE = "--measure-getppid"


def install_filter() -> None:
    from engine import seccomp
    from engine.syscalls import LINUX

    program = seccomp.program()
    LINUX.prctl(PR_SET_NO_NEW_PRIVS, 1)
    LINUX.seccomp_filter(program.fprog)


def measure_getppid(calls: int = CALLS) -> float:
    """Nanoseconds a `getppid` call from a Python loop (the loop's own cost included, the same both ways)."""
    getppid = os.getppid
    start = time.perf_counter_ns()
    for _ in range(calls):
        getppid()
    return (time.perf_counter_ns() - start) / calls


def bench(rounds: int) -> int:
    me = [sys.executable, os.path.abspath(__file__)]
    samples: dict[str, list[float]] = {"plain": [], "seccomp": []}
    for index in range(rounds):
        order = ("plain", "seccomp") if index % 2 == 0 else ("seccomp", "plain")
        for where in order:
            argv = [*me, MEASURE] if where == "plain" else [*me, *me, MEASURE]
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            samples[where].append(float(out))
    print(f"getppid from a Python loop, {CALLS} calls a round, {rounds} alternating rounds, ns a call; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'where':<8} {'median':>8} {'best':>8}")
    for where, values in samples.items():
        print(f"{where:<8} {statistics.median(values):>8.1f} {min(values):>8.1f}")
    plain, filtered = samples["plain"], samples["seccomp"]
    print(f"  the filter adds {statistics.median(filtered) - statistics.median(plain):.1f} ns a call (medians), "
          f"{min(filtered) - min(plain):.1f} ns (bests)")
    print(f"ratio seccomp/plain getppid_call {statistics.median(filtered) / statistics.median(plain):.3f}")
    print(f"ratio seccomp/plain best_getppid_call {min(filtered) / min(plain):.3f}")
    return 0


def main(argv: list[str]) -> int:
    if argv == [MEASURE]:
        print(f"{measure_getppid():.2f}")
        return 0
    if not argv or argv[0] == "--rounds":
        rounds = int(argv[1]) if len(argv) > 1 else 9
        return bench(max(1, rounds))
    from engine.errors import LaunchError

    try:
        install_filter()
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
