"""The job spec as JSON Schema (draft 2020-12), for editors that complete and check job YAML as it is typed.

Generated from the same field table the validator walks (`jobs.fields.JOB`), so the two cannot disagree
on which keys exist, what they hold, or their defaults. The validator stays the judge: it also reads the
cross-field rules (ranks per node against ranks...) that JSON Schema cannot say simply.
"""

from __future__ import annotations

import json
from typing import Any

from jobs.fields import JOB

SCHEMA_ID = "https://rade.invalid/schemas/job.json"


def job_schema() -> dict[str, Any]:
    """The schema as a dict."""
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "rade job",
        "description": "A job for the rade scheduler: an image, a command, resources per task, and "
                       "optionally an MPI section.",
    }
    schema.update(JOB.schema())
    return schema


def job_schema_text() -> str:
    """The schema as indented JSON text, ending with a newline."""
    return json.dumps(job_schema(), indent=2) + "\n"
