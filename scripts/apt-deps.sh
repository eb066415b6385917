#!/usr/bin/env bash
# Install the Debian packages the test suite needs, only when missing.
# `apt-deps.sh bench` also installs the reference daemons benchmarks run
# side by side (Prosody).
# Real peers: gobgpd (BGP VPNv4/v6 + RTC), frr (bgpd as an L3VPN PE), XMPP clients from other projects,
# iproute2 for veth/netns packet ports.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have gobgpd || need+=(gobgpd)
[ -x /usr/lib/frr/bgpd ] || need+=(frr)
have go-sendxmpp || need+=(go-sendxmpp)
have sendxmpp || need+=(sendxmpp)
have ip || need+=(iproute2)
have openssl || need+=(openssl)
if [ "${1:-test}" = bench ]; then
  # reference XMPP server for bench/xmpp_load.py (side-by-side ratios)
  have prosody || need+=(prosody)
fi
if [ ${#need[@]} -eq 0 ]; then
  echo "apt-deps: all present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "apt-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
