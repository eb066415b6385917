"""The draft's XMPP dialect, server and client, shared by agent and route server."""
