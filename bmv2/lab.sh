#!/usr/bin/env bash
# The demo lab (two ToRs, two agents, two route servers, a GoBGP reflector,
# four end-systems) on simple_switch_grpc instead of the embedded target.
#   bmv2/lab.sh [demo|check]
set -euo pipefail
cd "$(dirname "$0")/.."
exec make "demo$([ "${1:-demo}" = check ] && echo -check)" TARGET=bmv2
