#!/bin/sh
# Regenerate p4rt_test.json and p4rt_test.p4info.txtpb from p4rt_test.p4:
#   P4C=/opt/p4/bin/p4c-bm2-ss sh tests/unit/softswitch_p4rt/data/compile.sh
set -eu
here=$(dirname "$0")
P4C=${P4C:-p4c-bm2-ss}
"$P4C" --arch v1model --p4runtime-files "$here/p4rt_test.p4info.txtpb" \
    -o "$here/p4rt_test.json" "$here/p4rt_test.p4"
