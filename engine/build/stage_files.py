"""`COPY --from=STAGE|IMAGE`: the files a copy names, taken out of another image into a host directory,
from which the step's layer is then written as from a build context.

The image's layers are mounted read-only in a child's private mount namespace and the child chroots into
them (`engine.containers.rootview`), so sources, globs and symlinks resolve inside that image, never on
the host; what it sends back is unpacked by the image store's safe extractor. Each source keeps its path
from the image's root (`/app/bin/x` arrives as `app/bin/x`); a symlink named as a source is followed, as
Docker's COPY follows it.
"""

from __future__ import annotations

import glob
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from engine.build.containerfile import BuildError
from engine.containers import rootview, tree_archive


def export(root: str, image: Any, sources: list[str], where: str) -> Path:
    """A new temporary directory (under `root`) holding `sources` of `image`; the caller removes it."""
    layers = tuple(str(p) for p in image.layer_dirs()) if image is not None else ()
    out = Path(tempfile.mkdtemp(prefix=".copy-from-", dir=root))
    if not layers:
        shutil.rmtree(out)
        raise BuildError(f"{where}: the source stage has no files (FROM scratch and nothing added)")
    mountpoint = tempfile.mkdtemp(prefix=".copy-from-root-", dir=root)
    data_r, data_w = os.pipe2(os.O_CLOEXEC)

    def work() -> None:
        with os.fdopen(data_w, "wb") as pipe, tarfile.open(fileobj=pipe, mode="w|",
                                                           format=tarfile.PAX_FORMAT) as tar:
            for spec in sources:
                path = "/" + spec.lstrip("/")
                if any(ch in path for ch in "*?["):
                    matches = sorted(glob.glob(path))
                else:
                    matches = [path] if os.path.exists(path) else []  # a source symlink is followed
                if not matches:
                    raise BuildError(f"{where}: {spec}: no such file in the source image",
                                     "check the path (a symlink there is followed inside that image)")
                for match in matches:
                    arcname = os.path.normpath(match).lstrip("/") or "."
                    if arcname == ".":
                        for entry in sorted(os.listdir("/")):
                            tree_archive.add_tree(tar, "/" + entry, entry)
                    else:
                        tree_archive.add_tree(tar, match, arcname, follow_top=True)

    try:
        pid, err_r = rootview.start_in_root(rootview.RootPlan(lower_dirs=layers, mountpoint=mountpoint), work,
                                            close_in_child=(data_r,))
        os.close(data_w)
        try:
            with os.fdopen(data_r, "rb") as stream:
                tree_archive.CopyExtractor(str(out), f"{where} (files of the source image)").run_stream(stream)
        except BaseException:
            try:
                rootview.finish_child(pid, err_r)
            except rootview.RootWorkError as child:
                if not child.broken_pipe:
                    raise child from None
            raise
        rootview.finish_child(pid, err_r)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        os.rmdir(mountpoint)
    return out
