"""`rade attach` to a paused container holds, as `docker attach` does, and the container's output reaches
it once the container is unpaused."""

from __future__ import annotations

import json
import selectors
import subprocess
import time

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

COUNTER = ("sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done")


def _line(stream, timeout: float = 15.0) -> bytes:
    """One line from the attach's stdout, or the test fails (never hangs)."""
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(deadline - time.monotonic()):
                return stream.readline()
    raise AssertionError("no output reached the attached client")


def test_attach_to_a_paused_container_gets_output_after_unpause(rade):
    rade("run", "-d", "--network", "none", "--name", "att-paused", "busybox", *COUNTER)
    rade("pause", "att-paused")
    logged = rade.out("logs", "att-paused").split()
    last_before = int(logged[-1]) if logged else 0

    attach = rade.popen("attach", "att-paused", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = json.loads(rade.out("inspect", "att-paused"))[0]["State"]
    assert state["Status"] == "paused"
    assert attach.poll() is None, attach.stderr.read().decode()

    rade("unpause", "att-paused")
    first = int(_line(attach.stdout))
    assert first > last_before  # output written after the unpause, not a replay of the log
    assert int(_line(attach.stdout)) == first + 1

    rade("kill", "att-paused")
    assert attach.wait(timeout=30) == 137
    rade("rm", "att-paused")


def test_attach_to_a_stopped_container_is_refused_in_one_line(rade):
    rade("create", "--name", "att-created", "busybox", "true")
    result = rade("attach", "att-created", check=False)
    assert result.returncode == 125
    assert result.stderr.decode().startswith("rade: error: container att-created is not running")
    rade("rm", "att-created")
