#!/usr/bin/env python3
"""heat.py: a 2-D heat-equation solver with domain decomposition, the shape of a PDE code run under MPI.

It solves u_t = u_xx + u_yy on the unit square with explicit finite differences (forward Euler in time,
the 5-point Laplacian in space) on NX x NY interior points. The boundary is held fixed (a hot wall at
x = 0, the other walls cold) and the interior starts with a warm Gaussian spot, so the field evolves in a
way that is easy to check.

The ranks form a 2-D Cartesian grid (MPI_Dims_create); each owns a block of the interior plus one layer of
halo cells that it refreshes every step by Sendrecv with its four neighbours. Every step the global
residual, the RMS of the update, is summed with Allreduce, as a solver checking convergence would.

The per-point arithmetic is the same in every decomposition, so with --serial-check rank 0 gathers the
field, recomputes it on one process and the two must agree to 1e-12 (they agree exactly).

The last line is machine-readable: `heat ranks=.. nx=.. ny=.. steps=.. time_per_step_s=.. ...`.
"""

from __future__ import annotations

import argparse
import socket
import sys

import numpy as np
from mpi4py import MPI

HOT_WALL = 1.0
TOLERANCE = 1e-12
# Forward Euler is stable while dt/hx^2 + dt/hy^2 <= 1/2; stay just under it.
STABILITY = 0.48


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="2-D heat equation, explicit finite differences over MPI ranks")
    parser.add_argument("--nx", type=int, default=512, help="interior points along x (default 512)")
    parser.add_argument("--ny", type=int, default=512, help="interior points along y (default 512)")
    parser.add_argument("--steps", type=int, default=200, help="time steps (default 200)")
    parser.add_argument("--every", type=int, default=0, help="print the residual every K steps (default steps/10)")
    parser.add_argument("--serial-check", action="store_true",
                        help="rank 0 recomputes serially and prints the largest difference")
    args = parser.parse_args(argv)
    if args.nx < 1 or args.ny < 1 or args.steps < 0 or args.every < 0:
        parser.error("--nx and --ny must be at least 1, --steps and --every not negative")
    return args


def split(n: int, parts: int, index: int) -> tuple[int, int]:
    """The first global index and the length of block `index` when n points are shared by `parts` ranks."""
    base, extra = divmod(n, parts)
    start = index * base + min(index, extra)
    return start, base + (1 if index < extra else 0)


def initial_field(nx: int, ny: int, i0: int, j0: int, lnx: int, lny: int) -> np.ndarray:
    """The block of the initial field whose first interior point is global (i0, j0), with one halo layer.

    Global index 0 and nx+1 (ny+1) are the walls; the block covers global rows i0 .. i0+lnx+1 (halo
    included), so blocks on the edge of the domain carry the wall values in their halo.
    """
    x = (np.arange(i0, i0 + lnx + 2, dtype=np.float64) / (nx + 1))[:, None]
    y = (np.arange(j0, j0 + lny + 2, dtype=np.float64) / (ny + 1))[None, :]
    u = 2.0 * np.exp(-((x - 0.6) ** 2 + (y - 0.4) ** 2) / 0.02)
    rows, cols = np.arange(i0, i0 + lnx + 2), np.arange(j0, j0 + lny + 2)
    u[rows == nx + 1, :] = 0.0
    u[:, (cols == 0) | (cols == ny + 1)] = 0.0
    u[rows == 0, :] = HOT_WALL
    return u


