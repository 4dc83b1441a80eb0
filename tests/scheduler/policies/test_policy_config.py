"""The policy keys of the scheduler's configuration: defaults, values, and one clear line for a bad one."""

from __future__ import annotations

import pytest

from scheduler.config import ConfigError
from scheduler.policy import PolicyConfig, policy_settings


def test_defaults_keep_plain_priority_order_with_easy_backfill_and_no_metrics():
    config = policy_settings({}, "scheduler.yaml")
    assert config == PolicyConfig()
    assert config.backfill_depth == 1 and config.metrics_port is None
    assert config.weights.fairshare == 0 and config.weights.age == 0


def test_weights_half_life_topology_and_port_are_read(tmp_path):
    topology = tmp_path / "topology.conf"
    topology.write_text("SwitchName=s0 Nodes=n[1-2]\n")
    config = policy_settings({"priority_weights": {"fairshare": 5000, "age": 10}, "fairshare_half_life": "2h",
                              "priority_max_age": "1d", "backfill_depth": 3, "topology": str(topology),
                              "metrics_port": 9410}, "scheduler.yaml")
    assert (config.weights.fairshare, config.weights.age, config.weights.job) == (5000, 10, 100_000)
    assert (config.weights.half_life, config.weights.max_age) == (7200, 86400)
    assert (config.backfill_depth, config.topology, config.metrics_port) == (3, str(topology), 9410)


@pytest.mark.parametrize("data, words", [
    ({"backfill_depth": -1}, "backfill_depth"),
    ({"priority_weights": {"fairshar": 1}}, "priority_weights"),
    ({"priority_weights": {"age": "lots"}}, "priority_weights.age"),
    ({"fairshare_half_life": "soon"}, "fairshare_half_life"),
    ({"metrics_port": 70000}, "metrics_port"),
])
def test_bad_policy_keys_are_refused_naming_the_key(data, words):
    with pytest.raises(ConfigError) as caught:
        policy_settings(data, "scheduler.yaml")
    assert caught.value.message.startswith(f"scheduler.yaml: {words}")


def test_a_bad_topology_file_is_refused_when_the_configuration_is_read(tmp_path):
    topology = tmp_path / "topology.conf"
    topology.write_text("SwitchName=s0 Nodes=n[1-\n")
    with pytest.raises(Exception) as caught:
        policy_settings({"topology": str(topology)}, "scheduler.yaml")
    assert f"{topology}:1:" in str(caught.value)
