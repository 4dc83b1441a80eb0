"""`rade schema`'s JSON Schema: generated from the validator's own field table, valid as draft 2020-12 for a
real JSON Schema implementation, and accepting every spec the validator accepts."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.fields import JOB
from jobs.loader import parse_spec
from jobs.problems import SpecError
from jobs.schema import job_schema, job_schema_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VALIDATOR = jsonschema.Draft202012Validator(job_schema())


def _section(schema: dict, name: str) -> dict:
    """The schema of an optional section, without the `null` alternative every optional key has."""
    entry = schema["properties"][name]
    return entry["anyOf"][0] if "anyOf" in entry and {"type": "null"} in entry["anyOf"] else entry


def test_the_schema_is_valid_draft_2020_12_and_lists_every_field():
    schema = job_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert list(schema["properties"]) == [f.name for f in JOB.fields]
    assert schema["required"] == ["name", "image"]
    assert schema["additionalProperties"] is False
    assert all(entry["description"] for entry in schema["properties"].values())
    assert json.loads(job_schema_text()) == schema


def test_nested_sections_and_defaults_come_from_the_table():
    schema = job_schema()
    resources = _section(schema, "resources")
    assert set(resources["properties"]) == {"cpus", "memory", "gpus"}
    assert resources["properties"]["memory"]["default"] == 1 << 30
    assert _section(schema, "mpi")["required"] == ["ranks"]
    assert _section(schema, "network")["enum"] == ["host", "none", "bridge"]
    assert schema["properties"]["network"]["default"] == "host"


@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("*.yaml")), ids=lambda p: p.name)
def test_the_example_specs_satisfy_the_schema(path):
    VALIDATOR.validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("document", [
    {"name": "a"},
    {"name": "a", "image": "busybox", "colour": "blue"},
    {"name": "A b", "image": "busybox"},
    {"name": "a", "image": "busybox", "network": "hots"},
    {"name": "a", "image": "busybox", "resources": {"memory": "4Gx"}},
    {"name": "a", "image": "busybox", "mpi": {"ranks_per_node": 2}},
    {"name": "a", "image": "busybox", "depends_on": [{"after": 1}]},
])
def test_the_schema_refuses_what_an_editor_should_flag(document):
    assert not VALIDATOR.is_valid(document)


KEYS = [f.name for f in JOB.fields]
FULL = yaml.safe_load((EXAMPLES / "mpi" / "heat.yaml").read_text())
leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**40), st.floats(-2, 1e6, allow_nan=False),
                 st.sampled_from(["0", "4G", "512", "1.5", "30m", "2 hours", "1:30", "0-9%2", "/abs", "./rel:/x",
                                  "/a:/b:ro", "afterok:3", "host", "spread", "mpich", "x", "", "1_0", "n1"]))
values = st.recursive(leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(KEYS + ["ranks", "cpus", "memory", "source", "target", "afterok", "nodes"]),
                    inner, max_size=3)), max_leaves=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=5))
def test_every_spec_the_validator_accepts_satisfies_the_schema(changes):
    document = {**FULL, **changes}
    text = yaml.safe_dump(document)
    try:
        parse_spec(text, "job.yaml", base_dir="/jobs")
    except SpecError:
        return
    errors = [error.message for error in VALIDATOR.iter_errors(yaml.safe_load(text))]
    assert not errors, (text, errors)
