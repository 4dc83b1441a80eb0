"""The cgroup v2 driver on a real pure-v2 kernel: boot the guest of guest.py and run guest_v2_checks.py
there (cpu.max throttling, OOM kills, pids.max, freeze, cgroup.kill, a full container launch, `rade run`).

The guest's console, pytest's report included, is printed when the test fails.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from .guest import GuestUnavailable, boot

pytestmark = [pytest.mark.slow, pytest.mark.root]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
CHECKS = HERE / "guest_v2_checks.py"


def test_v2_driver_passes_on_a_pure_cgroup_v2_kernel():
    if os.geteuid() != 0:
        pytest.skip("needs root: the guest's checks create cgroups and containers")
    # The guest's / is the host's, so this very interpreter (the repository's venv) runs there as is.
    command = (f"{sys.executable} -m pytest -p no:cacheprovider --color=no -q -s -rfEs "
               f"{CHECKS.relative_to(REPO)} 2>&1")
    try:
        run = boot(command, str(REPO), timeout=480)
    except GuestUnavailable as why:
        pytest.skip(f"cannot boot the cgroup v2 guest here: {why}")
    summary = re.findall(r"^=*\s*(\d+ passed.*?)\s*=*$", run.console, re.MULTILINE)
    print(f"guest ({run.accel}):\n{run.console}")
    assert run.status == 0, f"the guest's pytest exited {run.status}"
    assert summary and "failed" not in summary[-1] and "skipped" not in summary[-1], summary
    passed = int(summary[-1].split()[0])
    assert passed == _count_checks(), f"expected every check to run, got {summary[-1]}"


def _count_checks() -> int:
    return len(re.findall(r"^def test_", CHECKS.read_text(), re.MULTILINE))
