"""The job spec's fields: every key a job YAML may hold, its kind, default and meaning, in one table.

Validation (`jobs.spec`) walks these records and `rade schema` (`jobs.schema`) prints them as JSON Schema,
so a field added here is accepted, checked and documented at once. Two kinds belong to the job language
alone and live here: volumes (`SRC:DST[:ro]` or a mapping) and dependencies (`{afterok: 12}`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jobs.compound_kinds import Field, Record, Seq, StrMap
from jobs.document import Node
from jobs.kinds import (
    INVALID,
    ArraySpec,
    Boolean,
    Choice,
    Cpus,
    Duration,
    Integer,
    Size,
    Text,
    describe,
)
from jobs.problems import Problems

DEFAULT_MEMORY = 1 << 30  # 1 GiB a task when the spec says nothing: enough for a Python or MPI rank
MIN_MEMORY = 1 << 20
NETWORKS = ("host", "none", "bridge")
POLICIES = ("pack", "spread")
MPI_IMPLEMENTATIONS = ("openmpi", "mpich")
DEPENDENCY_KINDS = ("afterok", "afterany", "afternotok")
MAX_UNITS = 100_000  # tasks, ranks or nodes in one job: beyond any cluster rade serves, and a typo's guard

NAME_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_PATTERN = (rf"(?:[A-Za-z0-9.-]+(?::\d+)?/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
                 r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?")
NODE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
LABEL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}"
ENV_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"


def _suggest_name(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63]


def _suggest_image(text: str) -> str:
    name, colon, tag = text.strip().rpartition(":") if ":" in text and "/" not in text.rpartition(":")[2] \
        else (text.strip(), "", "")
    return name.lower().replace(" ", "-") + colon + tag


@dataclass(frozen=True, slots=True)
class Volume:
    """A bind mount: `SOURCE:TARGET[:ro|rw]`, or a mapping {source, target, read_only}."""

    def check(self, node: Node, path: str, problems: Problems) -> Any:
        if node.is_mapping and not set(node.value) & set(VOLUME_RECORD.by_name):
            # `volumes: {/a: /b}`: a mapping from source to target, the way Compose's `volumes:` is not.
            pairs = ", ".join(f"{key}:{child.text or child.value}" for key, child in node.value.items())
            problems.add(node.mark, path, f"write volumes as a list of SOURCE:TARGET, e.g. [{pairs}]")
            return INVALID
        if node.is_mapping:
            values = VOLUME_RECORD.check(node, path, problems)
            if INVALID in values.values():
                return INVALID
            source, target, read_only = values["source"], values["target"], values.get("read_only", False)
        elif isinstance(node.value, str):
            parts = node.value.split(":")
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
                problems.add(node.mark, path, f"{node.value!r} is not a volume; write SOURCE:TARGET or "
                                              "SOURCE:TARGET:ro, e.g. ./data:/data:ro")
                return INVALID
            source, target = parts[0], parts[1]
            read_only = len(parts) == 3 and parts[2] == "ro"
        else:
            problems.add(node.mark, path, f"expected a volume such as ./data:/data:ro, got {describe(node)}")
            return INVALID
        return self.check_paths(source, target, read_only, node, path, problems)

    def check_paths(self, source: str, target: str, read_only: bool, node: Node, path: str,
                    problems: Problems) -> Any:
        good = True
        if source.startswith("~"):
            problems.add(node.mark, path, f"source {source!r}: '~' is not expanded here; write the full path")
            good = False
        elif "$" in source:
            problems.add(node.mark, path, f"source {source!r}: variables are not expanded here; write the "
                                          "full path")
            good = False
        elif not (source in (".", "..") or source.startswith(("/", "./", "../"))):
            problems.add(node.mark, path, f"source {source!r} is not a path; write ./{source} for a "
                                          "directory next to the job file, or an absolute path")
            good = False
        if not target.startswith("/"):
            problems.add(node.mark, path, f"target {target!r} is not an absolute path inside the container; "
                                          f"write e.g. /{target.lstrip('~./') or 'data'}")
            good = False
        elif target.rstrip("/") == "":
            problems.add(node.mark, path, "a volume cannot cover the container's root '/'; "
                                          "choose a directory such as /data")
            good = False
        return (source, target, read_only) if good else INVALID

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [{"type": "string", "pattern": r"^[^:]+:/[^:]*(:(ro|rw))?$"}, VOLUME_RECORD.schema()]}


@dataclass(frozen=True, slots=True)
class Dependency:
    """`{afterok: 12}`, `{afterany: [12, 13]}`, or Slurm's `afterok:12:13`."""

    def check(self, node: Node, path: str, problems: Problems) -> Any:
        if isinstance(node.value, str):
            kind, _, rest = node.value.partition(":")
            ids = rest.split(":") if rest else []
            if kind in DEPENDENCY_KINDS and ids and all(part.isdigit() and int(part) > 0 for part in ids):
                return (kind, tuple(int(part) for part in ids))
            problems.add(node.mark, path, f"{node.value!r} is not a dependency; write e.g. {{afterok: 12}} "
                                          f"or afterok:12 (kinds: {', '.join(DEPENDENCY_KINDS)})")
            return INVALID
        if isinstance(node.value, int) and not isinstance(node.value, bool):
            problems.add(node.mark, path, f"a bare job id does not say when to start; write {{afterok: "
                                          f"{node.value}}} (after it succeeds) or {{afterany: {node.value}}}")
            return INVALID
        if node.is_mapping and len(node.value) > 1:
            items = ", ".join(f"{{{kind}: ...}}" for kind in node.value)
            problems.add(node.mark, path, f"one item holds {len(node.value)} dependencies; make each its own "
                                          f"item: [{items}]")
            return INVALID
        if not node.is_mapping or len(node.value) != 1:
            problems.add(node.mark, path, "expected one dependency such as {afterok: 12} or "
                                          f"{{afterany: [12, 13]}}, got {describe(node)}")
            return INVALID
        ((kind, ids_node),) = node.value.items()
        if kind not in DEPENDENCY_KINDS:
            problems.add(node.keys[kind], f"{path}.{kind}", f"unknown dependency kind {kind!r}; use one of "
                                                            f"{', '.join(DEPENDENCY_KINDS)}")
            return INVALID
        ids = JOB_IDS.check(ids_node, f"{path}.{kind}", problems)
        if ids is INVALID:
            return INVALID
        if not ids:
            problems.add(ids_node.mark, f"{path}.{kind}", "names no job; give at least one job id")
            return INVALID
        return (kind, ids)

    def schema(self) -> dict[str, Any]:
        ids = {"anyOf": [{"type": "integer", "minimum": 1},
                         {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1}]}
        pattern = rf"^({'|'.join(DEPENDENCY_KINDS)})(:\d+)+$"
        return {"anyOf": [{"type": "string", "pattern": pattern},
                          {"type": "object", "propertyNames": {"enum": list(DEPENDENCY_KINDS)},
                           "minProperties": 1, "maxProperties": 1, "additionalProperties": ids}]}


