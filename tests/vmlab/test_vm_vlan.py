"""VLANs as Proxmox VE wires them, on a kernel with 802.1Q and VLAN filtering (VM lab only).

The real hookscript runs as PVE runs it (conftest's run_hook) in the lab's
PVE namespace; the LAN behind the uplink eno1 is a namespace with real
kernel hosts in VLANs (tests/vmlab/vlanlab.py). Each test first asks with
the address held only in other VLANs (free), then with a holder in the
guest's own VLAN (refused), and checks that the PVE host is left as it was:
no temporary probe port, the bridge's own VLAN list unchanged.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import hook_argv
from phoenix_hook.net import probeport
from vmlab.vlanlab import (GUEST_MAC, GW_MAC, OTHER_MAC, SQUAT_MAC, UNTAGGED_MAC, add_guest_port, add_holder,
                           add_pve_vlan_bridge, add_trunk, add_vlan_device, bridge_cmd, make_vlan_aware,
                           probe_ports, self_vlans)

P = "phoenix-hook:"
IP = "10.0.0.151"
UNKNOWN = "vendor unknown, locally administered"


def net(ip: str, mac: str, tag: int | None = None, bridge: str = "vmbr0", ip6: str | None = None) -> str:
    return (f"name=eth0,bridge={bridge},gw=10.0.0.1,hwaddr={mac},ip={ip}"
            + (f",ip6={ip6}" if ip6 else "") + (f",tag={tag}" if tag is not None else "") + ",type=veth")


def guest951(pve, tag=20, ip6=None):
    pve.guest(951, nets={"net0": net(f"{IP}/24", GUEST_MAC.upper(), tag=tag, ip6=ip6)})


def refused(out, mac=SQUAT_MAC, ip=IP):
    line = f"{P} CT 951 net0 {ip} is in use by {mac} ({UNKNOWN}) on vmbr0 VLAN 20 - start refused"
    assert line in out.splitlines(), out


def free(out, how=""):
    head = f"{P} CT 951 net0 {IP} is free on vmbr0 VLAN 20 (no answer in "
    lines = [x for x in out.splitlines() if x.startswith(head)]
    assert lines, out
    assert lines[0].endswith(f"3 probes{how})"), lines


def left_as_it_was(lab, vids_before):
    assert probe_ports(lab) == [], "a temporary probe port was left behind"
    assert self_vlans(lab) == vids_before


# -- VLAN-aware bridge -------------------------------------------------------------

@pytest.fixture
def aware(lab):
    """A standard PVE VLAN-aware vmbr0: trunk uplink eno1 (VIDs 2-4094), the bridge itself in VID 1."""
    make_vlan_aware(lab)
    return add_trunk(lab)


@pytest.mark.parametrize("vid_on_bridge", [False, True], ids=["standard", "vid-on-bridge"])
def test_vlan_aware_bridge(lab, pve, run_hook, aware, vid_on_bridge):
    """standard: bridge-vids on the ports only, the probe goes through a temporary port in VLAN 20
    (before: "could not check", so tagged guests started unchecked); vid-on-bridge: VLAN 20 on
    vmbr0 itself (`bridge vlan add dev vmbr0 vid 20 self`), tagged frames on vmbr0."""
    if vid_on_bridge:
        bridge_cmd(lab, "vlan", "add", "dev", "vmbr0", "vid", "20", "self")
    before = self_vlans(lab)
    assert (20 in before) == vid_on_bridge
    guest951(pve)
    add_holder(lab, aware, f"{IP}/24", OTHER_MAC, vid=30)         # holders in other VLANs
    add_holder(lab, aware, f"{IP}/24", UNTAGGED_MAC)              # untagged: PVID 1
    add_holder(lab, aware, "10.0.0.1/24", GW_MAC, vid=20)        # someone else in VLAN 20
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    free(out, "" if vid_on_bridge else ", through a temporary port in VLAN 20")
    assert recs[-1]["verdict"] == "clear"
    left_as_it_was(lab, before)

    add_holder(lab, aware, f"{IP}/24", SQUAT_MAC, vid=20, name="squat")
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    refused(out)
    assert OTHER_MAC not in out and UNTAGGED_MAC not in out
    left_as_it_was(lab, before)


def test_vlan_aware_guest_ports(lab, pve, run_hook, aware):
    """Other guests plugged as PVE plugs them (PVID = tag, untagged): only one in VLAN 20 counts."""
    before = self_vlans(lab)
    guest951(pve)
    add_guest_port(lab, 953, f"{IP}/24", OTHER_MAC, vid=30)
    add_guest_port(lab, 954, f"{IP}/24", UNTAGGED_MAC, vid=None)   # untagged guest: VID 1
    code, out, _recs = run_hook(lab, 951)
    assert code == 0, out
    free(out, ", through a temporary port in VLAN 20")

    add_guest_port(lab, 952, f"{IP}/24", SQUAT_MAC, vid=20)
    code, out, _recs = run_hook(lab, 951)
    assert code == 1, out
    refused(out)
    assert OTHER_MAC not in out and UNTAGGED_MAC not in out
    left_as_it_was(lab, before)


def test_vlan_aware_ipv6_holder(lab, pve, run_hook, aware):
    """IPv6 DAD through the temporary port: the holder's Neighbor Advertisement comes back."""
    before = self_vlans(lab)
    guest951(pve, ip6="fd00:20::151/64")
    dev = add_holder(lab, aware, "10.0.0.9/24", SQUAT_MAC, vid=20)
    lab.ip(aware, "addr", "add", "fd00:20::151/64", "dev", dev, "nodad")
    code, out, _recs = run_hook(lab, 951)
    assert code == 1, out
    refused(out, ip="fd00:20::151")
    assert f"net0 {IP} is in use" not in out
    left_as_it_was(lab, before)


