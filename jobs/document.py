"""YAML text to a tree of `Node`s that remember where each value was written.

PyYAML's composer gives nodes with positions but no values; its loaders give values but no positions. We
compose (which constructs nothing, so no YAML tag can run code) and build our own tree, constructing only
scalars through the safe constructor. A scalar also keeps its source text when written plain, because YAML
1.1 reads `30:00` as the base-60 integer 1800 and `yes` as true: fields such as durations and names read
what the user wrote, not what YAML made of it.

Syntax errors, an empty file, a file that is not a mapping, undecodable bytes or a missing file stop
loading (`SpecError` with one located problem); duplicate and non-text keys are collected as problems and
loading goes on, so the user sees them together with every other mistake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from jobs.problems import Mark, Problem, Problems, SpecError

# Bounds that keep a hostile document (alias bombs, deep nesting) from eating the machine.
MAX_NODES = 100_000
MAX_DEPTH = 64
MAX_BYTES = 1 << 20

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class Node:
    """A value and where it was written.

    `value` is a scalar (str, int, float, bool, None, or a date YAML recognised), a list of Nodes, or a
    dict from key text to Node. `text` is the source text of a plain (unquoted) scalar, else None.
    `keys` holds, for a mapping, where each key was written.
    """

    value: Any
    mark: Mark
    text: str | None = None
    keys: dict[str, Mark] = field(default_factory=dict)

    @property
    def is_mapping(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_sequence(self) -> bool:
        return isinstance(self.value, list)

    @property
    def is_scalar(self) -> bool:
        return not isinstance(self.value, dict | list)


def load_document(text: str, filename: str, problems: Problems) -> Node:
    """The mapping at the top of a job file; raises SpecError when there is none to validate."""
    if len(text) > MAX_BYTES:
        _fail(Mark(filename, 1, 1), f"the file is larger than {MAX_BYTES // 1024} KiB; a job spec is a few lines")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        _fail(*_yaml_problem(err, filename))
    except yaml.reader.ReaderError as err:
        code = ord(err.character) if isinstance(err.character, str) else err.character
        _fail(_offset_mark(text, err.position, filename),
              f"the control character U+{code:04X} is not allowed in YAML; remove it")
    except yaml.YAMLError as err:
        _fail(Mark(filename, 1, 1), f"not valid YAML: {err}")
    except RecursionError:
        _fail(Mark(filename, 1, 1), f"the document is nested too deeply (more than {MAX_DEPTH} levels)")
    if root is None or (isinstance(root, ScalarNode) and root.tag.endswith(":null")):
        _fail(Mark(filename, 1, 1), "the file is empty; a job needs at least 'name' and 'image'")
    tree = _Builder(filename, problems).build(root)
    if not tree.is_mapping:
        what = "a list" if tree.is_sequence else f"the single value {str(tree.text or tree.value)[:40]!r}"
        if tree.is_scalar and re.match(r"\s*[\w-]+:\S", str(tree.value)):
            _fail(tree.mark, f"the file holds {what}, not fields: a key needs a space after its ':' "
                             "(write 'name: my-job', not 'name:my-job')")
        _fail(tree.mark, f"the file holds {what}, not a mapping of job fields "
                         "(write one field a line, e.g. 'name: my-job')")
    return tree


def load_value(text: str, origin: str, problems: Problems) -> Node:
    """One YAML value given on the command line (`--set key=VALUE`), every node marked with `origin`."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader) if text.strip() else None
    except (yaml.YAMLError, RecursionError) as err:
        reason = err.problem if isinstance(err, yaml.MarkedYAMLError) and err.problem else "not valid YAML"
        _fail(Mark(origin), f"{reason} (quote the value, e.g. --set 'key=\"text\"')")
    if root is None:
        return Node(None, Mark(origin), text="")
    return _Builder(origin, problems, flat=True).build(root)


def _fail(mark: Mark, message: str) -> None:
    raise SpecError([Problem.at(mark, "", message)])


