#!/usr/bin/env bash
# Compile p4src/v1model/main.p4 with p4c-bm2-ss into OUT (bmv2 JSON + P4Info text).
set -euo pipefail
P4C="$1"
OUT="$2"
mkdir -p "$OUT"
"$P4C" --arch v1model --std p4-16 \
  -I p4src/include \
  --p4runtime-files "$OUT/esvpn.p4info.txtpb" \
  -o "$OUT/esvpn.json" \
  p4src/v1model/main.p4
