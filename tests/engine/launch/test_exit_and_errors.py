"""Exit codes as Docker gives them, failures of the child as clear errors, and signals through PID 1."""

from __future__ import annotations

import os
import signal
import time

import pytest

from engine.errors import CommandNotExecutable, CommandNotFound, LaunchError
from engine.launch_config import Mount

pytestmark = pytest.mark.root


@pytest.mark.parametrize(("argv", "status"), [(["true"], 0), (["false"], 1), (["sh", "-c", "exit 42"], 42),
                                               (["sh", "-c", "kill -9 $$"], 137)])
def test_exit_status_is_the_commands(launcher, argv, status):
    assert launcher.run(argv).status == status


def test_missing_command_is_127(launcher):
    with pytest.raises(CommandNotFound) as caught:
        launcher.run(["no-such-command"])
    assert caught.value.exit_code == 127
    assert "no-such-command" in str(caught.value)


def test_non_executable_command_is_126(launcher, tmp_path, busybox_layer):
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "script").write_text("#!/bin/sh\necho hi\n")
    os.chmod(layer / "script", 0o644)
    with pytest.raises(CommandNotExecutable) as caught:
        launcher.run(["/script"], lower_dirs=(str(layer), busybox_layer))
    assert caught.value.exit_code == 126


def test_bad_workdir_is_a_125_launch_error_naming_the_step(launcher):
    with pytest.raises(LaunchError) as caught:
        launcher.run(["true"], cwd="/bin/busybox")
    assert caught.value.exit_code == 125
    assert caught.value.step == "workdir"
    assert str(caught.value) == "workdir: working directory /bin/busybox is not a directory"


def test_missing_workdir_is_made_as_docker_does(launcher):
    assert launcher.run(["pwd"], cwd="/work/here").out == "/work/here\n"


def test_workdir_the_user_cannot_enter_fails_at_enter_workdir(launcher):
    with pytest.raises(LaunchError) as caught:
        launcher.run(["true"], cwd="/root/private", uid=1000, gid=1000, capabilities=frozenset())
    assert caught.value.step == "enter workdir"
    assert "Permission denied" in str(caught.value)


def test_missing_volume_source_is_a_launch_error_with_a_hint(launcher, tmp_path):
    with pytest.raises(LaunchError) as caught:
        launcher.run(["true"], mounts=(Mount(str(tmp_path / "absent"), "/data"),))
    assert caught.value.step == "mount volumes"
    assert caught.value.hint


def test_signals_are_forwarded_by_pid1(launcher, tmp_path):
    ready = tmp_path / "ready"
    ready.mkdir()
    script = 'trap "echo got-term; exit 7" TERM; touch /ready/yes; while :; do sleep 0.05; done'
    with open(tmp_path / "out", "w+") as out:
        config = launcher.config(["sh", "-c", script], stdout=out.fileno(),
                                 mounts=(Mount(str(ready), "/ready"),))
        process = launcher.start(config)
        deadline = time.monotonic() + 10
        while not (ready / "yes").exists():
            assert time.monotonic() < deadline, "the container never became ready"
            time.sleep(0.01)
        process.kill(signal.SIGTERM)
        assert process.wait() == 7
        out.seek(0)
        assert out.read() == "got-term\n"


def test_orphans_are_reaped_by_pid1(launcher):
    # The subshell's sleep is orphaned to PID 1; it must not stay a zombie.
    result = launcher.run(["sh", "-c", "(sleep 0.05 &); sleep 0.3; ps -o stat | grep -c Z"])
    assert result.out.strip() == "0"


def test_cleanup_is_safe_twice_and_leaves_no_process(launcher):
    process = launcher.start(launcher.config(["sleep", "30"]))
    pid = process.pid
    process.cleanup()
    process.cleanup()
    assert not os.path.exists(f"/proc/{pid}")
    for path in process.cgroup.paths():
        assert not os.path.exists(path)


def test_tty_without_a_terminal_is_a_launch_error(launcher):
    with pytest.raises(LaunchError) as caught:
        launcher.run(["true"], tty=True)
    assert caught.value.step == "terminal" and caught.value.exit_code == 125


def test_missing_image_layer_is_named(launcher, tmp_path, busybox_layer):
    with pytest.raises(LaunchError) as caught:
        launcher.run(["true"], lower_dirs=(str(tmp_path / "gone"), busybox_layer))
    assert caught.value.step == "mount overlay root" and "gone" in str(caught.value)


def test_missing_workdir_is_made_even_with_a_read_only_root(launcher):
    assert launcher.run(["pwd"], cwd="/work/ro", read_only=True).out == "/work/ro\n"
