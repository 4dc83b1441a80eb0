"""`-v` and `-p` parsing, named volumes, and filling a new volume from the image's layers."""

import os

import pytest

from engine.containers.volumes import VolumeError, VolumeStore, copy_image_content, parse_volume, resolve


@pytest.mark.parametrize(("spec", "expected"), [
    ("/host:/ctr", ("bind", "/host", "/ctr", False)),
    ("/host:/ctr:ro", ("bind", "/host", "/ctr", True)),
    ("data:/data", ("volume", "data", "/data", False)),
    ("/scratch", ("anonymous", "", "/scratch", False)),
])
def test_volume_specs_parse_as_docker_reads_them(spec, expected):
    assert parse_volume(spec) == expected


@pytest.mark.parametrize("spec", ["data:rel", "a:b:c:d", "bad name:/x", "rel"])
def test_bad_volume_specs_say_what_to_write(spec):
    with pytest.raises(VolumeError, match=f"-v {spec}"):
        parse_volume(spec)


def test_named_volume_is_made_once(tmp_path):
    store = VolumeStore(tmp_path)
    (first, made), = resolve(["cache:/cache"], store)
    (second, made_again), = resolve(["cache:/cache:ro"], store)
    assert made and not made_again and first.source == second.source and second.read_only
    assert store.names() == ["cache"]


def test_new_volume_gets_the_merged_image_content(tmp_path):
    lower, upper, target = tmp_path / "l1", tmp_path / "l2", tmp_path / "vol"
    for d in (lower / "data", upper / "data", target):
        d.mkdir(parents=True)
    (lower / "data" / "kept").write_text("k")
    (lower / "data" / "gone").write_text("g")
    (upper / "data" / "new").write_text("n")
    os.mknod(upper / "data" / "gone", 0o600 | 0o020000, 0)  # a whiteout
    copy_image_content([upper, lower], "/data", target)
    assert sorted(os.listdir(target)) == ["kept", "new"]
