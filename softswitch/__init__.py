"""Embedded P4 target: runs p4c's bmv2 JSON behind a P4Runtime gRPC server."""
