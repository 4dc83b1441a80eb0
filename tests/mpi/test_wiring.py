"""The MPI wiring of a task, without root: layout from the order, hostfiles, environment, commands, files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent import mpi, rsh
from engine.containers.lifecycle import CreateOptions
from jobs.messages import Launch


def order(task: int = 0, nodes: tuple[str, ...] = ("n1", "n2"), env: dict[str, str] | None = None,
          **mpi_spec: object) -> Launch:
    spec = {"name": "heat", "image": "mpi:bookworm", "command": ["python3", "heat.py"],
            "mpi": {"ranks": 4, **mpi_spec}}
    base = {"RADE_NODE": nodes[task], "RADE_NODELIST": ",".join(nodes)}
    return Launch(job_id=12, task_id=task, attempt=1, spec=spec, nodes=nodes, cpus=(0, 1), memory=1 << 30,
                  ranks=2, env={**base, **(env or {})})


def test_layout_takes_each_nodes_ranks_and_address_from_the_order():
    layout = mpi.layout_of(order(env={"RADE_NODE_RANKS": "3,1", "RADE_NODE_ADDRESSES": "198.18.0.11,198.18.0.12"}))
    assert layout.nodes == ("n1", "n2") and layout.ranks == (3, 1) and layout.total == 4
    assert layout.addresses == ("198.18.0.11", "198.18.0.12")


def test_layout_without_rank_counts_follows_ranks_per_node():
    assert mpi.layout_of(order(ranks=5, ranks_per_node=3)).ranks == (3, 2)
    assert mpi.layout_of(order(ranks=4)).ranks == (2, 2)


def test_layout_that_does_not_add_up_is_refused():
    with pytest.raises(mpi.MpiWiringError, match="do not match"):
        mpi.layout_of(order(env={"RADE_NODE_RANKS": "4"}))
    with pytest.raises(mpi.MpiWiringError, match="implementation"):
        mpi.layout_of(order(implementation="intelmpi"))


def test_hostfile_lists_every_node_with_its_slots_in_each_implementations_format():
    layout = mpi.MpiLayout(1, 0, ("n1", "n2", "n3"), (2, 2, 1), ("", "", ""))
    assert mpi.hostfile_text(layout) == "n1 slots=2\nn2 slots=2\nn3 slots=1\n"
    # By name for MPICH too: the job's /etc/hosts resolves them where the ranks run.
    mpich = mpi.MpiLayout(1, 0, ("n1", "n2"), (2, 1), ("198.18.0.11", "198.18.0.12"), "mpich")
    assert mpi.hostfile_text(mpich) == "n1:2\nn2:1\n"


def test_etc_hosts_keeps_the_nodes_own_entries_and_names_every_node_of_the_job_at_its_address():
    layout = mpi.MpiLayout(1, 0, ("n1", "n2"), (1, 1), ("198.18.0.11", "198.18.0.12"))
    base = "127.0.0.1\tlocalhost\n127.0.1.1\tn1  # Debian's own-name line\n10.0.0.5 nfs\n"
    # The node's own name must not stay on a loopback address: ranks publish it to the other nodes.
    assert mpi.hosts_text(layout, base) == (
        "127.0.0.1\tlocalhost\n10.0.0.5 nfs\n198.18.0.11\tn1\n198.18.0.12\tn2\n")
    assert mpi.hosts_text(mpi.MpiLayout(1, 0, ("n1",), (4,), ("",)), base) is None


def test_running_as_root_is_allowed_only_for_root_jobs():
    assert mpi.mpi_env(True)["OMPI_ALLOW_RUN_AS_ROOT"] == "1"
    assert mpi.mpi_env(True)["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] == "1"
    plain = mpi.mpi_env(False)
    assert not any(k.startswith("OMPI_ALLOW_RUN_AS_ROOT") for k in plain)
    assert plain["OMPI_MCA_plm_rsh_agent"] == plain["HYDRA_LAUNCHER_EXEC"] == mpi.RSH_AGENT
    assert plain["PMIX_MCA_gds"] == "hash" and plain["RADE_HOSTFILE"] == mpi.HOSTFILE
    assert [u for u in ("", "root", "0", "0:0", "root:wheel") if not mpi.is_root_user(u)] == []
    assert [u for u in ("1000", "mpi", "nobody:nogroup") if mpi.is_root_user(u)] == []


def test_first_node_runs_mpirun_around_the_command_and_the_others_hold():
    layout = mpi.MpiLayout(1, 0, ("n1", "n2"), (2, 2), ("", ""))
    assert mpi.wrap_command(layout, "n1", ("python3", "heat.py")) == (
        "mpirun", "--hostfile", mpi.HOSTFILE, "-np", "4", "python3", "heat.py")
    assert mpi.wrap_command(layout, "n2", ("python3", "heat.py")) == (mpi.RSH_AGENT, "--hold")
    mpich = mpi.MpiLayout(1, 0, ("n1", "n2"), (1, 1), ("198.18.0.11", "198.18.0.12"), "mpich")
    assert mpi.wrap_command(mpich, "n1", ("./ring",)) == ("mpiexec", "-f", mpi.HOSTFILE, "-n", "2", "./ring")


def test_wire_writes_the_files_and_mounts_them_read_only(tmp_path: Path):
    launch = order(env={"RADE_NODE_ADDRESSES": "198.18.0.11,198.18.0.12"})
    options = CreateOptions(image="mpi:bookworm", command=("python3", "heat.py"), env=("PMIX_MCA_gds=ds12",),
                            network="host")
    key = b"k" * 32
    etc_hosts = tmp_path / "etc-hosts"
    etc_hosts.write_text("127.0.0.1 localhost\n")
    wired = mpi.wire(str(tmp_path), "n1", launch, options, key, image={"entrypoint": ("/init",), "user": ""},
                     etc_hosts=str(etc_hosts))
    directory = mpi.files_dir(tmp_path, "n1", (12, 0, 1))
    assert wired.command == ("mpirun", "--hostfile", mpi.HOSTFILE, "-np", "4", "/init", "python3", "heat.py")
    assert wired.entrypoint == ()
    assert wired.shm_size == 512 << 20  # half of the task's 1 GiB
    assert mpi.shm_size(64 << 20) == mpi.MIN_SHM
    assert f"{directory}:{rsh.MOUNT_POINT}:ro" in wired.volumes
    assert f"{directory}/hosts:/etc/hosts:ro" in wired.volumes
    assert (directory / "hosts").read_text() == "127.0.0.1 localhost\n198.18.0.11\tn1\n198.18.0.12\tn2\n"
    assert "OMPI_ALLOW_RUN_AS_ROOT=1" in wired.env
    assert wired.env[-1] == "PMIX_MCA_gds=ds12"  # the job's own value comes last, so it wins
    assert (directory / "hostfile").read_text() == "n1 slots=2\nn2 slots=2\n"
    assert json.loads((directory / "job.json").read_text()) == {
        "job": 12, "attempt": 1, "node": "n1", "port": rsh.RSH_PORT,
        "addresses": {"n1": "198.18.0.11", "n2": "198.18.0.12"}}
    assert bytes.fromhex((directory / "key").read_text()) == rsh.job_secret(key, 12, 1)
    assert os.stat(directory / "rade-rsh").st_mode & stat.S_IXUSR
    assert not list(directory.parent.glob(".*.tmp"))
    mpi.remove_files(tmp_path, "n1", (12, 0, 1))
    assert not directory.exists()


def test_a_job_mounting_its_own_etc_hosts_keeps_it(tmp_path: Path):
    launch = order(env={"RADE_NODE_ADDRESSES": "198.18.0.11,198.18.0.12"})
    options = CreateOptions(image="mpi:bookworm", command=("true",), network="host",
                            volumes=(f"{tmp_path}/mine:/etc//hosts:ro",))
    wired = mpi.wire(str(tmp_path), "n1", launch, options, b"k", image={})
    assert [v for v in wired.volumes if v.split(":")[1].startswith("/etc")] == [f"{tmp_path}/mine:/etc//hosts:ro"]
    assert not (mpi.files_dir(tmp_path, "n1", (12, 0, 1)) / "hosts").exists()


def test_wire_refuses_a_job_with_no_command(tmp_path: Path):
    options = CreateOptions(image="mpi:bookworm", command=(), network="host")
    with pytest.raises(mpi.MpiWiringError, match="no command"):
        mpi.wire(str(tmp_path), "n1", order(), options, b"k", image={})


def test_ranks_on_several_nodes_need_the_host_network(tmp_path: Path):
    options = CreateOptions(image="mpi:bookworm", command=("true",), network="bridge")
    with pytest.raises(mpi.MpiWiringError, match="needs the host network"):
        mpi.wire(str(tmp_path), "n1", order(), options, b"k", image={})


def test_the_rsh_program_runs_on_the_standard_library_alone(tmp_path: Path):
    """What is copied into images must not need rade: run with -I -S it imports nothing of ours."""
    result = subprocess.run([sys.executable, "-I", "-S", str(Path(rsh.__file__))], capture_output=True,
                            text=True, env={"RADE_MPI_DIR": str(tmp_path)}, check=False)
    assert result.returncode == rsh.FAILED
    assert "cannot read the job's files" in result.stderr
