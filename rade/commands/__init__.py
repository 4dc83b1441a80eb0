"""The subcommands of `rade`, one module a group, and the command words each module registers.

Each module has `register(subparsers)`; a command is registered only once it works. `COMMANDS` names the
modules in the order they are registered, with the words they add: `rade WORD ...` imports and registers
only the modules that add WORD (a word may be shared: `logs` is a container's and a job's), so a command
pays for its own parsers and imports alone. A word missing from the table still works, through the whole
table (as `rade --help` does); tests/cli checks the table against what the modules register.
"""

from __future__ import annotations

import importlib
from types import ModuleType

COMMANDS: dict[str, tuple[str, ...]] = {
    "spec": ("validate", "schema"),
    "registry": ("pull", "push", "login", "logout"),
    "containers": ("run", "create", "start", "stop", "restart", "kill", "rm", "wait", "attach"),
    "container_views": ("ps", "logs", "top", "stats", "inspect", "diff", "commit", "exec", "info", "volume"),
    "container_state": ("pause", "unpause", "rename", "port"),
    "copy": ("cp",),
    "build": ("build",),
    "cluster": ("submit", "queue", "q", "show", "cancel", "nodes", "drain", "resume", "scheduler", "agent"),
    "images": ("images", "tag", "rmi", "history", "save", "load", "import", "image"),
    "devcluster": ("cluster",),
    "job_logs": ("logs",),
    "keys": ("keys",),
    "acct": ("acct",),
}


def load(name: str) -> ModuleType:
    """The command module `name` of `COMMANDS`, imported."""
    return importlib.import_module(f"{__name__}.{name}")


def modules_for(word: str | None) -> list[ModuleType]:
    """The modules to register for `rade WORD`, in registration order; all of them for a word the table
    does not know (or None: no word, `--help`), so that argparse lists every command or says which is wrong."""
    names = [name for name, words in COMMANDS.items() if word in words]
    return [load(name) for name in (names or COMMANDS)]
