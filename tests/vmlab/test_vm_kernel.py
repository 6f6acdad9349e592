"""The VM lab's kernel has what the VLAN tests need: 802.1Q devices and VLAN-filtering bridges."""
from __future__ import annotations

import json


def test_vlan_device_and_vlan_filtering_bridge(lab):
    pve = lab.pve
    # An uplink with an 802.1Q device on it (what an admin's eno1.20 is).
    lab.ip(pve, "link", "add", "eno1", "type", "veth", "peer", "name", "eno1peer")
    lab.ip(pve, "link", "add", "link", "eno1", "name", "eno1.20", "type", "vlan", "id", "20")
    info = json.loads(lab.ip(pve, "-j", "-d", "link", "show", "eno1.20").stdout)[0]["linkinfo"]
    assert (info["info_kind"], info["info_data"]["protocol"], info["info_data"]["id"]) == ("vlan", "802.1Q", 20)

    # A VLAN-aware bridge as ifupdown2 makes PVE's (bridge-vlan-aware yes, bridge-vids 2-4094).
    lab.ip(pve, "link", "add", "vmbrv", "type", "bridge", "vlan_filtering", "1")
    assert lab.run(pve, ["cat", "/sys/class/net/vmbrv/bridge/vlan_filtering"]).stdout.strip() == "1"
    lab.ip(pve, "link", "set", "eno1", "master", "vmbrv")
    p = lab.run(pve, ["bridge", "vlan", "add", "dev", "eno1", "vid", "2-4094"])
    assert p.returncode == 0, p.stderr
    vlans = json.loads(lab.run(pve, ["bridge", "-j", "vlan", "show"]).stdout)
    by_port = {v["ifname"]: {x["vlan"] for x in v["vlans"]} for v in vlans}
    assert by_port["vmbrv"] == {1}                   # the bridge itself: VID 1 only
    assert {1, 2, 20, 4094} <= by_port["eno1"]        # the uplink: a trunk of 2-4094 (and PVID 1)
