"""The engine API without the command line: run, wait, stats, exec, kill, logs, adoption by a new Engine."""

from __future__ import annotations

import signal

import pytest

from engine.api import Engine, rade_env
from engine.containers import logs
from engine.errors import ContainerError

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_api_runs_waits_and_reads_the_log(rade, image_root):
    engine = Engine(image_root)
    started = engine.run("busybox", ["sh", "-c", "echo $RADE_JOB_ID $RADE_NODE; exit 3"], name="api-run",
                         env=rade_env(7, "heat", 0, "n1", ["n1", "n2"]), memory=64 << 20)
    record = engine.wait(started.id)
    assert record.exit_code == 3 and not record.oom_killed
    assert [r.data for r in logs.read(engine.log_path(started.id))] == [b"7 n1"]
    engine.remove(started.id)
    with pytest.raises(ContainerError):
        engine.inspect(started.id)


def test_api_start_error_carries_the_exit_code(rade, image_root):
    engine = Engine(image_root)
    with pytest.raises(ContainerError) as caught:
        engine.run("busybox", ["no-such-binary"])
    assert caught.value.exit_code == 127


def test_api_stats_exec_and_adoption(rade, image_root):
    engine = Engine(image_root)
    started = engine.run("busybox", ["sleep", "60"], labels={"rade.node": "api-test"}, cpuset_cpus="0")
    stats = engine.stats(started.id)
    assert stats.pids >= 1 and stats.memory_current > 0
    assert engine.exec(started.id, ["sh", "-c", "exit 5"]) == 5
    again = Engine(image_root)  # a restarted caller finds it by its labels
    assert [r.id for r in again.adopt({"rade.node": "api-test"})] == [started.id]
    again.kill(started.id, signal.SIGKILL)
    assert again.wait(started.id).exit_code == 137


def test_wait_on_a_container_that_just_exited_reads_its_recorded_end(rade, image_root):
    # A client connecting while the supervisor drains the output of an exited container used to be hung up
    # on at once, before the exit was recorded, and read a record still saying running.
    engine = Engine(image_root)
    for round_ in range(40):
        started = engine.run("busybox", ["sh", "-c", "exit 3"], name=f"quick-{round_}")
        record = engine.wait(started.id)
        assert (record.status.value, record.exit_code) == ("exited", 3), round_
        engine.remove(started.id)
