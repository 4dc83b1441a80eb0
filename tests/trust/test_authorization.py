"""Who may do what: the owner is the key's user whatever the request claims; users see and cancel only
their own jobs; only admins drain and resume; volumes only from allowed paths; tasks run as the owner."""

from __future__ import annotations

import os
import time

import pytest

from jobs.messages import Launch, Register, decode, encode
from rade.client import SchedulerRefused

from .secure import agent_socket, register_as, the_agent_key

SPEC = {"name": "t", "image": "busybox", "command": ["true"], "resources": {"cpus": 1, "memory": "64M"}}


def test_owner_is_the_keys_user_not_the_one_the_request_names(secure_scheduler) -> None:
    with secure_scheduler.client("alice") as client:
        (job,) = client.submit(SPEC, user="bob")
        assert client.show(job)["user"] == "alice"
        assert [r["user"] for r in client.queue(user="alice")] == ["alice"]


def test_user_cannot_see_or_cancel_another_users_job_but_the_owner_and_admin_can(secure_scheduler) -> None:
    with secure_scheduler.client("alice") as alice:
        (job,) = alice.submit(SPEC)
    with secure_scheduler.client("bob") as bob:
        with pytest.raises(SchedulerRefused) as refused:
            bob.show(job)
        assert refused.value.message == f"job {job} belongs to alice, not bob"
        with pytest.raises(SchedulerRefused) as refused:
            bob.cancel([job], user="alice")
        assert "belongs to alice" in refused.value.message
        with pytest.raises(SchedulerRefused):
            bob.request(__import__("jobs.messages", fromlist=["Query"]).Query(what="wait", filters={"job": job}))
    with secure_scheduler.client("carol") as carol:
        assert carol.show(job)["state"] == "PENDING"
    with secure_scheduler.client("alice") as alice:
        assert alice.cancel([job]) == {str(job): "cancelled"}
        assert alice.show(job)["state"] == "CANCELLED"


def test_an_admin_cancels_anyones_job(secure_scheduler) -> None:
    with secure_scheduler.client("bob") as bob:
        (job,) = bob.submit(SPEC)
    with secure_scheduler.client("carol") as carol:
        assert carol.cancel([job]) == {str(job): "cancelled"}


def test_only_admins_drain_and_resume(secure_scheduler) -> None:
    assert register_as(secure_scheduler, the_agent_key(secure_scheduler), "n1", wait=10)
    with secure_scheduler.client("alice") as alice:
        for call in (lambda: alice.drain(["n1"], "mine now"), lambda: alice.resume(["n1"])):
            with pytest.raises(SchedulerRefused) as refused:
                call()
            assert refused.value.message.startswith("alice may not")
            assert "only admins may" in refused.value.message
    with secure_scheduler.client("carol") as carol:
        assert carol.drain(["n1"], "maintenance") == {"n1": "drained"}
        assert carol.resume(["n1"]) == {"n1": "resumed"}


def test_volume_outside_the_allowed_paths_is_refused_at_submit_with_the_list(secure_scheduler) -> None:
    scratch = secure_scheduler.root / "scratch"
    (scratch / "data").mkdir()
    with secure_scheduler.client("alice") as alice:
        with pytest.raises(SchedulerRefused) as refused:
            alice.submit({**SPEC, "volumes": ["/etc:/host-etc"]})
        assert refused.value.message == f"volume /etc: not under a path this cluster allows ({scratch})"
        (job,) = alice.submit({**SPEC, "volumes": [f"{scratch}/data:/data"]})
        assert alice.show(job)["user"] == "alice"


def test_volume_reaching_the_state_through_a_symlink_or_dotdot_is_refused(secure_scheduler) -> None:
    scratch = secure_scheduler.root / "scratch"
    os.symlink(secure_scheduler.keys.path, scratch / "keys")
    with secure_scheduler.client("alice") as alice:
        for source in (f"{scratch}/keys", f"{scratch}/../keys"):
            with pytest.raises(SchedulerRefused):
                alice.submit({**SPEC, "volumes": [f"{source}:/k"]})


def test_launch_orders_run_the_task_as_its_owner_with_the_pids_limit(secure_scheduler) -> None:
    context, sock = agent_socket(secure_scheduler, the_agent_key(secure_scheduler), "n2")
    try:
        sock.send(encode(Register(node="n2", cpus=2, memory=1 << 30, gpus=0, arch="x86_64", cpu_ids=(0, 1))))
        assert sock.poll(10_000)
        sock.recv_multipart()
        with secure_scheduler.client("bob") as bob:
            (job,) = bob.submit(SPEC)
        deadline = time.monotonic() + 20
        launch = None
        while launch is None and time.monotonic() < deadline:
            if sock.poll(200):
                launch = next((m for m in map(decode, sock.recv_multipart()) if isinstance(m, Launch)), None)
        assert launch is not None and launch.job_id == job
        assert (launch.uid, launch.gid, launch.pids_limit) == (1002, 1002, 77)
    finally:
        sock.close(0)
        context.term()
