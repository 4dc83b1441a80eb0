#!/usr/bin/env bash
# The demo: for now, check every job spec under examples/ and print each in full, defaults included.
#   bash examples/demo.sh .venv/bin/rade
set -euo pipefail
RADE=${1:?usage: demo.sh RADE_BINARY}
# The binary is named relative to where we were called from; the specs relative to this script.
if [[ "$RADE" == */* ]]; then RADE="$(cd "$(dirname "$RADE")" && pwd)/$(basename "$RADE")"; fi
cd "$(dirname "$0")"
mapfile -t specs < <(find . -name '*.yaml' | sort)
if [ "${#specs[@]}" -eq 0 ]; then
    echo "demo: no job specs under examples/" >&2
    exit 1
fi
for spec in "${specs[@]}"; do
    echo "== rade validate --print ${spec#./}"
    "$RADE" validate --print "$spec"
done
echo "== all ${#specs[@]} job specs are valid"
