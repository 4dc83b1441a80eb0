"""Commit: a container's changes (a layer tar from its upper directory) on top of its image, as a new image.

`rade commit` and each step of `rade build` end here: the layer tar is taken in (plain, so its digest is its
diff id, and kept once as unpacked files plus a tar-split), the parent's config is copied with the runtime changes applied and a history entry appended, and
the new manifest is registered like any other image; the parent's layer blobs are shared, never copied.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from engine.images.compression import compression_of
from engine.images.content import (
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_LAYER,
    OCI_MANIFEST,
    Compression,
    Descriptor,
)
from engine.images.image import Image
from engine.images.manifest import build_manifest, canonical_json, config_media_type, new_config
from engine.images.store import ImageStore, now_rfc3339


def _take_layer(store: ImageStore, path: str, media_type: str) -> Descriptor:
    """Store the layer tar: a plain tar is unpacked in place and kept as files plus a tar-split (its
    digest, the diff id, computed first); anything else goes in as a blob."""
    if compression_of(path) is not Compression.NONE:
        with open(path, "rb") as src:
            return store.ingest_blob(src, media_type=media_type)
    hasher = hashlib.sha256()
    with open(path, "rb") as src:
        while chunk := src.read(1 << 20):
            hasher.update(chunk)
        size = src.tell()
    return store.prepare_plain_layer("sha256:" + hasher.hexdigest(), path, 0, size, f"layer {path}", media_type)


def commit_image(store: ImageStore, parent: Image | None, layer_tar_path: str | None,
                 config_changes: dict[str, Any], history_entry: dict[str, Any], tag: str | None = None) -> Image:
    """A new image: `parent` plus one layer (an uncompressed tar, whiteouts as `.wh.` entries; None adds
    a metadata-only step), its runtime config updated by `config_changes` (Env, Cmd, WorkingDir...: a
    value of None deletes the key), and `history_entry` (created_by, comment...) appended; tagged `tag`."""
    config = json.loads(json.dumps(parent.config)) if parent is not None else new_config([], "", [])
    created = now_rfc3339()
    runtime = config.setdefault("config", {}) or {}
    for key, value in config_changes.items():
        if value is None:
            runtime.pop(key, None)
        else:
            runtime[key] = value
    config["config"] = runtime
    layers = list(parent.layers) if parent is not None else []
    media = parent.manifest_media_type if parent is not None else OCI_MANIFEST
    layer_type = DOCKER_LAYER if media == DOCKER_MANIFEST else OCI_LAYER
    entry = {"created": created, **history_entry}
    if layer_tar_path is not None:
        desc = _take_layer(store, layer_tar_path, layer_type)
        layers.append(Descriptor(layer_type, desc.digest, desc.size))
        # An uncompressed layer's blob digest is its diff id.
        config["rootfs"]["diff_ids"].append(desc.digest)
    else:
        entry["empty_layer"] = True
    config["history"] = list(config.get("history") or []) + [entry]
    config["created"] = created
    config_bytes = canonical_json(config)
    config_desc = store.blobs.ingest_bytes(config_bytes, config_media_type(media))
    image = store.register_image(build_manifest(config_desc, layers, media), media)
    if tag is not None:
        store.tag(image, tag)
        image = store.get(image.id)
    return image

