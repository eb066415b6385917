"""The draft's XMPP layer (draft-ietf-l3vpn-end-system §6), shared by both daemons.

Only this package knows the XMPP wire format. Overview:

``esxmpp.dialect`` (pure)
    Typed frozen events and their XML: requests ``Subscribe(node, vlan_id)``,
    ``Unsubscribe(node)``, ``Publish(node, entry)``, ``Retract(node)``,
    ``Associate(collection, node)``, ``Dissociate(collection, node)``;
    notifications ``ItemsEvent(node, items)``, ``RetractEvent(node, item_ids)``,
    ``EndOfRib(node)``; ``RouteEntry(prefix, nexthop, label, version)``.
    ``parse_request(iq)`` / ``build_request(req, id)`` / ``build_pubsub(req)``,
    ``parse_notification(msg)`` / ``build_notification(note, to, from_)``,
    ``build_result`` / ``build_error`` / ``parse_iq_error``,
    ``parse_item_node('01020304abcd:10.1.1.1/32')``, ``item_node_name``,
    ``parse_system_id``, ``DialectError(condition, text)``.
``esxmpp.session`` (pure)
    ``SessionTable``: per-system-id advertised state, request checks that
    need state (version going backwards, associate to an unsubscribed VPN,
    node of another system), retention after close (default 60 s), resume,
    takeover/refuse of a second session; ``plan``/``commit``/``expire``.
``esxmpp.config``
    ``ServerConfig`` / ``ClientConfig`` frozen dataclasses,
    ``server_config_from_toml`` / ``client_config_from_toml``, TLS contexts.
``esxmpp.server``
    ``XmppServer(config, handler)``: STARTTLS, SASL EXTERNAL (client cert) or
    PLAIN, resource binding, ping, hardened parser; calls a ``Handler``.
``esxmpp.client``
    ``XmppClient(config, on_notification)``: slixmpp-based client with typed
    requests and notifications, keepalive pings, no silent reconnects.
``esxmpp.stream`` (pure)
    ``StreamParser``: the hardened incremental XML stream parser (no DTD,
    entities, PIs or comments; size and depth limits) -> ``StreamError``.
``esxmpp.testing``
    Test/lab helpers: ``make_pki(dir)`` (CA, server and client certificates
    whose CN/SAN is the system id) and ``RawClient`` (byte-level client for
    exact-stanza tests). Needs ``cryptography`` (dev extra).

Encodings chosen where the draft is silent (details in ``esxmpp.dialect``):
publish carries ``<item>`` (XEP-0060; the draft's bare ``<entry>`` is also
accepted), withdrawal is ``<retract node=…/>`` (``<delete>`` accepted),
end-of-RIB is ``<items node='vpn'><end-of-rib xmlns='http://ietf.org/protocol/bgpvpn'/>``
(or Tungsten Fabric's session-wide ``<items node='EndOfRib'/>``), notification
item ids are the prefix text.
"""
