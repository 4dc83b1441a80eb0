"""Resource limits enforced by the kernel on a launched container, measured by the cgroup's own counters."""

from __future__ import annotations

import time

import pytest

from engine.cgroups import Limits

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_memory_hog_at_64m_is_oom_killed_and_reported(launcher):
    hog = ["awk", "BEGIN { for (i = 0; ; i++) a[i] = sprintf(\"%4096d\", i) }"]
    config = launcher.config(hog, limits=Limits(memory=64 * 1024 * 1024, memory_swap=64 * 1024 * 1024))
    process = launcher.start(config)
    assert process.wait() == 137
    assert process.oom_killed()
    assert process.stats().memory_peak <= 64 * 1024 * 1024
    process.cleanup()


def test_container_under_its_memory_limit_is_not_reported_oom(launcher):
    process = launcher.start(launcher.config(["true"], limits=Limits(memory=64 * 1024 * 1024)))
    assert process.wait() == 0
    assert not process.oom_killed()


def test_busy_loop_at_half_a_cpu_uses_about_half_a_cpu(launcher):
    process = launcher.start(launcher.config(["sh", "-c", "while :; do :; done"], limits=Limits(cpus=0.5)))
    time.sleep(0.2)  # past start-up
    start_cpu, start = process.stats().cpu_seconds, time.monotonic()
    time.sleep(2.0)
    used = (process.stats().cpu_seconds - start_cpu) / (time.monotonic() - start)
    process.kill(9)
    process.wait()
    assert 0.40 <= used <= 0.60, f"used {used:.2f} CPUs"


def test_pids_limit_stops_a_fork_bomb(launcher):
    bomb = "for i in $(seq 100); do sleep 1 & done 2>/dev/null; echo forked; wait"
    config = launcher.config(["sh", "-c", bomb], limits=Limits(pids=20))
    process = launcher.start(config)
    peak = 0
    while process.poll() is None:
        peak = max(peak, process.stats().pids)
        time.sleep(0.01)
    assert 0 < peak <= 20
