"""The agent's configuration file and its task files."""

from __future__ import annotations

import pytest

from agent.config import AgentConfigError, load_agent_config
from agent.state import AgentState, AgentStateError, TaskFile, task_log_path


def test_a_configuration_file_gives_name_labels_scheduler_and_grace(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text("name: n1\nscheduler: 10.0.0.1\nlabels: {rack: r3, ib: true}\nkill_grace: 30s\n")
    config = load_agent_config(str(path))
    assert (config.name, config.scheduler, config.labels, config.kill_grace) == \
        ("n1", "10.0.0.1", {"rack": "r3", "ib": "True"}, 30.0)


@pytest.mark.parametrize(("text", "words"), [
    ("labls: {a: b}\n", "unknown key 'labls'"),
    ("labels: [a, b]\n", "labels"),
    ("kill_grace: soon\n", "kill_grace"),
    ("- a\n", "a map of keys"),
    ("name: [\n", "not YAML"),
])
def test_a_bad_configuration_is_one_clear_error(tmp_path, text, words):
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(AgentConfigError) as err:
        load_agent_config(str(path))
    assert words in err.value.message and str(path) in err.value.message


def test_a_missing_configuration_file_is_one_clear_error(tmp_path):
    with pytest.raises(AgentConfigError, match="cannot be read"):
        load_agent_config(str(tmp_path / "absent.yaml"))


def test_task_files_round_trip_and_are_forgotten(tmp_path):
    state = AgentState(tmp_path, "n1")
    state.lock()
    try:
        first = TaskFile(5, 0, 1, "a" * 64, "n1.5.0.1", deadline=123.5, grace=2.0)
        second = TaskFile(6, 2, 0, "b" * 64, "n1.6.2.0")
        state.save(first)
        state.save(second)
        (state.tasks / "junk.txt").write_text("not a task file")
        (state.tasks / "7.0.0.json").write_text("{broken")
        files, problems = state.load_all()
        assert files == [first, second]
        assert len(problems) == 1 and "7.0.0.json" in problems[0]
        state.forget(first.key)
        state.forget(first.key)
        assert state.load_all()[0] == [second]
    finally:
        state.unlock()


def test_a_second_agent_of_the_same_node_is_refused(tmp_path):
    first, second = AgentState(tmp_path, "n1"), AgentState(tmp_path, "n1")
    first.lock()
    try:
        with pytest.raises(AgentStateError, match="another agent runs node n1"):
            second.lock()
        AgentState(tmp_path, "n2").lock()  # another node on the same root is fine
    finally:
        first.unlock()
    second.lock()
    second.unlock()


def test_a_task_log_has_one_place_per_attempt(tmp_path):
    assert task_log_path(tmp_path, 12, 3, 1) == tmp_path / "logs" / "job-12" / "task-3.attempt-1.log"
