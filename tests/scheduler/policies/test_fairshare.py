"""Multifactor priority: weights times the job's own priority, its age and its user's fair share."""

from __future__ import annotations

import pytest

from scheduler.fairshare import PendingJob, PriorityWeights, UsageLedger, fairshare_factor, priorities

HOUR = 3600.0


def test_usage_halves_every_half_life():
    ledger = UsageLedger(half_life=HOUR)
    ledger.add("alice", 1000.0, at=0.0)
    assert ledger.usage("alice", 0.0) == pytest.approx(1000.0)
    assert ledger.usage("alice", HOUR) == pytest.approx(500.0)
    ledger.add("alice", 500.0, at=HOUR)
    assert ledger.usage("alice", 3 * HOUR) == pytest.approx(250.0)


def test_fairshare_factor_is_two_to_the_minus_usage_over_share():
    usage = {"alice": 300.0, "bob": 100.0}
    assert fairshare_factor("carol", usage, ["carol"]) == pytest.approx(1.0)
    assert fairshare_factor("alice", usage, []) == pytest.approx(2 ** -1.5)
    assert fairshare_factor("bob", usage, []) == pytest.approx(2 ** -0.5)
    assert fairshare_factor("alice", {}, ["alice"]) == 1.0


def test_equal_jobs_of_two_users_are_ordered_by_recent_usage():
    ledger = UsageLedger(half_life=HOUR)
    ledger.add("heavy", 10_000.0, at=0.0)
    ledger.add("light", 100.0, at=0.0)
    jobs = [PendingJob(1, "heavy", 0, 10.0), PendingJob(2, "light", 0, 20.0)]
    got = priorities(jobs, ledger, PriorityWeights(), now=30.0)
    assert got[2].priority > got[1].priority
    assert got[2].fairshare > got[1].fairshare


def test_old_usage_decays_so_the_order_turns():
    ledger = UsageLedger(half_life=HOUR)
    ledger.add("alice", 1000.0, at=0.0)
    ledger.add("bob", 100.0, at=10 * HOUR)
    jobs = [PendingJob(1, "alice", 0, 0.0), PendingJob(2, "bob", 0, 0.0)]
    assert priorities(jobs, ledger, PriorityWeights(), now=0.5 * HOUR)[1].fairshare < 0.5
    later = priorities(jobs, ledger, PriorityWeights(), now=10 * HOUR)
    assert later[1].priority > later[2].priority


def test_explicit_priority_outranks_fair_share_and_age_grows_to_one():
    ledger = UsageLedger(half_life=HOUR)
    ledger.add("alice", 1e6, at=0.0)
    jobs = [PendingJob(1, "alice", 5, 0.0), PendingJob(2, "bob", 0, 0.0)]
    weights = PriorityWeights(max_age=100.0)
    got = priorities(jobs, ledger, weights, now=1000.0)
    assert got[1].priority > got[2].priority
    assert got[1].job == 1.0 and got[2].job == 0.0 and got[1].age == 1.0


def test_zero_fairshare_weight_leaves_priority_then_age():
    ledger = UsageLedger()
    ledger.add("alice", 1e6, at=0.0)
    weights = PriorityWeights(fairshare=0.0)
    got = priorities([PendingJob(1, "alice", 0, 0.0), PendingJob(2, "bob", 0, 50.0)], ledger, weights, now=100.0)
    assert got[1].fairshare == 0.0 and got[1].priority >= got[2].priority
