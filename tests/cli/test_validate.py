"""`rade validate` and `rade schema` as a user runs them: exit codes, one line per problem, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def rade(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rade", *args], cwd=cwd, capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60)


def test_valid_examples_exit_0(tmp_path):
    specs = sorted(str(p) for p in (REPO / "examples").rglob("*.yaml"))
    assert len(specs) >= 4
    result = rade("validate", *specs)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{spec}: valid" for spec in specs]
    assert result.stderr == ""


def test_every_problem_of_every_file_is_one_line_and_the_exit_code_is_2(tmp_path):
    bad = tmp_path / "job.yaml"
    bad.write_text("name: Heat\nimage: busybox\nresources:\n  memory: 4Gx\nresorces: {}\n")
    also_bad = tmp_path / "other.yaml"
    also_bad.write_text("- not a mapping\n")
    good = tmp_path / "good.yaml"
    good.write_text("name: ok\nimage: busybox\n")
    result = rade("validate", str(bad), str(good), str(also_bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        (f"{bad}:1:7: name: 'Heat' is not a job name: use lowercase letters, digits and '-', starting with a "
         "letter or digit, at most 63 characters; try 'heat'"),
        f"{bad}:4:11: resources.memory: '4Gx' is not a size (use e.g. 512M or 4G)",
        f"{bad}:5:1: resorces: unknown key 'resorces'; did you mean 'resources'?",
        (f"{also_bad}:1:1: the file holds a list, not a mapping of job fields (write one field a line, "
         "e.g. 'name: my-job')"),
    ]
    assert result.stdout == f"{good}: valid\n"
    assert "Traceback" not in result.stderr


def test_a_missing_file_is_one_line_exit_2(tmp_path):
    result = rade("validate", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert result.stderr == f"{tmp_path}/missing.yaml: no such file; check the path\n"


def test_set_overrides_apply_and_are_checked(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("name: ok\nimage: busybox\n")
    result = rade("validate", str(job), "--set", "resources.memory=2G", "--set", "tasks=3", "--print")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["resources"]["memory"] == "2G" and printed["tasks"] == 3
    result = rade("validate", str(job), "--set", "resources.memory=4Gx", "--set", "nme=x")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "--set resources.memory=4Gx: resources.memory: '4Gx' is not a size (use e.g. 512M or 4G)",
        "--set nme=x: nme: unknown key 'nme'; did you mean 'name'?",
    ]


def test_print_shows_defaults_and_relative_volumes_resolved(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("name: ok\nimage: busybox\nvolumes: [./data:/data:ro]\n")
    result = rade("validate", "--print", "job.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["network"] == "host" and printed["resources"] == {"cpus": 1.0, "memory": "1G", "gpus": 0}
    assert printed["volumes"] == [{"source": str(tmp_path / "data"), "target": "/data", "read_only": True}]


def test_a_spec_on_standard_input_is_checked(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rade", "validate", "-"], cwd=tmp_path, capture_output=True,
                            text=True, check=False, input="name: a\nimage: busybox\ntasks: 0\n",
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 2
    assert result.stderr == "<stdin>:3:8: tasks: must be at least 1, got 0\n"


def test_usage_errors_are_one_line_exit_2():
    result = rade("validate")
    assert result.returncode == 2
    assert result.stderr.startswith("rade: error: ") and len(result.stderr.splitlines()) == 1


def test_schema_prints_json_schema():
    result = rade("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].endswith("2020-12/schema") and "resources" in schema["properties"]