# -- traditional (not VLAN-aware) bridge -------------------------------------------

@pytest.mark.parametrize("layout", ["first-tagged-guest", "pve-vlan-bridge", "admin-vlan-device",
                                    "admin-vlan-device-down"])
def test_traditional_bridge(lab, pve, run_hook, layout):
    """first-tagged-guest: neither eno1.20 nor vmbr0v20 yet (tagged frames on vmbr0);
    pve-vlan-bridge: PVE's eno1.20 in vmbr0v20 (untagged there);
    admin-vlan-device: the admin's own eno1.20 (with an address) and no vmbr0v20: VLAN 20's
    answers go to eno1.20, never to vmbr0 (before: a false "free"); -down: the kernel drops them."""
    lan = add_trunk(lab, vids=None)
    if layout == "pve-vlan-bridge":
        add_pve_vlan_bridge(lab, 20)
    elif layout == "admin-vlan-device":
        add_vlan_device(lab, 20, cidr="10.0.0.2/24")
    elif layout == "admin-vlan-device-down":
        add_vlan_device(lab, 20, up=False)
    guest951(pve)
    add_holder(lab, lan, f"{IP}/24", OTHER_MAC, vid=30)
    add_holder(lab, lan, f"{IP}/24", UNTAGGED_MAC)
    code, out, _recs = run_hook(lab, 951)
    assert code == 0, out
    free(out)

    add_holder(lab, lan, f"{IP}/24", SQUAT_MAC, vid=20)
    code, out, _recs = run_hook(lab, 951)
    assert code == 1, out
    refused(out)
    assert OTHER_MAC not in out and UNTAGGED_MAC not in out
    assert probe_ports(lab) == []


# -- the temporary port's life ---------------------------------------------------------

