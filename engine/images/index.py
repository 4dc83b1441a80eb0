"""The image index: one record per image (ROOT/images/images/<id hex>.json) and the tag table (tags.json).

A record says which manifests describe the image (the first is the one `save` writes) and the sizes the
store measured; the tag table maps `docker.io/library/busybox:latest` to an image id, and
`name@sha256:...` repo digests likewise. Writers hold ROOT/images/index.lock and replace whole files
atomically; readers never lock and see a complete old or new file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from engine.errors import ImageError
from engine.filelock import file_lock
from engine.images.atomic import read_json, write_json_atomic
from engine.images.content import digest_hex

INDEX_FORMAT = 1


class ImageIndex:
    """Image records and tags under `root` (ROOT/images)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.records_dir = os.path.join(root, "images")
        self.tags_path = os.path.join(root, "tags.json")
        self.lock_path = os.path.join(root, "index.lock")
        os.makedirs(self.records_dir, exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the index lock: for read-modify-write of records and tags."""
        with file_lock(self.lock_path):
            yield

    # -- records ------------------------------------------------------------------------------------------

    def record_path(self, image_id: str) -> str:
        return os.path.join(self.records_dir, digest_hex(image_id) + ".json")

    def get(self, image_id: str) -> dict[str, Any] | None:
        """The record of an image id, or None."""
        record = read_json(self.record_path(image_id))
        if record is not None and (not isinstance(record, dict) or record.get("id") != image_id):
            raise ImageError(f"image record {self.record_path(image_id)} is corrupt",
                             "remove the file and load the image again")
        return record

    def put(self, record: dict[str, Any]) -> None:
        """Write a record (caller holds the lock)."""
        write_json_atomic(self.record_path(record["id"]), {"version": INDEX_FORMAT, **record})

    def delete(self, image_id: str) -> None:
        """Delete a record (caller holds the lock)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.record_path(image_id))

    def ids(self) -> list[str]:
        """Every recorded image id."""
        return ["sha256:" + name[:-5] for name in os.listdir(self.records_dir)
                if name.endswith(".json") and len(name) == 69]

    # -- tags ---------------------------------------------------------------------------------------------

    def tags(self) -> dict[str, dict[str, str]]:
        """{'tags': {ref: id}, 'digests': {name@digest: id}}: the current table."""
        table = read_json(self.tags_path, {}) or {}
        return {"tags": dict(table.get("tags", {})), "digests": dict(table.get("digests", {}))}

    def put_tags(self, table: dict[str, dict[str, str]]) -> None:
        """Replace the tag table (caller holds the lock)."""
        write_json_atomic(self.tags_path, {"version": INDEX_FORMAT, **table})
