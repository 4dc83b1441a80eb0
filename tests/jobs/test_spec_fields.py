"""Every field of the job spec parsed, with its default, and the spec's derived numbers and plain form."""

from __future__ import annotations

import dataclasses

import pytest

from jobs.fields import DEFAULT_MEMORY, JOB, MPI, PLACEMENT, RESOURCES
from jobs.loader import load_spec, parse_spec
from jobs.problems import SpecError
from jobs.spec import Dependency, JobSpec, Mpi, Placement, Resources, Volume, spec_to_yaml
from jobs.units import ArrayRange


def test_every_field_of_a_full_spec_is_read(full_spec_text):
    spec = parse_spec(full_spec_text, "job.yaml", base_dir="/home/u/jobs")
    assert spec.name == "heat"
    assert spec.image == "mpi:bookworm"
    assert spec.command == ("python3", "/opt/heat.py", "--steps", "200")
    assert spec.workdir == "/work"
    assert dict(spec.env) == {"OMP_NUM_THREADS": "1", "EMPTY": ""}
    assert spec.resources == Resources(cpus=0.5, memory=512 * 2**20, gpus=1)
    assert spec.mpi == Mpi(ranks=4, ranks_per_node=2, implementation="mpich")
    assert spec.tasks == 1
    assert spec.network == "bridge"
    assert spec.volumes == (Volume("/scratch", "/scratch", False), Volume("/home/u/jobs/data", "/data", True),
                            Volume("/home/u/out", "/out", False))
    assert spec.placement == Placement(2, {"arch": "x86_64"}, ("n3",), "spread")
    assert spec.time_limit == 86400 + 2 * 3600 + 3 * 60 + 4
    assert spec.priority == -5
    assert spec.requeue is False
    assert spec.depends_on == (Dependency("afterok", (12,)), Dependency("afterany", (13, 14)),
                               Dependency("afternotok", (15,)))
    assert spec.array == ArrayRange(tuple(range(10)), 2)


def test_a_minimal_spec_gets_every_default(minimal_spec_text):
    spec = parse_spec(minimal_spec_text, "job.yaml")
    assert spec == JobSpec(name="hello", image="busybox")
    assert spec.command == () and spec.workdir is None and dict(spec.env) == {}
    assert spec.resources == Resources(cpus=1.0, memory=1 << 30, gpus=0)
    assert spec.mpi is None and spec.tasks == 1 and spec.network == "host" and spec.volumes == ()
    assert spec.placement == Placement(None, {}, (), "pack")
    assert spec.time_limit is None and spec.priority == 0 and spec.requeue is True
    assert spec.depends_on == () and spec.array is None


@pytest.mark.parametrize(("record", "cls"), [(RESOURCES, Resources), (PLACEMENT, Placement), (MPI, Mpi)])
def test_the_field_table_and_the_dataclasses_agree_on_names_and_defaults(record, cls):
    table = {f.name: f for f in record.fields}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(table) == set(fields)
    for name, spec in table.items():
        default = fields[name].default
        if default is dataclasses.MISSING and fields[name].default_factory is not dataclasses.MISSING:
            default = fields[name].default_factory()
        if not spec.required:
            assert (spec.default if spec.default is not None else None) == default or spec.default == {}, name


def test_the_job_table_lists_exactly_the_jobspec_fields():
    assert [f.name for f in JOB.fields] == [f.name for f in dataclasses.fields(JobSpec)]
    defaults = {f.name: f.default for f in dataclasses.fields(JobSpec)}
    for spec in JOB.fields:
        if spec.default not in (None, {}) and not isinstance(defaults[spec.name], dataclasses._MISSING_TYPE):
            assert spec.default == defaults[spec.name], spec.name
    assert DEFAULT_MEMORY == 1 << 30


