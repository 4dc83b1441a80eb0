"""Container names: the rule a given name must follow, and Docker-style random names (`adjective_scientist`)
for containers started without `--name`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from engine.errors import ContainerError

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

_ADJECTIVES = (
    "agile", "bold", "brave", "calm", "clever", "crisp", "daring", "eager", "fair", "fleet", "gentle",
    "happy", "humble", "keen", "kind", "lively", "lucid", "merry", "nimble", "noble", "patient", "polite",
    "proud", "quick", "quiet", "rapid", "serene", "sharp", "steady", "swift", "tidy", "vivid", "wise",
    "witty", "zealous",
)
# People whose work made cluster computing what it is.
_SURNAMES = (
    "amdahl", "backus", "cray", "dijkstra", "dongarra", "gropp", "gustafson", "hoare", "hopper", "karp",
    "kernighan", "knuth", "lamport", "liskov", "lovelace", "mccarthy", "milner", "moler", "neumann",
    "ritchie", "shannon", "sterling", "tanenbaum", "thompson", "torvalds", "turing", "valiant", "wilkes",
    "wirth", "yelick",
)


def check_name(name: str) -> str:
    """`name` if it is a legal container name; ContainerError saying the rule otherwise."""
    if not NAME_RE.match(name) or len(name) > 128:
        raise ContainerError(f"invalid container name {name!r}",
                             "use letters, digits, '_', '.' and '-', starting with a letter or digit")
    return name


def _pick(choices: Sequence[str]) -> str:
    # os.urandom rather than the random module: its import costs `rade run` ~10 ms.
    return choices[int.from_bytes(os.urandom(4), "big") % len(choices)]


def random_name(taken: set[str], pick: Callable[[Sequence[str]], str] = _pick) -> str:
    """A free `adjective_surname`, with a number suffix once the plain pairs seem taken."""
    for attempt in range(1000):
        name = f"{pick(_ADJECTIVES)}_{pick(_SURNAMES)}"
        if attempt > 10:
            name += str(int.from_bytes(os.urandom(2), "big") % 100)
        if name not in taken:
            return name
    raise ContainerError("could not find a free random container name", "give one with --name")
