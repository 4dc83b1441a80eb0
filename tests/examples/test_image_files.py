"""The Containerfiles and the job specs agree: every program a job runs is installed where it looks for it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "mpi"
# What `rade build` accepts.
INSTRUCTIONS = {"FROM", "RUN", "COPY", "ENV", "WORKDIR", "CMD", "ARG", "LABEL"}
CONTAINERFILES = ["Containerfile", "Containerfile.mpich"]


def instructions(containerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with backslash continuations joined and comments dropped."""
    logical, pending = [], ""
    for line in containerfile.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{containerfile.name} ends inside a continuation"
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def installed_paths(containerfile: Path) -> set[str]:
    """Files the build puts in the image: COPY destinations and `-o` outputs of RUN compiler lines."""
    paths = set()
    for name, args in instructions(containerfile):
        if name == "COPY":
            paths.add(shlex.split(args)[-1])
        elif name == "RUN":
            paths.update(re.findall(r"-o\s+(\S+)", args))
    return paths


@pytest.mark.parametrize("name", CONTAINERFILES)
def test_containerfile_uses_only_instructions_rade_build_supports(name):
    steps = instructions(EXAMPLES / name)
    assert steps[0] == ("FROM", "debian:bookworm")
    assert {instruction for instruction, _ in steps} <= INSTRUCTIONS


@pytest.mark.parametrize("name", CONTAINERFILES)
def test_containerfile_copies_files_that_exist_and_cleans_apt_lists(name):
    steps = instructions(EXAMPLES / name)
    for instruction, args in steps:
        if instruction == "COPY":
            for source in shlex.split(args)[:-1]:
                assert (EXAMPLES / source).is_file(), source
    installs = [args for instruction, args in steps if instruction == "RUN" and "apt-get install" in args]
    assert installs and all("--no-install-recommends" in args and "rm -rf /var/lib/apt/lists" in args
                            for args in installs)


def test_open_mpi_image_has_what_the_programs_need():
    steps = instructions(EXAMPLES / "Containerfile")
    packages = " ".join(args for instruction, args in steps if instruction == "RUN")
    for package in ("openmpi-bin", "libopenmpi-dev", "python3-mpi4py", "python3-numpy", "gcc"):
        assert re.search(rf"\b{re.escape(package)}\b", packages), package
    assert ("ENV", "PMIX_MCA_gds=hash") in steps


@pytest.mark.parametrize("spec", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_program_a_job_runs_is_installed_in_its_image(spec):
    job = yaml.safe_load((EXAMPLES / spec).read_text(encoding="utf-8"))
    assert job["image"] == "mpi:bookworm"
    installed = installed_paths(EXAMPLES / "Containerfile")
    programs = [word for word in job["command"] if str(word).startswith("/opt/")]
    assert programs, job["command"]
    assert set(programs) <= installed, f"{spec} runs {programs}; the image installs {sorted(installed)}"
