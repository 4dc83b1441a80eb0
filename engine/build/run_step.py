"""A RUN step: a container of this runtime made from the step's image (host network, the image's env,
user and workdir, no entrypoint), run attached with its output streamed to this process's stdout and
stderr, its upper dir committed as the step's layer, and the container removed whatever happened."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from engine.containers import diff, launchspec, lifecycle
from engine.containers.client import AttachClient
from engine.containers.store import ContainerStore


def run_in_container(root: str, image: Any, argv: tuple[str, ...], env: tuple[str, ...],
                     history: dict[str, Any]) -> tuple[int, Any]:
    """(exit code, the new image or None when the command failed)."""
    store = ContainerStore(root)
    record = lifecycle.create(store, lifecycle.CreateOptions(
        image=image.id, command=argv, entrypoint=(), env=env, network="host"))
    try:
        reader = lifecycle.start(store, record, attach=True)
        reader.next()
        client = AttachClient(store.dir(record.id), stdout=True, stderr=True)
        reader.close()
        try:
            sys.stdout.flush()
            outcome = client.relay(None, 1, 2)
            client.wait_closed()  # the supervisor hangs up once the container is cleaned up
        finally:
            client.close()
        if outcome.error is not None:
            from engine.build.containerfile import BuildError

            raise BuildError(f"RUN {' '.join(argv)}: {outcome.error.get('message')}", outcome.error.get("hint"))
        code = outcome.exit_code if outcome.exit_code is not None else store.get(record.id).exit_code
        if code != 0:
            return code, None
        fd, path = tempfile.mkstemp(prefix=".run-", suffix=".tar", dir=root)
        os.close(fd)
        try:
            diff.write_layer(store.dir(record.id).upper, Path(path), launchspec.mountpoints(record))
            from engine.images.store import ImageStore

            return 0, ImageStore(root).commit(image, path, {}, history)
        finally:
            os.unlink(path)
    finally:
        record = lifecycle.wait(store, store.get(record.id))
        lifecycle.remove_stopped(store, record, volumes=True)
