"""A shared parent cgroup removed by one container's cleanup while another container is being made under
it: the second is made all the same (the parent made again), on the real cgroup tree."""

from __future__ import annotations

import os
import threading
import uuid

import pytest

from engine.cgroups import Limits, open_cgroup

pytestmark = pytest.mark.root


def test_a_cgroup_is_made_while_its_shared_parent_is_being_removed():
    if os.geteuid() != 0:
        pytest.skip("cgroups need root")
    parent = f"rade-test-{uuid.uuid4().hex[:8]}"  # top-level: shared, removed with its last child
    limits = Limits(cpuset_cpus="0", pids=16)
    errors: list[BaseException] = []
    stop = threading.Event()

    def churn(prefix: str) -> None:
        # Each made and removed alone, so the parent is emptied, removed and made again over and over.
        try:
            for i in range(150):
                if stop.is_set():
                    return
                cgroup = open_cgroup(f"{prefix}-{i}", parent)
                try:
                    cgroup.create()
                    cgroup.apply(limits)
                finally:
                    cgroup.remove()
        except BaseException as err:  # noqa: BLE001 - handed to the test's thread
            errors.append(err)
            stop.set()

    threads = [threading.Thread(target=churn, args=(name,)) for name in ("a", "b")]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        stop.set()
        for path in open_cgroup("x", parent).paths():
            try:
                os.rmdir(os.path.dirname(path))
            except OSError:
                pass
    assert not errors, errors[0]