JOB_IDS = Seq(Integer(minimum=1, example="12"), single=True, example="[12, 13]")

VOLUME_RECORD = Record((
    Field("source", Text(example="/scratch"), "a host path; relative paths start at the job file's directory",
          required=True, example="./data"),
    Field("target", Text(absolute=True, example="/data"), "where it appears inside the container",
          required=True, example="/data"),
    Field("read_only", Boolean(), "mount it read-only", default=False),
), example="e.g. {source: ./data, target: /data}")

RESOURCES = Record((
    Field("cpus", Cpus(), "CPUs per task (per MPI rank for MPI jobs); may be fractional, e.g. 0.5",
          default=1.0),
    Field("memory", Size(MIN_MEMORY, "'{value}' is only {parsed} bytes; give at least 1M, with a unit "
                                      "(e.g. 512M or 4G)"),
          "memory per task (per MPI rank), K/M/G/T as powers of 1024; default 1G", default=DEFAULT_MEMORY),
    Field("gpus", Integer(minimum=0, example="1"), "GPUs per task (per MPI rank)", default=0),
), example="e.g. cpus: 2 and memory: 4G indented below 'resources:'",
   aliases={"cpu": "cpus", "ncpus": "cpus", "cores": "cpus", "mem": "memory", "gpu": "gpus"})

