"""The build step cache: ROOT/build-cache/<key>.json -> the image a step made, where the key is the hash
of (parent image id, the instruction after substitution, the content hash of what it copies).

A hit is used only while its image still exists in the store, so `rmi` never leaves a dangling entry
that would break a build. Entries are written temp-then-rename; two builds racing write the same value.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def step_key(parent_id: str, instruction: str, content: str = "") -> str:
    h = hashlib.sha256()
    for part in (parent_id, instruction, content):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


class BuildCache:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.base = Path(root) / "build-cache"

    def get(self, key: str) -> str | None:
        try:
            return json.loads((self.base / f"{key}.json").read_text())["image_id"]
        except (OSError, ValueError, KeyError):
            return None

    def put(self, key: str, image_id: str) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        path = self.base / f"{key}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"image_id": image_id}))
        os.replace(tmp, path)