class Stencil:
    """The forward-Euler update of one block, with its scratch arrays made once (a step allocates nothing).

    Every point is computed as c + rx*((up + down) - 2c) + ry*((left + right) - 2c) in that order, the
    same in every decomposition, which is what makes the serial check exact.
    """

    def __init__(self, lnx: int, lny: int, rx: float, ry: float) -> None:
        self.rx, self.ry = rx, ry
        self.twice = np.empty((lnx, lny))
        self.along_x = np.empty((lnx, lny))
        self.along_y = np.empty((lnx, lny))

    def step(self, u: np.ndarray, out: np.ndarray) -> float:
        """Update the interior of `u` (halo included) into the interior of `out`; the sum of squared changes."""
        c, new = u[1:-1, 1:-1], out[1:-1, 1:-1]
        np.multiply(c, 2.0, out=self.twice)
        for part, (a, b), r in ((self.along_x, (u[:-2, 1:-1], u[2:, 1:-1]), self.rx),
                                (self.along_y, (u[1:-1, :-2], u[1:-1, 2:]), self.ry)):
            np.add(a, b, out=part)
            np.subtract(part, self.twice, out=part)
            np.multiply(part, r, out=part)
        np.add(c, self.along_x, out=new)
        np.add(new, self.along_y, out=new)
        change = np.subtract(new, c, out=self.along_x).ravel()
        return float(np.dot(change, change))


class Block:
    """This rank's part of the grid: where it sits, its neighbours, and the halo exchange with them."""

    def __init__(self, comm: MPI.Cartcomm, nx: int, ny: int) -> None:
        self.comm = comm
        px, py = comm.dims
        cx, cy = comm.coords
        self.i0, self.lnx = split(nx, px, cx)
        self.j0, self.lny = split(ny, py, cy)
        self.up, self.down = comm.Shift(0, 1)
        self.left, self.right = comm.Shift(1, 1)
        self.send_col = np.empty(self.lnx, dtype=np.float64)
        self.recv_col = np.empty(self.lnx, dtype=np.float64)

    def exchange(self, u: np.ndarray) -> None:
        """Refresh the halo of `u` from the four neighbours; walls (no neighbour) keep their values."""
        comm = self.comm
        # Rows are contiguous in C order, so they go straight from and into the array.
        comm.Sendrecv(u[1, 1:-1], dest=self.up, sendtag=0, recvbuf=u[-1, 1:-1], source=self.down, recvtag=0)
        comm.Sendrecv(u[-2, 1:-1], dest=self.down, sendtag=1, recvbuf=u[0, 1:-1], source=self.up, recvtag=1)
        # Columns are strided: pack them into a contiguous buffer first.
        self._column(u, send=1, recv=-1, dest=self.left, source=self.right, tag=2)
        self._column(u, send=-2, recv=0, dest=self.right, source=self.left, tag=3)

    def _column(self, u: np.ndarray, send: int, recv: int, dest: int, source: int, tag: int) -> None:
        self.send_col[:] = u[1:-1, send]
        self.comm.Sendrecv(self.send_col, dest=dest, sendtag=tag, recvbuf=self.recv_col, source=source, recvtag=tag)
        if source != MPI.PROC_NULL:
            u[1:-1, recv] = self.recv_col


def solve_serial(nx: int, ny: int, steps: int, rx: float, ry: float) -> np.ndarray:
    """The whole field after `steps` steps on one process, walls included."""
    u = initial_field(nx, ny, 0, 0, nx, ny)
    new = u.copy()
    stencil = Stencil(nx, ny, rx, ry)
    for _ in range(steps):
        stencil.step(u, new)
        u, new = new, u
    return u


