"""The engine's one inter-process lock: writers exclude each other, readers share, a lock dies with its
holder's descriptor (here: at the end of the block, even when the block raised)."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

import pytest

from engine.filelock import file_lock, is_held, try_lock


def _held_by_another(path: Path, shared: bool = False) -> bool:
    """Whether a second, independent open of `path` cannot take the lock now."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_exclusive_lock_keeps_every_other_taker_out_and_creates_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "store.lock"
    with file_lock(path):
        assert _held_by_another(path)
        assert _held_by_another(path, shared=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not _held_by_another(path)


def test_shared_locks_let_readers_in_together_but_not_a_writer(tmp_path: Path) -> None:
    path = str(tmp_path / "index.lock")
    with file_lock(path, shared=True):
        assert not _held_by_another(Path(path), shared=True)
        assert _held_by_another(Path(path))


def test_lock_is_released_when_the_block_raises(tmp_path: Path) -> None:
    path = tmp_path / "layer.lock"
    with pytest.raises(ValueError), file_lock(path):
        raise ValueError("the body failed")
    assert not _held_by_another(path)


def test_a_missing_directory_is_an_os_error_not_a_lock(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), file_lock(tmp_path / "absent" / "x.lock"):
        pass


def test_try_lock_takes_a_free_lock_and_gives_none_while_another_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "supervisor.lock"
    fd = try_lock(path)
    assert fd is not None and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    try:
        assert _held_by_another(path) and is_held(path)
        assert try_lock(path) is None  # a second open is another holder, as another process's would be
    finally:
        os.close(fd)
    assert not is_held(path)
    again = try_lock(path)
    assert again is not None
    os.close(again)


def test_a_lock_file_that_does_not_exist_is_held_by_no_one_and_not_made(tmp_path: Path) -> None:
    path = tmp_path / "never-started.lock"
    assert not is_held(path) and not path.exists()
    with pytest.raises(FileNotFoundError):
        try_lock(path, create=False)
    assert not path.exists()
