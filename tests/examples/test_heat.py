"""heat.py: the decomposed solve equals the serial one, on any number of ranks, and reads like a solver run."""

from __future__ import annotations

import math
import re

import pytest


def summary(stdout: str) -> dict[str, str]:
    lines = [line for line in stdout.splitlines() if line.startswith("heat ")]
    assert len(lines) == 1, stdout
    return dict(word.split("=", 1) for word in lines[0].split()[1:])


@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_decomposed_solution_matches_serial_solution(run_mpi, system_python, example, ranks):
    # 37 x 29 does not divide evenly by 2 x 2: uneven blocks are part of what is checked.
    done = run_mpi(ranks, [system_python, example("heat.py"), "--nx", "37", "--ny", "29", "--steps", "40", "--serial-check"])
    assert done.returncode == 0, done.stderr
    result = summary(done.stdout)
    assert result["ranks"] == str(ranks)
    assert float(result["serial_max_diff"]) <= 1e-12
    assert "serial check  : max |u - u_serial|" in done.stdout and "(OK, tolerance 1e-12)" in done.stdout


def test_norm_is_the_same_on_one_and_on_four_ranks(run_mpi, system_python, example):
    norms = []
    for ranks in (1, 4):
        done = run_mpi(ranks, [system_python, example("heat.py"), "--nx", "40", "--ny", "24", "--steps", "25"])
        assert done.returncode == 0, done.stderr
        norms.append(float(summary(done.stdout)["l2"]))
    assert norms[0] > 0
    assert math.isclose(norms[0], norms[1], rel_tol=1e-12)


def test_output_has_header_residual_per_interval_and_totals(run_mpi, system_python, example):
    done = run_mpi(2, [system_python, example("heat.py"), "--nx", "32", "--ny", "32", "--steps", "30", "--every", "10"])
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("heat2d: 2-D heat equation")
    assert "ranks         : 2 as a 2 x 1 grid" in out
    rows = re.findall(r"^\s+(\d+)\s+(\d\.\d+e[-+]\d+)\s+(\d+\.\d+)$", out, re.MULTILINE)
    assert [int(step) for step, _, _ in rows] == [10, 20, 30]
    residuals = [float(residual) for _, residual, _ in rows]
    assert residuals == sorted(residuals, reverse=True), "the update shrinks as the field relaxes"
    for label in ("L2 norm", "checksum", "total time"):
        assert re.search(rf"^  {label}\s+: ", out, re.MULTILINE), label
    assert float(summary(out)["time_per_step_s"]) > 0


def test_grid_smaller_than_rank_grid_is_refused(run_mpi, system_python, example):
    done = run_mpi(4, [system_python, example("heat.py"), "--nx", "1", "--ny", "8", "--steps", "3"])
    assert done.returncode == 2
    assert "heat.py: error: a 1 x 8 grid is too small for 2 x 2 ranks" in done.stderr
