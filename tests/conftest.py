"""Fixtures several test packages share."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
