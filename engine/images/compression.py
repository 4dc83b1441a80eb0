"""Reading compressed layer tars: gzip in-process (zlib), zstd through the `zstd` program.

zstd goes through Debian's `zstd` binary rather than a Python binding: no extra dependency, and the
decompression runs in a second process, on another core, while rade writes the files it yields.
"""

from __future__ import annotations

import contextlib
import gzip
import shutil
import subprocess
from collections.abc import Iterator
from typing import BinaryIO

from engine.errors import ImageError
from engine.images.content import Compression, sniff_compression


def compression_of(path: str) -> Compression:
    """The compression of the file at path, from its first bytes."""
    with open(path, "rb") as src:
        return sniff_compression(src.read(4))


@contextlib.contextmanager
def decompressed(path: str, label: str) -> Iterator[BinaryIO]:
    """A stream of the uncompressed bytes of a plain, gzip or zstd file; errors name `label`."""
    kind = compression_of(path)
    if kind is Compression.NONE:
        with open(path, "rb") as src:
            yield src
    elif kind is Compression.GZIP:
        with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as plain:
            try:
                yield plain  # type: ignore[misc]
            except (gzip.BadGzipFile, EOFError, OSError) as err:
                if isinstance(err, ImageError):
                    raise
                raise ImageError(f"{label}: corrupt gzip data: {err}") from None
    else:
        with _zstd_stream(path, label) as plain:
            yield plain


@contextlib.contextmanager
def _zstd_stream(path: str, label: str) -> Iterator[BinaryIO]:
    if shutil.which("zstd") is None:
        raise ImageError(f"{label} is zstd-compressed and the zstd program is missing", "install Debian's zstd")
    proc = subprocess.Popen(["zstd", "-dcq", "--", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    failed = False
    try:
        yield proc.stdout  # type: ignore[misc]
    except BaseException:
        failed = True
        raise
    finally:
        proc.stdout.close()
        if failed:
            proc.kill()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        code = proc.wait()
        if code != 0 and not failed:
            raise ImageError(f"{label}: zstd could not decompress it: {err or f'exit {code}'}")


def copy_decompressed(path: str, out: BinaryIO, label: str) -> int:
    """Write the uncompressed bytes of `path` to `out`; return how many."""
    total = 0
    with decompressed(path, label) as src:
        while chunk := src.read(1 << 20):
            out.write(chunk)
            total += len(chunk)
    return total
