"""The corpus of bad job specs: each file in bad_specs/ must give exactly the located problems in its
sibling .expected file, one a line, in order. A first-line comment `# set: FIELD=VALUE` adds an override."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.loader import parse_spec
from jobs.problems import SpecError

CORPUS = Path(__file__).parent / "bad_specs"
CASES = sorted(path.stem for path in CORPUS.glob("*.yaml"))


def _overrides(text: str) -> list[str]:
    return [line.removeprefix("# set: ") for line in text.splitlines() if line.startswith("# set: ")]


def test_the_corpus_is_large_enough_and_complete():
    assert len(CASES) >= 40
    assert sorted(path.stem for path in CORPUS.glob("*.expected")) == CASES


@pytest.mark.parametrize("case", CASES)
def test_bad_spec_gives_exactly_the_expected_located_problems(case):
    text = (CORPUS / f"{case}.yaml").read_text()
    expected = (CORPUS / f"{case}.expected").read_text().splitlines()
    with pytest.raises(SpecError) as info:
        parse_spec(text, f"{case}.yaml", _overrides(text), base_dir="/jobs")
    assert [str(problem) for problem in info.value.problems] == expected
    assert str(info.value) == "\n".join(expected)
    assert info.value.exit_code == 2
