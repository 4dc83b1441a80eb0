"""`rade load` and `rade save`: which archive format a file is, and the one call for each direction.

Loading recognises a docker-archive by its manifest.json and an OCI layout (directory or oci-archive) by
its oci-layout file; newer Docker archives carry both and load as docker-archive, whose RepoTags are the
names users expect. Every path ends in `ImageStore.ingest_blob` and `register_image`.
"""

from __future__ import annotations

import enum

from engine.errors import ImageError
from engine.images.archive import Bundle
from engine.images.docker_archive import Loaded, is_docker_archive, load_docker_archive, save_docker_archive
from engine.images.oci_layout import is_oci_layout, load_oci_layout, save_oci
from engine.images.store import ImageStore


class ArchiveFormat(enum.Enum):
    """The formats `rade save` writes."""

    DOCKER_ARCHIVE = "docker-archive"
    OCI_ARCHIVE = "oci-archive"
    OCI_DIR = "oci-dir"


def load_images(store: ImageStore, path: str) -> list[Loaded]:
    """Load every image in a docker-archive, oci-archive or OCI layout directory (compressed or not)."""
    with Bundle(path, store.tmp) as bundle:
        if is_docker_archive(bundle):
            return load_docker_archive(store, bundle)
        if is_oci_layout(bundle):
            return load_oci_layout(store, bundle)
    raise ImageError(f"{path} is neither a docker-archive (no manifest.json) nor an OCI layout (no oci-layout)",
                     "give what 'docker save', 'podman save', 'skopeo copy' or 'rade save' wrote")


def save_images(store: ImageStore, references: list[str], out_path: str,
                fmt: ArchiveFormat = ArchiveFormat.DOCKER_ARCHIVE) -> None:
    """Save the named images to one file; each keeps the name it was given if that is a tag."""
    chosen: dict[str, tuple] = {}
    for reference in references:
        image = store.resolve(reference)
        names = chosen.setdefault(image.id, (image, []))[1]
        if image.id.removeprefix("sha256:").startswith(reference.removeprefix("sha256:")) or \
                reference.startswith("sha256:"):
            names.extend(image.repo_tags)  # named by id: keep all its tags, as docker save does
        elif reference not in names:
            names.append(reference)
    images = [(image, list(dict.fromkeys(names))) for image, names in chosen.values()]
    if fmt is ArchiveFormat.DOCKER_ARCHIVE:
        save_docker_archive(store, images, out_path)
    else:
        save_oci(store, images, out_path, archive=fmt is ArchiveFormat.OCI_ARCHIVE)
