"""The engine's errors: what went wrong with an image, a container or a launch step, for the user."""

from __future__ import annotations

from jobs.errors import EXIT_CANNOT_RUN, EXIT_NOT_FOUND, RadeError


class ImageError(RadeError):
    """An image that cannot be found, read, stored or written: unknown name, corrupt tar, bad digest."""


class UnsafeArchiveError(ImageError):
    """A tar entry refused because it would escape its layer or is not allowed; names the entry."""


class RegistryError(ImageError):
    """A registry that refused, failed or answered something rade cannot use."""


class ContainerError(RadeError):
    """A container that does not exist, is in the wrong state for the command, or cannot be managed."""


class LaunchError(RadeError):
    """A step of the container launch failed; `step` names it (e.g. 'mount overlay root')."""

    def __init__(self, step: str, message: str, hint: str | None = None) -> None:
        super().__init__(f"{step}: {message}", hint)
        self.step = step


class CommandNotFound(LaunchError):
    """The container's command does not exist in its root: exit 127, as a shell says."""

    exit_code = EXIT_NOT_FOUND


class CommandNotExecutable(LaunchError):
    """The container's command exists but cannot be executed: exit 126."""

    exit_code = EXIT_CANNOT_RUN


class CgroupError(RadeError):
    """A cgroup that cannot be made, limited, read or removed."""
