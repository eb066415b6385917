"""The test program's P4Info / bmv2 JSON pair and name -> id lookups."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from p4.config.v1 import p4info_pb2
from p4.v1 import p4runtime_pb2

DATA = Path(__file__).parent / "data"
P4INFO_PATH = DATA / "p4rt_test.p4info.txtpb"
JSON_PATH = DATA / "p4rt_test.json"


def load_p4info() -> p4info_pb2.P4Info:
    return text_format.Parse(P4INFO_PATH.read_text(), p4info_pb2.P4Info())


def load_esvpn_config() -> p4runtime_pb2.ForwardingPipelineConfig:
    """Our own program, as committed in p4src/build/."""
    build = DATA.parents[3] / "p4src" / "build"
    cfg = p4runtime_pb2.ForwardingPipelineConfig(
        p4_device_config=(build / "esvpn.json").read_bytes()
    )
    text_format.Parse((build / "esvpn.p4info.txtpb").read_text(), cfg.p4info)
    return cfg


def load_config(cookie: int = 0) -> p4runtime_pb2.ForwardingPipelineConfig:
    cfg = p4runtime_pb2.ForwardingPipelineConfig(p4_device_config=JSON_PATH.read_bytes())
    cfg.p4info.CopyFrom(load_p4info())
    cfg.cookie.cookie = cookie
    return cfg


class Ids:
    """Ids by short name (alias) from the P4Info: ``ids.table("l2")``."""

    def __init__(self, p4info: p4info_pb2.P4Info) -> None:
        self.p4info = p4info

    @staticmethod
    def _find(items, name):  # type: ignore[no-untyped-def]
        for it in items:
            if name in (it.preamble.name, it.preamble.alias):
                return it
        raise KeyError(name)

    def table(self, name: str) -> int:
        return self._find(self.p4info.tables, name).preamble.id

    def field(self, table: str, name: str) -> int:
        for mf in self._find(self.p4info.tables, table).match_fields:
            if mf.name == name:
                return mf.id
        raise KeyError(name)

    def action(self, name: str) -> int:
        return self._find(self.p4info.actions, name).preamble.id

    def param(self, action: str, name: str) -> int:
        for p in self._find(self.p4info.actions, action).params:
            if p.name == name:
                return p.id
        raise KeyError(name)

    def profile(self, name: str) -> int:
        return self._find(self.p4info.action_profiles, name).preamble.id

    def counter(self, name: str) -> int:
        return self._find(self.p4info.counters, name).preamble.id

    def meter(self, name: str) -> int:
        return self._find(self.p4info.meters, name).preamble.id

    def register(self, name: str) -> int:
        return self._find(self.p4info.registers, name).preamble.id

    def packet_metadata(self, header: str, name: str) -> int:
        for m in self._find(self.p4info.controller_packet_metadata, header).metadata:
            if m.name == name:
                return m.id
        raise KeyError(name)
