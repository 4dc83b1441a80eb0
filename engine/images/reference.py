"""Image references as Docker reads them: `busybox`, `busybox:1.36`, `ghcr.io/org/app:v1`, `name@sha256:...`.

Owns the grammar (the distribution project's reference grammar) and the normalization every other part relies
on: a name without a registry lives on `docker.io`, an official one-word name gains `library/`, and
`index.docker.io` is `docker.io`. Parsing is pure: it never looks anything up; the store decides what a
reference points to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import ImageError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_NAMESPACE = "library"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DOMAIN_RE = re.compile(_DOMAIN)
_TAG_RE = re.compile(_TAG)
_DIGEST_RE = re.compile(_DIGEST)
_HEX64_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalized reference: `domain/path[:tag][@digest]`, e.g. docker.io/library/busybox:latest."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The fully qualified repository name: docker.io/library/busybox."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The name as Docker prints it: busybox, user/app, ghcr.io/org/app."""
        if self.domain == DEFAULT_DOMAIN:
            prefix = OFFICIAL_NAMESPACE + "/"
            if self.path.startswith(prefix) and "/" not in self.path[len(prefix):]:
                return self.path[len(prefix):]
            return self.path
        return self.name

    def with_default_tag(self) -> Reference:
        """This reference, tagged `latest` when it names neither a tag nor a digest."""
        if self.tag is None and self.digest is None:
            return Reference(self.domain, self.path, DEFAULT_TAG, None)
        return self

    def __str__(self) -> str:
        return self._render(self.name)

    def familiar(self) -> str:
        """The short form Docker shows in RepoTags: busybox:latest."""
        return self._render(self.familiar_name)

    def _render(self, name: str) -> str:
        text = name
        if self.tag is not None:
            text += ":" + self.tag
        if self.digest is not None:
            text += "@" + self.digest
        return text


def is_image_id_like(text: str) -> bool:
    """Whether text is a full image id (64 hex digits, with or without `sha256:`)."""
    return bool(_HEX64_RE.fullmatch(text.removeprefix("sha256:")))


def parse_reference(text: str) -> Reference:
    """Parse and normalize a reference; raise ImageError saying which part is malformed.

    No default tag is added here (`with_default_tag()` does that), so a caller can tell `busybox` from
    `busybox:latest` when it matters (e.g. `rade images busybox`).
    """
    if not text:
        raise ImageError("empty image reference", "name an image, e.g. busybox or busybox:latest")
    remainder = text
    digest = None
    if "@" in remainder:
        remainder, digest = remainder.split("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise ImageError(f"invalid reference {text!r}: {digest!r} is not a digest",
                             "a digest looks like sha256:<64 hex digits>")
    tag = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not _TAG_RE.fullmatch(tag):
            raise ImageError(f"invalid reference {text!r}: {tag!r} is not a valid tag",
                             "a tag is up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
    if not remainder:
        raise ImageError(f"invalid reference {text!r}: no repository name")
    domain, path = _split_domain(remainder)
    if not _DOMAIN_RE.fullmatch(domain):
        raise ImageError(f"invalid reference {text!r}: {domain!r} is not a registry host")
    if path != path.lower() and _PATH_RE.fullmatch(path.lower()):
        raise ImageError(f"invalid reference {text!r}: repository name must be lowercase")
    if not _PATH_RE.fullmatch(path):
        raise ImageError(f"invalid reference {text!r}: {path!r} is not a repository name",
                         "names are lowercase letters and digits separated by '.', '_', '__', '-' or '/'")
    if domain == DEFAULT_DOMAIN and _HEX64_RE.fullmatch(path.removeprefix(OFFICIAL_NAMESPACE + "/")) and tag is None:
        raise ImageError(f"invalid reference {text!r}: a 64-digit hexadecimal string is an image id, not a name")
    if len(domain) + 1 + len(path) > NAME_MAX:
        raise ImageError(f"invalid reference {text!r}: repository name longer than {NAME_MAX} characters")
    return Reference(domain, path, tag, digest)


def _split_domain(name: str) -> tuple[str, str]:
    """Split off the registry host the way Docker does: the first component is a host only if it looks
    like one (has a '.' or a ':' port, or is `localhost`, or has an upper-case letter)."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"{OFFICIAL_NAMESPACE}/{path}"
    return domain, path
