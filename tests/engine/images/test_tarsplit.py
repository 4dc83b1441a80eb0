"""A plain layer loaded from an archive is kept once, as its files plus a tar-split, and rebuilt
byte for byte when a blob is needed (save, push); when that is impossible the blob is stored whole."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from engine.errors import ImageError
from engine.images.content import OCI_LAYER, digest_of
from engine.images.formats import load_images, save_images
from engine.images.store import ImageStore


@pytest.fixture
def archive_of(store, kit, tmp_path):
    def make(layers: list[bytes]) -> str:
        source = ImageStore(str(tmp_path / "source"))
        kit.image(source, layers, tag="split:1")
        out = str(tmp_path / "image.tar")
        save_images(source, ["split:1"], out)
        return out
    return make


@pytest.mark.root
def test_plain_layers_are_stored_once_and_rebuilt_identically(store, kit, archive_of) -> None:
    layer = kit.tar([kit.directory("etc"), kit.file("etc/a", b"a" * 1000), kit.symlink("etc/l", "a"),
                     kit.hardlink("etc/h", "etc/a"), kit.file("empty", b""), kit.file("etc/.wh.x")])
    image = load_images(store, archive_of([layer]))[0].image
    diff_id = image.diff_ids[0]
    assert diff_id == digest_of(layer)
    assert not os.path.exists(store.blobs.path(diff_id))  # no second copy of the layer
    assert store.has_blob(diff_id) and store.blob_size(diff_id) == len(layer)
    with open(store.blob_path(diff_id), "rb") as rebuilt:
        assert rebuilt.read() == layer


@pytest.mark.root
def test_a_tar_that_overwrites_its_own_file_keeps_its_blob(store, kit, archive_of) -> None:
    layer = kit.tar([kit.file("f", b"first"), kit.file("f", b"second")])
    image = load_images(store, archive_of([layer]))[0].image
    assert os.path.exists(store.blobs.path(image.diff_ids[0]))
    assert Path(os.path.join(image.layer_dirs()[0], "f")).read_bytes() == b"second"
    with open(store.blob_path(image.diff_ids[0]), "rb") as blob:
        assert hashlib.sha256(blob.read()).hexdigest() == image.diff_ids[0][7:]


@pytest.mark.root
def test_a_modified_layer_file_makes_the_rebuild_fail_loudly(store, kit, archive_of) -> None:
    layer = kit.tar([kit.file("data", b"original")])
    image = load_images(store, archive_of([layer]))[0].image
    with open(os.path.join(image.layer_dirs()[0], "data"), "r+b") as data:
        data.write(b"ORIGINAL")
    with pytest.raises(ImageError, match="modified"):
        store.blob_path(image.diff_ids[0])
    assert not os.path.exists(store.blobs.path(image.diff_ids[0])) and os.listdir(store.tmp) == []


@pytest.mark.root
def test_a_layer_that_came_through_ingest_blob_keeps_its_blob_file(store, kit) -> None:
    image = kit.image(store, [kit.tar([kit.file("x", b"x")])])
    assert os.path.exists(store.blobs.path(image.diff_ids[0]))
    assert not store.layers.is_rebuildable(image.diff_ids[0])
    assert image.layers[0].media_type == OCI_LAYER
