"""The engine's one inter-process lock: writers exclude each other, readers share, a lock dies with its
holder's descriptor (here: at the end of the block, even when the block raised)."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

import pytest

from engine.filelock import file_lock


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
