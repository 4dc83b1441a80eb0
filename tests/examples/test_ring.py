"""ring.c: built with mpicc, the token visits every rank once per lap."""

from __future__ import annotations

import re


def test_token_makes_laps_times_ranks_hops_on_three_ranks(run_mpi, ring_binary):
    done = run_mpi(3, [str(ring_binary), "7"])
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("ring: 3 ranks, 7 laps")
    per_rank = re.findall(r"^  rank (\d+) on \S+: (\d+) hops$", out, re.MULTILINE)
    assert per_rank == [("0", "7"), ("1", "7"), ("2", "7")]
    assert "token 21 after 21 hops (expected 21): OK" in out
    assert re.search(r"^ring ranks=3 laps=7 hops=21 expected=21 seconds=\d+\.\d+$", out, re.MULTILINE)


def test_one_rank_passes_the_token_to_itself(run_mpi, ring_binary):
    done = run_mpi(1, [str(ring_binary), "4"])
    assert done.returncode == 0, done.stderr
    assert "token 4 after 4 hops (expected 4): OK" in done.stdout


def test_bad_lap_count_is_refused(run_mpi, ring_binary):
    done = run_mpi(2, [str(ring_binary), "many"])
    assert done.returncode == 2
    assert "ring: error: LAPS must be a whole number from 1 to 100000000, not 'many'" in done.stderr
