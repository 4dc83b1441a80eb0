"""Multi-stage Containerfiles as data: stages split at FROM, names, references by name and index, and
the stages a target needs (the rest are never built)."""

from __future__ import annotations

import pytest

from engine.build.containerfile import BuildError, parse
from engine.build.stages import find_stage, needed, split_stages, target_index

FILE = """\
ARG BASE=busybox
FROM $BASE AS builder
RUN make
FROM busybox AS Tests
RUN make test
FROM builder AS packer
RUN pack
FROM scratch
COPY --from=packer /out /
COPY --from=0 /src /src
"""


def _stages(text: str = FILE):
    return split_stages(parse(text), "Containerfile")


def test_stages_split_at_from_with_lowercased_names():
    meta, stages = _stages()
    assert [i.keyword for i in meta] == ["ARG"]
    assert [(s.index, s.name, len(s.body)) for s in stages] == [(0, "builder", 1), (1, "tests", 1),
                                                                (2, "packer", 1), (3, "", 2)]


def test_a_stage_is_found_by_name_or_index_only_before_the_one_asking():
    _, stages = _stages()
    assert find_stage(stages, "Builder", 3).index == 0
    assert find_stage(stages, "2", 3).index == 2
    assert find_stage(stages, "packer", 2) is None  # not yet defined there: an image name then
    assert find_stage(stages, "busybox", 3) is None


def test_the_target_needs_only_the_stages_it_builds_on_or_copies_from():
    _, stages = _stages()
    args = {"BASE": "busybox"}
    assert needed(stages, 3, args) == {0, 2, 3}  # "tests" is never built
    assert needed(stages, target_index(stages, "tests", "Containerfile"), args) == {1}
    with pytest.raises(BuildError, match="no stage named 'nope'"):
        target_index(stages, "nope", "Containerfile")


def test_bad_stage_names_and_duplicates_are_refused_with_their_line():
    with pytest.raises(BuildError, match=r"Containerfile:2: a stage named 'a' is defined twice"):
        _stages("FROM busybox AS a\nFROM busybox AS a\n")
    with pytest.raises(BuildError, match=r"Containerfile:1: FROM takes an image and optionally AS NAME"):
        _stages("FROM busybox AS\n")
    with pytest.raises(BuildError, match=r"'9x' is not a stage name"):
        _stages("FROM busybox AS 9x\n")
