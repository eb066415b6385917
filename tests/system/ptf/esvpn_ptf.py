"""PTF tests, run by the ``ptf`` tool itself (not by pytest), against the
embedded target running the compiled esvpn program.

``tests/system/test_softswitch_ptf.py`` starts the softswitch daemon on veth
pairs and runs::

    ptf --test-dir tests/system/ptf -i 1@<veth> -i 2@<veth> -i 4@<veth> \\
        -t "grpc_addr='127.0.0.1:N';p4info='...';bmv2_json='...'"

Every entry is written with p4runtime-shell (its own P4Info helpers, its own
parsing of "a.b.c.d/len" and MAC strings), every frame goes through PTF's
dataplane (AF_PACKET on the veths) and is checked with PTF's verify_*
helpers: these are the tools an operator of bmv2 uses, unchanged.
"""

from __future__ import annotations

from p4runtime_sh import shell as sh
from ptf import testutils as tu
from ptf.base_tests import BaseTest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

IG = "SwitchIngress.pipe."
VRRP4 = "00:00:5e:00:01:01"
ES1 = "02:00:00:00:01:01"
ES2 = "02:00:00:00:02:02"
MY_IP = "192.0.2.1"
REMOTE = "198.51.100.11"
SW_FABRIC_MAC = "02:00:00:00:f0:01"
NH = "02:00:00:00:f0:04"
DROP_SPOOFED = 8  # p4src/include/define.p4


class EsvpnTest(BaseTest):
    """Pipeline pushed and base entries written through p4runtime-shell."""

    def setUp(self) -> None:
        BaseTest.setUp(self)
        self.dataplane = tu.ptf.dataplane_instance  # type: ignore[attr-defined]
        self.dataplane.flush()
        sh.setup(
            device_id=0,
            grpc_addr=tu.test_param_get("grpc_addr"),
            election_id=(0, 1),
            config=sh.FwdPipeConfig(tu.test_param_get("p4info"), tu.test_param_get("bmv2_json")),
            verbose=False,
        )
        fabric = sh.TableEntry(IG + "port_role.fabric_port")(
            action=IG + "port_role.set_fabric_port"
        )
        fabric.match["ingress_port"] = "4"
        fabric.insert()
        cfg = sh.TableEntry(IG + "port_role.fabric_config")(
            action=IG + "port_role.set_fabric_config"
        )
        cfg.is_default = True
        cfg.action["my_ipv4"] = MY_IP
        cfg.action["mtu"] = "1500"
        cfg.modify()
        for port, es_mac, vif_id, src in ((1, ES1, 1, "10.1.0.1/32"), (2, ES2, 2, "10.1.0.2/32")):
            v = sh.TableEntry(IG + "classifier.vif")(action=IG + "classifier.set_vif")
            v.match["ingress_port"] = str(port)
            v.match["src_mac"] = es_mac
            v.match["vlan_id"] = "10"
            v.action["vif_id"] = str(vif_id)
            v.action["vrf_id"] = "100"
            v.insert()
            a = sh.TableEntry(IG + "anti_spoof.ipv4_source")(action=IG + "anti_spoof.permit")
            a.match["vif_id"] = str(vif_id)
            a.match["src_addr"] = src
            a.insert()

    def tearDown(self) -> None:
        sh.teardown()
        BaseTest.tearDown(self)


def udp(src: str, dst: str, ttl: int) -> IP:
    return IP(
        bytes(IP(src=src, dst=dst, ttl=ttl, id=7) / UDP(sport=1234, dport=80) / Raw(b"\xab" * 16))
    )


class ArpAnswered(EsvpnTest):
    """An ARP request for any address is answered from the VRRP MAC, same port and VLAN."""

    def runTest(self) -> None:
        req = (
            Ether(src=ES1, dst="ff:ff:ff:ff:ff:ff")
            / Dot1Q(vlan=10)
            / ARP(op=1, hwsrc=ES1, psrc="10.1.0.1", pdst="10.1.0.254")
        )
        reply = (
            Ether(src=VRRP4, dst=ES1)
            / Dot1Q(vlan=10)
            / ARP(op=2, hwsrc=VRRP4, psrc="10.1.0.254", hwdst=ES1, pdst="10.1.0.1")
        )
        tu.send_packet(self, 1, req)
        tu.verify_packet(self, reply, 1)
        tu.verify_no_other_packets(self)


class EncapToRemote(EsvpnTest):
    """A routed packet leaves the fabric port as MPLS-in-GRE, byte for byte."""

    def runTest(self) -> None:
        member = sh.ActionProfileMember(IG + "nexthop.nexthop_selector")(
            member_id=1, action=IG + "nexthop.encap_mpls_gre"
        )
        member.action["label"] = "30001"
        member.action["remote_ipv4"] = REMOTE
        member.insert()
        nh = sh.TableEntry(IG + "nexthop.nexthop")
        nh.match["nexthop_id"] = "1"
        nh.member_id = 1
        nh.insert()
        route = sh.TableEntry(IG + "routing.ipv4_route")(action=IG + "routing.set_nexthop")
        route.match["vrf_id"] = "100"
        route.match["dst_addr"] = "10.2.0.0/16"
        route.action["nexthop_id"] = "1"
        route.insert()
        under = sh.TableEntry(IG + "nexthop.underlay")(action=IG + "nexthop.set_underlay")
        under.match["remote_ipv4"] = REMOTE + "/32"
        under.action["port"] = "4"
        under.action["src_mac"] = SW_FABRIC_MAC
        under.action["dst_mac"] = NH
        under.action["vlan_id"] = "0"
        under.insert()

        tu.send_packet(
            self, 1, Ether(src=ES1, dst=VRRP4) / Dot1Q(vlan=10) / udp("10.1.0.1", "10.2.0.5", 17)
        )
        want = (
            Ether(src=SW_FABRIC_MAC, dst=NH)
            / IP(src=MY_IP, dst=REMOTE, id=0, flags="DF", ttl=64, proto=47)
            / GRE(proto=0x8847)
            / MPLS(label=30001, cos=0, s=1, ttl=16)
            / udp("10.1.0.1", "10.2.0.5", 16)
        )
        tu.verify_packet(self, want, 4)
        tu.verify_no_other_packets(self)


class SpoofedDroppedAndCounted(EsvpnTest):
    """A source never installed for the vif is dropped; the shell reads the count."""

    def runTest(self) -> None:
        route = sh.TableEntry(IG + "routing.ipv4_route")(action=IG + "routing.to_cpu")
        route.match["vrf_id"] = "100"
        route.match["dst_addr"] = "10.0.0.0/8"
        route.insert()
        for _ in range(3):
            tu.send_packet(
                self,
                2,
                Ether(src=ES2, dst=VRRP4) / Dot1Q(vlan=10) / udp("10.9.9.9", "10.1.0.1", 64),
            )
        tu.verify_no_other_packets(self)
        counter = sh.CounterEntry(IG + "ingress_drops")
        counter.index = DROP_SPOOFED
        counts = [c.data.packet_count for c in counter.read()]
        self.assertEqual(counts, [3])
