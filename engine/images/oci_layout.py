"""OCI image layouts: a directory (or its tar, an oci-archive) with `oci-layout`, `index.json` and
`blobs/sha256/`, as umoci, skopeo, buildah and podman write them.

Loading reads index.json, follows a nested index to this machine's platform, verifies and ingests each
blob, and registers the manifest as it is (its digest is kept). Saving writes the image's own manifest and
blobs unchanged when the manifest is OCI; a Docker schema 2 image gets an equivalent OCI manifest over the
same config and layer blobs (same image id), since OCI layouts are for OCI manifests.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from engine.errors import ImageError
from engine.images.archive import Bundle
from engine.images.content import (
    DOCKER_FOREIGN_LAYER_GZIP,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    METADATA_LIMIT,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Compression,
    Descriptor,
    check_digest,
    digest_hex,
    digest_of,
)
from engine.images.docker_archive import Loaded
from engine.images.image import Image
from engine.images.manifest import (
    build_manifest,
    canonical_json,
    load_json_object,
    parse_config,
    parse_manifest,
)
from engine.images.reference import parse_reference
from engine.images.store import ImageStore

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = "1.0.0"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
_DOCKER_TO_OCI_LAYER = {DOCKER_LAYER: OCI_LAYER, DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
                        DOCKER_FOREIGN_LAYER_GZIP: OCI_LAYER_GZIP}
_WORKERS = max(1, min(4, os.cpu_count() or 1))


def is_oci_layout(bundle: Bundle) -> bool:
    return bundle.exists(LAYOUT_FILE) and bundle.exists(INDEX_FILE)


def _blob_name(digest: str) -> str:
    return f"blobs/sha256/{digest_hex(digest)}"


def load_oci_layout(store: ImageStore, bundle: Bundle) -> list[Loaded]:
    """Load every image the layout's index.json lists (for a nested index: this machine's platform)."""
    layout = load_json_object(bundle.read(LAYOUT_FILE), f"{bundle.path}: oci-layout")
    if layout.get("imageLayoutVersion") != LAYOUT_VERSION:
        raise ImageError(f"{bundle.path}: OCI layout version {layout.get('imageLayoutVersion')!r} is not "
                         f"{LAYOUT_VERSION}")
    index = load_json_object(bundle.read(INDEX_FILE), f"{bundle.path}: index.json")
    descriptors = index.get("manifests")
    if not isinstance(descriptors, list) or not descriptors:
        raise ImageError(f"{bundle.path}: index.json lists no manifests")
    loaded = []
    for i, raw in enumerate(descriptors):
        desc = Descriptor.from_json(raw, f"{bundle.path}: index.json manifest {i}")
        annotations = raw.get("annotations") if isinstance(raw.get("annotations"), dict) else {}
        if desc.media_type in INDEX_TYPES:
            desc = _platform_manifest(bundle, desc)
        image = _load_manifest(store, bundle, desc)
        tags = []
        name = _name_of(annotations)
        if name is not None:
            store.tag(image, name)
            tags.append(parse_reference(name).with_default_tag().familiar())
        loaded.append(Loaded(store.get(image.id), tuple(tags)))
    return loaded


def _read_verified(bundle: Bundle, desc: Descriptor) -> bytes:
    data = bundle.read(_blob_name(desc.digest))
    if digest_of(data) != desc.digest or len(data) != desc.size:
        raise ImageError(f"{bundle.path}: blob {desc.digest} does not match its digest or size",
                         "the layout is corrupt or was tampered with")
    return data


def _platform_manifest(bundle: Bundle, desc: Descriptor) -> Descriptor:
    from engine.images.manifest_list import host_platform_of_machine, index_entries, pick_platform

    nested = load_json_object(_read_verified(bundle, desc), f"{bundle.path}: index {desc.digest}")
    entry = pick_platform(index_entries(nested), host_platform_of_machine())
    return Descriptor(entry.media_type or OCI_MANIFEST, check_digest(entry.digest), entry.size)


def _load_manifest(store: ImageStore, bundle: Bundle, desc: Descriptor) -> Image:
    manifest = _read_verified(bundle, desc)
    try:
        return _load_checked_manifest(store, bundle, manifest, desc)
    except BaseException:
        # Layers unpacked before another one was refused belong to no image: take them back out.
        parsed = parse_manifest(manifest, desc.media_type or None)
        layer_blobs = {layer.digest for layer in parsed.layers}
        try:
            diff_ids = set(parse_config(store.blobs.read(parsed.config.digest)).diff_ids)
        except ImageError:
            diff_ids = set()
        store.discard_unreferenced(layer_blobs | diff_ids, diff_ids)
        raise


def _load_checked_manifest(store: ImageStore, bundle: Bundle, manifest: bytes, desc: Descriptor) -> Image:
    parsed = parse_manifest(manifest, desc.media_type or None)
    bundle.ingest(store, _blob_name(parsed.config.digest), parsed.config.digest, parsed.config.size,
                  parsed.config.media_type, limit=METADATA_LIMIT)
    config = parse_config(store.blobs.read(parsed.config.digest))
    if len(config.diff_ids) != len(parsed.layers):
        raise ImageError(f"{bundle.path}: manifest {desc.digest} has {len(parsed.layers)} layers, its config "
                         f"{len(config.diff_ids)} diff ids")
    pending: list[Future[object]] = []
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        for i, (layer, diff_id) in enumerate(zip(parsed.layers, config.diff_ids)):
            label = f"{bundle.path}: layer {i + 1}/{len(parsed.layers)} ({digest_hex(layer.digest)[:12]})"
            name = _blob_name(layer.digest)
            if layer.digest == diff_id and bundle.compression(name) is Compression.NONE:
                path, offset, size = bundle.region(name)
                if size != layer.size:
                    raise ImageError(f"{bundle.path}: {name} has {size} bytes, its descriptor says {layer.size}")
                pending.append(pool.submit(store.prepare_plain_layer, diff_id, path, offset, size, label,
                                           layer.media_type))
                continue
            blob = bundle.ingest(store, name, layer.digest, layer.size, layer.media_type)
            pending.append(pool.submit(store.prepare_layer, diff_id, blob, label))
        for job in pending:
            job.result()
    return store.register_image(manifest, parsed.media_type)


def _name_of(annotations: dict[str, Any]) -> str | None:
    """The image name an index entry carries: containerd's full name, else a ref.name that is a whole
    reference (`busybox:latest`, `ghcr.io/a/b:1`) rather than a bare tag (`latest`), which names nothing."""
    for key in (CONTAINERD_NAME, REF_NAME):
        value = annotations.get(key)
        if not isinstance(value, str) or not value:
            continue
        if key == REF_NAME and "/" not in value and ":" not in value and "@" not in value:
            continue
        try:
            parse_reference(value)
        except ImageError:
            continue
        return value
    return None


def oci_manifest_of(store: ImageStore, image: Image) -> tuple[bytes, Descriptor]:
    """The image's manifest as an OCI manifest (its own bytes if it is one), and its descriptor."""
    if image.manifest_media_type == OCI_MANIFEST:
        manifest = image.manifest
    else:
        assert image.manifest_media_type == DOCKER_MANIFEST
        layers = [Descriptor(_DOCKER_TO_OCI_LAYER.get(d.media_type, d.media_type), d.digest, d.size)
                  for d in image.layers]
        config = Descriptor(OCI_CONFIG, image.id, os.stat(store.blob_path(image.id)).st_size)
        manifest = build_manifest(config, layers, OCI_MANIFEST)
    return manifest, Descriptor(OCI_MANIFEST, digest_of(manifest), len(manifest))


