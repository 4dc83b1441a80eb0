"""`ADD http(s)://...`: a remote file downloaded for a build step, as Docker's ADD does it.

The file is fetched on every build and the step is cached by the checksum of what came (so an unchanged
file is a cache hit and a changed one rebuilds from that step); `--checksum=sha256:HEX` refuses anything
else. The file is named after the URL's last path component, written with mode 0600 and, when the server
sends Last-Modified, that time; a URL that is not downloaded whole is an error naming the URL, and nothing
of it is kept.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import posixpath
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from engine.build.containerfile import BuildError

TIMEOUT_SECONDS = 60.0
_CHUNK = 1 << 20


def is_url(word: str) -> bool:
    return word.startswith(("http://", "https://"))


def file_name(url: str, where: str = "ADD") -> str:
    """The name the download gets: the URL path's last component (Docker needs one to name the file)."""
    name = posixpath.basename(urllib.parse.urlsplit(url).path)
    if not name or name in (".", ".."):
        raise BuildError(f"{where}: ADD {url}: the URL has no file name to give the download",
                         "use a URL whose path ends in a file name")
    return name


def fetch(url: str, directory: Path, checksum: str | None = None, where: str = "ADD",
          out: Callable[[str], None] = print) -> Path:
    """Download `url` into `directory` under its file name; the file's path."""
    name = file_name(url, where)
    expected = None
    if checksum is not None:
        algorithm, _, expected = checksum.partition(":")
        if algorithm != "sha256" or len(expected) != 64:
            raise BuildError(f"{where}: --checksum={checksum} is not sha256:<64 hex digits>",
                             "give the file's sha256, e.g. --checksum=sha256:9f86d0...")
    target = directory / name
    digest = hashlib.sha256()
    size = 0
    request = urllib.request.Request(url, headers={"User-Agent": "rade-build"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            modified = response.headers.get("Last-Modified")
            length = response.headers.get("Content-Length")
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    fh.write(chunk)
                    size += len(chunk)
    except urllib.error.HTTPError as err:
        raise BuildError(f"{where}: {url}: the server answered {err.code} {err.reason}",
                         "check the URL") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise BuildError(f"{where}: {url}: cannot download: {reason}", "check the URL and the network") from None
    if length is not None and length.isdigit() and int(length) != size:
        target.unlink()
        raise BuildError(f"{where}: {url}: the download stopped at {size} of {length} bytes", "try again")
    if expected is not None and digest.hexdigest() != expected.lower():
        target.unlink()
        raise BuildError(f"{where}: {url}: the file's sha256 is {digest.hexdigest()}, not {expected}",
                         "the file changed or the checksum is wrong")
    os.chmod(target, 0o600)
    if modified:
        try:
            when = email.utils.parsedate_to_datetime(modified).timestamp()
            os.utime(target, (when, when))
        except (TypeError, ValueError):
            pass
    out(f"--> downloaded {url} ({size} bytes, sha256:{digest.hexdigest()[:12]})")
    return target
