"""bench/felter.py reads the figures hpcc and the timed xz command print (felter_workloads.py), and states its
ratios in the fixed form."""

from __future__ import annotations

import lzma
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

RATIO_LINE = re.compile(r"^ratio [a-z]+/[a-z]+ [a-z]+ \d+\.\d{3}$")


def test_hpcc_summary_gives_hpl_stream_and_randomaccess_in_table_units(workloads: ModuleType, hpcc_output: str) -> None:
    figures = workloads.parse_hpcc(hpcc_output)
    # The summary of that run says HPL_Tflops=0.00330777, SingleSTREAM_Triad=72.0144,
    # SingleRandomAccess_GUPs=0.0593715: GFLOPS are Tflops x 1000.
    assert figures == pytest.approx({"hpl": 3.30777, "stream": 72.0144, "randomaccess": 0.0593715})


def test_hpcc_output_cut_before_its_summary_is_refused(workloads: ModuleType, hpcc_output: str) -> None:
    cut = hpcc_output[: hpcc_output.index("Begin of Summary section.")]
    with pytest.raises(workloads.BenchError, match="no summary"):
        workloads.parse_hpcc(cut)


def test_hpcc_run_that_failed_is_refused(workloads: ModuleType, hpcc_output: str) -> None:
    with pytest.raises(workloads.BenchError, match="Success='0'"):
        workloads.parse_hpcc(hpcc_output.replace("\nSuccess=1\n", "\nSuccess=0\n"))


def test_hpcc_summary_without_a_figure_names_the_key(workloads: ModuleType, hpcc_output: str) -> None:
    lines = [line for line in hpcc_output.splitlines() if not line.startswith("SingleSTREAM_Triad=")]
    with pytest.raises(workloads.BenchError, match="SingleSTREAM_Triad"):
        workloads.parse_hpcc("\n".join(lines))


def test_xz_rate_is_input_megabytes_per_second_of_the_timed_run(workloads: ModuleType, xz_output: str) -> None:
    # xz_ns=69404749019: 48 MB in 69.40 s.
    assert workloads.parse_xz(xz_output, 48_000_000) == pytest.approx(48 / 69.404749019)


def test_xz_output_without_its_timing_line_is_refused(workloads: ModuleType) -> None:
    with pytest.raises(workloads.BenchError, match="xz_ns="):
        workloads.parse_xz("xz: /work/xz.in: No such file or directory\n", 48_000_000)


def test_ratio_lines_are_ratios_of_medians_in_the_fixed_form(felter: ModuleType) -> None:
    results = {
        "native": {"hpl": [3.2, 3.4, 3.3], "stream": [72.0, 71.0, 73.0], "randomaccess": [0.06, 0.05, 0.07],
                   "xz": [0.7, 0.69, 0.71]},
        "rade": {"hpl": [3.3, 3.1, 3.28], "stream": [72.1, 70.0, 73.0], "randomaccess": [0.06, 0.06, 0.05],
                 "xz": [0.7, 0.72, 0.68]},
        "crun": {"hpl": [3.0, 3.2, 3.1], "stream": [], "randomaccess": [0.05], "xz": [0.7]},
    }
    lines = felter.ratio_lines(results)
    assert all(RATIO_LINE.match(line) for line in lines), lines
    assert "ratio rade/native hpl 0.994" in lines  # 3.28 / 3.3
    assert "ratio rade/native stream 1.001" in lines  # 72.1 / 72.0
    assert "ratio crun/native hpl 0.939" in lines  # 3.1 / 3.3
    assert "ratio rade/crun hpl 1.058" in lines  # 3.28 / 3.1
    assert not any(" stream " in line for line in lines if "crun" in line)  # no figure, no ratio
    assert not any(line.startswith(("ratio podman/", "ratio cluster/")) for line in lines)  # columns that did not run


def test_table_has_a_row_per_workload_a_column_per_engine_and_the_skip_reasons(felter: ModuleType) -> None:
    results = {"native": {w: [1.0, 2.0, 3.0] for w in felter.WORKLOADS},
               "rade": {w: [2.0] for w in felter.WORKLOADS}}
    lines = felter.table(results, {"podman": "podman is not installed"})
    assert lines[0].split() == ["workload", "native", "rade"]
    assert [line.split()[0] for line in lines[1:5]] == ["hpl", "stream", "randomaccess", "xz"]
    assert "2 (1-3)" in lines[1] and lines[1].endswith("2 (2-2)")
    assert lines[-1] == "podman: skipped: podman is not installed"


def test_generated_xz_input_is_the_same_for_a_seed_and_of_mixed_compressibility(
        workloads: ModuleType, tmp_path: Path) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    workloads.write_mixed_data(str(first), 3_000_000)
    workloads.write_mixed_data(str(second), 3_000_000)
    workloads.write_mixed_data(str(other), 3_000_000, seed=7)
    data = first.read_bytes()
    assert len(data) == 3_000_000 and data == second.read_bytes() and data != other.read_bytes()
    ratio = len(lzma.compress(data, preset=1)) / len(data)
    assert 0.3 < ratio < 0.9, ratio  # neither all noise nor all repeats


def test_xz_block_size_gives_every_cpu_a_block_of_a_small_input(workloads: ModuleType) -> None:
    assert workloads.xz_block_size(16_000_000, cpus=2) == 8_000_000
    assert workloads.xz_block_size(200_000_000, cpus=2) == 24 << 20  # -6's own block size
    assert workloads.xz_block_size(100, cpus=2) == 1 << 20


@pytest.mark.slow
def test_generated_hpcc_input_runs_and_its_figures_parse(workloads: ModuleType, tmp_path: Path) -> None:
    if shutil.which("hpcc") is None or shutil.which("mpirun") is None:
        pytest.skip("hpcc or mpirun not installed (Debian: hpcc, openmpi-bin)")
    (tmp_path / "hpccinf.txt").write_text(workloads.hpcc_input(400, nb=64), encoding="ascii")
    env = {**workloads.ENV, "TMPDIR": str(tmp_path)}
    argv = ["mpirun", "--allow-run-as-root", "-np", "2", "hpcc"]
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
                          start_new_session=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    output = (tmp_path / "hpccoutf.txt").read_text(encoding="utf-8")
    assert "HPL_N=400" in output and "HPL_NB=64" in output and "HPL_npcol=2" in output
    figures = workloads.parse_hpcc(output)
    assert all(value > 0 for value in figures.values()), figures
