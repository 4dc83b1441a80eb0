"""Job arrays as users name and see them: `123` for a whole array (or a plain job), `123_7` for one index,
and the queue folded so an array's waiting jobs take one line (`123_[5-99%10]`), as Slurm shows them.

An array is named by its first job's id: every member records it (`array_of`) and its own index. Pure
functions over rows and records; the scheduler resolves names with them, `rade queue` folds with them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.errors import UsageError
from jobs.units import ArrayRange, format_array

_REF = re.compile(r"^(\d+)(?:_(\d+))?$")


@dataclass(frozen=True, slots=True)
class JobRef:
    """A job as a user names it: `job` alone, or index `index` of the array `job` names."""

    job: int
    index: int | None = None

    def __str__(self) -> str:
        return str(self.job) if self.index is None else f"{self.job}_{self.index}"


def parse_job_ref(text: str | int) -> JobRef:
    match = _REF.match(str(text).strip())
    if match is None:
        raise UsageError(f"'{text}' is not a job id", "write a job id (123) or an array index of one (123_7)")
    return JobRef(int(match.group(1)), int(match.group(2)) if match.group(2) is not None else None)


def resolve(ref: JobRef, jobs: Iterable[Any]) -> list[int]:
    """The ids a name stands for among `jobs` (records with id, array_of, array_index): every member of the
    array `ref.job` names (or just that job), or the one member with the index."""
    if ref.index is None:
        ids = [job.id for job in jobs if job.array_of == ref.job]
        return sorted(ids) if ids else [ref.job]
    return [job.id for job in jobs if job.array_of == ref.job and job.array_index == ref.index]


def fold_queue(rows: Sequence[Mapping[str, Any]], limits: Mapping[int, int | None] | None = None
               ) -> list[dict[str, Any]]:
    """Queue rows with each array's PENDING members folded into one row, where the first of them stood.

    A row needs `id`, `state`, `array_of` and `array_index`; running and ended members keep rows of their
    own, labelled `123_4`. `limits` gives an array's `%N` to show with its pending indices."""
    limits = limits or {}
    pending: dict[int, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("array_of") is not None and row["state"] == "PENDING":
            pending.setdefault(row["array_of"], []).append(row)
    out: list[dict[str, Any]] = []
    placed: set[int] = set()
    for row in rows:
        array = row.get("array_of")
        if array is None:
            out.append({**row, "label": str(row["id"])})
        elif row["state"] != "PENDING":
            out.append({**row, "label": f"{array}_{row['array_index']}"})
        elif array not in placed:
            placed.add(array)
            members = pending[array]
            indices = ArrayRange(tuple(m["array_index"] for m in members), limits.get(array))
            label = f"{array}_[{format_array(indices)}]" if len(members) > 1 or limits.get(array) else \
                f"{array}_{members[0]['array_index']}"
            out.append({**row, "label": label, "folded": [m["id"] for m in members]})
    return out
