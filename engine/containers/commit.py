"""`rade commit`: a container's upper dir as one new layer on its image, with the container's config
(Cmd, Env, WorkingDir...) as the new image's config, stored through the image store."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from engine.containers import diff, launchspec
from engine.containers.record import ContainerRecord
from engine.containers.store import ContainerStore


def commit(store: ContainerStore, record: ContainerRecord, tag: str | None, message: str = "",
           author: str = "", changes: dict[str, Any] | None = None):
    """The new image (engine.images.image.Image), tagged `tag` if given."""
    from engine.images.store import ImageStore

    images = ImageStore(str(store.root))
    parent = images.resolve(record.config.image_id) if record.config.image_id else None
    cfg = record.config
    config_changes: dict[str, Any] = {
        "Env": list(cfg.env) or None,
        "Cmd": list(cfg.cmd) or None,
        "Entrypoint": list(cfg.entrypoint) or None,
        "WorkingDir": cfg.workdir if cfg.workdir not in ("", "/") else None,
        "User": cfg.user or None,
        "Labels": dict(cfg.labels) or None,
    }
    config_changes.update(changes or {})
    history = {"created_by": f"rade commit {record.name}", "comment": message}
    if author:
        history["author"] = author
    fd, path = tempfile.mkstemp(prefix=".commit-", suffix=".tar", dir=store.root)
    os.close(fd)
    try:
        diff.write_layer(store.dir(record.id).upper, Path(path), launchspec.mountpoints(record))
        return images.commit(parent, path, config_changes, history, tag)
    finally:
        os.unlink(path)

