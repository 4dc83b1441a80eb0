#!/usr/bin/env python3
"""pingpong.py: MPI point-to-point latency and bandwidth between ranks 0 and 1, by message size.

Rank 0 sends a message to rank 1, which sends it straight back; one round trip is two one-way transfers,
so latency = round trip / 2 and bandwidth = size / latency. Each size is warmed up first (connections set
up, buffers registered), then timed over enough iterations to last a fraction of a second. Any ranks beyond
the first two only wait at the barriers.

Output: a table for people, then one machine-readable line per size at the end:
`pingpong size=8 iterations=20000 latency_us=5.31234 bandwidth_MBps=1.50593` (MB = 10^6 bytes).
"""

from __future__ import annotations

import argparse
import socket
import sys

from mpi4py import MPI

MIN_SIZE = 8
MAX_SIZE = 4 * 1024 * 1024
# Iterations per size: about this many bytes moved each way, within the bounds below.
BYTES_PER_SIZE = 256 * 1024 * 1024
MIN_ITERATIONS = 20
MAX_ITERATIONS = 20000


def parse_sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of positive byte counts (e.g. 8,1048576)")
    return sizes


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MPI ping-pong latency and bandwidth between ranks 0 and 1")
    parser.add_argument("--sizes", type=parse_sizes, default=None,
                        help=f"comma-separated message sizes in bytes (default powers of 2 from {MIN_SIZE} B "
                             f"to {MAX_SIZE // 1024 // 1024} MiB)")
    parser.add_argument("--iterations", type=int, default=0,
                        help="timed round trips per size (default: scaled by size, "
                             f"{MIN_ITERATIONS}..{MAX_ITERATIONS})")
    parser.add_argument("--warmup", type=int, default=0, help="untimed round trips per size (default iterations/10)")
    args = parser.parse_args(argv)
    if args.iterations < 0 or args.warmup < 0:
        parser.error("--iterations and --warmup must not be negative")
    return args


def default_sizes() -> list[int]:
    sizes, size = [], MIN_SIZE
    while size <= MAX_SIZE:
        sizes.append(size)
        size *= 2
    return sizes


def iterations_for(size: int) -> int:
    return max(MIN_ITERATIONS, min(MAX_ITERATIONS, BYTES_PER_SIZE // size))


def round_trips(comm: MPI.Comm, buf: memoryview, count: int) -> float:
    """Seconds for `count` round trips of `buf` between ranks 0 and 1, as seen by rank 0."""
    rank = comm.Get_rank()
    message = [buf, MPI.BYTE]
    comm.Barrier()
    start = MPI.Wtime()
    if rank == 0:
        for _ in range(count):
            comm.Send(message, dest=1, tag=1)
            comm.Recv(message, source=1, tag=2)
    elif rank == 1:
        for _ in range(count):
            comm.Recv(message, source=0, tag=1)
            comm.Send(message, dest=0, tag=2)
    return MPI.Wtime() - start


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    if comm.Get_size() < 2:
        if rank == 0:
            print("pingpong.py: error: needs at least 2 ranks (e.g. mpirun -np 2 python3 pingpong.py)",
                  file=sys.stderr)
        return 2
    sizes = args.sizes or default_sizes()
    hosts = comm.gather(socket.gethostname(), root=0)
    if rank == 0:
        print(f"pingpong: rank 0 on {hosts[0]} <-> rank 1 on {hosts[1]}, "
              f"{MPI.Get_library_version().split(',')[0].strip()}, mpi4py {sys.modules['mpi4py'].__version__}")
        print(f"  {'bytes':>9}  {'iterations':>10}  {'latency [us]':>12}  {'bandwidth [MB/s]':>16}")
        sys.stdout.flush()

    buf = memoryview(bytearray(max(sizes)))
    results = []
    for size in sizes:
        count = args.iterations or iterations_for(size)
        warmup = args.warmup or max(1, count // 10)
        message = buf[:size]
        round_trips(comm, message, warmup)
        elapsed = round_trips(comm, message, count)
        if rank == 0:
            one_way = elapsed / count / 2
            latency_us, bandwidth = one_way * 1e6, size / one_way / 1e6
            results.append((size, count, latency_us, bandwidth))
            print(f"  {size:>9}  {count:>10}  {latency_us:>12.3f}  {bandwidth:>16.2f}")
            sys.stdout.flush()
    comm.Barrier()
    if rank == 0:
        for size, count, latency_us, bandwidth in results:
            print(f"pingpong size={size} iterations={count} latency_us={latency_us:.6g} bandwidth_MBps={bandwidth:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
