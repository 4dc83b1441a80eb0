"""The store keeps blobs by digest, layers once by diff id, images by config digest, and names for them."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from engine.errors import ImageError
from engine.images.content import digest_of
from engine.images.store import ImageStore


@pytest.fixture
def base(kit) -> bytes:
    return kit.tar([kit.directory("etc"), kit.file("etc/hello", b"hi\n"), kit.file("bin/tool", b"#!x", mode=0o755)])


@pytest.fixture
def top(kit) -> bytes:
    return kit.tar([kit.file("etc/extra", b"more")])


def test_ingest_blob_verifies_digest_and_leaves_nothing_on_mismatch(store: ImageStore) -> None:
    data = b"some bytes"
    desc = store.ingest_blob(io.BytesIO(data), digest_of(data), len(data))
    assert desc.digest == digest_of(data) and desc.size == len(data) and store.has_blob(desc.digest)
    wrong = digest_of(b"other")
    with pytest.raises(ImageError, match="expected"):
        store.ingest_blob(io.BytesIO(data), wrong)
    with pytest.raises(ImageError, match="descriptor says"):
        store.ingest_blob(io.BytesIO(data), expected_size=3)
    assert not store.has_blob(wrong)
    assert os.listdir(store.tmp) == []


def test_registered_image_resolves_by_name_id_prefix_and_digest(store: ImageStore, base, top, kit) -> None:
    image = kit.image(store, [base, top], tag="app:v1")
    assert image.repo_tags == ("app:v1",)
    for words in ("app:v1", "docker.io/library/app:v1", image.id, image.id[7:], image.id[7:19],
                  image.manifest_digest):
        assert store.resolve(words).id == image.id
    store.tag(image, f"app@{image.manifest_digest}")
    assert store.resolve(f"app@{image.manifest_digest}").repo_digests == (f"app@{image.manifest_digest}",)
    with pytest.raises(ImageError, match="no such image: app:v2"):
        store.resolve("app:v2")


def test_layer_dirs_are_top_first_and_hold_the_files(store: ImageStore, base, top, kit) -> None:
    image = kit.image(store, [base, top])
    top_dir, base_dir = image.layer_dirs()
    assert os.listdir(os.path.join(top_dir, "etc")) == ["extra"]
    assert Path(os.path.join(base_dir, "etc/hello")).read_bytes() == b"hi\n"
    assert os.access(os.path.join(base_dir, "bin/tool"), os.X_OK)
    assert image.diff_ids[0] == digest_of(base)


def test_registering_twice_is_idempotent_and_shared_layers_are_stored_once(
    store: ImageStore, base: bytes, top: bytes, kit
) -> None:
    one = kit.image(store, [base, top], tag="one")
    again = kit.image(store, [base, top], tag="one")
    other = kit.image(store, [base], tag="two", runtime={"Cmd": ["true"]})
    assert again.id == one.id and other.id != one.id
    assert other.layer_dirs()[-1] == one.layer_dirs()[-1]
    assert len(os.listdir(store.layers.root)) == 2
    assert len(store.images()) == 2


def test_rmi_untags_then_deletes_and_collects_only_unshared_layers(store: ImageStore, base, top, kit) -> None:
    one = kit.image(store, [base, top], tag="one")
    kit.image(store, [base], tag="two", runtime={"Cmd": ["true"]})
    store.tag(one, "alias")
    assert store.remove("alias").untagged == ("alias:latest",)
    assert store.resolve("one").id == one.id
    removal = store.remove("one")
    assert removal.deleted == (one.id,)
    assert not os.path.exists(one.layer_dirs()[0])
    assert os.path.exists(one.layer_dirs()[1])  # still used by "two"
    assert not store.has_blob(one.id) and not store.has_blob(one.manifest_digest)
    assert store.has_blob(one.layers[0].digest) and not store.has_blob(one.layers[1].digest)


def test_rmi_by_id_of_a_multiply_tagged_image_needs_force(store: ImageStore, base, kit) -> None:
    image = kit.image(store, [base], tag="a")
    store.tag(image, "b")
    with pytest.raises(ImageError, match="tagged in 2 repositories"):
        store.remove(image.id[7:19])
    assert store.remove(image.id[7:19], force=True).deleted == (image.id,)
    assert store.images() == []


def test_rmi_refuses_an_image_a_container_uses_unless_forced(store, state_root: str, base, kit) -> None:
    image = kit.image(store, [base], tag="used")
    container = os.path.join(state_root, "containers", "c0ffee")
    os.makedirs(container)
    with open(os.path.join(container, "state.json"), "w") as out:
        json.dump({"image_id": image.id}, out)
    with pytest.raises(ImageError, match="used by container c0ffee"):
        store.remove("used")
    removal = store.remove("used", force=True)
    assert removal.kept_for_containers == (image.id,) and removal.deleted == ()
    kept = store.get(image.id)
    assert kept.repo_tags == () and all(os.path.isdir(d) for d in kept.layer_dirs())


def test_register_refuses_missing_or_wrongly_sized_blobs(store: ImageStore, base, kit) -> None:
    image = kit.image(store, [base])
    manifest = json.loads(image.manifest)
    manifest["layers"][0]["size"] += 1
    with pytest.raises(ImageError, match="manifest says"):
        store.register_image(json.dumps(manifest).encode())
    manifest["layers"][0]["digest"] = digest_of(b"absent")
    with pytest.raises(ImageError, match="not in the store"):
        store.register_image(json.dumps(manifest).encode())


def test_config_diff_id_mismatch_is_refused(store: ImageStore, base) -> None:
    from engine.images.content import OCI_CONFIG, OCI_LAYER
    from engine.images.manifest import build_manifest, canonical_json, new_config

    layer = store.ingest_blob(io.BytesIO(base), media_type=OCI_LAYER)
    config = canonical_json(new_config([digest_of(b"not it")], "2024-01-01T00:00:00Z", []))
    config_desc = store.ingest_blob(io.BytesIO(config), media_type=OCI_CONFIG)
    with pytest.raises(ImageError, match="diff id"):
        store.register_image(build_manifest(config_desc, [layer]))
    assert os.listdir(store.layers.root) == []


def test_commit_adds_a_layer_and_config_changes_on_top_of_the_parent(store, tmp_path, base, kit) -> None:
    parent = kit.image(store, [base], tag="base", runtime={"Cmd": ["sh"], "Env": ["PATH=/bin"]})
    layer = tmp_path / "upper.tar"
    layer_bytes = kit.tar([kit.file("etc/hello", b"changed"), kit.file("etc/.wh.gone")])
    layer.write_bytes(layer_bytes)
    child = store.commit(parent, str(layer), {"Cmd": ["true"], "WorkingDir": "/etc"},
                         {"created_by": "rade commit"}, tag="child:1")
    assert child.repo_tags == ("child:1",)
    assert child.diff_ids[:-1] == parent.diff_ids and len(child.layer_dirs()) == 2
    assert child.runtime_config == {"Cmd": ["true"], "Env": ["PATH=/bin"], "WorkingDir": "/etc"}
    assert child.history[-1]["created_by"] == "rade commit"
    layer.unlink()  # the runtime deletes its tar: the store kept the layer once, and can rebuild the tar
    assert not os.path.exists(store.blobs.path(child.diff_ids[-1]))
    assert Path(store.blob_path(child.diff_ids[-1])).read_bytes() == layer_bytes
    assert Path(os.path.join(child.layer_dirs()[0], "etc/hello")).read_bytes() == b"changed"
    meta_only = store.commit(child, None, {"Env": None}, {"created_by": "ENV"})
    assert meta_only.diff_ids == child.diff_ids and "Env" not in meta_only.runtime_config
    assert meta_only.history[-1]["empty_layer"] is True


def test_a_store_of_another_format_version_is_refused(state_root) -> None:
    ImageStore(state_root)
    with open(os.path.join(state_root, "images", "format.json"), "w") as out:
        json.dump({"version": 99}, out)
    with pytest.raises(ImageError, match="format"):
        ImageStore(state_root)
