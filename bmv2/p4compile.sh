#!/usr/bin/env bash
# Compile p4src/v1model/main.p4 with p4c-bm2-ss into OUT (bmv2 JSON + P4Info text).
#   bmv2/p4compile.sh /path/to/p4c-bm2-ss OUT_DIR
# Runs from the repository root so the source paths p4c records in the JSON
# are the same on every machine (make p4-check diffs the output).
set -euo pipefail
P4C="$1"
OUT="$2"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."  # bmv2/ -> repository root
"$P4C" --arch v1model --std p4-16 \
  -I p4src/include \
  --p4runtime-files "$OUT/esvpn.p4info.txtpb" \
  -o "$OUT/esvpn.json" \
  p4src/v1model/main.p4
