"""Forwarder agent: end-system XMPP sessions -> VRF state -> P4Runtime."""
