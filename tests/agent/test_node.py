"""Node discovery read from trees shaped like the kernel's /sys, /proc and /dev."""

from __future__ import annotations

import os

from agent.node import discover, gpu_count, numa_layout, total_memory


def fake_sys(tmp_path, nodes: dict[int, str]):
    for index, cpulist in nodes.items():
        node = tmp_path / "sys" / "devices" / "system" / "node" / f"node{index}"
        node.mkdir(parents=True)
        (node / "cpulist").write_text(cpulist + "\n")
    (tmp_path / "sys" / "devices" / "system" / "node" / "possible").write_text("0-1\n")
    return str(tmp_path / "sys")


def test_numa_nodes_hold_the_usable_cpus_in_node_order(tmp_path):
    sys_root = fake_sys(tmp_path, {1: "4-7", 0: "0-3", 10: "8-11"})
    assert numa_layout((0, 1, 2, 5, 6, 9), sys_root) == ((0, 1, 2), (5, 6), (9,))


def test_a_numa_node_without_usable_cpus_is_left_out(tmp_path):
    sys_root = fake_sys(tmp_path, {0: "0-3", 1: "4-7"})
    assert numa_layout((4, 5), sys_root) == ((4, 5),)


def test_without_numa_information_all_cpus_are_one_node(tmp_path):
    assert numa_layout((0, 1, 2), str(tmp_path / "nothing")) == ((0, 1, 2),)


def test_gpus_are_the_numbered_nvidia_devices(tmp_path):
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null"):
        (tmp_path / name).touch()
    assert gpu_count(str(tmp_path)) == 2
    assert gpu_count(str(tmp_path / "absent")) == 0


def test_memory_is_memtotal_in_bytes(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal:        2048 kB\nMemFree:          100 kB\n")
    assert total_memory(str(tmp_path)) == 2048 * 1024


def test_discovery_names_the_node_and_labels_its_arch(tmp_path):
    info = discover("n7", {"rack": "r3"})
    assert info.name == "n7"
    assert set(info.cpu_ids) == os.sched_getaffinity(0)
    assert sorted(c for node in info.numa_nodes for c in node) == list(info.cpu_ids)
    assert info.labels["rack"] == "r3" and info.labels["arch"] == info.arch
    register = info.register("198.18.0.11")
    assert register.node == "n7" and register.cpus == len(info.cpu_ids) and register.address == "198.18.0.11"
    assert register.numa_nodes == info.numa_nodes


def test_a_label_from_the_configuration_wins_over_a_discovered_one():
    assert discover("n1", {"arch": "custom"}).labels["arch"] == "custom"
