"""The Felter workloads' inputs, how one column runs them, and the figures read back from their output.

hpcc (HPL, STREAM Triad, RandomAccess) gets bench/hpccinf.txt with HPL's order set; xz compresses a file of
mixed compressibility generated from a seeded PRNG, so every run compresses the same bytes, timed inside the
column by the command itself. A column is a `Runner`: argv and working directory in, stdout out; the work
directory is bind-mounted at its own path in every container. Output that says a run failed, or lacks a
figure, is a `BenchError`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = ("hpl", "stream", "randomaccess", "xz")
UNITS = {"hpl": "GFLOPS", "stream": "GB/s", "randomaccess": "GUPS", "xz": "MB/s"}
# hpcc summary key and the factor to the unit above.
HPCC_KEYS = {"hpl": ("HPL_Tflops", 1000.0), "stream": ("SingleSTREAM_Triad", 1.0),
             "randomaccess": ("SingleRandomAccess_GUPs", 1.0)}
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "LANG": "C",
       "PMIX_MCA_gds": "hash", "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_plm": "isolated"}
RANKS = 2
XZ_MARK = "xz_ns="


Runner = Callable[[Sequence[str], str], str]  # argv, working directory -> stdout


class BenchError(Exception):
    """A workload's output that says it failed or lacks a figure."""


def hpcc_input(n: int, nb: int = 128, ranks: int = RANKS) -> str:
    """bench/hpccinf.txt with one HPL problem of order n, blocks of nb, on a 1 x ranks grid (hpcc sizes its
    other tests, STREAM and RandomAccess among them, from HPL's memory)."""
    with open(os.path.join(HERE, "hpccinf.txt"), encoding="ascii") as template:
        lines = template.read().splitlines()
    for index, value, what in ((5, n, "Ns"), (7, nb, "NBs"), (10, 1, "Ps"), (11, ranks, "Qs")):
        if not lines[index].endswith(f" {what}"):
            raise BenchError(f"bench/hpccinf.txt line {index + 1} is not the {what} line")
        lines[index] = f"{value:<13d}{what}"
    return "\n".join(lines) + "\n"


def parse_hpcc(text: str) -> dict[str, float]:
    """The HPL, STREAM Triad and RandomAccess figures from an hpccoutf.txt, in UNITS."""
    start, end = text.find("Begin of Summary section."), text.find("End of Summary section.")
    if start < 0 or end < start:
        raise BenchError("hpcc output has no summary section (did it finish?)")
    summary: dict[str, str] = {}
    for line in text[start:end].splitlines():
        key, sep, value = line.partition("=")
        if sep:
            summary[key.strip()] = value.strip()
    if summary.get("Success") != "1":
        raise BenchError(f"hpcc reports Success={summary.get('Success')!r}")
    figures = {}
    for name, (key, factor) in HPCC_KEYS.items():
        try:
            figures[name] = float(summary[key]) * factor
        except (KeyError, ValueError):
            raise BenchError(f"hpcc summary lacks a number for {key}") from None
    return figures


def parse_xz(text: str, size: int) -> float:
    """MB/s of input compressed, from the `xz_ns=` line the timed command prints."""
    for line in text.splitlines():
        if line.startswith(XZ_MARK):
            nanoseconds = int(line[len(XZ_MARK):])
            if nanoseconds <= 0:
                break
            return size / 1e6 / (nanoseconds / 1e9)
    raise BenchError(f"no {XZ_MARK}<nanoseconds> line in the xz run's output: {text.strip()[-200:]!r}")


def write_mixed_data(path: str, size: int, seed: int = 2014) -> None:
    """`size` bytes, the same for a seed: a third random, a third from a 16-symbol alphabet, a third repeats
    of earlier chunks with a few bytes changed (long-distance matches), chunk by chunk, interleaved."""
    rng = random.Random(seed)
    alphabet = bytes.maketrans(bytes(range(256)), bytes(b"etaoinshrdlucmfw"[i % 16] for i in range(256)))
    chunk, written, previous = 1 << 16, 0, []
    with open(path, "wb") as out:
        while written < size:
            kind = rng.randrange(3)
            if kind == 0 or (kind == 2 and not previous):
                block = rng.randbytes(chunk)
            elif kind == 1:
                block = rng.randbytes(chunk).translate(alphabet)
            else:
                block = bytearray(rng.choice(previous))
                for _ in range(16):
                    block[rng.randrange(chunk)] = rng.randrange(256)
                block = bytes(block)
            block = block[: size - written]
            out.write(block)
            written += len(block)
            previous = (previous + [block])[-64:]


@dataclass(frozen=True, slots=True)
class Workdir:
    """Where the inputs live (bind-mounted at the same path in every container)."""

    path: str
    xz_input: str
    xz_size: int

    @property
    def hpcc_dir(self) -> str:
        return f"{self.path}/hpcc"


def prepare(base: str, hpl_n: int, xz_mb: int) -> Workdir:
    work = f"{base}/work"
    os.makedirs(f"{work}/hpcc")
    with open(f"{work}/hpcc/hpccinf.txt", "w", encoding="ascii") as inf:
        inf.write(hpcc_input(hpl_n))
    size = xz_mb * 1_000_000
    write_mixed_data(f"{work}/xz.in", size)
    return Workdir(work, f"{work}/xz.in", size)


def xz_block_size(size: int, cpus: int | None = None) -> int:
    """-6's own block size (3 x its 8 MiB dictionary), or less so that a small input still gives every CPU a
    block (xz -T0 compresses one block per thread)."""
    cpus = cpus or os.cpu_count() or 1
    return max(1 << 20, min(24 << 20, -(-size // cpus)))


def measure(run: Runner, work: Workdir) -> dict[str, float]:
    """One run of each workload in one column."""
    out_file = f"{work.hpcc_dir}/hpccoutf.txt"
    if os.path.exists(out_file):
        os.unlink(out_file)  # hpcc appends
    run(["mpirun", "--allow-run-as-root", "-np", str(RANKS), "hpcc"], work.hpcc_dir)
    with open(out_file, encoding="utf-8", errors="replace") as text:
        figures = parse_hpcc(text.read())
    # Full paths: busybox's sh would run its own xz and date applets for bare names.
    script = (f'a=$(/usr/bin/date +%s%N); /usr/bin/xz -T0 -6 --block-size="$1" -c "$0" > /dev/null || exit 1; '
              f'b=$(/usr/bin/date +%s%N); echo {XZ_MARK}$((b - a))')
    argv = ["sh", "-c", script, work.xz_input, str(xz_block_size(work.xz_size))]
    figures["xz"] = parse_xz(run(argv, work.path), work.xz_size)
    return figures