def gather_field(block: Block, u: np.ndarray, nx: int, ny: int) -> np.ndarray | None:
    """The global interior assembled on rank 0 (None elsewhere)."""
    parts = block.comm.gather((block.i0, block.j0, np.ascontiguousarray(u[1:-1, 1:-1])), root=0)
    if parts is None:
        return None
    field = np.empty((nx, ny), dtype=np.float64)
    for i0, j0, interior in parts:
        field[i0:i0 + interior.shape[0], j0:j0 + interior.shape[1]] = interior
    return field


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    world = MPI.COMM_WORLD
    size = world.Get_size()
    dims = MPI.Compute_dims(size, 2)
    if dims[0] > args.nx or dims[1] > args.ny:
        if world.Get_rank() == 0:
            print(f"heat.py: error: a {args.nx} x {args.ny} grid is too small for {dims[0]} x {dims[1]} ranks",
                  file=sys.stderr)
        return 2
    comm = world.Create_cart(dims, periods=[False, False], reorder=False)
    rank = comm.Get_rank()
    block = Block(comm, args.nx, args.ny)

    hx, hy = 1.0 / (args.nx + 1), 1.0 / (args.ny + 1)
    dt = STABILITY / (1.0 / hx**2 + 1.0 / hy**2)
    rx, ry = dt / hx**2, dt / hy**2
    every = args.every or max(1, args.steps // 10)

    hosts = comm.gather(socket.gethostname(), root=0)
    if rank == 0:
        print("heat2d: 2-D heat equation, explicit finite differences, halo exchange by MPI_Sendrecv")
        print(f"  grid          : {args.nx} x {args.ny} interior points, h = {hx:.3e} x {hy:.3e}")
        print(f"  time step     : dt = {dt:.3e} (rx = {rx:.3f}, ry = {ry:.3f}), {args.steps} steps")
        print(f"  ranks         : {size} as a {dims[0]} x {dims[1]} grid on "
              f"{len(set(hosts))} host(s): {', '.join(sorted(set(hosts)))}")
        print(f"  MPI           : {MPI.Get_library_version().split(',')[0].strip()}")
        print()
        print(f"  {'step':>8}  {'residual':>12}  {'time/step [ms]':>14}")
        sys.stdout.flush()

    u = initial_field(args.nx, args.ny, block.i0, block.j0, block.lnx, block.lny)
    new = u.copy()
    stencil = Stencil(block.lnx, block.lny, rx, ry)
    local = np.empty(1, dtype=np.float64)
    residual = np.zeros(1, dtype=np.float64)
    points = float(args.nx * args.ny)

    comm.Barrier()
    start = interval_start = MPI.Wtime()
    last_printed = 0
    for n in range(1, args.steps + 1):
        block.exchange(u)
        local[0] = stencil.step(u, new)
        comm.Allreduce(local, residual, op=MPI.SUM)
        u, new = new, u
        if n % every == 0 or n == args.steps:
            now = MPI.Wtime()
            if rank == 0:
                per_step = (now - interval_start) / (n - last_printed)
                print(f"  {n:>8}  {np.sqrt(residual[0] / points):>12.6e}  {per_step * 1e3:>14.3f}")
                sys.stdout.flush()
            interval_start, last_printed = now, n
    comm.Barrier()
    total = MPI.Wtime() - start

    interior = np.ascontiguousarray(u[1:-1, 1:-1])
    sums = np.array([interior.sum(), np.dot(interior.ravel(), interior.ravel())])
    comm.Allreduce(MPI.IN_PLACE, sums, op=MPI.SUM)
    checksum, l2 = sums[0], np.sqrt(sums[1] * hx * hy)
    per_step = total / args.steps if args.steps else 0.0

    status = 0
    field = gather_field(block, u, args.nx, args.ny) if args.serial_check else None
    if rank == 0:
        print()
        print(f"  L2 norm       : {l2:.15e}")
        print(f"  checksum      : {checksum:.15e}")
        print(f"  total time    : {total:.6f} s ({per_step * 1e3:.3f} ms per step)")
        line = (f"heat ranks={size} nx={args.nx} ny={args.ny} steps={args.steps} time_per_step_s={per_step:.9f} "
                f"total_s={total:.6f} l2={l2:.15e} checksum={checksum:.15e}")
        if field is not None:
            serial = solve_serial(args.nx, args.ny, args.steps, rx, ry)[1:-1, 1:-1]
            max_diff = float(np.max(np.abs(field - serial))) if field.size else 0.0
            verdict = "OK" if max_diff <= TOLERANCE else "MISMATCH"
            print(f"  serial check  : max |u - u_serial| = {max_diff:.3e} ({verdict}, tolerance {TOLERANCE:g})")
            line += f" serial_max_diff={max_diff:.3e}"
            status = 0 if max_diff <= TOLERANCE else 1
        print(line)
        sys.stdout.flush()
    return int(comm.bcast(status, root=0))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
