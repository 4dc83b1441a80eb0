"""pingpong.py: a latency and bandwidth table by message size between ranks 0 and 1."""

from __future__ import annotations

import math
import re

import pytest

RESULT = re.compile(r"^pingpong size=(\d+) iterations=(\d+) latency_us=(\S+) bandwidth_MBps=(\S+)$")


@pytest.mark.slow
def test_two_ranks_print_a_table_from_8_bytes_to_4_mib(run_mpi, system_python, example):
    done = run_mpi(2, [system_python, example("pingpong.py"), "--iterations", "30", "--warmup", "3"])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("pingpong: rank 0 on ") and "<-> rank 1 on " in lines[0]
    assert lines[1].split() == ["bytes", "iterations", "latency", "[us]", "bandwidth", "[MB/s]"]
    sizes = [8 << n for n in range(20)]
    assert sizes[-1] == 4 * 1024 * 1024
    table = [line.split() for line in lines[2:2 + len(sizes)]]
    assert [int(row[0]) for row in table] == sizes
    results = [RESULT.match(line) for line in lines[2 + len(sizes):]]
    assert all(results) and len(results) == len(sizes), done.stdout
    for row, match in zip(table, results):
        size, iterations, latency_us, bandwidth = int(match[1]), int(match[2]), float(match[3]), float(match[4])
        assert (size, iterations) == (int(row[0]), 30)
        assert latency_us > 0 and bandwidth > 0
        # bandwidth is size over the one-way time (MB = 10^6 bytes), both rounded in print
        assert math.isclose(bandwidth, size / latency_us, rel_tol=0.02, abs_tol=0.01)


def test_chosen_sizes_only(run_mpi, system_python, example):
    done = run_mpi(2, [system_python, example("pingpong.py"), "--sizes", "8,1048576", "--iterations", "20"])
    assert done.returncode == 0, done.stderr
    sizes = [int(m[1]) for m in map(RESULT.match, done.stdout.splitlines()) if m]
    assert sizes == [8, 1048576]


def test_one_rank_is_refused_with_a_hint(run_mpi, system_python, example):
    done = run_mpi(1, [system_python, example("pingpong.py")])
    assert done.returncode == 2
    assert "pingpong.py: error: needs at least 2 ranks" in done.stderr
