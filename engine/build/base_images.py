"""The images a build names that are not in the store (`FROM image`, `COPY --from=image`): pulled from
their registry, as `docker build` pulls a missing base, with `rade pull`'s progress display.

The policy is podman's `--pull`: "missing" (the default, as `docker build`) pulls only a miss and uses a
name the store holds as it is; "always" pulls every registry name once a build, so a moved tag is seen
(layers the store holds are not fetched again); "never" pulls nothing, a miss is an error. A name that
is not a reference at all (`sha256:...` of an image that is not here) is the store's "no such image".
Whatever stops the pull (registry unreachable, unknown repository, login needed) is one line naming the
Containerfile line, with the registry's reason.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

from engine.build.containerfile import BuildError
from engine.errors import ImageError

PULL_POLICIES = ("missing", "always", "never")


class BaseImages:
    """Finds the images a build names in the store, pulling them as the policy says."""

    def __init__(self, root: str, store: Any, options: Any = None, out: Callable[[str], None] = print,
                 progress: bool = True, progress_stream: TextIO | None = None, pull: str = "missing") -> None:
        if pull not in PULL_POLICIES:
            raise BuildError(f"--pull={pull}: no such policy", f"use one of {', '.join(PULL_POLICIES)}")
        self.pull = pull
        self.pulled: dict[str, Any] = {}  # with "always": what this build pulled already
        self.root = root
        self.store = store  # engine.images.store.ImageStore
        self.options = options  # engine.images.transfer.RegistryOptions; None: the store's saved logins
        self.out = out
        self.progress = progress
        self.progress_stream = progress_stream

    def get(self, ref: str, where: str, missing: str) -> Any:
        """The image `ref` names, pulled if the store does not hold it; `missing` says, for an error, how
        the Containerfile named what is not here (e.g. "FROM x is not a local image")."""
        if self.pull == "always" and is_pullable(ref):
            if ref not in self.pulled:
                self.pulled[ref] = self._pull(ref, where, f"{ref} could not be refreshed")
            return self.pulled[ref]
        try:
            return self.store.resolve(ref)
        except ImageError as err:
            if self.pull == "never":
                raise BuildError(f"{where}: {missing}", "pull it first, or build without --pull=never") from None
            if not is_pullable(ref):
                raise BuildError(f"{where}: {missing}", err.hint) from None
        return self._pull(ref, where, missing)

    def _pull(self, ref: str, where: str, missing: str) -> Any:
        from engine.images.progress import NoProgress, progress_for
        from engine.images.transfer import pull

        self.out(f"Trying to pull {ref}...")
        progress = progress_for(self.progress_stream or sys.stderr) if self.progress else NoProgress()
        try:
            image = pull(self.store, ref, self._options(), progress)
        except ImageError as err:
            raise BuildError(f"{where}: {missing}, and pulling it failed: {err.message}",
                             err.hint or "check the name, or 'rade login' to its registry") from None
        finally:
            progress.close()
        digest = next((d.split("@", 1)[1] for d in image.repo_digests if "@" in d), "")
        if digest:
            self.out(f"Digest: {digest}")
        return image

    def _options(self) -> Any:
        if self.options is not None:
            return self.options
        from engine.images.credentials import CredentialStore, default_auth_file
        from engine.images.transfer import RegistryOptions

        return RegistryOptions(credentials=CredentialStore(default_auth_file(self.root)))


def is_pullable(ref: str) -> bool:
    """Whether `ref` is a registry reference (`name[:tag]`, `host/name@sha256:...`), not an image id."""
    from engine.images.reference import is_image_id_like, parse_reference

    if ref.startswith("sha256:") or is_image_id_like(ref):
        return False
    try:
        parse_reference(ref)
    except ImageError:
        return False
    return True
