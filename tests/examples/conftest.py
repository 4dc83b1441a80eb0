"""Fixtures for the MPI example programs: run them under the host's own Open MPI, leaving no process behind."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "mpi"
# Debian's mpi4py, built against the same Open MPI as mpirun (the venv's pip mpi4py may not be).
SYSTEM_PYTHON = "/usr/bin/python3"
RUN_TIMEOUT = 120


def _has_system_mpi4py() -> bool:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import mpi4py, numpy"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def system_python() -> str:
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not installed (Debian: openmpi-bin)")
    if not _has_system_mpi4py():
        pytest.skip(f"{SYSTEM_PYTHON} lacks mpi4py or numpy (Debian: python3-mpi4py python3-numpy)")
    return SYSTEM_PYTHON


def mpirun_argv(ranks: int, command: Sequence[str]) -> list[str]:
    """mpirun on this machine; --oversubscribe because the tests ask for more ranks than there are cores."""
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return ["mpirun", *root, "--oversubscribe", "-np", str(ranks), *command]


@pytest.fixture
def run_mpi(tmp_path: Path) -> Iterator[Callable[[int, Sequence[str]], subprocess.CompletedProcess[str]]]:
    """Run a command on N ranks; every mpirun gets its own session, killed whole if the test fails."""
    started: list[subprocess.Popen[str]] = []

    def run(ranks: int, command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        argv = mpirun_argv(ranks, command)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True, cwd=tmp_path, start_new_session=True)
        started.append(proc)
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    try:
        yield run
    finally:
        for proc in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


@pytest.fixture(scope="session")
def ring_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ring.c compiled with mpicc, as the image's Containerfile does."""
    if shutil.which("mpicc") is None:
        pytest.skip("mpicc not installed (Debian: libopenmpi-dev)")
    binary = tmp_path_factory.mktemp("ring") / "ring"
    build = subprocess.run(["mpicc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary),
                            str(EXAMPLES / "ring.c")], capture_output=True, text=True, check=False)
    assert build.returncode == 0, f"mpicc ring.c failed:\n{build.stderr}"
    return binary


@pytest.fixture(scope="session")
def mpi_native() -> ModuleType:
    """bench/mpi_native.py loaded as a module (bench/ is scripts, not a package)."""
    path = REPO / "bench" / "mpi_native.py"
    spec = importlib.util.spec_from_file_location("mpi_native", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mpi_native"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def example() -> Callable[[str], str]:
    """The path of one of the example programs, by file name."""
    return lambda name: str(EXAMPLES / name)
