"""Parsing a Containerfile (Dockerfile syntax) into instructions: continuation lines, comments, the JSON
(exec) and shell forms, and `$VAR`/`${VAR}`/`${VAR:-default}`/`${VAR:+alt}` substitution from ARG and ENV.

Sans-I/O: text in, `Instruction` values out; every error names the file and line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from engine.errors import ImageError

KNOWN = ("FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "CMD", "ENTRYPOINT", "LABEL",
         "EXPOSE", "VOLUME", "SHELL", "STOPSIGNAL", "MAINTAINER")
# Instructions whose arguments see ARG/ENV values, as Docker's.
SUBSTITUTED = ("FROM", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "LABEL", "EXPOSE", "VOLUME", "STOPSIGNAL")


class BuildError(ImageError):
    """A Containerfile that does not parse, or a build step that failed."""


@dataclass(frozen=True, slots=True)
class Instruction:
    """One instruction: its keyword, raw argument text, flags (`--from=`, `--chown=`), and its line."""

    keyword: str
    text: str
    line: int
    flags: tuple[tuple[str, str], ...] = ()

    def flag(self, name: str) -> str | None:
        return dict(self.flags).get(name)

    def json_args(self) -> list[str] | None:
        """The exec form `["a", "b"]` as a list; None for the shell form."""
        text = self.text.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return None

    def __str__(self) -> str:
        flags = "".join(f"--{k}={v} " for k, v in self.flags)
        return f"{self.keyword} {flags}{self.text}".strip()


_FLAG_RE = re.compile(r"^--([a-z-]+)=(\S*)\s*")


def parse(text: str, filename: str = "Containerfile") -> list[Instruction]:
    """The instructions of a Containerfile, in order."""
    out: list[Instruction] = []
    logical = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if logical and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped, as Docker does
        if not logical:
            start = number
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        out.append(_instruction(logical, start, filename))
        logical = ""
    if logical.strip():
        out.append(_instruction(logical, start, filename))
    if not out:
        raise BuildError(f"{filename}: no instructions", "a Containerfile starts with FROM IMAGE (or scratch)")
    first = next((i for i in out if i.keyword != "ARG"), None)
    if first is None or first.keyword != "FROM":
        where = first.line if first else out[0].line
        raise BuildError(f"{filename}:{where}: the first instruction must be FROM", "start with FROM IMAGE")
    return out


def _instruction(line: str, number: int, filename: str) -> Instruction:
    keyword, _, rest = line.strip().partition(" ")
    keyword = keyword.upper()
    if keyword not in KNOWN:
        raise BuildError(f"{filename}:{number}: unknown instruction {keyword}",
                         "known: " + ", ".join(KNOWN[:12]))
    rest = rest.strip()
    flags = []
    if keyword in ("COPY", "ADD", "FROM", "RUN"):
        while True:
            match = _FLAG_RE.match(rest)
            if not match:
                break
            flags.append((match.group(1), match.group(2)))
            rest = rest[match.end():]
    if not rest and keyword not in ("CMD", "ENTRYPOINT"):
        raise BuildError(f"{filename}:{number}: {keyword} needs arguments")
    return Instruction(keyword, rest, number, tuple(flags))


_VAR_RE = re.compile(r"\\\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def substitute(text: str, values: dict[str, str]) -> str:
    """`text` with `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alt}` replaced; `\\$` stays `$`."""

    def repl(match: re.Match) -> str:
        if match.group(0) == "\\$":
            return "$"
        braced, op, word, bare = match.group(1), match.group(2), match.group(3), match.group(4)
        value = values.get(braced or bare, "")
        if op == "-":
            return value or word
        if op == "+":
            return word if value else ""
        return value

    return _VAR_RE.sub(repl, text)


def split_words(text: str) -> list[str]:
    """Whitespace-separated words, honouring double and single quotes (for COPY, EXPOSE, VOLUME)."""
    import shlex

    try:
        return shlex.split(text)
    except ValueError as err:
        raise BuildError(f"cannot split {text!r}: {err}") from None


def parse_pairs(text: str, keyword: str, line: int) -> list[tuple[str, str]]:
    """ENV/LABEL/ARG arguments: `K=V K2="v 2"`, or the old `K value with spaces` form."""
    words = split_words(text)
    if words and "=" not in words[0]:
        if keyword == "ARG":
            return [(words[0], "")] if len(words) == 1 else _bad(keyword, line, text)
        return [(words[0], " ".join(words[1:]))] if len(words) > 1 else _bad(keyword, line, text)
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            _bad(keyword, line, text)
        pairs.append((key, value))
    return pairs


def _bad(keyword: str, line: int, text: str):
    raise BuildError(f"line {line}: {keyword} {text!r} is not KEY=VALUE", f"write e.g. {keyword} NAME=value")
