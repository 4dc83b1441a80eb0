"""Fixtures for the image store tests: a fresh state root, and builders for layers and images in memory."""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from engine.images.content import OCI_CONFIG, OCI_LAYER
from engine.images.image import Image
from engine.images.manifest import build_manifest, canonical_json, new_config
from engine.images.store import ImageStore


@dataclass(frozen=True)
class Entry:
    """One tar entry to build: a file (data), a directory (data None), a symlink or hard link (link)."""

    name: str
    data: bytes | None = b""
    kind: bytes = tarfile.REGTYPE
    link: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 1_600_000_000
    xattrs: dict[str, str] | None = None


def file(name: str, data: bytes = b"", mode: int = 0o644, **kw: object) -> Entry:
    return Entry(name, data, tarfile.REGTYPE, mode=mode, **kw)  # type: ignore[arg-type]


def directory(name: str, mode: int = 0o755, **kw: object) -> Entry:
    return Entry(name, None, tarfile.DIRTYPE, mode=mode, **kw)  # type: ignore[arg-type]


def symlink(name: str, target: str) -> Entry:
    return Entry(name, None, tarfile.SYMTYPE, link=target, mode=0o777)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, None, tarfile.LNKTYPE, link=target)


def tar_bytes(entries: list[Entry]) -> bytes:
    """An uncompressed PAX tar holding the entries in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.kind
            info.mode = entry.mode
            info.uid, info.gid = entry.uid, entry.gid
            info.mtime = entry.mtime
            info.linkname = entry.link
            if entry.xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in entry.xattrs.items()}
            if entry.kind == tarfile.REGTYPE and entry.data is not None:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def add_image(store: ImageStore, layers: list[bytes], tag: str | None = None,
              runtime: dict[str, object] | None = None, created: str = "2024-01-01T00:00:00Z") -> Image:
    """Ingest uncompressed layer tars and a config, register the manifest, tag it: an image in the store."""
    descs = [store.ingest_blob(io.BytesIO(layer), media_type=OCI_LAYER) for layer in layers]
    history = [{"created": created, "created_by": f"layer {i}"} for i in range(len(layers))]
    config = canonical_json(new_config([d.digest for d in descs], created, history, runtime or {"Cmd": ["sh"]}))
    config_desc = store.ingest_blob(io.BytesIO(config), media_type=OCI_CONFIG)
    image = store.register_image(build_manifest(config_desc, descs))
    if tag is not None:
        store.tag(image, tag)
        image = store.get(image.id)
    return image


class Kit:
    """The builders above, handed to tests as the `kit` fixture (test modules cannot import conftest)."""

    Entry = Entry
    file = staticmethod(file)
    directory = staticmethod(directory)
    symlink = staticmethod(symlink)
    hardlink = staticmethod(hardlink)
    tar = staticmethod(tar_bytes)
    image = staticmethod(add_image)


@pytest.fixture
def kit() -> type[Kit]:
    return Kit


@pytest.fixture
def state_root() -> Iterator[str]:
    """An empty rade state root, removed afterwards (layers hold read-only dirs and devices: as root)."""
    path = tempfile.mkdtemp(prefix="rade-images-test-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def store(state_root: str) -> ImageStore:
    return ImageStore(state_root)
