"""The build context: the directory `rade build` is given, filtered by its `.dockerignore`, the files a
COPY/ADD names in it, the content hash that keys the step cache, and the layer tar a copy becomes.

.dockerignore as Docker reads it: one pattern a line, `#` comments, `*`, `?` and `**` globs relative to
the context root, a pattern matching a directory excludes what is under it, and `!pattern` re-includes;
the last matching line wins. A source may not leave the context (`..` or an absolute path outside it).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.build.containerfile import BuildError


def _pattern_re(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                out[-1] = "(?:.*/)?"
                i += 1
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i)
            if end == -1:
                out.append(re.escape(c))
            else:
                out.append(pattern[i:end + 1])
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")


class IgnoreRules:
    """The patterns of a .dockerignore."""

    def __init__(self, lines: list[str]) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            keep = line.startswith("!")
            pattern = os.path.normpath(line[1:].strip() if keep else line).lstrip("/")
            if pattern in (".", ""):
                continue
            self.rules.append((keep, _pattern_re(pattern)))

    @classmethod
    def of(cls, context: Path) -> IgnoreRules:
        try:
            return cls((context / ".dockerignore").read_text().splitlines())
        except FileNotFoundError:
            return cls([])

    def is_ignored(self, rel: str) -> bool:
        """Whether the context path `rel` (no leading slash) is excluded."""
        ignored = False
        parts = rel.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        for keep, regex in self.rules:
            if any(regex.match(p) for p in prefixes):
                ignored = not keep
        return ignored


@dataclass(frozen=True, slots=True)
class Source:
    """A file or directory of the context to copy: `rel` its path in the context, `target` in the image."""

    rel: str
    target: str


class BuildContext:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path).resolve()
        if not self.root.is_dir():
            raise BuildError(f"build context {path} is not a directory", "give the directory to build from")
        self.ignore = IgnoreRules.of(self.root)

    def _inside(self, rel: str, spec: str) -> str:
        norm = os.path.normpath(rel.lstrip("/"))
        if norm == ".." or norm.startswith("../"):
            raise BuildError(f"COPY {spec}: the source is outside the build context",
                             "copy only files under the context directory")
        return "" if norm == "." else norm

    def expand(self, spec: str) -> list[str]:
        """The context paths a COPY source names (a glob may name several)."""
        rel = self._inside(spec, spec)
        if any(ch in rel for ch in "*?["):
            matches = []
            regex = _pattern_re(rel)  # `*` stops at `/`, as Go's filepath.Match
            for path in self.walk(""):
                if regex.match(path) and not self.ignore.is_ignored(path):
                    matches.append(path)
            if not matches:
                raise BuildError(f"COPY {spec}: no file in the context matches")
            return sorted(matches)
        if rel and (not os.path.lexists(self.root / rel) or self.ignore.is_ignored(rel)):
            raise BuildError(f"COPY {spec}: no such file in the build context",
                             "check the path, and that .dockerignore does not exclude it")
        return [rel]

    def walk(self, rel: str) -> Iterator[str]:
        """Every path under `rel` (itself excluded), skipping ignored ones, sorted."""
        base = self.root / rel if rel else self.root
        for name in sorted(os.listdir(base)):
            child = f"{rel}/{name}" if rel else name
            if self.ignore.is_ignored(child):
                continue
            yield child
            if (self.root / child).is_dir() and not (self.root / child).is_symlink():
                yield from self.walk(child)

    def plan(self, sources: list[str], dest: str, workdir: str,
             is_image_dir: Callable[[str], bool] = lambda _p: False) -> list[Source]:
        """What a COPY of `sources` to `dest` writes: each context file with its path in the image.
        A destination is a directory when it ends in `/` or `.`, when several files go there, or when the
        image already has a directory there (`is_image_dir`)."""
        to_dir = dest.endswith(("/", "/.")) or dest in (".", "..")
        if not dest.startswith("/"):
            dest = os.path.join(workdir or "/", dest)
        rels = [r for spec in sources for r in self.expand(spec)]
        dest = os.path.normpath(dest)
        to_dir = to_dir or len(rels) > 1 or is_image_dir(dest)
        out: list[Source] = []
        for rel in rels:
            full = self.root / rel if rel else self.root
            if full.is_dir() and not full.is_symlink():
                out.append(Source(rel, dest))
                for child in self.walk(rel):
                    out.append(Source(child, os.path.join(dest, child[len(rel) + 1:] if rel else child)))
            elif to_dir:
                out.append(Source(rel, os.path.join(dest, os.path.basename(rel))))
            else:
                out.append(Source(rel, dest))
        return out

    def digest(self, plan: list[Source]) -> str:
        """A hash of everything the copy writes: paths, modes, link targets and contents."""
        h = hashlib.sha256()
        for src in plan:
            full = self.root / src.rel if src.rel else self.root
            st = os.lstat(full)
            h.update(f"{src.target}\0{stat.S_IMODE(st.st_mode)}\0{stat.S_IFMT(st.st_mode)}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(full).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            h.update(b"\0")
        return h.hexdigest()

    def write_layer(self, plan: list[Source], out_path: Path, chown: tuple[int, int] | None) -> None:
        """The copy as an uncompressed layer tar."""
        with tarfile.open(out_path, "w", format=tarfile.PAX_FORMAT) as tar:
            for src in plan:
                full = self.root / src.rel if src.rel else self.root
                info = tar.gettarinfo(str(full), arcname=src.target.lstrip("/") or ".")
                info.uname = info.gname = ""
                info.uid, info.gid = chown if chown else (0, 0)
                if info.isreg():
                    with open(full, "rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)


def extract_local_archive(path: Path) -> bool:
    """Whether ADD should unpack this source (a local tar, possibly compressed) instead of copying it."""
    return path.is_file() and tarfile.is_tarfile(path)
