"""Mutated image archives at `rade load`: whatever the bytes, names and links, the load either succeeds or
raises one RadeError with a message, and nothing is written outside the state root."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.images.formats import load_images
from engine.images.store import ImageStore
from jobs.errors import RadeError

NAMES = st.sampled_from(["ok.txt", "dir/", "dir/f", "../escape.txt", "/abs.txt", "a/../../up.txt", "link", "hard",
                         ".wh.ok.txt", "dir/.wh..wh..opq", "./dot", "x" * 300])
TARGETS = st.sampled_from(["ok.txt", "../../outside/pwned", "/etc/passwd", "dir", "link", "../" * 8 + "tmp"])
KINDS = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE,
                         tarfile.CHRTYPE])


def _tar(members: list[tuple[str, bytes, int, str]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data, kind, target in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = target
            tar.addfile(info)
    return out.getvalue()


def _archive(layer: bytes, config_patch: dict, manifest_patch: dict) -> bytes:
    layer_id = hashlib.sha256(layer).hexdigest()
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]}, **config_patch}
    config_bytes = json.dumps(config).encode()
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    manifest = [{"Config": config_name, "RepoTags": ["fuzz:latest"], "Layers": [f"{layer_id}/layer.tar"],
                 **manifest_patch}]
    return _tar([("manifest.json", json.dumps(manifest).encode(), tarfile.REGTYPE, ""),
                 (config_name, config_bytes, tarfile.REGTYPE, ""),
                 (f"{layer_id}/layer.tar", layer, tarfile.REGTYPE, "")])


MEMBERS = st.lists(st.tuples(NAMES, st.binary(max_size=64), KINDS, TARGETS), max_size=6)
PATCHES = st.dictionaries(st.sampled_from(["rootfs", "config", "os", "Layers", "Config", "RepoTags"]),
                          st.none() | st.integers() | st.text(max_size=10) | st.lists(st.text(max_size=10), max_size=2),
                          max_size=2)


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ImageStore]:
    top = tmp_path_factory.mktemp("archives")
    (top / "outside").mkdir()
    (top / "root").mkdir()
    return top, top / "outside", ImageStore(str(top / "root"))


def _load_checked(places, blob: bytes) -> None:
    top, outside, store = places
    path = top / "archive.tar"
    path.write_bytes(blob)
    try:
        load_images(store, str(path))
    except RadeError as err:
        assert err.message
    assert not os.listdir(outside), "a load wrote outside the state root"
    assert sorted(os.listdir(top)) == ["archive.tar", "outside", "root"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=MEMBERS, config_patch=PATCHES, manifest_patch=PATCHES)
def test_hostile_layer_entries_and_manifests(places, members, config_patch, manifest_patch) -> None:
    _load_checked(places, _archive(_tar(members), config_patch, manifest_patch))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.none() | st.integers(0, 1 << 16))
def test_bytes_flipped_or_cut_anywhere(places, flips, cut) -> None:
    blob = bytearray(_archive(_tar([("ok.txt", b"hello", tarfile.REGTYPE, ""), ("dir/", b"", tarfile.DIRTYPE, "")]),
                              {}, {}))
    for where, value in flips:
        blob[where % len(blob)] = value
    _load_checked(places, bytes(blob[:cut] if cut is not None else blob))
