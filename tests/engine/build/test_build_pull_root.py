"""`rade build` pulls a base image that is not local (`FROM image`, `COPY --from=image`) from its registry,
as `docker build` does: tested against the real Debian docker-registry on loopback, into an empty root."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.engine.containers.conftest import Rade, container_ids, leftovers
from tests.engine.registry.conftest import running_registry

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def registry_with_busybox(rade, tmp_path):
    """A registry on 127.0.0.1 holding busybox as base/busybox:v1 and tools/box:v2 (pushed from the shared
    root); its host."""
    work = tmp_path / "registry"
    work.mkdir()
    with running_registry(work) as server:
        rade("push", "busybox", f"{server.host}/base/busybox:v1")
        rade("push", "busybox", f"{server.host}/tools/box:v2")
        yield server.host


@pytest.fixture
def empty_root(tmp_path) -> Path:
    """A state root with no image at all; checked for leftovers and removed after the test."""
    root = tmp_path / "empty-root"
    root.mkdir()
    try:
        yield root
    finally:
        made = container_ids(root)
        left = leftovers(root, made)
        shutil.rmtree(root, ignore_errors=True)
        assert not made and not left, f"left behind: {made} {left}"


def test_from_and_copy_from_of_images_not_local_are_pulled_then_built_on(registry_with_busybox, empty_root,
                                                                        tmp_path):
    host = registry_with_busybox
    fresh = Rade(empty_root)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Containerfile").write_text(
        f"FROM {host}/base/busybox:v1\n"
        "RUN echo built-on-pulled > /made.txt\n"
        f"COPY --from={host}/tools/box:v2 /bin/busybox /from-other/busybox\n")
    result = fresh("build", "-t", "pulled-app:1", str(context))
    out = result.stdout.decode()
    assert f"Trying to pull {host}/base/busybox:v1..." in out
    assert f"Trying to pull {host}/tools/box:v2..." in out
    assert out.count("Digest: sha256:") == 2
    images = fresh.out("images")
    assert f"{host}/base/busybox" in images and f"{host}/tools/box" in images and "pulled-app" in images
    made = fresh("run", "--rm", "--network", "none", "pulled-app:1", "cat", "/made.txt")
    assert made.stdout == b"built-on-pulled\n"
    assert fresh("run", "--rm", "--network", "none", "pulled-app:1", "/from-other/busybox", "true").returncode == 0

    # Local now: a second build pulls nothing.
    again = fresh("build", "-t", "pulled-app:2", str(context)).stdout.decode()
    assert "Trying to pull" not in again
    for ref in ("pulled-app:1", "pulled-app:2", f"{host}/base/busybox:v1", f"{host}/tools/box:v2"):
        fresh("rmi", ref, check=False)


def test_a_base_image_the_registry_lacks_is_one_line_naming_the_from(registry_with_busybox, empty_root, tmp_path):
    host = registry_with_busybox
    fresh = Rade(empty_root)
    (tmp_path / "Containerfile").write_text(f"FROM {host}/base/absent:v1\nRUN true\n")
    result = fresh("build", str(tmp_path), check=False)
    err = result.stderr.decode()
    assert result.returncode == 125 and err.count("\n") == 1, err
    assert err.startswith(f"rade: error: {tmp_path}/Containerfile:1: FROM {host}/base/absent:v1 is not a local "
                          "image, and pulling it failed")
    assert json.loads(fresh.out("images", "--json") or "[]") == []


def test_pull_always_sees_a_moved_tag_that_the_default_keeps_stale(registry_with_busybox, empty_root, tmp_path):
    host = registry_with_busybox
    fresh = Rade(empty_root)
    (tmp_path / "Containerfile").write_text(f"FROM {host}/base/busybox:v1\nRUN cat /marker 2>/dev/null || true\n")
    fresh("build", "-t", "app:1", str(tmp_path))  # pulls the missing base
    # The tag moves in the registry: now an image holding /marker.
    marked = tmp_path / "marked"
    marked.mkdir()
    (marked / "Containerfile").write_text(f"FROM {host}/base/busybox:v1\nRUN echo moved > /marker\n")
    fresh("build", "-t", "marked:1", str(marked))
    fresh("push", "marked:1", f"{host}/base/busybox:v1")
    fresh("rmi", "marked:1")
    fresh("tag", "app:1", f"{host}/base/busybox:v1")  # the local copy is now neither

    stale = fresh("build", "-t", "app:2", str(tmp_path)).stdout.decode()
    assert "Trying to pull" not in stale
    fresh_out = fresh("build", "--pull", "-t", "app:3", str(tmp_path)).stdout.decode()
    assert f"Trying to pull {host}/base/busybox:v1..." in fresh_out and fresh_out.count("Trying to pull") == 1
    seen = fresh("run", "--rm", "--network", "none", "app:3", "cat", "/marker")
    assert seen.stdout == b"moved\n"
    for ref in ("app:1", "app:2", "app:3", f"{host}/base/busybox:v1"):
        fresh("rmi", ref, check=False)


def test_pull_never_refuses_a_missing_base_without_asking_the_registry(registry_with_busybox, empty_root, tmp_path):
    host = registry_with_busybox
    fresh = Rade(empty_root)
    (tmp_path / "Containerfile").write_text(f"FROM {host}/base/busybox:v1\nRUN true\n")
    result = fresh("build", "--pull=never", str(tmp_path), check=False)
    err = result.stderr.decode()
    assert result.returncode == 125 and err.count("\n") == 1, err
    assert f"Containerfile:1: FROM {host}/base/busybox:v1 is not a local image" in err
    assert "Trying to pull" not in result.stdout.decode()
    assert json.loads(fresh.out("images", "--json") or "[]") == []