@pytest.mark.parametrize(("line", "attribute", "expected"), [
    ("command: sleep 60", "command", ("sleep", "60")),
    ("command: \"sh -c 'echo a b'\"", "command", ("sh", "-c", "echo a b")),
    ("command: [sleep, 10]", "command", ("sleep", "10")),
    ("command: [echo, 1.50, yes]", "command", ("echo", "1.50", "yes")),
    ("time_limit: 30:00", "time_limit", 1800),
    ("time_limit: 90", "time_limit", 5400),
    ("time_limit: 90s", "time_limit", 90),
    ("time_limit: 2h", "time_limit", 7200),
    ("time_limit: 1d", "time_limit", 86400),
    ("time_limit: 1-00:00:00", "time_limit", 86400),
    ("tasks: 3", "tasks", 3),
    ("priority: 10", "priority", 10),
    ("requeue: no", "requeue", False),
    ("network: none", "network", "none"),
    ("array: 1,3,5", "array", ArrayRange((1, 3, 5))),
    ("array: 7", "array", ArrayRange((7,))),
    ("volumes: /scratch:/scratch", "volumes", (Volume("/scratch", "/scratch"),)),
    ("depends_on: {afterok: [3, 4]}", "depends_on", (Dependency("afterok", (3, 4)),)),
    ("env: {N: 4}", "env", {"N": "4"}),
    ("mpi:", "mpi", None),
    ("workdir: /", "workdir", "/"),
])
def test_one_field_is_read_as_written(line, attribute, expected):
    spec = parse_spec(f"name: a\nimage: busybox\n{line}\n", "job.yaml", base_dir="/jobs")
    value = getattr(spec, attribute)
    assert (dict(value) if attribute == "env" else value) == expected


@pytest.mark.parametrize(("line", "expected"), [
    ("cpus: 0.5", Resources(cpus=0.5)), ("cpus: \"2\"", Resources(cpus=2.0)),
    ("memory: 1.5G", Resources(memory=3 * 2**29)), ("memory: 4GiB", Resources(memory=4 * 2**30)),
    ("memory: 2097152", Resources(memory=2 * 2**20)), ("gpus: 2", Resources(gpus=2)),
])
def test_resources_are_read_with_units(line, expected):
    spec = parse_spec(f"name: a\nimage: busybox\nresources:\n  {line}\n", "job.yaml")
    assert spec.resources == expected


@pytest.mark.parametrize("image", ["busybox", "mpi:bookworm", "localhost:5000/lab/solver:1.2",
                                   "docker.io/library/debian:bookworm-slim",
                                   "busybox@sha256:" + "a" * 64])
def test_image_references_are_accepted(image):
    assert parse_spec(f"name: a\nimage: {image}\n", "job.yaml").image == image


def test_relative_volume_sources_start_at_the_job_files_directory(tmp_path):
    job = tmp_path / "sub" / "job.yaml"
    job.parent.mkdir()
    job.write_text("name: a\nimage: busybox\nvolumes: [./data:/data, ..:/up:ro]\n")
    spec = load_spec(str(job))
    assert spec.volumes == (Volume(str(tmp_path / "sub" / "data"), "/data"), Volume(str(tmp_path), "/up", True))


def test_yaml_anchors_and_merge_keys_are_followed():
    text = ("name: a\nimage: busybox\nx-common: &r {cpus: 2}\n")
    with pytest.raises(SpecError, match="unknown key 'x-common'"):
        parse_spec(text, "job.yaml")
    text = "name: a\nimage: busybox\nresources:\n  <<: {cpus: 2, memory: 2G}\n  memory: 4G\n"
    assert parse_spec(text, "job.yaml").resources == Resources(cpus=2.0, memory=4 * 2**30)


def test_overrides_change_fields_before_validation(full_spec_text):
    spec = parse_spec(full_spec_text, "job.yaml", ["resources.memory=4G", "mpi.ranks=8", "placement.nodes=4",
                                                   "command=[sleep, '60']", "env.NEW=x", "volumes.0=/a:/b"],
                      base_dir="/j")
    assert spec.resources.memory == 4 * 2**30
    assert spec.mpi.ranks == 8 and spec.placement.nodes == 4
    assert spec.command == ("sleep", "60")
    assert spec.env["NEW"] == "x"
    assert spec.volumes[0] == Volume("/a", "/b")


