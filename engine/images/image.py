"""An image as the rest of rade sees it: id, manifest, config, tags, and its layer directories.

Built by the store from its records; holds no open files. `layer_dirs()` is what a container's overlayfs
mount needs, computed from paths alone so that starting 100 containers of an image copies nothing and costs
the same whatever the image's size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from engine.images.content import Descriptor, digest_hex


@dataclass(frozen=True, slots=True, eq=False)
class Image:
    """One stored image. `id` is the config digest (as Docker's image id); diff ids are bottom layer first."""

    id: str
    manifest_digest: str
    manifest_media_type: str
    manifest: bytes
    config: dict[str, Any]
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    created: str | None
    size: int
    layers_root: str

    @property
    def short_id(self) -> str:
        """The 12 hex digits Docker shows."""
        return digest_hex(self.id)[:12]

    @property
    def history(self) -> list[dict[str, Any]]:
        """The config's history entries, oldest first."""
        history = self.config.get("history")
        return [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []

    @property
    def runtime_config(self) -> dict[str, Any]:
        """The config's `config` section: Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts, Labels..."""
        section = self.config.get("config")
        return section if isinstance(section, dict) else {}

    def layer_dirs(self) -> list[str]:
        """The unpacked layer directories in overlayfs lowerdir order: the TOP layer first, the base last.

        overlayfs reads `lowerdir=A:B:C` with A on top, so this is the reverse of the config's diff_ids
        (which list the base first). Join with ':' for the mount option.
        """
        return [os.path.join(self.layers_root, digest_hex(d), "diff") for d in reversed(self.diff_ids)]
