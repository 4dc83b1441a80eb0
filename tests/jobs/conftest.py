"""Shared job specs for the jobs tests: a full MPI spec that uses every field, and a minimal one."""

from __future__ import annotations

import pytest

FULL_SPEC = """\
name: heat
image: mpi:bookworm
command: [python3, /opt/heat.py, --steps, "200"]
workdir: /work
env: {OMP_NUM_THREADS: "1", EMPTY: ""}
resources:
  cpus: 0.5
  memory: 512M
  gpus: 1
mpi:
  ranks: 4
  ranks_per_node: 2
  implementation: mpich
network: bridge
volumes: [/scratch:/scratch, ./data:/data:ro, {source: ../out, target: /out}]
placement:
  nodes: 2
  constraints: {arch: x86_64}
  exclude: [n3]
  policy: spread
time_limit: 1-02:03:04
priority: -5
requeue: false
depends_on: [{afterok: 12}, {afterany: [13, 14]}, afternotok:15]
array: 0-9%2
"""

MINIMAL_SPEC = "name: hello\nimage: busybox\n"


@pytest.fixture
def full_spec_text() -> str:
    return FULL_SPEC


@pytest.fixture
def minimal_spec_text() -> str:
    return MINIMAL_SPEC
