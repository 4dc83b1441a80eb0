"""Containerfile parsing, substitution, .dockerignore and COPY planning, without any container."""

import pytest

from engine.build.cache import step_key
from engine.build.containerfile import BuildError, parse, parse_pairs, substitute
from engine.build.context import BuildContext, IgnoreRules


def test_continuations_comments_and_flags():
    steps = parse("# top\nFROM busybox\nRUN echo a \\\n  # inner comment\n  && echo b\nCOPY --chown=1:2 a /b\n")
    assert [s.keyword for s in steps] == ["FROM", "RUN", "COPY"]
    assert steps[1].text == "echo a  && echo b" and steps[1].line == 3
    assert steps[2].flag("chown") == "1:2" and steps[2].text == "a /b"


def test_errors_name_the_line():
    with pytest.raises(BuildError, match=r"Dockerfile:2: unknown instruction FETCH"):
        parse("FROM busybox\nFETCH x\n", "Dockerfile")
    with pytest.raises(BuildError, match="first instruction must be FROM"):
        parse("RUN true\n")


def test_exec_form_is_json():
    cmd = parse('FROM x\nCMD ["sh", "-c", "echo hi"]\n')[1]
    assert cmd.json_args() == ["sh", "-c", "echo hi"]
    assert parse("FROM x\nCMD echo hi\n")[1].json_args() is None


def test_substitution_forms():
    values = {"A": "1", "EMPTY": ""}
    assert substitute("$A ${A} ${B:-two} ${A:+set} ${EMPTY:+no} \\$A", values) == "1 1 two set  $A"


def test_env_pairs_both_forms():
    assert parse_pairs('A=1 B="two words"', "ENV", 1) == [("A", "1"), ("B", "two words")]
    assert parse_pairs("NAME some value", "ENV", 1) == [("NAME", "some value")]


def test_dockerignore_last_match_wins():
    rules = IgnoreRules(["*.log", "build/**", "!keep.log", "# comment"])
    assert rules.is_ignored("x.log") and not rules.is_ignored("keep.log")
    assert rules.is_ignored("build/a/b.o") and not rules.is_ignored("src/a.c")


def test_copy_plan_and_digest_follow_content(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "b.txt").write_text("b")
    (tmp_path / "skip.key").write_text("k")
    (tmp_path / ".dockerignore").write_text("*.key\n")
    ctx = BuildContext(tmp_path)
    plan = ctx.plan(["a.txt", "dir"], "/dst/", "/")
    assert [(s.rel, s.target) for s in plan] == [("a.txt", "/dst/a.txt"), ("dir", "/dst"), ("dir/b.txt", "/dst/b.txt")]
    assert [s.target for s in ctx.plan(["a.txt"], "renamed", "/app")] == ["/app/renamed"]
    assert [s.target for s in ctx.plan(["*.txt"], ".", "/app")] == ["/app/a.txt"]
    before = ctx.digest(plan)
    (tmp_path / "dir" / "b.txt").write_text("changed")
    assert ctx.digest(plan) != before
    with pytest.raises(BuildError, match="outside the build context"):
        ctx.plan(["../etc/passwd"], "/x", "/")
    with pytest.raises(BuildError, match="no such file"):
        ctx.plan(["skip.key"], "/x", "/")


def test_step_key_depends_on_every_part():
    keys = {step_key("p", "RUN a"), step_key("q", "RUN a"), step_key("p", "RUN b"), step_key("p", "RUN a", "c")}
    assert len(keys) == 4
