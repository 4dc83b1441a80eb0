#!/usr/bin/env bash
# `make demo`: the heat-equation solver as an MPI job, 4 ranks over the 2 nodes of a dev cluster.
#
#   bash examples/demo.sh .venv/bin/rade        (make demo runs `make deps` first; this installs nothing)
#
# Builds the MPI image (a Debian bookworm base from debootstrap, then examples/mpi/Containerfile; both are
# cached, so a second run takes seconds), brings up a 2-node dev cluster, submits examples/mpi/heat.yaml,
# shows `rade queue` and `rade nodes` while it runs, prints the job's output, takes the cluster down on
# every path (Ctrl-C and failures included) and exits with the job's exit code. State lives in the
# default root (/var/lib/rade as root), or in $RADE_ROOT.
set -euo pipefail
RADE=${1:?usage: demo.sh RADE_BINARY}
# The binary is named relative to where we were called from; the examples relative to this script.
if [[ "$RADE" == */* ]]; then RADE="$(cd "$(dirname "$RADE")" && pwd)/$(basename "$RADE")"; fi
PYTHON="$(dirname "$RADE")/python"
[ -x "$PYTHON" ] || PYTHON=python3
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "rade validate examples/mpi/heat.yaml"
"$RADE" validate examples/mpi/heat.yaml

step "the MPI image: rade image bootstrap debian:bookworm, then rade build -t mpi:bookworm examples/mpi"
start=$SECONDS
"$RADE" image bootstrap debian:bookworm debian:bookworm
"$RADE" build -t mpi:bookworm examples/mpi | tail -n 3
echo "(image ready in $((SECONDS - start)) s)"

step "rade cluster up --nodes 2"
"$RADE" cluster up --nodes 2
trap 'step "rade cluster down"; "$RADE" cluster down' EXIT

step "rade submit examples/mpi/heat.yaml   (4 ranks, 2 per node)"
job=$("$RADE" submit examples/mpi/heat.yaml)
echo "job $job"

state_of() {
    "$RADE" show "$job" --json | "$PYTHON" -c 'import json, sys; j = json.load(sys.stdin); print(j["state"], "" if j.get("exit_code") is None else j["exit_code"])'
}
shown=0
while true; do
    read -r state code < <(state_of)
    case "$state" in
        COMPLETED|FAILED|CANCELLED|TIMEOUT|OOM|NODE_FAIL) break ;;
    esac
    if [ "$state" = RUNNING ] || [ $shown -eq 0 ]; then
        step "rade queue; rade nodes   (job $job is $state)"
        "$RADE" queue
        "$RADE" nodes
        shown=$((shown + 1))
    fi
    sleep 3
done

step "rade logs $job"
"$RADE" logs "$job"

step "rade show $job"
"$RADE" show "$job"
echo "job $job ended $state${code:+ with exit code $code}"
exit "${code:-1}"
