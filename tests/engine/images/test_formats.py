"""docker-archive and OCI layouts round-trip through the store; broken or tampered archives are refused
with nothing stored; `rade import` and the busybox bootstrap make working one-layer images."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from engine.errors import ImageError
from engine.images.bootstrap import apt_mirror, bootstrap_busybox, is_static_elf
from engine.images.formats import ArchiveFormat, load_images, save_images
from engine.images.rootfs import apply_changes, import_rootfs
from engine.images.store import ImageStore


@pytest.fixture
def sample(store, kit):
    base = kit.tar([kit.directory("etc"), kit.file("etc/motd", b"hello\n"), kit.file("bin/run", b"#!", mode=0o755)])
    top = kit.tar([kit.file("etc/.wh.motd"), kit.file("etc/extra", b"x" * 3000)])
    return kit.image(store, [base, top], tag="sample:1", runtime={"Cmd": ["run"], "Env": ["A=1"]})


def tree(path: str) -> dict[str, tuple[int, bytes | str]]:
    """A layer directory's content: relative path -> (mode, bytes or link target)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                content: bytes | str = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                content = Path(full).read_bytes()
            else:
                content = b""
            found[os.path.relpath(full, path)] = (st.st_mode, content)
    return found


@pytest.mark.root
@pytest.mark.parametrize("fmt", list(ArchiveFormat))
def test_save_then_load_into_an_empty_store_gives_the_same_image(sample, store, tmp_path, fmt) -> None:
    out = str(tmp_path / "saved")
    save_images(store, ["sample:1"], out, fmt)
    other = ImageStore(str(tmp_path / "root2"))
    loaded = load_images(other, out)
    assert [item.tags for item in loaded] == [("sample:1",)]
    image = other.resolve("sample:1")
    assert image.id == sample.id and image.diff_ids == sample.diff_ids
    assert image.runtime_config == {"Cmd": ["run"], "Env": ["A=1"]}
    for mine, theirs in zip(sample.layer_dirs(), image.layer_dirs()):
        assert tree(mine) == tree(theirs)


def test_saving_a_docker_archive_writes_manifest_config_and_plain_layers(sample, store, tmp_path) -> None:
    out = tmp_path / "d.tar"
    save_images(store, [sample.id[7:19]], str(out))
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == ["sample:1"]
        for name, diff_id in zip(manifest[0]["Layers"], sample.diff_ids):
            assert name == diff_id[7:] + "/layer.tar"
            assert tar.extractfile(name).read(2) != b"\x1f\x8b"


def test_load_of_a_gzipped_docker_archive_works(sample, store, tmp_path) -> None:
    plain = tmp_path / "d.tar"
    save_images(store, ["sample:1"], str(plain))
    packed = tmp_path / "d.tar.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    other = ImageStore(str(tmp_path / "r"))
    assert load_images(other, str(packed))[0].image.id == sample.id


def test_a_tampered_layer_in_an_archive_is_refused_and_nothing_is_stored(sample, store, tmp_path) -> None:
    out = tmp_path / "d.tar"
    save_images(store, ["sample:1"], str(out))
    data = bytearray(out.read_bytes())
    at = data.index(b"hello\n")
    data[at:at + 6] = b"HELLO\n"
    out.write_bytes(bytes(data))
    other = ImageStore(str(tmp_path / "r"))
    with pytest.raises(ImageError, match="tampered"):
        load_images(other, str(out))
    assert other.images() == [] and os.listdir(other.layers.root) == [] and os.listdir(other.tmp) == []


def test_a_tampered_oci_layout_blob_is_refused(sample, store, tmp_path) -> None:
    out = tmp_path / "layout"
    save_images(store, ["sample:1"], str(out), ArchiveFormat.OCI_DIR)
    layer = out / "blobs" / "sha256" / sample.layers[1].digest[7:]
    layer.write_bytes(layer.read_bytes().replace(b"xxx", b"yyy", 1))
    other = ImageStore(str(tmp_path / "r"))
    with pytest.raises(ImageError, match="tampered"):
        load_images(other, str(out))
    assert other.images() == [] and not other.has_blob(sample.layers[1].digest)


def test_files_that_are_not_image_archives_are_refused_with_the_reason(store, tmp_path, kit) -> None:
    plain = tmp_path / "rootfs.tar"
    plain.write_bytes(kit.tar([kit.file("etc/motd", b"x")]))
    with pytest.raises(ImageError, match="neither a docker-archive"):
        load_images(store, str(plain))
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ImageError, match="not a readable tar"):
        load_images(store, str(junk))
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        data = b'[{"Config": "c.json", "Layers": ["../../etc/passwd"]}]'
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ImageError, match="no member 'c.json'"):
        load_images(store, str(bad))


@pytest.mark.root
def test_import_makes_a_one_layer_image_from_a_compressed_rootfs(store, tmp_path, kit) -> None:
    rootfs = kit.tar([kit.directory("bin"), kit.file("bin/hello", b"#!/bin/sh\necho hi\n", mode=0o755)])
    packed = tmp_path / "rootfs.tar.gz"
    packed.write_bytes(gzip.compress(rootfs))
    image = import_rootfs(store, str(packed), "imported:v1", ['CMD ["/bin/hello"]', "ENV A=1 B=2", "WORKDIR /bin"],
                          "from a test")
    assert image.repo_tags == ("imported:v1",) and len(image.diff_ids) == 1
    assert image.runtime_config == {"Cmd": ["/bin/hello"], "Env": ["A=1", "B=2"], "WorkingDir": "/bin"}
    assert image.history[0]["comment"] == "from a test"
    assert os.access(os.path.join(image.layer_dirs()[0], "bin/hello"), os.X_OK)


def test_import_changes_are_checked() -> None:
    assert apply_changes({}, ["CMD echo hi", "EXPOSE 80 53/udp", "LABEL a=b"]) == {
        "Cmd": ["/bin/sh", "-c", "echo hi"], "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Labels": {"a": "b"}}
    with pytest.raises(ImageError, match="not an instruction"):
        apply_changes({}, ["RUN rm -rf /"])
    with pytest.raises(ImageError, match="JSON list"):
        apply_changes({}, ['CMD ["unclosed"'])


@pytest.mark.root
def test_bootstrap_busybox_gives_a_runnable_static_binary_with_applets(store) -> None:
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed")
    image = bootstrap_busybox(store, "busybox:local")
    assert image.runtime_config["Cmd"] == ["sh"] and image.runtime_config["Env"][0].startswith("PATH=")
    layer = image.layer_dirs()[0]
    binary = os.path.join(layer, "bin/busybox")
    assert is_static_elf(binary) and os.access(binary, os.X_OK)
    assert os.stat(os.path.join(layer, "bin/sh")).st_ino == os.stat(binary).st_ino
    assert Path(os.path.join(layer, "etc/passwd")).read_text().startswith("root:x:0:0:")
    assert "root:x:0:" in Path(os.path.join(layer, "etc/group")).read_text()
    assert stat.S_IMODE(os.stat(os.path.join(layer, "tmp")).st_mode) == 0o1777
    out = subprocess.run([os.path.join(layer, "bin/sh"), "-c", "echo $((6*7))"], capture_output=True, text=True,
                         check=True)
    assert out.stdout == "42\n"
    assert bootstrap_busybox(store, "busybox:again").id == image.id  # same binary, same image


def test_the_apt_mirror_is_read_from_deb822_and_one_line_sources(tmp_path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] https://example.org/apt stable main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n")
    assert apt_mirror(str(tmp_path)) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    assert apt_mirror(str(tmp_path)) == "http://deb.debian.org/debian"