class _Builder:
    """Turns composed YAML nodes into `Node`s, counting them so that aliases cannot multiply forever."""

    def __init__(self, filename: str, problems: Problems, flat: bool = False) -> None:
        self.filename = filename
        self.problems = problems
        self.flat = flat  # command-line values have no line numbers: every node gets the origin alone
        self.count = 0
        self.constructor = SafeConstructor()

    def mark(self, node: yaml.Node) -> Mark:
        if self.flat:
            return Mark(self.filename)
        return Mark(self.filename, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, depth: int = 0, active: frozenset[int] = frozenset()) -> Node:
        self.count += 1
        mark = self.mark(node)
        if self.count > MAX_NODES:
            _fail(mark, f"the document expands to more than {MAX_NODES} values (aliases?); simplify it")
        if depth > MAX_DEPTH:
            _fail(mark, f"the document is nested too deeply (more than {MAX_DEPTH} levels)")
        if id(node) in active:
            _fail(mark, "an alias refers to the value that contains it; remove the loop")
        if isinstance(node, ScalarNode):
            return self.scalar(node, mark)
        if node.tag not in (_MAP_TAG, _SEQ_TAG):
            _fail(mark, f"the tag {_short(node.tag)!r} is not allowed in a job spec; remove it")
        inner = active | {id(node)}
        if isinstance(node, SequenceNode):
            return Node([self.build(item, depth + 1, inner) for item in node.value], mark)
        return self.mapping(node, mark, depth, inner)

    def scalar(self, node: ScalarNode, mark: Mark) -> Node:
        try:
            value = self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError):
            if node.tag.startswith("tag:yaml.org,2002:") and node.tag != "tag:yaml.org,2002:binary":
                value = node.value  # e.g. an impossible timestamp: keep the text, fields judge it
            else:
                _fail(mark, f"the tag {_short(node.tag)!r} is not allowed in a job spec; remove it")
        if isinstance(value, bytes):
            _fail(mark, "binary values are not allowed in a job spec; write text")
        return Node(value, mark, text=node.value if node.style is None else None)

    def mapping(self, node: MappingNode, mark: Mark, depth: int, active: frozenset[int]) -> Node:
        values: dict[str, Node] = {}
        keys: dict[str, Mark] = {}
        merged: dict[str, tuple[Mark, Node]] = {}
        for key_node, value_node in node.value:
            key_mark = self.mark(key_node)
            if key_node.tag == _MERGE_TAG:
                # `<<: *defaults`: explicit keys win over merged ones, as YAML's merge key says.
                for source in self.merge_sources(value_node, depth, active):
                    for name, child in source.value.items():
                        merged.setdefault(name, (source.keys[name], child))
                continue
            if not isinstance(key_node, ScalarNode):
                self.problems.add(key_mark, "", "a key must be a plain name, not a list or a mapping")
                continue
            name = key_node.value
            if name in values:
                first = keys[name]
                self.problems.add(key_mark, name, f"duplicate key (first written at line {first.line}); "
                                                  "keep only one")
                continue
            keys[name] = key_mark
            values[name] = self.build(value_node, depth + 1, active)
        for name, (key_mark, child) in merged.items():
            if name not in values:
                keys[name] = key_mark
                values[name] = child
        return Node(values, mark, keys=keys)

    def merge_sources(self, node: yaml.Node, depth: int, active: frozenset[int]) -> list[Node]:
        built = self.build(node, depth + 1, active)
        sources = built.value if built.is_sequence else [built]
        good = [source for source in sources if source.is_mapping]
        if len(good) != len(sources):
            self.problems.add(built.mark, "<<", "a merge key ('<<') takes a mapping or a list of mappings")
        return good


def _yaml_problem(err: yaml.MarkedYAMLError, filename: str) -> tuple[Mark, str]:
    """Where a YAML syntax error is best fixed, and how: PyYAML's own words name its parser's state."""
    problem = (err.problem or "not valid YAML").strip()
    context = (err.context or "").strip()
    at_problem = _mark(err.problem_mark or err.context_mark, filename)
    at_context = _mark(err.context_mark or err.problem_mark, filename)
    if problem == "expected a single document in the stream" or "another document" in problem:
        return at_problem, "a job file holds one YAML document; remove the second '---' or split the file"
    if problem.startswith("mapping values are not allowed"):
        return at_problem, ("a ':' followed by a space or a line end starts a mapping, which is not allowed "
                            "here; quote the value (e.g. \"a: b\") or fix the indentation of this line")
    if "found character '\\t'" in problem:
        return at_problem, "a tab character cannot indent YAML; indent with spaces"
    if "could not find expected ':'" in problem:
        # PyYAML notices only on the next line; the line to fix is the one the key started on.
        return at_context, ("this line is not 'key: value'; put a space after the ':' (e.g. 'image: busybox'), "
                            "or indent it if it continues the line above")
    if "end of stream" in problem and "quoted scalar" in context:
        return at_context, "this quoted text is never closed; add the closing quote"
    where = ""
    if context and err.context_mark and err.problem_mark and err.context_mark.line != err.problem_mark.line:
        where = f" ({context} that starts at line {err.context_mark.line + 1})"
    elif context:
        where = f" {context}"
    return at_problem, f"not valid YAML: {problem}{where}; check the indentation and quoting here"


def _mark(mark: yaml.Mark | None, filename: str) -> Mark:
    return Mark(filename, 1, 1) if mark is None else Mark(filename, mark.line + 1, mark.column + 1)


def _short(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def _offset_mark(text: str, position: int, filename: str) -> Mark:
    before = text[:position]
    line = before.count("\n") + 1
    return Mark(filename, line, position - (before.rfind("\n") + 1) + 1)
