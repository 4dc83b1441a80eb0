"""The subcommands of `rade`, one module a group; `COMMAND_MODULES` is the order they are registered in.

Each module has `register(subparsers)`; a command is registered only once it works.
"""

from __future__ import annotations

from types import ModuleType

from rade.commands import (
    build,
    cluster,
    container_views,
    containers,
    devcluster,
    images,
    job_logs,
    keys,
    registry,
    spec,
)

COMMAND_MODULES: tuple[ModuleType, ...] = (spec, registry, containers, container_views, build, cluster, images, devcluster,
                                           job_logs, keys)
