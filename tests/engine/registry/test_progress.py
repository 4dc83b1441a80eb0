"""The per-layer progress display: redrawn in place on a terminal, silent anywhere else."""

from __future__ import annotations

import io

from engine.images.progress import NoProgress, TerminalProgress, format_bytes, progress_for

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def final_screen(text: str) -> list[str]:
    """What a terminal shows after `text`: apply cursor-up and erase-line the way a VT100 does."""
    lines: list[str] = []
    row = 0
    i = 0
    while i < len(text):
        if text.startswith("\x1b[", i):
            end = i + 2
            while not text[end].isalpha():
                end += 1
            code, arg = text[end], text[i + 2:end]
            if code == "A":
                row -= int(arg or 1)
            elif code == "K" and row < len(lines):
                lines[row] = ""
            i = end + 1
            continue
        char = text[i]
        if char == "\n":
            row += 1
        elif char != "\r":
            while len(lines) <= row:
                lines.append("")
            lines[row] += char
        i += 1
    return lines


def test_each_blob_has_one_line_redrawn_in_place() -> None:
    screen = FakeTerminal()
    now = [0.0]
    progress = TerminalProgress(screen, clock=lambda: now[0], width=10)
    progress.begin(A, 2_000_000, "Downloading")
    progress.begin(B, 1000, "Downloading")
    now[0] = 1.0
    progress.advance(A, 1_000_000)
    assert final_screen(screen.getvalue()) == ["aaaaaaaaaaaa: Downloading [====>     ] 1.0 MB/2.0 MB",
                                               "bbbbbbbbbbbb: Downloading"]
    progress.finish(B, "Already exists")
    progress.finish(A, "Pull complete")
    progress.close()
    assert final_screen(screen.getvalue()) == ["aaaaaaaaaaaa: Pull complete", "bbbbbbbbbbbb: Already exists"]


def test_redraws_are_throttled_between_status_changes() -> None:
    screen = FakeTerminal()
    now = [5.0]
    progress = TerminalProgress(screen, clock=lambda: now[0])
    progress.begin(A, 100_000_000, "Downloading")
    drawn = len(screen.getvalue())
    for _ in range(100):
        progress.advance(A, 1000)
    assert len(screen.getvalue()) == drawn
    now[0] += 0.2
    progress.advance(A, 1000)
    assert len(screen.getvalue()) > drawn


def test_nothing_is_drawn_when_stderr_is_not_a_terminal() -> None:
    assert isinstance(progress_for(io.StringIO()), NoProgress)
    assert isinstance(progress_for(FakeTerminal()), TerminalProgress)


def test_sizes_read_as_docker_prints_them() -> None:
    assert [format_bytes(n) for n in (512, 1500, 2_500_000, 3_200_000_000)] == ["512 B", "1.5 kB", "2.5 MB", "3.2 GB"]
