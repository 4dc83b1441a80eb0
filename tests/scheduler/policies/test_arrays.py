"""Job arrays as users name and see them: 123 and 123_7, and the queue folded to 123_[5-99%10]."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from jobs.errors import UsageError
from scheduler.arrays import JobRef, fold_queue, parse_job_ref, resolve


def test_job_refs_name_a_job_an_array_or_one_index():
    assert parse_job_ref("123") == JobRef(123)
    assert parse_job_ref("123_7") == JobRef(123, 7)
    assert str(JobRef(123, 7)) == "123_7"
    with pytest.raises(UsageError):
        parse_job_ref("123_x")


def members(first: int, count: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(id=first + i, array_of=first, array_index=i) for i in range(count)]


def test_an_array_name_stands_for_every_member_and_an_index_for_one():
    jobs = members(10, 5) + [SimpleNamespace(id=20, array_of=None, array_index=None)]
    assert resolve(JobRef(10), jobs) == [10, 11, 12, 13, 14]
    assert resolve(JobRef(10, 3), jobs) == [13]
    assert resolve(JobRef(20), jobs) == [20]
    assert resolve(JobRef(10, 9), jobs) == []


def test_queue_folds_pending_members_and_keeps_running_ones_apart():
    rows = [{"id": 10 + i, "state": "RUNNING" if i < 2 else "PENDING", "array_of": 10, "array_index": i}
            for i in range(6)]
    rows.insert(3, {"id": 30, "state": "PENDING", "array_of": None, "array_index": None})
    folded = fold_queue(rows, {10: 2})
    assert [r["label"] for r in folded] == ["10_0", "10_1", "10_[2-5%2]", "30"]
    assert folded[2]["folded"] == [12, 13, 14, 15]
