"""Property tests: whatever text or data a job file holds, loading it gives a JobSpec or a SpecError whose
every problem has a line and a column, never another exception."""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.fields import JOB
from jobs.loader import parse_spec
from jobs.problems import SpecError
from jobs.spec import JobSpec

FULL = {
    "name": "heat", "image": "mpi:bookworm", "command": ["python3", "/opt/heat.py"], "workdir": "/work",
    "env": {"OMP_NUM_THREADS": "1"}, "resources": {"cpus": 1, "memory": "512M", "gpus": 0},
    "mpi": {"ranks": 4, "ranks_per_node": 2, "implementation": "openmpi"}, "network": "host",
    "volumes": ["/scratch:/scratch", "./data:/data:ro"],
    "placement": {"nodes": 2, "constraints": {"arch": "x86_64"}, "exclude": ["n3"], "policy": "pack"},
    "time_limit": "30m", "priority": 0, "requeue": True, "depends_on": [{"afterok": 12}], "array": "0-9",
}
KEYS = [f.name for f in JOB.fields] + ["ranks", "cpus", "memory", "source", "target", "afterok", "x"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=20), st.sampled_from(["0", "-1", "4Gx", "1:30", "0-9%2", "/abs", "./rel", "a:b:c",
                                           "host", "afterok:3", "1.5G", "~", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner,
                                            max_size=4)),
    max_leaves=20,
)


def _load(text: str) -> JobSpec | None:
    """The spec, or None after checking that every problem of the SpecError is located."""
    try:
        return parse_spec(text, "job.yaml", base_dir="/jobs")
    except SpecError as err:
        assert err.problems
        for problem in err.problems:
            assert problem.file == "job.yaml"
            assert problem.line >= 1 and problem.col >= 1, str(problem)
            assert str(problem).startswith(f"job.yaml:{problem.line}:{problem.col}: ")
        return None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_spec_or_located_problems(text):
    _load(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=8))
def test_any_yaml_document_gives_a_spec_or_located_problems(document):
    _load(yaml.safe_dump(document))


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, prefix + (index,))


ALL_PATHS = [path for path in _paths(FULL) if path]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), st.sampled_from(["replace", "delete", "add"]), values),
                min_size=1, max_size=4))
def test_mutations_of_a_valid_spec_give_a_spec_or_located_problems(mutations):
    data = copy.deepcopy(FULL)
    for path, action, value in mutations:
        parent = data
        try:
            for step in path[:-1]:
                parent = parent[step]
            last = path[-1]
            if action == "replace":
                parent[last] = value
            elif action == "delete":
                del parent[last]
            elif isinstance(parent, dict):
                parent[f"{last}x"] = value
            else:
                parent.insert(last, value)
        except (KeyError, IndexError, TypeError, AttributeError):
            continue  # an earlier mutation removed the place this one aims at
    spec = _load(yaml.safe_dump(data))
    if spec is not None:
        assert JobSpec.from_dict(spec.to_dict()) == spec


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 400), st.integers(0, 5), st.text(max_size=3))
def test_text_edits_of_a_valid_spec_give_a_spec_or_located_problems(position, cut, insert):
    text = yaml.safe_dump(FULL, sort_keys=False)
    position %= len(text)
    _load(text[:position] + insert + text[position + cut:])


def test_the_unmutated_spec_is_valid():
    assert _load(yaml.safe_dump(FULL)) is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.lists(st.sampled_from(KEYS + ["0", "1", ""]), min_size=0, max_size=3),
                          st.sampled_from(["=", "", "=="]), st.text(max_size=12)), max_size=3))
def test_any_set_options_give_a_spec_or_problems_naming_the_option(options):
    overrides = [".".join(path) + equals + value for path, equals, value in options]
    try:
        parse_spec(yaml.safe_dump(FULL), "job.yaml", overrides, base_dir="/jobs")
    except SpecError as err:
        for problem in err.problems:
            assert problem.file == "job.yaml" and problem.line >= 1 or problem.file.startswith("--set "), \
                str(problem)
