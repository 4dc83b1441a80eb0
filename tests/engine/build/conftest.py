"""The build tests share the container tests' fixtures (a root with busybox, the leak check)."""

from tests.engine.containers.conftest import image_root, rade  # noqa: F401
