"""The container-operation tests share the container tests' fixtures (a root with busybox, the command,
and the leak check after every test)."""

from tests.engine.containers.conftest import image_root, rade  # noqa: F401
