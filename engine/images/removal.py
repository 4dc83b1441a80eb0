"""Removing images: `rmi`'s untagging and deletion, the containers that keep an image, and collecting the
blobs and layers no image references any more.

An image goes only when no tag is left on it and no container uses it; what it referenced goes with it
unless another image references it too. Only the removed image's own content is considered, so blobs
another process has ingested for an image it has not registered yet are never collected from under it.
Everything here runs under the image index's lock.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.errors import ImageError
from engine.images.manifest import parse_config, parse_manifest
from engine.images.reference import parse_reference

if TYPE_CHECKING:
    from engine.images.store import ImageStore


@dataclass(frozen=True, slots=True)
class Removal:
    """What `remove` did: references untagged and image ids deleted (as `docker rmi` prints them)."""

    untagged: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    kept_for_containers: tuple[str, ...] = ()


def remove_image(store: ImageStore, reference: str, force: bool = False) -> Removal:
    """`rmi`: untag `reference`; delete the image when no tag is left and no container uses it.

    Naming an image by id deletes it with all its tags, which needs `force` when it has several.
    A container's image is never deleted: without `force` that is refused; with it the image is only
    untagged (it stays, dangling, for the container).
    """
    image = store.resolve(reference)
    users = containers_using(store.state_root, image.id)
    with store.index.locked():
        table = store.index.tags()
        own_tags = [r for r, i in table["tags"].items() if i == image.id]
        own_digests = [r for r, i in table["digests"].items() if i == image.id]
        key = _table_key(reference)
        if key is not None and key in own_tags + own_digests and [t for t in own_tags if t != key]:
            _untag(store, table, [key])  # other tags remain: only this name goes
            return Removal(untagged=(parse_reference(key).familiar(),))
        if (key is None or key not in own_tags + own_digests) and len(own_tags) > 1 and not force:
            raise ImageError(f"image {image.short_id} is tagged in {len(own_tags)} repositories",
                             "remove the tags one by one, or use -f to remove them all")
        if users and not force:
            raise ImageError(f"image {image.short_id} is used by container {users[0][:12]}",
                             "remove the container first, or use -f to untag the image anyway")
        untagged = tuple(parse_reference(k).familiar() for k in own_tags + own_digests)
        _untag(store, table, own_tags + own_digests)
        if users:
            return Removal(untagged=untagged, kept_for_containers=(image.id,))
        record = store.index.get(image.id) or {}
        store.index.delete(image.id)
        blobs, diff_ids = _content_of(store, image.id, [m["digest"] for m in record.get("manifests", [])])
        _delete_unreferenced(store, blobs, diff_ids)
    return Removal(untagged=untagged, deleted=(image.id,))


def discard_unreferenced(store: ImageStore, blobs: set[str], diff_ids: set[str]) -> None:
    """After a failed load: delete these blobs and layers unless a registered image references them."""
    with store.index.locked():
        _delete_unreferenced(store, blobs, diff_ids)


def containers_using(state_root: str, image_id: str) -> list[str]:
    """Ids of the containers under ROOT/containers whose state.json names this image."""
    base = os.path.join(state_root, "containers")
    users = []
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return []
    for name in names:
        try:
            with open(os.path.join(base, name, "state.json"), "rb") as src:
                state = json.load(src)
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and state.get("image_id") == image_id:
            users.append(name)
    return users


def _delete_unreferenced(store: ImageStore, blobs: set[str], diff_ids: set[str]) -> None:
    """Delete those of `blobs` and `diff_ids` that no registered image references (index locked)."""
    kept_blobs: set[str] = set()
    kept_layers: set[str] = set()
    for image_id in store.index.ids():
        record = store.index.get(image_id) or {}
        more_blobs, more_layers = _content_of(store, image_id, [m["digest"] for m in record.get("manifests", [])])
        kept_blobs |= more_blobs
        kept_layers |= more_layers
    for digest in blobs - kept_blobs:
        store.blobs.remove(digest)
    for diff_id in diff_ids - kept_layers:
        store.layers.remove(diff_id)


def _content_of(store: ImageStore, image_id: str, manifests: list[str]) -> tuple[set[str], set[str]]:
    """The blobs (config, manifests, layer blobs) and diff ids an image's record references."""
    blobs = {image_id, *manifests}
    diff_ids: set[str] = set()
    try:
        diff_ids.update(parse_config(store.blobs.read(image_id)).diff_ids)
    except ImageError:
        pass
    for digest in manifests:
        try:
            blobs.update(d.digest for d in parse_manifest(store.blobs.read(digest)).layers)
        except ImageError:
            continue
    return blobs, diff_ids


def _untag(store: ImageStore, table: dict[str, dict[str, str]], keys: list[str]) -> None:
    for key in keys:
        table["tags"].pop(key, None)
        table["digests"].pop(key, None)
    store.index.put_tags(table)


def _table_key(text: str) -> str | None:
    """The tag-table key a user's reference would have (None when it is no reference)."""
    try:
        ref = parse_reference(text)
    except ImageError:
        return None
    return f"{ref.name}@{ref.digest}" if ref.digest else str(ref.with_default_tag())
