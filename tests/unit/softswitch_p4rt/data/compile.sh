#!/bin/sh
# Regenerate p4rt_test.json and p4rt_test.p4info.txtpb from p4rt_test.p4:
#   P4C=/opt/p4/bin/p4c-bm2-ss sh tests/unit/softswitch_p4rt/data/compile.sh
set -eu
P4C=$(command -v "${P4C:-p4c-bm2-ss}")
cd "$(dirname "$0")"
"$P4C" --arch v1model --p4runtime-files p4rt_test.p4info.txtpb -o p4rt_test.json p4rt_test.p4