def save_oci(store: ImageStore, images: list[tuple[Image, list[str]]], out_path: str, archive: bool) -> None:
    """Write an OCI layout (a directory, or with `archive` an oci-archive tar) holding the images; each
    name is recorded in the index as `org.opencontainers.image.ref.name` (the full reference) and
    `io.containerd.image.name`. The result appears at `out_path` only when complete."""
    files: dict[str, str | bytes] = {LAYOUT_FILE: canonical_json({"imageLayoutVersion": LAYOUT_VERSION})}
    index_entries = []
    for image, names in images:
        manifest, desc = oci_manifest_of(store, image)
        files[_blob_name(desc.digest)] = manifest
        files[_blob_name(image.id)] = store.blob_path(image.id)
        for layer in image.layers:
            files[_blob_name(layer.digest)] = store.blob_path(layer.digest)
        for name in names or [None]:
            entry: dict[str, Any] = desc.to_json()
            if name is not None:
                full = str(parse_reference(name).with_default_tag())
                entry["annotations"] = {REF_NAME: full, CONTAINERD_NAME: full}
            index_entries.append(entry)
    files[INDEX_FILE] = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_entries})
    parent = os.path.dirname(os.path.abspath(out_path))
    if archive:
        fd, tmp = tempfile.mkstemp(prefix=".rade-save-", dir=parent)
        os.close(fd)
        try:
            _write_tar(tmp, files)
            os.chmod(tmp, 0o644)
            os.rename(tmp, out_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return
    if os.path.exists(out_path) and (not os.path.isdir(out_path) or os.listdir(out_path)):
        raise ImageError(f"{out_path} exists and is not an empty directory", "choose a new path for the layout")
    tmp = tempfile.mkdtemp(prefix=".rade-save-", dir=parent)
    try:
        for name, content in files.items():
            target = os.path.join(tmp, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if isinstance(content, bytes):
                with open(target, "wb") as out:
                    out.write(content)
            else:
                shutil.copyfile(content, target)
        if os.path.isdir(out_path):
            os.rmdir(out_path)
        os.rename(tmp, out_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_tar(path: str, files: dict[str, str | bytes]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT, copybufsize=1 << 20) as tar:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            if isinstance(content, bytes):
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                info.size = os.stat(content).st_size
                with open(content, "rb") as src:
                    tar.addfile(info, src)
