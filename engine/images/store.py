"""The image store under ROOT/images: the one API every other part uses to keep and find images.

Layout (format 1):

    ROOT/images/blobs/sha256/<hex>     manifests, configs, layer tars, by digest      (blobs.py)
    ROOT/images/layers/<hex>/diff      each layer unpacked once, keyed by diff id     (layers.py)
    ROOT/images/images/<id hex>.json   one record per image; tags.json: names -> ids  (index.py)
    ROOT/images/tmp, locks             temp files on the same filesystem; flock files

Content arrives by `ingest_blob` (verified while written) and becomes an image by `register_image`, whatever
the source: docker-archive, OCI layout, a registry, a rootfs tarball, a commit. Removal untags, deletes
records no container uses, and collects the blobs and layers nothing references any more (removal.py).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, BinaryIO

from engine.errors import ImageError
from engine.images.atomic import read_json, write_json_atomic
from engine.images.blobs import BlobStore
from engine.images.content import (
    METADATA_LIMIT,
    Descriptor,
    digest_hex,
)
from engine.images.image import Image
from engine.images.index import ImageIndex
from engine.images.layers import LayerStore
from engine.images.manifest import (
    parse_config,
    parse_manifest,
)
from engine.images.reference import is_image_id_like, parse_reference

if TYPE_CHECKING:
    from engine.images.removal import Removal

_UNPACK_WORKERS = max(1, min(4, os.cpu_count() or 1))
STORE_FORMAT = 1


def now_rfc3339() -> str:
    """The current time as image configs record it (UTC, RFC 3339, nanosecond field trimmed)."""
    import datetime  # here: a container start only reads the store

    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ImageStore:
    """The image store of the rade state root `root` (it lives in ROOT/images)."""

    def __init__(self, root: str) -> None:
        self.state_root = root
        self.root = os.path.join(root, "images")
        tmp = os.path.join(self.root, "tmp")
        locks = os.path.join(self.root, "locks")
        try:
            self.blobs = BlobStore(os.path.join(self.root, "blobs"), tmp)
            self.layers = LayerStore(os.path.join(self.root, "layers"), tmp, locks)
            self.index = ImageIndex(self.root)
            self.tmp = tmp
            self._check_format()
        except OSError as err:
            raise ImageError(f"cannot use the image store at {self.root}: {err.strerror or err}",
                             "run as root, or choose a state root you can write with --root") from None

    def _check_format(self) -> None:
        """Record the layout's format version on first use; refuse a store a newer rade wrote."""
        path = os.path.join(self.root, "format.json")
        found = read_json(path)
        if found is None:
            write_json_atomic(path, {"version": STORE_FORMAT})
        elif not isinstance(found, dict) or found.get("version") != STORE_FORMAT:
            raise ImageError(f"the image store at {self.root} has format {found!r}, this rade reads version "
                             f"{STORE_FORMAT}", "use the rade that made it, or another --root")

    # -- blobs --------------------------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        """Whether a blob with this digest is stored (as a file, or as a layer rebuildable from its files)."""
        return self.blobs.has(digest) or self.layers.is_rebuildable(digest)

    def blob_path(self, digest: str) -> str:
        """The stored blob's path (check has_blob first). A plain layer kept as its unpacked files is
        rebuilt into a blob file first, and verified."""
        path = self.blobs.path(digest)
        if not os.path.exists(path) and self.layers.is_rebuildable(digest):
            import tempfile

            fd, tmp = tempfile.mkstemp(prefix="rebuild-", dir=self.tmp)
            try:
                try:
                    self.layers.rebuild(digest, fd)
                finally:
                    os.close(fd)
                os.chmod(tmp, 0o644)
                os.rename(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        return path

    def blob_size(self, digest: str) -> int:
        """The stored blob's size in bytes."""
        if self.blobs.has(digest):
            return self.blobs.size(digest)
        size = self.layers.rebuilt_size(digest)
        if size is None:
            raise ImageError(f"blob {digest} is not in the store")
        return size

    def ingest_blob(self, stream: BinaryIO, expected_digest: str | None = None, expected_size: int | None = None,
                    media_type: str = "application/octet-stream", limit: int | None = None) -> Descriptor:
        """Store a blob from a stream, verifying digest and size when given; a mismatch leaves nothing."""
        return self.blobs.ingest(stream, expected_digest, expected_size, media_type, limit)

    def prepare_plain_layer(self, diff_id: str, path: str, offset: int, size: int, label: str,
                            media_type: str) -> Descriptor:
        """Take in a plain (uncompressed) layer tar stored at [offset, offset+size) of the file at `path`
        (a member of an archive), whose digest is its diff id: unpacked in place and checked, and kept as
        its files plus a tar-split rather than a second copy when the tar allows. Returns its blob."""
        rebuildable = self.layers.ensure_region(diff_id, path, offset, size, label)
        if not rebuildable and not self.blobs.has(diff_id):
            with open(path, "rb") as src:
                src.seek(offset)
                return self.blobs.ingest(src, diff_id, size, media_type, limit=size)
        return Descriptor(media_type, diff_id, size)

    def prepare_layer(self, diff_id: str, blob: Descriptor, label: str) -> None:
        """Unpack a stored layer blob now, ahead of `register_image` (which then finds it done): lets a
        loader unpack one layer while it reads the next."""
        self.layers.ensure(diff_id, self.blobs.path(blob.digest), blob.digest, label)

    # -- images -------------------------------------------------------------------------------------------

    def register_image(self, manifest: bytes, media_type: str | None = None) -> Image:
        """Record the image a manifest describes; its config and layer blobs must already be ingested.

        Verifies every blob's size, unpacks each layer not yet unpacked (verifying its diff id), stores the
        manifest as a blob and writes the record. Registering the same image again changes nothing;
        another manifest of the same config (compressed differently) is remembered beside the first.
        """
        parsed = parse_manifest(manifest, media_type)
        if parsed.config.size > METADATA_LIMIT:
            raise ImageError(f"image config {parsed.config.digest} is {parsed.config.size} bytes, too large for a "
                             "config", "the image is corrupt or hostile")
        for what, desc in [("config", parsed.config)] + [(f"layer {i}", d) for i, d in enumerate(parsed.layers)]:
            if not self.has_blob(desc.digest):
                raise ImageError(f"image {what} blob {desc.digest} is not in the store",
                                 "ingest every blob before registering the manifest")
            if self.blob_size(desc.digest) != desc.size:
                raise ImageError(f"image {what} blob {desc.digest} has {self.blob_size(desc.digest)} bytes, the "
                                 f"manifest says {desc.size}")
        config = parse_config(self.blobs.read(parsed.config.digest))
        if len(config.diff_ids) != len(parsed.layers):
            raise ImageError(f"manifest lists {len(parsed.layers)} layers but the config has "
                             f"{len(config.diff_ids)} diff ids")
        image_id = parsed.config.digest
        jobs = {}
        from concurrent.futures import ThreadPoolExecutor  # only here: a lookup does not pay for it

        with ThreadPoolExecutor(max_workers=_UNPACK_WORKERS) as pool:
            for i, (desc, diff_id) in enumerate(zip(parsed.layers, config.diff_ids)):
                if diff_id not in jobs and self.layers.get(diff_id) is not None:
                    continue
                if diff_id not in jobs:
                    label = f"layer {i + 1}/{len(parsed.layers)} ({digest_hex(desc.digest)[:12]})"
                    jobs[diff_id] = pool.submit(self.layers.ensure, diff_id, self.blobs.path(desc.digest),
                                                desc.digest, label)
            for job in jobs.values():
                job.result()
        infos = {diff_id: self.layers.get(diff_id) for diff_id in config.diff_ids}
        manifest_desc = self.blobs.ingest_bytes(manifest, parsed.media_type)
        with self.index.locked():
            # An rmi in another process collects only what no recorded image uses; re-check under its lock
            # that it did not take a layer of this image before the record below protects them.
            if any(self.layers.get(d) is None for d in config.diff_ids) or not self.blobs.has(image_id):
                raise ImageError(f"a layer of image {digest_hex(image_id)[:12]} was removed while it was "
                                 "being registered", "run the command again")
            record = self.index.get(image_id)
            if record is None:
                record = {
                    "id": image_id,
                    "manifests": [],
                    "created": config.created,
                    "size": sum(info.size for info in infos.values() if info is not None),
                    "registered": now_rfc3339(),
                }
            entry = {"digest": manifest_desc.digest, "media_type": parsed.media_type}
            if entry not in record["manifests"]:
                record["manifests"].append(entry)
                self.index.put(record)
        return self._image(image_id)

    def get(self, image_id: str) -> Image:
        """The image with this full id."""
        return self._image(image_id)

    def images(self) -> list[Image]:
        """Every image, newest first."""
        table = self.index.tags()
        found = [self._image(image_id, table) for image_id in self.index.ids()]
        return sorted(found, key=lambda image: image.created or "", reverse=True)

    def resolve(self, reference_or_id: str) -> Image:
        """The image a user's words name: an id (full or a prefix of 3+ hex digits), `name[:tag]`,
        `registry/ns/name:tag`, `name@sha256:...` or `sha256:<manifest digest>`."""
        text = reference_or_id.strip()
        table = self.index.tags()
        if is_image_id_like(text):
            image_id = "sha256:" + text.removeprefix("sha256:")
            if self.index.get(image_id) is not None:
                return self._image(image_id, table)
            by_manifest = self._by_manifest_digest(image_id)
            if by_manifest is not None:
                return self._image(by_manifest, table)
        ref = None
        try:
            ref = parse_reference(text)
        except ImageError:
            pass
        if ref is not None:
            if ref.digest is not None:
                image_id = table["digests"].get(f"{ref.name}@{ref.digest}") or self._by_manifest_digest(ref.digest)
            else:
                image_id = table["tags"].get(str(ref.with_default_tag()))
            if image_id is not None and self.index.get(image_id) is not None:
                return self._image(image_id, table)
        prefix = text.removeprefix("sha256:")
        if len(prefix) >= 3 and all(c in "0123456789abcdef" for c in prefix):
            matches = [i for i in self.index.ids() if digest_hex(i).startswith(prefix)]
            if len(matches) == 1:
                return self._image(matches[0], table)
            if len(matches) > 1:
                raise ImageError(f"image id prefix {prefix!r} is ambiguous ({len(matches)} images)",
                                 "give more digits of the id")
        raise ImageError(f"no such image: {reference_or_id}",
                         "see 'rade images'; load, pull, import or bootstrap it first")

    def tag(self, image: Image, reference: str) -> None:
        """Point a name (`name[:tag]`, default `latest`; or `name@digest`, a repo digest) at the image."""
        ref = parse_reference(reference)
        with self.index.locked():
            table = self.index.tags()
            if ref.digest is not None:
                table["digests"][f"{ref.name}@{ref.digest}"] = image.id
            else:
                table["tags"][str(ref.with_default_tag())] = image.id
            self.index.put_tags(table)

    def remove(self, reference: str, force: bool = False) -> Removal:
        """`rmi`: untag `reference`, and delete the image when no tag is left and no container uses it
        (see removal.py)."""
        from engine.images.removal import remove_image

        return remove_image(self, reference, force)

    def discard_unreferenced(self, blobs: set[str], diff_ids: set[str]) -> None:
        """After a failed load: delete these blobs and layers unless a registered image references them."""
        from engine.images.removal import discard_unreferenced

        discard_unreferenced(self, blobs, diff_ids)

    def commit(self, parent: Image | None, layer_tar_path: str | None, config_changes: dict[str, Any],
               history_entry: dict[str, Any], tag: str | None = None) -> Image:
        """A new image: `parent` plus one layer (an uncompressed tar, whiteouts as `.wh.` entries; None adds
        a metadata-only step), its runtime config updated by `config_changes` (Env, Cmd, WorkingDir...: a
        value of None deletes the key), and `history_entry` (created_by, comment...) appended; tagged `tag`.
        See commit.py."""
        from engine.images.commit import commit_image

        return commit_image(self, parent, layer_tar_path, config_changes, history_entry, tag)

    # -- internals ----------------------------------------------------------------------------------------

    def _image(self, image_id: str, table: dict[str, dict[str, str]] | None = None) -> Image:
        record = self.index.get(image_id)
        if record is None:
            raise ImageError(f"no such image: {image_id}")
        table = table if table is not None else self.index.tags()
        primary = record["manifests"][0]
        manifest = self.blobs.read(primary["digest"])
        parsed = parse_manifest(manifest, primary["media_type"])
        config = parse_config(self.blobs.read(image_id))
        tags = sorted(_familiar(r) for r, i in table["tags"].items() if i == image_id)
        digests = sorted(_familiar(r) for r, i in table["digests"].items() if i == image_id)
        return Image(image_id, primary["digest"], parsed.media_type, manifest, config.raw, parsed.layers,
                     config.diff_ids, tuple(tags), tuple(digests), config.created, int(record.get("size", 0)),
                     self.layers.root)

    def _by_manifest_digest(self, digest: str) -> str | None:
        for image_id in self.index.ids():
            record = self.index.get(image_id) or {}
            if any(m["digest"] == digest for m in record.get("manifests", [])):
                return image_id
        return None


def _familiar(key: str) -> str:
    ref = parse_reference(key)
    return ref.familiar()
