"""`rade image bootstrap debian:SUITE` runs debootstrap minbase from the machine's Debian mirror once, and
the second bootstrap reuses the cached root filesystem."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from engine.images.bootstrap import bootstrap_debian

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_debian_minbase_image_is_built_once_and_cached(store) -> None:
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed")
    image = bootstrap_debian(store, "bookworm", "debian:bookworm")
    layer = image.layer_dirs()[0]
    assert Path(os.path.join(layer, "etc/debian_version")).read_text().startswith("12")
    assert os.access(os.path.join(layer, "usr/bin/bash"), os.X_OK)
    assert os.listdir(os.path.join(layer, "dev")) == []
    assert not any(name.endswith(".deb") for name in os.listdir(os.path.join(layer, "var/cache/apt/archives")))
    assert image.runtime_config["Cmd"] == ["bash"]
    cache = os.path.join(store.root, "cache")
    record = next(os.path.join(cache, n) for n in os.listdir(cache) if n.endswith(".json"))
    stamp = os.stat(record).st_mtime_ns
    again = bootstrap_debian(store, "bookworm", "debian:12")
    assert again.id == image.id and set(again.repo_tags) == {"debian:bookworm", "debian:12"}
    assert os.stat(record).st_mtime_ns == stamp  # debootstrap did not run again