MPI = Record((
    Field("ranks", Integer(minimum=1, maximum=MAX_UNITS, example="4"), "how many MPI ranks in all", required=True, example="4"),
    Field("ranks_per_node", Integer(minimum=1, maximum=MAX_UNITS, example="2"),
          "ranks on each node; by default nodes are filled with as many as fit"),
    Field("implementation", Choice(MPI_IMPLEMENTATIONS), "the MPI the image carries", default="openmpi"),
), example="e.g. ranks: 4 indented below 'mpi:'",
   aliases={"np": "ranks", "nprocs": "ranks", "ntasks": "ranks", "ppn": "ranks_per_node",
            "ntasks_per_node": "ranks_per_node", "ntasks-per-node": "ranks_per_node"})

PLACEMENT = Record((
    Field("nodes", Integer(minimum=1, maximum=MAX_UNITS, example="2"), "how many nodes; by default derived from the tasks or ranks"),
    Field("constraints", StrMap(LABEL_PATTERN, "is not a node label name (letters, digits, '.', '_', '-', '/')",
                                Text(example="x86_64"), example="{arch: x86_64}"),
          "node labels that must match, e.g. {arch: x86_64}", default={}),
    Field("exclude", Seq(Text(NODE_PATTERN, "is not a node name (name several as a list: [n1, n2])",
                                   example="n3"), single=True,
                         example="[n3]"), "nodes never to use", default=()),
    Field("policy", Choice(POLICIES), "pack: fewest nodes and switch hops; spread: as many nodes as possible",
          default="pack"),
), example="e.g. nodes: 2 indented below 'placement:'")

JOB = Record((
    Field("name", Text(NAME_PATTERN, "is not a job name: use lowercase letters, digits and '-', starting "
                                     "with a letter or digit, at most 63 characters", example="heat",
                       suggest=_suggest_name),
          "the job's name", required=True, example="my-job"),
    Field("image", Text(IMAGE_PATTERN, "is not an image reference: write NAME[:TAG] in lowercase, "
                                       "e.g. busybox or mpi:bookworm", example="busybox",
                        suggest=_suggest_image),
          "a local image name or a registry reference", required=True, example="busybox"),
    Field("command", Seq(Text(allow_empty=True, example="python3"), split_text=True, example="[python3, /opt/run.py]"),
          "the program and its arguments (per rank for MPI jobs); a string is split as a shell would; "
          "default: the image's command", default=()),
    Field("workdir", Text(absolute=True, example="/work"), "the working directory inside the container"),
    Field("env", StrMap(ENV_PATTERN, "is not an environment variable name (letters, digits and '_', "
                                     "not starting with a digit)",
                        Text(allow_empty=True, example='"1"'),
                        reserved_prefix="RADE_", example='{OMP_NUM_THREADS: "1"}'),
          "environment variables added in every container", default={}),
    Field("resources", RESOURCES, "what each task (each MPI rank) needs", default={}),
    Field("mpi", MPI, "makes this an MPI job: one container a node holds that node's ranks"),
    Field("tasks", Integer(minimum=1, maximum=MAX_UNITS, example="3"), "how many copies of the container (non-MPI jobs)",
          default=1),
    Field("network", Choice(NETWORKS), "host (native speed, the default), none, or bridge", default="host"),
    Field("volumes", Seq(Volume(), single=True, example="[/scratch:/scratch, ./data:/data:ro]"),
          "host directories to bind into the containers", default=()),
    Field("placement", PLACEMENT, "where the tasks may run", default={}),
    Field("time_limit", Duration(), "how long the job may run, e.g. 30m, 2h or 1-00:00:00; default: no limit"),
    Field("priority", Integer(minimum=-10000, maximum=10000, example="0"),
          "higher runs first among waiting jobs", default=0),
    Field("requeue", Boolean(), "put the job back in the queue if its node fails", default=True),
    Field("depends_on", Seq(Dependency(), single=True, example="[{afterok: 12}]"),
          "jobs that must end first: afterok, afterany or afternotok", default=()),
    Field("array", ArraySpec(), "makes this a job array, e.g. 0-9; each job sees RADE_ARRAY_INDEX"),
), example="the fields of a job",
   aliases={"environment": "env", "cmd": "command", "args": "command", "entrypoint": "command",
            "working_dir": "workdir", "cwd": "workdir", "workingdir": "workdir", "replicas": "tasks",
            "ntasks": "tasks", "walltime": "time_limit", "time": "time_limit", "timeout": "time_limit",
            "dependency": "depends_on", "dependencies": "depends_on", "after": "depends_on",
            "net": "network", "networks": "network", "volume": "volumes",
            "mounts": "volumes", "nice": "priority"})
