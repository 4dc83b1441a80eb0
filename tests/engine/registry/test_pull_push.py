"""`rade pull` and `rade push` against a real registry, with images made by umoci and moved by skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from engine.images.content import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST
from engine.images.manifest_list import ACCEPTED_MANIFESTS
from engine.images.registry import RegistryClient, endpoint_for
from engine.images.store import ImageStore
from engine.images.transfer import RegistryOptions, push
from rade.cli import main

from .conftest import RegistryServer

pytestmark = pytest.mark.slow


def rade(root: Path, *args: str) -> int:
    return main(["--root", str(root), *args])


def skopeo_push(layout: Path, destination: str, *extra: str) -> None:
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *extra, f"oci:{layout}:v1",
                    f"docker://{destination}"], check=True, capture_output=True)


def layout_manifest(layout: Path) -> dict:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    return json.loads((layout / "blobs/sha256" / digest).read_bytes())


def manifest_of(registry: RegistryServer, repo: str, tag: str) -> tuple[bytes, str, str]:
    with RegistryClient(endpoint_for(registry.host)) as client:
        return client.get_manifest(repo, tag, ACCEPTED_MANIFESTS)


def uploads(registry: RegistryServer) -> int:
    return sum('"POST /v2/' in line and "/blobs/uploads/" in line for line in registry.access_log())


def test_an_oci_image_without_media_type_pushed_by_skopeo_pulls_into_the_store(
        registry: RegistryServer, umoci_layout: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    skopeo_push(umoci_layout, f"{registry.host}/test/app:v1")
    body, content_type, digest = manifest_of(registry, "test/app", "v1")
    assert "mediaType" not in json.loads(body) and content_type == OCI_MANIFEST

    assert rade(tmp_path / "root", "pull", f"{registry.host}/test/app:v1") == 0
    image = ImageStore(str(tmp_path / "root")).resolve(f"{registry.host}/test/app:v1")
    assert capsys.readouterr().out.strip() == image.id
    assert image.id == layout_manifest(umoci_layout)["config"]["digest"]
    assert image.manifest_media_type == OCI_MANIFEST and image.manifest_digest == digest
    assert f"{registry.host}/test/app@{digest}" in image.repo_digests
    assert image.runtime_config["Cmd"] == ["/bin/sh"]
    top = Path(image.layer_dirs()[0])
    assert (top / "etc/hello.txt").read_text() == "hello from umoci\n"


def test_push_then_pull_into_an_empty_store_gives_the_same_image(
        registry: RegistryServer, umoci_layout: Path, tmp_path: Path) -> None:
    skopeo_push(umoci_layout, f"{registry.host}/test/app:v1")
    assert rade(tmp_path / "one", "pull", f"{registry.host}/test/app:v1") == 0
    assert rade(tmp_path / "one", "push", f"{registry.host}/test/app:v1", f"{registry.host}/test/copy:v2") == 0
    assert rade(tmp_path / "two", "pull", f"{registry.host}/test/copy:v2") == 0

    first = ImageStore(str(tmp_path / "one")).resolve(f"{registry.host}/test/app:v1")
    second = ImageStore(str(tmp_path / "two")).resolve(f"{registry.host}/test/copy:v2")
    assert (second.id, second.diff_ids, second.manifest_digest) == (first.id, first.diff_ids, first.manifest_digest)
    # The manifest went up byte for byte, as OCI.
    assert manifest_of(registry, "test/copy", "v2")[1:] == (OCI_MANIFEST, first.manifest_digest)


def test_a_second_push_sends_no_blob_the_registry_has(
        registry: RegistryServer, umoci_layout: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    skopeo_push(umoci_layout, f"{registry.host}/test/app:v1")
    assert rade(tmp_path / "root", "pull", f"{registry.host}/test/app:v1") == 0
    assert rade(tmp_path / "root", "push", f"{registry.host}/test/app:v1", f"{registry.host}/test/again:v1") == 0
    before = uploads(registry)
    capsys.readouterr()
    assert rade(tmp_path / "root", "push", f"{registry.host}/test/app:v1", f"{registry.host}/test/again:v1") == 0
    assert uploads(registry) == before
    assert "(0 blobs pushed, 2 already there)" in capsys.readouterr().out


def test_a_push_to_another_repository_of_the_same_registry_mounts_the_blobs(
        registry: RegistryServer, umoci_layout: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    skopeo_push(umoci_layout, f"{registry.host}/test/app:v1")
    assert rade(tmp_path / "root", "pull", f"{registry.host}/test/app:v1") == 0
    capsys.readouterr()
    assert rade(tmp_path / "root", "push", f"{registry.host}/test/app:v1", f"{registry.host}/test/mounted:v1") == 0
    assert "(0 blobs pushed, 0 already there, 2 mounted)" in capsys.readouterr().out
    mounts = [line for line in registry.access_log() if "/v2/test/mounted/blobs/uploads/?" in line]
    assert len(mounts) == 2 and all("from=test%2Fapp" in line and '" 201 ' in line for line in mounts)
    assert rade(tmp_path / "two", "pull", f"{registry.host}/test/mounted:v1") == 0


def test_a_docker_schema2_image_stays_docker_through_pull_and_push(
        registry: RegistryServer, umoci_layout: Path, tmp_path: Path) -> None:
    skopeo_push(umoci_layout, f"{registry.host}/test/docker:v1", "--format", "v2s2")
    _, content_type, digest = manifest_of(registry, "test/docker", "v1")
    assert content_type == DOCKER_MANIFEST
    assert rade(tmp_path / "root", "pull", f"{registry.host}/test/docker:v1") == 0
    image = ImageStore(str(tmp_path / "root")).resolve(f"{registry.host}/test/docker:v1")
    assert image.manifest_media_type == DOCKER_MANIFEST
    assert rade(tmp_path / "root", "push", f"{registry.host}/test/docker:v1", f"{registry.host}/test/d2:v1") == 0
    assert manifest_of(registry, "test/d2", "v1")[1:] == (DOCKER_MANIFEST, digest)


def test_a_tampered_blob_is_refused_and_nothing_of_the_image_is_stored(
        registry: RegistryServer, umoci_layout: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    skopeo_push(umoci_layout, f"{registry.host}/test/app:v1")
    layer = json.loads(manifest_of(registry, "test/app", "v1")[0])["layers"][-1]["digest"]
    data = registry.blob_data_path(layer)
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0xFF  # same size, different bytes
    data.write_bytes(bytes(content))

    root = tmp_path / "root"
    assert rade(root, "pull", f"{registry.host}/test/app:v1") == 125
    err = capsys.readouterr().err
    assert err.startswith("rade: error: ") and err.count("\n") == 1
    assert "sent a bad blob" in err and layer in err and "nothing of it was stored" in err
    store = ImageStore(str(root))
    assert not store.has_blob(layer)
    assert store.images() == []
    assert os.listdir(store.tmp) == []


def _tar_gz(files: dict[str, bytes]) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    return gzip.compress(raw.getvalue(), mtime=0), diff_id


def _upload(client: RegistryClient, repo: str, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    url = client.start_upload(repo)
    assert url is not None
    client.finish_upload(repo, url, digest, io.BytesIO(data), len(data))
    return {"digest": digest, "size": len(data)}


@pytest.mark.parametrize(("list_type", "manifest_type", "layer_type", "config_type"), [
    (OCI_INDEX, OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.config.v1+json"),
    (DOCKER_MANIFEST_LIST, DOCKER_MANIFEST, "application/vnd.docker.image.rootfs.diff.tar.gzip",
     "application/vnd.docker.container.image.v1+json"),
])
def test_a_multi_platform_image_gives_the_linux_amd64_variant(
        registry: RegistryServer, tmp_path: Path, list_type: str, manifest_type: str, layer_type: str,
        config_type: str) -> None:
    repo = "test/multi"
    entries = []
    with RegistryClient(endpoint_for(registry.host)) as client:
        for arch, variant in (("arm64", "v8"), ("amd64", ""), ("s390x", "")):
            layer, diff_id = _tar_gz({"arch": arch.encode()})
            config = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["/arch"]},
                                 "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": manifest_type,
                "config": {"mediaType": config_type, **_upload(client, repo, config)},
                "layers": [{"mediaType": layer_type, **_upload(client, repo, layer)}],
            }).encode()
            digest = client.put_manifest(repo, f"only-{arch}", manifest, manifest_type)
            platform = {"architecture": arch, "os": "linux"} | ({"variant": variant} if variant else {})
            entries.append({"mediaType": manifest_type, "digest": digest, "size": len(manifest),
                            "platform": platform})
        client.put_manifest(repo, "multi", json.dumps({"schemaVersion": 2, "mediaType": list_type,
                                                       "manifests": entries}).encode(), list_type)

    assert rade(tmp_path / "root", "pull", f"{registry.host}/{repo}:multi") == 0
    image = ImageStore(str(tmp_path / "root")).resolve(f"{registry.host}/{repo}:multi")
    assert image.config["architecture"] == "amd64"
    assert image.manifest_digest == entries[1]["digest"]
    assert (Path(image.layer_dirs()[0]) / "arch").read_bytes() == b"amd64"

    assert rade(tmp_path / "arm", "pull", "--platform", "linux/arm64", f"{registry.host}/{repo}:multi") == 0
    assert ImageStore(str(tmp_path / "arm")).resolve(f"{registry.host}/{repo}:multi").config["architecture"] == "arm64"


def test_an_unknown_image_is_one_clear_line_and_exit_125(
        registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert rade(tmp_path / "root", "pull", f"{registry.host}/test/nothing:here") == 125
    err = capsys.readouterr().err
    assert err == (f"rade: error: {registry.host} has no test/nothing:here (no such tag or digest) "
                   "(check the name and tag)\n")


def test_a_large_blob_is_pushed_in_chunks_and_pulls_back_intact(
        registry: RegistryServer, umoci_layout: Path, tmp_path: Path) -> None:
    skopeo_push(umoci_layout, f"{registry.host}/test/app:v1")
    assert rade(tmp_path / "one", "pull", f"{registry.host}/test/app:v1") == 0
    store = ImageStore(str(tmp_path / "one"))
    image = store.resolve(f"{registry.host}/test/app:v1")
    result = push(store, image.manifest, image.manifest_media_type, f"{registry.host}/test/chunked:v1",
                  RegistryOptions(chunk_size=64 * 1024))
    assert len(result.moved) == 2
    patches = sum('"PATCH /v2/test/chunked/blobs/uploads/' in line for line in registry.access_log())
    assert patches >= max(d.size for d in image.layers) // (64 * 1024)
    assert rade(tmp_path / "two", "pull", f"{registry.host}/test/chunked:v1") == 0
    assert ImageStore(str(tmp_path / "two")).resolve(f"{registry.host}/test/chunked:v1").id == image.id


def test_pulling_again_fetches_only_the_manifest(
        registry: RegistryServer, umoci_layout: Path, tmp_path: Path) -> None:
    skopeo_push(umoci_layout, f"{registry.host}/test/app:v1")
    assert rade(tmp_path / "root", "pull", f"{registry.host}/test/app:v1") == 0
    blob_gets = sum('"GET /v2/test/app/blobs/' in line for line in registry.access_log())
    assert blob_gets == 2
    assert rade(tmp_path / "root", "pull", f"{registry.host}/test/app:v1") == 0
    assert sum('"GET /v2/test/app/blobs/' in line for line in registry.access_log()) == blob_gets


def test_two_processes_pulling_one_image_into_one_store_both_succeed(
        registry: RegistryServer, umoci_layout: Path, tmp_path: Path) -> None:
    skopeo_push(umoci_layout, f"{registry.host}/test/app:v1")
    root = tmp_path / "root"
    argv = [sys.executable, "-m", "rade", "--root", str(root), "pull", "-q", f"{registry.host}/test/app:v1"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True) for _ in range(2)]
    try:
        outputs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in outputs]
    store = ImageStore(str(root))
    [image] = store.images()
    assert outputs[0][0].decode().strip() == outputs[1][0].decode().strip() == image.id
    assert (Path(image.layer_dirs()[0]) / "etc/hello.txt").read_text() == "hello from umoci\n"
    assert os.listdir(store.tmp) == []


def test_pulling_by_digest_records_the_repo_digest_and_no_tag(
        registry: RegistryServer, umoci_layout: Path, tmp_path: Path) -> None:
    skopeo_push(umoci_layout, f"{registry.host}/test/app:v1")
    digest = manifest_of(registry, "test/app", "v1")[2]
    assert rade(tmp_path / "root", "pull", f"{registry.host}/test/app@{digest}") == 0
    [image] = ImageStore(str(tmp_path / "root")).images()
    assert image.repo_tags == () and image.repo_digests == (f"{registry.host}/test/app@{digest}",)
    assert image.manifest_digest == digest


def test_an_image_made_locally_is_pushed_readable_by_skopeo_and_pulls_back_the_same(
        registry: RegistryServer, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        for name, content in {"etc/motd": b"made by rade import\n", "bin/tool": os.urandom(100_000)}.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(content))
    assert rade(tmp_path / "one", "import", "-c", 'CMD ["/bin/tool"]', str(rootfs), "local/made:v1") == 0
    assert rade(tmp_path / "one", "push", "local/made:v1", f"{registry.host}/test/made:v1") == 0

    inspected = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{registry.host}/test/made:v1"],
                               check=True, capture_output=True, text=True)
    local = ImageStore(str(tmp_path / "one")).resolve("local/made:v1")
    assert json.loads(inspected.stdout)["Digest"] == local.manifest_digest
    layout = tmp_path / "copied"
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{registry.host}/test/made:v1",
                    f"oci:{layout}:v1"], check=True, capture_output=True)
    assert layout_manifest(layout)["config"]["digest"] == local.id

    assert rade(tmp_path / "two", "pull", f"{registry.host}/test/made:v1") == 0
    pulled = ImageStore(str(tmp_path / "two")).resolve(f"{registry.host}/test/made:v1")
    assert (pulled.id, pulled.diff_ids) == (local.id, local.diff_ids)
    assert pulled.runtime_config["Cmd"] == ["/bin/tool"]
    assert (Path(pulled.layer_dirs()[0]) / "etc/motd").read_bytes() == b"made by rade import\n"
