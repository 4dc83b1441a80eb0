"""Multi-stage Containerfiles: the instructions split into stages at each `FROM image [AS name]`, the ARGs
before the first FROM (the build's global arguments), how a stage is named from another one (`FROM name`,
`COPY --from=name|index`), and which stages a target needs.

Sans-I/O: instructions in, stages out. As BuildKit does, only the stages the target depends on are built
(`needed`); the classic builder built every stage before the target, which changes nothing but the time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.build.containerfile import BuildError, Instruction, substitute

_NAME_RE = re.compile(r"^[a-z][a-z0-9._-]*$")


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage: its position, its name ("" when unnamed), the FROM instruction and what follows it."""

    index: int
    name: str
    from_ins: Instruction
    body: tuple[Instruction, ...]

    @property
    def instructions(self) -> tuple[Instruction, ...]:
        return (self.from_ins, *self.body)


def parse_from(ins: Instruction, filename: str) -> tuple[str, str]:
    """(base reference, stage name) of `FROM image [AS name]`; the name is lower-cased, as Docker's."""
    words = ins.text.split()
    if len(words) == 1:
        return words[0], ""
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not _NAME_RE.match(name):
            raise BuildError(f"{filename}:{ins.line}: {words[2]!r} is not a stage name",
                             "start with a letter; use letters, digits, '.', '_' and '-'")
        return words[0], name
    raise BuildError(f"{filename}:{ins.line}: FROM takes an image and optionally AS NAME",
                     "e.g. FROM busybox AS builder")


def split_stages(instructions: list[Instruction], filename: str) -> tuple[list[Instruction], list[Stage]]:
    """(the global ARGs before the first FROM, the stages); stage names must be unique."""
    first = next(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    meta = instructions[:first]
    stages: list[Stage] = []
    names: set[str] = set()
    start = first
    for i in range(first + 1, len(instructions) + 1):
        if i == len(instructions) or instructions[i].keyword == "FROM":
            from_ins = instructions[start]
            _, name = parse_from(from_ins, filename)
            if name and name in names:
                raise BuildError(f"{filename}:{from_ins.line}: a stage named {name!r} is defined twice",
                                 "give each stage its own name")
            names.add(name)
            stages.append(Stage(len(stages), name, from_ins, tuple(instructions[start + 1:i])))
            start = i
    return meta, stages


def find_stage(stages: list[Stage], ref: str, before: int) -> Stage | None:
    """The stage that `ref` (a stage name, or a stage's index) names among the ones before `before`;
    None when it names none (then it is an image)."""
    for stage in stages[:before]:
        if stage.name and stage.name == ref.lower():
            return stage
    if ref.isdigit():
        index = int(ref)
        if index < before:
            return stages[index]
    return None


def dependencies(stages: list[Stage], stage: Stage, args: dict[str, str]) -> list[Stage]:
    """The earlier stages `stage` builds on: its FROM, and the sources of its COPY --from."""
    refs = [substitute(parse_from(stage.from_ins, "")[0], args)]
    refs += [ins.flag("from") or "" for ins in stage.body if ins.keyword == "COPY" and ins.flag("from")]
    found = [find_stage(stages, ref, stage.index) for ref in refs]
    return [s for s in found if s is not None]


def target_index(stages: list[Stage], target: str | None, filename: str) -> int:
    """The stage `--target` names (the last stage without it)."""
    if target is None:
        return len(stages) - 1
    stage = find_stage(stages, target, len(stages))
    if stage is None:
        known = ", ".join(s.name for s in stages if s.name) or "none"
        raise BuildError(f"{filename}: no stage named {target!r} to stop at", f"stages with a name: {known}")
    return stage.index


def needed(stages: list[Stage], target: int, args: dict[str, str]) -> set[int]:
    """The indexes of the stages the target stage needs, itself included."""
    wanted = {target}
    pending = [stages[target]]
    while pending:
        for dep in dependencies(stages, pending.pop(), args):
            if dep.index not in wanted:
                wanted.add(dep.index)
                pending.append(dep)
    return wanted
