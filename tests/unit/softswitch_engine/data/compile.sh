#!/bin/sh
# Recompile the engine's test programs with p4c-bm2-ss (v1model).
#   sh tests/unit/softswitch_engine/data/compile.sh [/opt/p4/bin/p4c-bm2-ss]
set -eu
P4C=${1:-$(command -v p4c-bm2-ss || echo /opt/p4/bin/p4c-bm2-ss)}
cd "$(dirname "$0")"
for p in features; do
    "$P4C" --arch v1model -o "$p.json" "$p.p4"
done
