"""docker-archive: what `docker save` and `podman save` write, read by `rade load` and written by `rade save`.

The archive holds `manifest.json` (a list of {Config, RepoTags, Layers}), each image's config, and its
layers as tars (uncompressed when rade writes them, as Docker does; any compression is accepted on the way
in). Newer Docker writes the same files under an OCI layout's `blobs/sha256/`; both layouts load, since
files are found by the names manifest.json gives. Loading turns each entry into a Docker schema 2 manifest
and registers it; each layer is unpacked while the next one is being read.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from engine.errors import ImageError
from engine.images.archive import Bundle
from engine.images.compression import compression_of, copy_decompressed
from engine.images.content import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    METADATA_LIMIT,
    Compression,
    Descriptor,
    digest_hex,
    layer_media_type,
)
from engine.images.image import Image
from engine.images.manifest import build_manifest, parse_config
from engine.images.reference import parse_reference
from engine.images.store import ImageStore

MANIFEST_NAME = "manifest.json"
_WORKERS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True, slots=True)
class Loaded:
    """One image a load brought in, and the names it was tagged with."""

    image: Image
    tags: tuple[str, ...]


def is_docker_archive(bundle: Bundle) -> bool:
    return bundle.exists(MANIFEST_NAME)


def load_docker_archive(store: ImageStore, bundle: Bundle) -> list[Loaded]:
    """Load every image listed in the archive's manifest.json; tag each with its RepoTags."""
    try:
        entries = json.loads(bundle.read(MANIFEST_NAME))
    except ValueError as err:
        raise ImageError(f"{bundle.path}: manifest.json is not valid JSON: {err}") from None
    if not isinstance(entries, list) or not entries:
        raise ImageError(f"{bundle.path}: manifest.json lists no images")
    loaded = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) or \
                not isinstance(entry.get("Layers"), list):
            raise ImageError(f"{bundle.path}: manifest.json entry {number} lacks Config or Layers")
        if not all(isinstance(name, str) for name in entry["Layers"]) or \
                not isinstance(entry.get("RepoTags") or [], list):
            raise ImageError(f"{bundle.path}: manifest.json entry {number}: Layers and RepoTags are lists of names")
        loaded.append(_load_entry(store, bundle, entry))
    return loaded


def _load_entry(store: ImageStore, bundle: Bundle, entry: dict) -> Loaded:
    try:
        return _load_checked_entry(store, bundle, entry)
    except BaseException:
        # Layers unpacked before another one was refused belong to no image: take them back out.
        diff_ids = set(_diff_ids_of(store, bundle, entry["Config"]))
        store.discard_unreferenced(diff_ids, diff_ids)
        raise


def _diff_ids_of(store: ImageStore, bundle: Bundle, config_name: str) -> tuple[str, ...]:
    try:
        return parse_config(bundle.read(config_name)).diff_ids
    except ImageError:
        return ()


def _load_checked_entry(store: ImageStore, bundle: Bundle, entry: dict) -> Loaded:
    config_name = entry["Config"]
    config_desc = bundle.ingest(store, config_name, _digest_in_name(config_name), media_type=DOCKER_CONFIG,
                                limit=METADATA_LIMIT)
    config = parse_config(store.blobs.read(config_desc.digest))
    names = entry["Layers"]
    if len(names) != len(config.diff_ids):
        raise ImageError(f"{bundle.path}: {len(names)} layers listed for {config_name}, its config has "
                         f"{len(config.diff_ids)} diff ids")
    pending: list[Future[Descriptor]] = []
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        for i, (name, diff_id) in enumerate(zip(names, config.diff_ids)):
            compression = bundle.compression(name)
            media_type = layer_media_type(compression, docker=compression is not Compression.ZSTD)
            label = f"{bundle.path}: layer {i + 1}/{len(names)} ({name})"
            if compression is Compression.NONE:
                # A plain layer's digest is its diff id: unpacked in place, checked, kept without a copy.
                path, offset, size = bundle.region(name)
                pending.append(pool.submit(store.prepare_plain_layer, diff_id, path, offset, size, label,
                                           media_type))
                continue
            blob = bundle.ingest(store, name, media_type=media_type)
            pending.append(pool.submit(_unpacked, store, diff_id, blob, label))
        layers = [job.result() for job in pending]
    manifest = build_manifest(Descriptor(DOCKER_CONFIG, config_desc.digest, config_desc.size), layers,
                              DOCKER_MANIFEST)
    image = store.register_image(manifest, DOCKER_MANIFEST)
    tags = []
    for tag in entry.get("RepoTags") or []:
        if isinstance(tag, str):
            store.tag(image, tag)
            tags.append(parse_reference(tag).with_default_tag().familiar())
    return Loaded(store.get(image.id), tuple(tags))


def _unpacked(store: ImageStore, diff_id: str, blob: Descriptor, label: str) -> Descriptor:
    store.prepare_layer(diff_id, blob, label)
    return blob


def _digest_in_name(name: str) -> str | None:
    """The digest a content-addressed file name promises: `<hex>.json` or `blobs/sha256/<hex>`."""
    base = os.path.basename(name).removesuffix(".json")
    if len(base) == 64 and all(c in "0123456789abcdef" for c in base):
        return "sha256:" + base
    return None


def save_docker_archive(store: ImageStore, images: list[tuple[Image, list[str]]], out_path: str) -> None:
    """Write a docker-archive holding the images, each with the names given (familiar or full references).

    Layers are written uncompressed under `<diff id hex>/layer.tar`, once even when images share them; the
    file appears at `out_path` only when complete.
    """
    directory = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(prefix=".rade-save-", dir=directory)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT, copybufsize=1 << 20) as tar:
            written: set[str] = set()
            manifest = []
            for image, names in images:
                config_name = digest_hex(image.id) + ".json"
                if config_name not in written:
                    _add_file(tar, config_name, store.blob_path(image.id))
                    written.add(config_name)
                layer_names = []
                for desc, diff_id in zip(image.layers, image.diff_ids):
                    name = f"{digest_hex(diff_id)}/layer.tar"
                    if name not in written:
                        _add_layer(store, tar, name, desc)
                        written.add(name)
                    layer_names.append(name)
                tags = [str(parse_reference(n).with_default_tag().familiar()) for n in names]
                manifest.append({"Config": config_name, "RepoTags": tags or None, "Layers": layer_names})
            data = json.dumps(manifest).encode()
            info = tarfile.TarInfo(MANIFEST_NAME)
            info.size = len(data)
            info.mode = 0o644
            import io

            tar.addfile(info, io.BytesIO(data))
        os.chmod(tmp, 0o644)
        os.rename(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _add_file(tar: tarfile.TarFile, name: str, path: str) -> None:
    info = tarfile.TarInfo(name)
    info.size = os.stat(path).st_size
    info.mode = 0o644
    with open(path, "rb") as src:
        tar.addfile(info, src)


def _add_layer(store: ImageStore, tar: tarfile.TarFile, name: str, desc: Descriptor) -> None:
    path = store.blob_path(desc.digest)
    if compression_of(path) is Compression.NONE:
        _add_file(tar, name, path)
        return
    fd, plain = tempfile.mkstemp(prefix="layer-", dir=store.tmp)
    try:
        with os.fdopen(fd, "wb") as out:
            copy_decompressed(path, out, f"layer {desc.digest}")
        _add_file(tar, name, plain)
    finally:
        os.unlink(plain)
