"""`rade import`: a root filesystem tarball (plain, gzip or zstd) becomes a one-layer image.

The tar is stored uncompressed, so its blob digest is its diff id, and registered like any other image:
ingest_blob, then register_image. `--change` takes the Dockerfile instructions `docker import -c` takes
(CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE), turned into image config fields here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
from typing import Any

from engine.errors import ImageError
from engine.images.compression import decompressed
from engine.images.content import OCI_CONFIG, OCI_LAYER, Descriptor
from engine.images.image import Image
from engine.images.manifest import build_manifest, canonical_json, new_config
from engine.images.store import ImageStore, now_rfc3339

_CHANGE_KEYS = ("CMD", "ENTRYPOINT", "ENV", "WORKDIR", "USER", "LABEL", "EXPOSE")


def apply_changes(runtime: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """The runtime config with Dockerfile-style `changes` applied (`CMD ["sh"]`, `ENV A=1`...)."""
    result = json.loads(json.dumps(runtime))
    for change in changes:
        keyword, _, rest = change.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword not in _CHANGE_KEYS or not rest:
            raise ImageError(f"--change {change!r} is not an instruction rade applies",
                             f"use one of {', '.join(_CHANGE_KEYS)} followed by its value")
        if keyword in ("CMD", "ENTRYPOINT"):
            key = "Cmd" if keyword == "CMD" else "Entrypoint"
            result[key] = _exec_form(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]
        elif keyword == "ENV":
            env = [e for e in result.get("Env") or []]
            for name, value in _pairs(rest, change):
                env = [e for e in env if e.split("=", 1)[0] != name] + [f"{name}={value}"]
            result["Env"] = env
        elif keyword == "LABEL":
            result["Labels"] = {**(result.get("Labels") or {}), **dict(_pairs(rest, change))}
        elif keyword == "EXPOSE":
            ports = dict(result.get("ExposedPorts") or {})
            for port in rest.split():
                ports[port if "/" in port else port + "/tcp"] = {}
            result["ExposedPorts"] = ports
        else:
            result["WorkingDir" if keyword == "WORKDIR" else "User"] = rest
    return result


def _exec_form(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageError(f"{text!r} is not a JSON list of strings", 'write e.g. CMD ["sh", "-c", "echo hi"]')
    return value


def _pairs(text: str, change: str) -> list[tuple[str, str]]:
    words = shlex.split(text)
    if len(words) == 2 and "=" not in words[0]:
        return [(words[0], words[1])]  # the old `ENV NAME value` form
    pairs = []
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise ImageError(f"--change {change!r}: {word!r} is not NAME=VALUE")
        pairs.append((name, value))
    return pairs


def import_rootfs(store: ImageStore, source: str, reference: str | None = None,
                  changes: list[str] | None = None, message: str = "") -> Image:
    """Make a one-layer image of a rootfs tarball at `source` ('-' for stdin), tagged `reference`."""
    with contextlib.ExitStack() as stack:
        path = source
        if source == "-":
            fd, path = tempfile.mkstemp(prefix="import-", dir=store.tmp)
            stack.callback(os.unlink, path)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        elif not os.path.isfile(source):
            raise ImageError(f"{source}: no such file", "give a tar of a root filesystem, or - for stdin")
        with decompressed(path, source) as plain:
            layer = store.ingest_blob(plain, media_type=OCI_LAYER)
    created = now_rfc3339()
    history = [{"created": created, "created_by": f"rade import {os.path.basename(source)}",
                **({"comment": message} if message else {})}]
    runtime = apply_changes({}, changes or [])
    config = canonical_json(new_config([layer.digest], created, history, runtime))
    config_desc = store.blobs.ingest_bytes(config, OCI_CONFIG)
    manifest = build_manifest(config_desc, [Descriptor(OCI_LAYER, layer.digest, layer.size)])
    image = store.register_image(manifest)
    if reference is not None:
        store.tag(image, reference)
    return store.get(image.id)
