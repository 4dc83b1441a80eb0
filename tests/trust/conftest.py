"""Fixtures of the trust tests: a CURVE scheduler (see secure.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.keyfiles import KeyDir
from rade.commands.keys import init_keys, issue_user_key
from scheduler.config import load_config
from scheduler.daemon import SchedulerDaemon

from .cluster import TrustCluster, trust_cluster
from .secure import USERS, SecureScheduler, free_port


@pytest.fixture
def secure_scheduler(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[SecureScheduler]:
    caplog.set_level(logging.INFO)
    keys = KeyDir(tmp_path / "keys")
    init_keys(keys)
    for user in USERS:
        issue_user_key(keys, user, str(tmp_path / f"{user}.key"))
    (tmp_path / "scratch").mkdir()
    config = tmp_path / "scheduler.yaml"
    users = ", ".join(f'{name}: "{uid}:{gid}"' for name, (uid, gid) in USERS.items())
    config.write_text(f"agents: tcp://127.0.0.1:{free_port()}\nclients: tcp://127.0.0.1:{free_port()}\n"
                      f"heartbeat_interval: 0.5\nauth: curve\nkeys: {keys.path}\nadmins: [carol]\n"
                      f"users: {{{users}}}\nallowed_volumes: [{tmp_path / 'scratch'}]\npids_limit: 77\n")
    daemon = SchedulerDaemon(load_config(str(config), str(tmp_path)))
    thread = threading.Thread(target=daemon.serve, name="scheduler", daemon=True)
    thread.start()
    try:
        yield SecureScheduler(tmp_path, keys, daemon, thread)
        assert thread.is_alive(), "the scheduler's loop ended"
    finally:
        daemon.stop()
        thread.join(timeout=20)


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrustCluster]:
    """A one-node dev cluster: every job of a module lands on the same node as its neighbours."""
    with trust_cluster(tmp_path_factory.mktemp("trust"), 1) as cluster:
        yield cluster


@pytest.fixture
def node(one_node: TrustCluster) -> Iterator[TrustCluster]:
    try:
        yield one_node
    finally:
        one_node.cancel_all()
