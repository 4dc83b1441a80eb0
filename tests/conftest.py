"""Fixtures several test packages share."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def busybox_root(tmp_path: Path) -> Path:
    """A fresh state root holding the `busybox` image (bootstrapped from busybox-static), for tests of the
    real engine as root."""
    if os.geteuid() != 0 or not (shutil.which("busybox") or os.path.exists("/bin/busybox")):
        pytest.skip("needs root and busybox-static")
    subprocess.run([sys.executable, "-m", "rade", "--root", str(tmp_path), "image", "bootstrap", "busybox", "busybox"],
                   check=True, capture_output=True, cwd=REPO)
    return tmp_path


@pytest.fixture(autouse=True)
def host_dev_null_stays_a_device() -> Iterator[None]:
    """Fail the test after which the host's /dev/null is no longer the null device (a copy or an unpacking
    that wrote over it), and put the device back so that the tests after it see a sound host."""
    yield
    try:
        st = os.lstat("/dev/null")
        sound = stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    except FileNotFoundError:
        sound = False
    if sound:
        return
    if os.geteuid() == 0:
        with contextlib.suppress(FileNotFoundError):
            os.unlink("/dev/null")
        os.mknod("/dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.chmod("/dev/null", 0o666)
    pytest.fail("the host's /dev/null was replaced during this test (put back)")
