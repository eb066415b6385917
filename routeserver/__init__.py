"""End-System Route Server: XMPP for forwarders <-> RIB <-> BGP (ExaBGP)."""
