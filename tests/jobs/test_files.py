"""Reading job files: a missing file, a directory, bytes that are not UTF-8, a byte-order mark."""

from __future__ import annotations

import pytest

from jobs.loader import load_spec
from jobs.problems import SpecError


def _problems(path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(str(path))
    return [str(problem) for problem in info.value.problems]


def test_a_missing_file_is_one_clear_problem(tmp_path):
    assert _problems(tmp_path / "nope.yaml") == [f"{tmp_path}/nope.yaml: no such file; check the path"]


def test_a_directory_is_refused(tmp_path):
    assert _problems(tmp_path) == [f"{tmp_path}: is a directory; give the job's YAML file"]


def test_bytes_that_are_not_utf8_are_located(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_bytes(b"name: a\nimage: caf\xe9\n")
    assert _problems(job) == [f"{job}:2:11: byte 0xe9 is not UTF-8 text; save the file as UTF-8"]


def test_a_byte_order_mark_is_ignored(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_bytes(b"\xef\xbb\xbfname: a\nimage: busybox\n")
    assert load_spec(str(job)).name == "a"


def test_an_alias_bomb_is_refused_not_expanded(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    job = tmp_path / "job.yaml"
    job.write_text("\n".join(lines) + "\nname: a\nimage: busybox\n")
    problems = _problems(job)
    assert len(problems) == 1 and "expands to more than 100000 values" in problems[0]
