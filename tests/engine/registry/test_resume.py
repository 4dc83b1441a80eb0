"""Downloads cut part-way resume with a Range request, busy answers are asked again, and downloads that
keep failing fail cleanly."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.images.store import ImageStore
from rade.cli import main

from .conftest import RegistryServer
from .faulty_proxy import FaultyProxy

pytestmark = pytest.mark.slow


@pytest.fixture
def pushed(registry: RegistryServer, umoci_layout: Path) -> str:
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{umoci_layout}:v1",
                    f"docker://{registry.host}/test/app:v1"], check=True, capture_output=True)
    index = json.loads((umoci_layout / "index.json").read_text())
    manifest = json.loads((umoci_layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    return manifest["config"]["digest"]


@pytest.fixture
def proxy(request: pytest.FixtureRequest, registry: RegistryServer) -> Iterator[FaultyProxy]:
    cuts, cut_ranged, busy = request.param
    cutter = FaultyProxy(registry.host, after=20_000, cuts=cuts, cut_ranged=cut_ranged, busy=busy)
    try:
        yield cutter
    finally:
        cutter.close()


@pytest.mark.parametrize("proxy", [(1, False, 0)], indirect=True)
def test_a_download_cut_part_way_resumes_with_a_range_request(
        registry: RegistryServer, pushed: str, proxy: FaultyProxy, tmp_path: Path) -> None:
    assert main(["--root", str(tmp_path / "root"), "pull", f"{proxy.host}/test/app:v1"]) == 0
    assert proxy.cut == 1
    assert ImageStore(str(tmp_path / "root")).resolve(f"{proxy.host}/test/app:v1").id == pushed
    resumed = [line for line in registry.access_log() if "/blobs/sha256:" in line and '" 206 ' in line]
    assert len(resumed) == 1


@pytest.mark.parametrize("proxy", [(1000, True, 0)], indirect=True)
def test_a_download_that_keeps_failing_is_a_clear_error_and_stores_nothing(
        registry: RegistryServer, pushed: str, proxy: FaultyProxy, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "root"
    assert main(["--root", str(root), "pull", f"{proxy.host}/test/app:v1"]) == 125
    err = capsys.readouterr().err
    assert "failed 4 times" in err and err.count("\n") == 1
    store = ImageStore(str(root))
    assert store.images() == [] and os.listdir(store.tmp) == []


@pytest.mark.parametrize("proxy", [(0, False, 3)], indirect=True)
def test_a_busy_registry_is_asked_again(
        registry: RegistryServer, pushed: str, proxy: FaultyProxy, tmp_path: Path) -> None:
    assert main(["--root", str(tmp_path / "root"), "pull", f"{proxy.host}/test/app:v1"]) == 0
    assert proxy.busy_left == 0
    assert ImageStore(str(tmp_path / "root")).resolve(f"{proxy.host}/test/app:v1").id == pushed
