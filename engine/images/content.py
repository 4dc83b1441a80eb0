"""Content addressing: digests, descriptors, the media types rade reads and writes, and layer compression.

Everything in the store is named by the sha256 of its bytes; this module owns what a valid digest looks like
and what a descriptor (media type, digest, size) is, as the OCI image spec defines them. It does no I/O
beyond sniffing the first bytes of a stream.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from engine.errors import ImageError

SHA256 = "sha256"
# Manifests, configs and indexes are read whole into memory: anything bigger is not image metadata.
METADATA_LIMIT = 64 << 20
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")

# Manifests and indexes.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# Configs.
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
# Layers.
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_NONDIST_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_NONDIST_LAYER_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_NONDIST_LAYER_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
LAYER_TYPES = frozenset({
    OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_FOREIGN_LAYER_GZIP,
    OCI_NONDIST_LAYER, OCI_NONDIST_LAYER_GZIP, OCI_NONDIST_LAYER_ZSTD,
})


class Compression(enum.Enum):
    """How a layer's tar is compressed; told by its first bytes, never trusted from a media type alone."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


_MAGIC = ((b"\x1f\x8b", Compression.GZIP), (b"\x28\xb5\x2f\xfd", Compression.ZSTD))


def sniff_compression(head: bytes) -> Compression:
    """The compression of a stream that starts with `head` (at least 4 bytes when available)."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return Compression.NONE


def layer_media_type(compression: Compression, docker: bool = False) -> str:
    """The media type a layer with this compression gets in an OCI (or Docker schema 2) manifest."""
    if docker:
        if compression is Compression.ZSTD:
            raise ImageError("Docker schema 2 manifests cannot carry zstd layers", "save as oci-archive instead")
        return DOCKER_LAYER_GZIP if compression is Compression.GZIP else DOCKER_LAYER
    return {Compression.NONE: OCI_LAYER, Compression.GZIP: OCI_LAYER_GZIP, Compression.ZSTD: OCI_LAYER_ZSTD}[
        compression]


def check_digest(digest: object, what: str = "digest") -> str:
    """Return digest if it is `sha256:<64 lowercase hex>`; raise ImageError naming `what` otherwise."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        if isinstance(digest, str) and ":" in digest and not digest.startswith(SHA256 + ":"):
            raise ImageError(f"{what} {digest!r} uses an unsupported algorithm", "rade stores sha256 content only")
        raise ImageError(f"{what} {digest!r} is not a sha256 digest", "a digest looks like sha256:<64 hex digits>")
    return digest


def digest_hex(digest: str) -> str:
    """The 64 hex digits of a checked sha256 digest."""
    return check_digest(digest)[len(SHA256) + 1:]


def digest_of(data: bytes) -> str:
    """The sha256 digest of some bytes, as `sha256:<hex>`."""
    import hashlib  # here: a container start looks digests up and never computes one

    return f"{SHA256}:{hashlib.sha256(data).hexdigest()}"


@dataclass(frozen=True, slots=True)
class Descriptor:
    """What a manifest says about one blob: its media type, digest and size (OCI descriptor)."""

    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, object]:
        """The descriptor as it appears in a manifest."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    @classmethod
    def from_json(cls, data: object, what: str) -> Descriptor:
        """Read a descriptor out of parsed manifest JSON, naming `what` (e.g. 'layer 2') when it is malformed."""
        if not isinstance(data, dict):
            raise ImageError(f"{what}: descriptor is not an object")
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ImageError(f"{what}: descriptor size {size!r} is not a non-negative integer")
        media_type = data.get("mediaType", "")
        if not isinstance(media_type, str):
            raise ImageError(f"{what}: mediaType {media_type!r} is not a string")
        return cls(media_type, check_digest(data.get("digest"), f"{what} digest"), size)
