"""wire.py on a VLAN-aware bridge (VM lab only): what protocol a tagged frame is sent with decides
its VLAN, and the tag of what comes back is read from PACKET_AUXDATA (REFERENCE section 4)."""
from __future__ import annotations

import json
import sys

from conftest import REPO
from vmlab.vlanlab import SQUAT_MAC, add_guest_port, bridge_cmd, make_vlan_aware

SEND = r"""
import json, socket, sys, time
from phoenix_hook.net import arp, hostnet, wire
proto = int(sys.argv[1])
frame = arp.build_probe(hostnet.link("vmbr0").mac, "10.0.0.151", 20)
with wire.Wire(["vmbr0"]) as w:
    if proto == wire.ETH_P_ALL:
        w.send("vmbr0", frame)
    else:                           # the control: the same frame from a socket of another protocol
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        s.bind(("vmbr0", proto))
        s.send(frame)
        s.close()
    seen, end = [], time.monotonic() + 3.0
    while time.monotonic() < end and not seen:
        for _if, f, vlan in w.receive(0.1):
            p = arp.parse(f, vlan)
            if p and p.op == arp.ARP_REPLY and p.sender_ip == "10.0.0.151":
                seen.append({"mac": p.sender_mac, "aux_vlan": vlan, "in_frame_tag": f[12:14] == b"\x81\x00"})
print(json.dumps(seen))
"""


def _send(lab, proto: int) -> list[dict]:
    p = lab.run(lab.pve, [sys.executable, "-c", SEND, str(proto)],
                env={"PYTHONPATH": str(REPO), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_tagged_frames_need_a_protocol_the_kernel_parses_and_tags_come_back_in_auxdata(lab):
    """VLAN 20 on vmbr0 itself, a guest port in VLAN 20 (PVID untagged) holding the address and
    nothing else on the bridge. Sent by wire.Wire (bound ETH_P_ALL) the probe is VLAN 20's and the
    guest answers; the answer comes up tagged, its tag in PACKET_AUXDATA, not in the frame. The
    same bytes from a socket bound to ETH_P_ARP are untagged traffic of VID 1 to the bridge
    (the in-band tag is not parsed), which no port of VLAN 20 ever sees: no answer."""
    make_vlan_aware(lab)
    bridge_cmd(lab, "vlan", "add", "dev", "vmbr0", "vid", "20", "self")
    add_guest_port(lab, 952, "10.0.0.151/24", SQUAT_MAC, vid=20)
    lab.wait_link_ready()
    assert _send(lab, 0x0806) == []                       # ETH_P_ARP: the wrong VLAN, nobody answers
    assert _send(lab, 0x0003) == [{"mac": SQUAT_MAC, "aux_vlan": 20, "in_frame_tag": False}]
