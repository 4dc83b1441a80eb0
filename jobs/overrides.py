"""`--set field.path=value`: changes to a job spec's tree made on the command line before validation.

The value is read as YAML (so `--set tasks=3` is a number and `--set command=[sleep, 60]` a list), and every
node it adds is marked with the option itself, so a problem it causes reads
`--set resources.memory=4Gx: resources.memory: '4Gx' is not a size ...` and is checked exactly like the file.
An empty value (`--set mpi=`) unsets an optional field, as an empty value in the file does.
"""

from __future__ import annotations

from collections.abc import Sequence

from jobs.document import Node, load_value
from jobs.problems import Mark, Problems, SpecError

_USAGE = "write --set FIELD.PATH=VALUE, e.g. --set resources.memory=4G"


def apply_overrides(tree: Node, overrides: Sequence[str], problems: Problems) -> Node:
    """The tree with each override applied in order; a malformed one is a problem, the rest still apply."""
    for text in overrides:
        origin = Mark(f"--set {text}")
        key, equals, value_text = text.partition("=")
        segments = key.strip().split(".")
        if not equals or not key.strip():
            problems.add(origin, "", f"expected FIELD.PATH=VALUE; {_USAGE}")
            continue
        if any(not segment.strip() for segment in segments):
            problems.add(origin, "", f"{key!r} has an empty part between dots; {_USAGE}")
            continue
        try:
            value = load_value(value_text, origin.file, problems)
        except SpecError as err:
            problems.items.extend(err.problems)
            continue
        tree = _replace(tree, [s.strip() for s in segments], value, origin, problems, "") or tree
    return tree


def _replace(node: Node, segments: list[str], value: Node, origin: Mark, problems: Problems,
             path: str) -> Node | None:
    """A copy of `node` with the value at `segments` replaced; None (and a problem) if there is no such
    place."""
    head, rest = segments[0], segments[1:]
    where = f"{path}.{head}" if path else head
    if node.is_mapping:
        child = node.value.get(head)
        if rest:
            if child is None or child.value is None:
                child = Node({}, origin)
            child = _replace(child, rest, value, origin, problems, where)
            if child is None:
                return None
        else:
            child = value
        values = dict(node.value)
        values[head] = child
        keys = dict(node.keys)
        keys.setdefault(head, origin)
        return Node(values, node.mark, keys=keys)
    if node.is_sequence:
        items = list(node.value)
        if not head.isdigit() or int(head) >= len(items):
            problems.add(origin, where, f"{path} is a list of {len(items)}; select an item by its index "
                                        f"0..{len(items) - 1}, or set the whole list: --set {path}=[...]")
            return None
        index = int(head)
        items[index] = _replace(items[index], rest, value, origin, problems, where) if rest else value
        if items[index] is None:
            return None
        return Node(items, node.mark)
    problems.add(origin, where, f"{path} holds a single value, not fields; set it whole: --set {path}=VALUE")
    return None
