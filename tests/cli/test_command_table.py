"""The command table of `rade.commands`: each word maps to the modules that register it, a command built
alone parses as it does in the whole table, and `rade --help` still lists every command."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from rade.cli import build_parser, command_word
from rade.commands import COMMANDS, load

REPO = Path(__file__).resolve().parents[2]


def words_registered_by(name: str) -> list[str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    load(name).register(sub)
    return list(sub.choices)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_table_lists_exactly_the_words_each_module_registers(name):
    assert sorted(words_registered_by(name)) == sorted(COMMANDS[name])


def test_every_word_built_alone_parses_and_helps_as_in_the_whole_table():
    whole = subcommands(build_parser())
    assert set(whole) == {word for words in COMMANDS.values() for word in words}
    for word, full in whole.items():
        alone = subcommands(build_parser(word))
        assert word in alone
        assert alone[word].format_help() == full.format_help(), word


@pytest.mark.parametrize(("argv", "word"), [
    (["run", "--rm", "busybox"], "run"),
    (["--root", "/tmp/x", "--debug", "ps", "-a"], "ps"),
    (["--root=/tmp/x", "logs", "3"], "logs"),
    (["--ro", "run", "ps"], "ps"),
    (["--debug"], None),
    (["--help", "run"], None),
    (["--version"], None),
    ([], None),
])
def test_the_command_word_is_found_past_the_global_options(argv, word):
    assert command_word(argv) == word


def run_rade(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rade", *args], cwd=REPO, capture_output=True, text=True,
                          check=False, timeout=60)


def test_help_still_lists_every_command():
    result = run_rade("--help")
    assert result.returncode == 0, result.stderr
    for words in COMMANDS.values():
        for word in words:
            assert word in result.stdout


def test_an_unknown_word_is_a_usage_error_naming_the_choices():
    result = run_rade("--root", "/nonexistent", "frobnicate")
    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert "'run'" in result.stderr and "'submit'" in result.stderr


def test_a_word_shared_by_two_modules_gets_both():
    result = run_rade("logs", "--help")
    assert result.returncode == 0, result.stderr
    assert "--task" in result.stdout and "--follow" in result.stdout
