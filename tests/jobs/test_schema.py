"""`rade schema`'s JSON Schema: generated from the validator's own field table, and agreeing with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from jobs.fields import JOB
from jobs.schema import job_schema, job_schema_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_schema_is_draft_2020_12_and_lists_every_field():
    schema = job_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert list(schema["properties"]) == [f.name for f in JOB.fields]
    assert schema["required"] == ["name", "image"]
    assert schema["additionalProperties"] is False
    assert all(entry["description"] for entry in schema["properties"].values())
    assert json.loads(job_schema_text()) == schema


def test_nested_sections_and_defaults_come_from_the_table():
    props = job_schema()["properties"]
    assert set(props["resources"]["properties"]) == {"cpus", "memory", "gpus"}
    assert props["resources"]["properties"]["memory"]["default"] == 1 << 30
    assert props["mpi"]["required"] == ["ranks"]
    assert props["network"]["enum"] == ["host", "none", "bridge"] and props["network"]["default"] == "host"
    assert props["placement"]["properties"]["policy"]["enum"] == ["pack", "spread"]


def test_the_example_specs_match_the_schemas_patterns_and_keys():
    # No JSON Schema library is a dependency: check what a schema error would most often be about.
    props = job_schema()["properties"]
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        assert set(document) <= set(props), path
        assert re.fullmatch(props["name"]["pattern"], document["name"]), path
        assert re.fullmatch(props["image"]["pattern"], document["image"]), path
