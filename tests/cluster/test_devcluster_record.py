"""The dev cluster's record of itself and its refusals, without bringing a cluster up (no root needed):
what `up` saves is what `down` reads back, a record it cannot trust is refused with a hint, and `down`,
`status` and the namespace wrapper behave on a root with no cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rade import devcluster
from rade.devcluster.state import save_state

from .conftest import REPO


def test_saved_record_reads_back_with_its_processes_and_nodes(tmp_path: Path) -> None:
    state = devcluster.ClusterState(root=str(tmp_path), slot=3, bridge="rade-cl3", gateway="198.18.3.1/24",
                                    scheduler=devcluster.Process(41, 1000, "scheduler.log"))
    state.nodes.append(devcluster.NodeEntry("node1", "rade-3-node1", "198.18.3.11/24", "rade-3-node1h",
                                            devcluster.Process(42, 1001, "node1.log")))
    state.nodes.append(devcluster.NodeEntry("node2", "rade-3-node2", "198.18.3.12/24", "rade-3-node2h"))
    devcluster.cluster_dir(str(tmp_path)).mkdir()
    save_state(state)
    again = devcluster.load_state(str(tmp_path))
    assert again == state
    assert again is not None and again.gateway_ip == "198.18.3.1"
    assert [p.name for p in devcluster.cluster_dir(str(tmp_path)).iterdir()] == ["cluster.json"]  # no temp file


def test_record_of_another_version_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = devcluster.state_path(str(tmp_path))
    path.parent.mkdir()
    path.write_text('{"version": 99, "root": "/x"}')
    with pytest.raises(devcluster.ClusterError, match="written by another rade version") as err:
        devcluster.load_state(str(tmp_path))
    assert str(path) in err.value.message


def test_unreadable_record_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = devcluster.state_path(str(tmp_path))
    path.parent.mkdir()
    path.write_text("{half a record")
    with pytest.raises(devcluster.ClusterError, match="unreadable") as err:
        devcluster.load_state(str(tmp_path))
    assert "remove it" in (err.value.hint or "")


def test_no_cluster_means_nothing_to_take_down_and_no_status(tmp_path: Path) -> None:
    assert devcluster.load_state(str(tmp_path)) is None
    assert devcluster.down(str(tmp_path)) == []
    assert devcluster.down(str(tmp_path)) == []
    assert devcluster.status(str(tmp_path)) == []


def test_node_count_out_of_range_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    for nodes in (0, devcluster.MAX_NODES + 1):
        with pytest.raises(devcluster.ClusterError, match="1 to 200 nodes"):
            devcluster.up(str(tmp_path), nodes)
    assert not devcluster.cluster_dir(str(tmp_path)).exists()


def test_restart_without_a_cluster_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(devcluster.ClusterError, match="no dev cluster is up") as err:
        devcluster.restart(str(tmp_path), scheduler=True)
    assert "rade cluster up" in (err.value.hint or "")


def test_each_slot_has_its_own_bridge_addresses_and_host_names() -> None:
    assert (devcluster.bridge_name(0), str(devcluster.gateway(0)), devcluster.netns_name(0, "node1")) == \
        ("rade-cl0", "198.18.0.1/24", "rade-node1")
    assert (devcluster.bridge_name(7), str(devcluster.gateway(7)), devcluster.netns_name(7, "node1")) == \
        ("rade-cl7", "198.18.7.1/24", "rade-7-node1")


def test_namespace_wrapper_without_its_arguments_prints_usage_and_exits_2() -> None:
    result = subprocess.run([sys.executable, "-m", "rade.devcluster", "enter", "rade-node1"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: python -m rade.devcluster enter NETNS")