def test_an_override_can_add_a_whole_section(minimal_spec_text):
    spec = parse_spec(minimal_spec_text, "job.yaml", ["mpi.ranks=4", "mpi.ranks_per_node=2"])
    assert spec.mpi == Mpi(4, 2) and spec.fixed_node_count == 2 and spec.units == 4


def test_an_empty_override_unsets_an_optional_field(full_spec_text):
    spec = parse_spec(full_spec_text, "job.yaml", ["mpi=", "placement.nodes=", "time_limit="], base_dir="/j")
    assert spec.mpi is None and spec.placement.nodes is None and spec.time_limit is None


def test_derived_numbers_for_placement():
    spec = JobSpec("a", "busybox", mpi=Mpi(5, 2), resources=Resources(cpus=0.5, memory=100))
    assert spec.is_mpi and spec.container_per_node and spec.units == 5 and spec.fixed_node_count == 3
    assert spec.split_ranks([4, 4, 4]) == (2, 2, 1)
    assert spec.resources.times(2) == Resources(cpus=1.0, memory=200, gpus=0)
    fill = JobSpec("a", "busybox", mpi=Mpi(5))
    assert fill.fixed_node_count is None and fill.split_ranks([4, 4]) == (4, 1)
    with pytest.raises(ValueError):
        fill.split_ranks([2, 2])
    group = JobSpec("a", "busybox", tasks=3)
    assert not group.is_mpi and not group.container_per_node and group.units == 3 and group.split_ranks([1, 1, 1]) == (1, 1, 1)


def test_to_dict_and_from_dict_round_trip(full_spec_text):
    spec = parse_spec(full_spec_text, "job.yaml", base_dir="/jobs")
    plain = spec.to_dict()
    assert JobSpec.from_dict(plain) == spec
    assert JobSpec.from_dict(JobSpec("a", "busybox").to_dict()) == JobSpec("a", "busybox")


def test_from_dict_checks_again_and_refuses_relative_volumes(full_spec_text):
    plain = parse_spec(full_spec_text, "job.yaml", base_dir="/jobs").to_dict()
    plain["resources"]["memory"] = "lots"
    plain["volumes"][0]["source"] = "./rel"
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict(plain)
    assert [str(p) for p in info.value.problems] == [
        "stored spec: resources.memory: 'lots' is not a size (use e.g. 512M or 4G)",
        ("stored spec: volumes[0]: source './rel' is relative but there is no job file to start from; "
         "write an absolute path"),
    ]


def test_the_printed_form_validates_back_to_the_same_spec(full_spec_text):
    spec = parse_spec(full_spec_text, "job.yaml", base_dir="/jobs")
    text = spec_to_yaml(spec)
    assert "memory: 512M" in text and "time_limit: 93784s" in text
    assert parse_spec(text, "printed.yaml", base_dir="/elsewhere") == spec


def test_a_plain_spec_reads_alike_from_any_mapping_and_sequence_type():
    from types import MappingProxyType

    plain = {"name": "a", "image": "busybox", "command": ["true"], "env": {"K": "v"},
             "resources": {"cpus": 2, "memory": "1G"}, "placement": {"exclude": ["n2"]}}
    other = MappingProxyType({**plain, "command": ("true",), "env": MappingProxyType({"K": "v"}),
                              "placement": MappingProxyType({"exclude": ("n2",)})})
    assert JobSpec.from_dict(other, origin="x") == JobSpec.from_dict(plain, origin="x")


def test_a_plain_spec_with_a_key_that_is_not_text_is_refused():
    with pytest.raises(SpecError, match="key 3 is not text"):
        JobSpec.from_dict({"name": "a", "image": "busybox", "command": ["true"], "env": {3: "v"}})
