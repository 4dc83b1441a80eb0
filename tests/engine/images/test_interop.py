"""Interoperability with the real tools: what umoci + skopeo make loads into rade, and what rade saves is
accepted by `skopeo inspect` and `podman load` (podman in a private store), and back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from engine.images.formats import ArchiveFormat, load_images, save_images
from engine.images.store import ImageStore

pytestmark = [pytest.mark.root, pytest.mark.slow]


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (Debian package {tool})")


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done.stdout


@pytest.fixture
def podman():
    """podman with a private store (vfs: no mounts to leave behind); its runroot path must stay short."""
    need("podman")
    private = tempfile.mkdtemp(prefix="rade-pm-")
    base = ["podman", "--root", f"{private}/root", "--runroot", f"{private}/run", "--storage-driver", "vfs",
            "--events-backend", "none", "--cgroup-manager", "cgroupfs"]
    try:
        yield lambda *args: run(*base, *args)
    finally:
        shutil.rmtree(private, ignore_errors=True)


@pytest.fixture
def umoci_layout(tmp_path):
    """An OCI layout made by umoci: an empty base plus a layer holding /etc/hello.txt, Cmd ["sh"]."""
    need("umoci")
    layout = tmp_path / "umoci"
    hello = tmp_path / "hello.txt"
    hello.write_text("hello from umoci\n")
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:v1")
    run("umoci", "insert", "--image", f"{layout}:v1", str(hello), "/etc/hello.txt")
    run("umoci", "config", "--image", f"{layout}:v1", "--config.cmd", "sh")
    return layout


def test_skopeo_copies_of_an_umoci_image_load_into_rade(umoci_layout, tmp_path) -> None:
    need("skopeo")
    docker_tar = tmp_path / "docker.tar"
    oci_tar = tmp_path / "oci.tar"
    run("skopeo", "copy", f"oci:{umoci_layout}:v1", f"docker-archive:{docker_tar}:umoci/hello:v1")
    run("skopeo", "copy", f"oci:{umoci_layout}:v1", f"oci-archive:{oci_tar}:umoci/hello:v2")
    store = ImageStore(str(tmp_path / "root"))
    for source, name in ((docker_tar, "umoci/hello:v1"), (oci_tar, "umoci/hello:v2"), (umoci_layout, None)):
        loaded = load_images(store, str(source))
        image = loaded[0].image
        if name:
            assert loaded[0].tags == (name,)
        assert image.runtime_config.get("Cmd") == ["sh"]
        merged = [os.path.join(d, "etc/hello.txt") for d in image.layer_dirs()]
        assert any(os.path.exists(p) and Path(p).read_text() == "hello from umoci\n" for p in merged)


@pytest.fixture
def busybox_image(tmp_path):
    from engine.images.bootstrap import bootstrap_busybox

    store = ImageStore(str(tmp_path / "root"))
    return store, bootstrap_busybox(store, "rade/busybox:1")


@pytest.mark.parametrize(("fmt", "transport"), [(ArchiveFormat.DOCKER_ARCHIVE, "docker-archive"),
                                                (ArchiveFormat.OCI_ARCHIVE, "oci-archive")])
def test_what_rade_saves_passes_skopeo_inspect_and_podman_load(busybox_image, tmp_path, podman, fmt,
                                                               transport) -> None:
    need("skopeo")
    store, image = busybox_image
    out = tmp_path / f"saved-{transport}.tar"
    save_images(store, ["rade/busybox:1"], str(out), fmt)
    info = json.loads(run("skopeo", "inspect", f"{transport}:{out}"))
    assert info["Layers"] and info["Env"][0].startswith("PATH=") and info["Architecture"] == "amd64"
    config = json.loads(run("skopeo", "inspect", "--config", f"{transport}:{out}"))
    assert config["rootfs"]["diff_ids"] == list(image.diff_ids)
    assert "rade/busybox:1" in podman("load", "-i", str(out))
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    assert "rade/busybox:1" in listed and image.id[7:19] in listed


def test_podman_save_of_a_rade_image_loads_back_into_rade(busybox_image, tmp_path, podman) -> None:
    store, image = busybox_image
    out = tmp_path / "rade.tar"
    save_images(store, ["rade/busybox:1"], str(out))
    podman("load", "-i", str(out))
    for fmt in ("docker-archive", "oci-archive"):
        back = tmp_path / f"podman-{fmt}.tar"
        podman("save", "--format", fmt, "-o", str(back), image.id[7:19])
        other = ImageStore(str(tmp_path / f"root-{fmt}"))
        loaded = load_images(other, str(back))[0].image
        assert loaded.diff_ids == image.diff_ids
        assert os.access(os.path.join(loaded.layer_dirs()[0], "bin/busybox"), os.X_OK)