def _start_hook(lab, pve):
    lab.wait_link_ready()
    return subprocess.Popen(hook_argv(lab, 951), env=pve.env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/")


def _forwarding(lab, ports) -> bool:
    """The probe is on: the bridge end forwards (brport state 3) and the host end has carrier."""
    port = next(p for p in ports if p.startswith("veth"))
    peer = next(p for p in ports if p.startswith("phxq"))
    p = lab.run(lab.pve, ["cat", f"/sys/class/net/{port}/brport/state", f"/sys/class/net/{peer}/carrier"])
    return p.returncode == 0 and p.stdout.split() == ["3", "1"]


def _wait_for_port(lab, proc, timeout=60.0) -> list[str]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ports = probe_ports(lab)
        if len(ports) == 2 and _forwarding(lab, ports):
            return ports
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no temporary port appeared within {timeout} s: {proc.communicate()[0]}")


def test_probe_port_deleted_mid_probe_killed_run_cleaned_up_by_the_next(lab, pve, run_hook, aware):
    before = self_vlans(lab)
    guest951(pve)
    pve.settings(probe_timeout_ms=4000)                          # a window long enough to act in
    add_holder(lab, aware, f"{IP}/24", OTHER_MAC, vid=30)

    # Someone (an ifreload, an admin) deletes the port during the probe: "could not check", never free.
    hook = _start_hook(lab, pve)
    port = next(p for p in _wait_for_port(lab, hook) if p.startswith("veth"))
    lab.ip(lab.pve, "link", "del", port)
    out = hook.communicate(timeout=60)[0]
    assert hook.returncode == 0, out                                # on_error = allow
    assert f"WARNING: {P} CT 951 was NOT checked for address conflicts (net0 {IP}: " in out, out
    assert "is free" not in out

    # The check (the hook's child, whose PID the port's name carries) killed mid-probe:
    # the hook's watchdog deletes its port at once and says it could not check.
    hook = _start_hook(lab, pve)
    ports = _wait_for_port(lab, hook)
    child = probeport.owner_pid(ports[0])
    assert child != hook.pid
    os.kill(child, signal.SIGKILL)
    out = hook.communicate(timeout=60)[0]
    assert f"{P} guest 951: could not check: the check ended abnormally (killed by SIGKILL" in out, out
    assert probe_ports(lab) == []

    # A whole run killed mid-probe (watchdog and check) leaves its port behind ...
    hook = _start_hook(lab, pve)
    stale = _wait_for_port(lab, hook)
    hook.send_signal(signal.SIGKILL)
    os.kill(probeport.owner_pid(stale[0]), signal.SIGKILL)
    hook.communicate(timeout=30)
    assert probe_ports(lab) == stale
    # ... and the next run deletes it (its owner is gone), and its own.
    pve.settings(probe_timeout_ms=250)
    code, out, _recs = run_hook(lab, 951)
    assert code == 0, out
    free(out, ", through a temporary port in VLAN 20")
    left_as_it_was(lab, before)


# -- scan --vlan, locate --vlan --------------------------------------------------------

@pytest.mark.parametrize("layout", ["vlan-aware-standard", "traditional-admin-vlan-device"])
def test_scan_and_locate_in_a_vlan(lab, pve, run_cli, layout):
    if layout == "vlan-aware-standard":
        make_vlan_aware(lab)
        lan = add_trunk(lab)
    else:
        lan = add_trunk(lab, vids=None)
        add_vlan_device(lab, 20)
    before = self_vlans(lab)
    add_holder(lab, lan, "10.0.0.5/24", SQUAT_MAC, vid=20)
    add_holder(lab, lan, "10.0.0.6/24", OTHER_MAC, vid=30)
    add_holder(lab, lan, "10.0.0.7/24", UNTAGGED_MAC)
    code, out, err = run_cli(lab, "scan", "10.0.0.0/28", "--bridge", "vmbr0", "--vlan", "20", "--json")
    assert code in (0, 1), err
    result = json.loads(out)
    assert [(r["ip"], r["mac"]) for r in result["rows"]] == [("10.0.0.5", SQUAT_MAC)], result
    assert result["vlan"] == 20
    assert probe_ports(lab) == [] and self_vlans(lab) == before

    code, out, err = run_cli(lab, "locate", "10.0.0.5", "--bridge", "vmbr0", "--vlan", "20", "--json")
    assert code in (0, 1), err
    doc = json.loads(out)
    assert [a["mac"] for a in doc["answers"]] == [SQUAT_MAC], doc
    if layout == "vlan-aware-standard":     # placed by vmbr0's forwarding database in VLAN 20
        assert (doc["answers"][0]["port"], doc["answers"][0]["where"]) == ("eno1", "uplink"), doc
    assert probe_ports(lab) == [] and self_vlans(lab) == before
