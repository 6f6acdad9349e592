"""`phoenix-hook watch` in a VLAN (VM lab only): it hears a squatter in a tagged guest's VLAN where
PVE's bridges put that VLAN's frames (REFERENCE section 4)."""
from __future__ import annotations

import pytest

from phoenix_hook.net import arp
from test_lab_watch import Watch, send
from vmlab.vlanlab import SQUAT_MAC, add_trunk, add_vlan_device, make_vlan_aware

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
