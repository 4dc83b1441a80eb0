"""Image manifests and configs: reading OCI and Docker schema 2 documents, and writing new ones.

A manifest lists a config blob and layer blobs; a config holds the runtime defaults (Env, Cmd...), the
diff ids of the uncompressed layers and the history. This module turns their JSON into checked values and
back, and knows nothing of where the bytes are stored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from engine.errors import ImageError
from engine.images.content import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    LAYER_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_MANIFEST,
    Descriptor,
    check_digest,
)

_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "i686": "386", "i386": "386"}


def host_architecture() -> str:
    """This machine's architecture as OCI names it (Go's GOARCH: amd64, arm64...)."""
    machine = os.uname().machine.lower()  # what platform.machine() reads, without its import
    return _GOARCH.get(machine, machine)


def canonical_json(data: Any) -> bytes:
    """JSON with sorted keys and no spaces: the same document always has the same digest."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def load_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse bytes that must hold one JSON object; raise ImageError naming `what` otherwise."""
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise ImageError(f"{what} is not valid JSON: {err}") from None
    if not isinstance(parsed, dict):
        raise ImageError(f"{what} is not a JSON object")
    return parsed


@dataclass(frozen=True, slots=True)
class Manifest:
    """A single-platform image manifest: the config descriptor and the layer descriptors, bottom first."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    """Read an OCI or Docker schema 2 manifest. `media_type` (e.g. a Content-Type header) is used when the
    document has no mediaType field, as OCI manifests written by some tools do not."""
    doc = load_json_object(data, "manifest")
    declared = doc.get("mediaType") or media_type
    if declared in INDEX_TYPES or (declared is None and "manifests" in doc):
        raise ImageError("manifest is an index of platform manifests, not an image manifest",
                         "pick the manifest for one platform first")
    if doc.get("schemaVersion") != 2:
        raise ImageError(f"manifest schemaVersion {doc.get('schemaVersion')!r} is not supported",
                         "rade reads OCI and Docker schema 2 manifests")
    if declared is None:
        declared = OCI_MANIFEST
    if declared not in MANIFEST_TYPES:
        raise ImageError(f"manifest media type {declared!r} is not an image manifest rade reads")
    config = Descriptor.from_json(doc.get("config"), "manifest config")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise ImageError("manifest has no layers list")
    layers = tuple(Descriptor.from_json(item, f"manifest layer {i}") for i, item in enumerate(raw_layers))
    for i, layer in enumerate(layers):
        if layer.media_type and layer.media_type not in LAYER_TYPES:
            raise ImageError(f"manifest layer {i} has media type {layer.media_type!r}, not a layer rade can unpack")
    return Manifest(declared, config, layers)


def build_manifest(config: Descriptor, layers: list[Descriptor], media_type: str = OCI_MANIFEST) -> bytes:
    """The bytes of a new manifest (OCI by default, Docker schema 2 when asked)."""
    if media_type not in MANIFEST_TYPES:
        raise ImageError(f"cannot write a manifest of type {media_type!r}")
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    return canonical_json(doc)


def config_media_type(manifest_media_type: str) -> str:
    """The config media type that goes with a manifest type."""
    return DOCKER_CONFIG if manifest_media_type == DOCKER_MANIFEST else OCI_CONFIG


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an image config the store checks: diff ids (bottom layer first), history, created."""

    raw: dict[str, Any]
    diff_ids: tuple[str, ...]
    created: str | None
    history: tuple[dict[str, Any], ...]


def parse_config(data: bytes) -> ImageConfig:
    """Read an image config; raise ImageError when rootfs.diff_ids is missing or malformed."""
    doc = load_json_object(data, "image config")
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers" or not isinstance(rootfs.get("diff_ids"), list):
        raise ImageError("image config has no rootfs of type 'layers' with a diff_ids list")
    diff_ids = tuple(check_digest(d, f"config diff_id {i}") for i, d in enumerate(rootfs["diff_ids"]))
    created = doc.get("created") if isinstance(doc.get("created"), str) else None
    history = doc.get("history") if isinstance(doc.get("history"), list) else []
    return ImageConfig(doc, diff_ids, created, tuple(h for h in history if isinstance(h, dict)))


def new_config(diff_ids: list[str], created: str, history: list[dict[str, Any]],
               runtime: dict[str, Any] | None = None, architecture: str | None = None) -> dict[str, Any]:
    """A fresh image config document for layers made on this machine."""
    return {
        "architecture": architecture or host_architecture(),
        "os": "linux",
        "created": created,
        "config": dict(runtime or {}),
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": history,
    }
