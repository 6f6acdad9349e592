"""`phoenix-hook watch` in a VLAN (VM lab only): it hears a squatter in a tagged guest's VLAN where
PVE's bridges put that VLAN's frames (REFERENCE section 4)."""
from __future__ import annotations

import pytest

from phoenix_hook.net import arp
from test_lab_watch import Watch, send
from vmlab.vlanlab import (SQUAT_MAC, add_holder, add_trunk, add_vlan_device, ip_batch, make_vlan_aware,
                          probe_ports, self_vlans)

IP = "10.0.0.151"


@pytest.mark.parametrize("layout", ["vlan-aware-standard", "traditional-admin-vlan-device"])
def test_watch_hears_a_squatter_in_the_guests_vlan(lab, pve, tmp_path, layout):
    """vlan-aware-standard: the bridge itself is in VID 1 only; the watch holds it promiscuous,
    so VLAN 20's frames still come up to the host (br_handle_vlan).
    traditional-admin-vlan-device: the admin's eno1.20 takes VLAN 20's frames before vmbr0
    sees them; the watch hears them on eno1 (before: never)."""
    if layout == "vlan-aware-standard":
        make_vlan_aware(lab)
        lan = add_trunk(lab)
    else:
        lan = add_trunk(lab, vids=None)
        add_vlan_device(lab, 20)
    pve.guest(951, nets={"net0": f"name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B1,ip={IP}/24,tag=20"})
    w = Watch(lab, pve, tmp_path)
    try:
        w.ready(timeout=120)                          # an emulated CPU: the watch takes a while to start
        send(lab, lan, arp.build_announcement(SQUAT_MAC, IP, vlan=20))
        e = w.event("conflict", ip=IP, timeout=60)
        assert (e["vmid"], e["mac"], e["bridge"], e["vlan"]) == (951, SQUAT_MAC, "vmbr0", 20), e
    finally:
        w.close()


def test_watch_rechecks_a_vlan_the_bridge_is_not_in_through_a_temporary_port(lab, pve, tmp_path):
    """A standard VLAN-aware bridge is not in VLAN 20 itself: the watch re-probes an open
    conflict there through a temporary port in VLAN 20 (net/probeport.py, as the hook does).
    A squatter whose kernel answers keeps the conflict open; once it gives the address up, the
    next round goes unanswered and the conflict is resolved; no port is left behind."""
    make_vlan_aware(lab)
    lan = add_trunk(lab)
    add_holder(lab, lan, f"{IP}/24", SQUAT_MAC, vid=20)
    pve.guest(951, nets={"net0": f"name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B1,ip={IP}/24,tag=20"})
    w = Watch(lab, pve, tmp_path, watch={"verify_s": 1})
    try:
        w.ready(timeout=120)
        send(lab, lan, arp.build_announcement(SQUAT_MAC, IP, vlan=20))
        w.event("conflict", ip=IP, timeout=60)
        act = 'phoenix_hook_conflict_active{id="lxc/951",ip="10.0.0.151"}'
        # The squatter's kernel answers each re-probe, which only reaches it through the port.
        # Unanswered, the first round (3 probes) would resolve the conflict and no round would
        # follow: the frame count would stop near 4. 20 frames take several answered rounds.
        w.metric('phoenix_hook_frames_total{family="ipv4"}', lambda v: v >= 20, timeout=120)
        assert w.events("resolved") == [] and w.metrics()[act] == 1
        ip_batch(lan, f"addr del {IP}/24 dev h20x{SQUAT_MAC.replace(':', '')[-4:]}")
        w.event("resolved", ip=IP, timeout=90)
    finally:
        w.close()
    assert probe_ports(lab) == []
    assert self_vlans(lab) == {1}                       # the bridge itself was never changed
