"""What a submission becomes on its way in: the spec the client sends without its defaults reads back to
the same job, and the demand taken from the checked spec is the one read back from the database."""

from __future__ import annotations

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from jobs.errors import RadeError
from jobs.spec import JobSpec
from rade.client import wire_spec
from scheduler.resources import demand_from_spec, demand_of

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
LABELS = st.dictionaries(st.sampled_from(["arch", "rack", "gpu"]), st.sampled_from(["x86_64", "r1", "a100"]),
                         max_size=2)


@st.composite
def specs(draw) -> dict:
    """Plain specs as `JobSpec.to_dict()` gives them: every field there, defaults and all."""
    data: dict = {"name": draw(NAMES), "image": draw(st.sampled_from(["busybox", "mpi:bookworm"])),
                  "command": draw(st.lists(st.sampled_from(["sleep", "1", "true", ""]), max_size=3)),
                  "resources": {"cpus": draw(st.sampled_from([1, 1.0, 0.5, 2, 3.25])),
                                "memory": draw(st.sampled_from(["1G", "512M", 1 << 30])),
                                "gpus": draw(st.integers(0, 2))},
                  "env": draw(st.dictionaries(st.sampled_from(["A", "OMP_NUM_THREADS"]), st.sampled_from(["", "1"]),
                                              max_size=2)),
                  "placement": {"constraints": draw(LABELS), "exclude": draw(st.lists(NAMES, max_size=2)),
                                "policy": draw(st.sampled_from(["pack", "spread"]))},
                  "priority": draw(st.integers(-3, 3)), "requeue": draw(st.booleans()),
                  "network": draw(st.sampled_from(["host", "none", "bridge"]))}
    if draw(st.booleans()):
        data["mpi"] = {"ranks": draw(st.integers(1, 8)), "ranks_per_node": draw(st.sampled_from([None, 1, 2])),
                       "implementation": draw(st.sampled_from(["openmpi", "mpich"]))}
        if data["mpi"]["ranks_per_node"] and data["mpi"]["ranks_per_node"] > data["mpi"]["ranks"]:
            data["mpi"]["ranks_per_node"] = None
    else:
        data["tasks"] = draw(st.integers(1, 4))
    if draw(st.booleans()):
        data["time_limit"] = draw(st.sampled_from(["30m", "2h", "90s"]))
    if draw(st.booleans()):
        data["array"] = draw(st.sampled_from(["0-3", "1-9%2", "0,4,8"]))
    try:
        return JobSpec.from_dict(data).to_dict()
    except RadeError:
        reject()  # rules that tie fields together (an MPI job across nodes needs a network...)


@settings(max_examples=150, deadline=None)
@given(specs())
def test_a_spec_sent_without_its_defaults_reads_back_to_the_same_job(plain):
    lean = wire_spec(plain)
    assert JobSpec.from_dict(lean) == JobSpec.from_dict(plain)
    assert len(lean) <= len(plain)


@settings(max_examples=150, deadline=None)
@given(specs())
def test_the_demand_of_a_checked_spec_is_the_demand_read_back_from_its_plain_form(plain):
    checked = JobSpec.from_dict(plain)
    assert demand_of(7, checked) == demand_from_spec(7, checked.to_dict())


def test_the_canonical_bench_spec_loses_everything_its_defaults_say():
    plain = JobSpec.from_dict({"name": "a", "image": "busybox", "command": ["sleep", "1"],
                               "resources": {"cpus": 1, "memory": "512M"}}).to_dict()
    assert wire_spec(plain) == {"name": "a", "image": "busybox", "command": ["sleep", "1"],
                                "resources": {"memory": 512 << 20}}


@pytest.mark.parametrize("wrong", [
    {"name": "a", "image": "b", "mpi": {}},            # an empty mpi section is an error, not "no mpi"
    {"name": "a", "image": "b", "tasks": True},         # True == 1, but a boolean is no task count
    {"name": "a", "image": "b", "requeue": 1},          # 1 == True, but not a boolean
    {"name": None, "image": "b"},                       # a required field stays, null or not
    {"name": "a", "image": "b", "resources": {"cpu": 2}},  # an unknown key stays for the scheduler to name
])
def test_a_wrong_spec_is_sent_as_wrong_as_it_was_written(wrong):
    with pytest.raises(RadeError) as sent:
        JobSpec.from_dict(wire_spec(wrong))
    with pytest.raises(RadeError) as written:
        JobSpec.from_dict(wrong)
    assert sent.value.message == written.value.message


def test_volumes_that_are_no_list_are_left_to_the_spec_check_which_refuses_them():
    from scheduler.access import Access

    access = Access(("root",), (), ("/scratch",), ())
    access.check_volumes({"name": "a", "image": "b", "volumes": True})  # no TypeError: nothing to look at
    with pytest.raises(RadeError, match="volumes"):
        JobSpec.from_dict(wire_spec({"name": "a", "image": "b", "volumes": True}))
