"""The position-keeping YAML tree: where each value and key was written, and what text was written."""

from __future__ import annotations

import pytest

from jobs.document import load_document, load_value
from jobs.problems import Mark, Problems, SpecError


def _load(text: str):
    problems = Problems()
    tree = load_document(text, "job.yaml", problems)
    return tree, problems


def test_values_and_keys_keep_their_line_and_column():
    tree, problems = _load("name: a\nresources:\n  memory: 4G\nvolumes:\n  - /a:/a\n")
    assert not problems
    assert tree.keys["resources"] == Mark("job.yaml", 2, 1)
    memory = tree.value["resources"].value["memory"]
    assert memory.mark == Mark("job.yaml", 3, 11) and memory.value == "4G"
    assert tree.value["resources"].keys["memory"] == Mark("job.yaml", 3, 3)
    assert tree.value["volumes"].value[0].mark == Mark("job.yaml", 5, 5)


@pytest.mark.parametrize(("source", "value", "text"), [
    ("30:00", 1800, "30:00"),      # YAML 1.1's base-60 integer; the text is what the user meant
    ("yes", True, "yes"),
    ("1.50", 1.5, "1.50"),
    ("'quoted'", "quoted", None),  # quoted scalars are text already
    ("~", None, "~"),
])
def test_plain_scalars_keep_the_text_as_written(source, value, text):
    tree, _ = _load(f"x: {source}\n")
    node = tree.value["x"]
    assert node.value == value and node.text == text


def test_merge_keys_fill_in_without_overriding_explicit_keys():
    tree, problems = _load("base: &b {cpus: 1, memory: 1G}\nr:\n  <<: *b\n  memory: 2G\n")
    assert not problems
    r = tree.value["r"]
    assert {k: v.value for k, v in r.value.items()} == {"memory": "2G", "cpus": 1}
    assert r.keys["memory"] == Mark("job.yaml", 4, 3)


def test_duplicate_and_non_text_keys_are_collected_and_loading_goes_on():
    tree, problems = _load("a: 1\n[x]: 2\na: 3\nb: 4\n")
    assert [str(p) for p in problems.items] == [
        "job.yaml:2:1: a key must be a plain name, not a list or a mapping",
        "job.yaml:3:1: a: duplicate key (first written at line 1); keep only one",
    ]
    assert tree.value["a"].value == 1 and tree.value["b"].value == 4


def test_a_command_line_value_is_marked_with_its_option():
    problems = Problems()
    node = load_value("[sleep, 60]", "--set command=[sleep, 60]", problems)
    assert [item.value for item in node.value] == ["sleep", 60]
    assert all(item.mark == Mark("--set command=[sleep, 60]") for item in node.value)
    with pytest.raises(SpecError, match=r"--set x=\[: .*quote the value"):
        load_value("[", "--set x=[", problems)
