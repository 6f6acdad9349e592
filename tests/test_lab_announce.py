"""Lab tests of the post-start announcements: the hookscript's post-start, run as PVE runs it.

A neighbour namespace (the "gateway") holds stale ARP and ND entries that map
the guest's addresses to a squatter's MAC, as after the outage this project
exists for. After post-start they must hold the guest's MAC (RFC 5227 2.3
announcements, RFC 4861 7.2.6 unsolicited NAs with Override), and with
announce = false stay as they were. The hook's output reaches EOF before the
announcing is done: it runs detached.
"""
from __future__ import annotations

import subprocess
import sys
import time

from conftest import HOOKSCRIPT
from test_lab_hook import MARKER_IP, P, SQUAT_MAC, send_marker
from test_lab_watch import wait_until

GUEST_MAC = "52:54:00:67:89:b1"
NET0 = "name=eth0,bridge=vmbr0,gw=10.0.0.1,hwaddr=52:54:00:67:89:B1,ip=10.0.0.151/24,ip6=fd00::151/64"


def neigh(lab, ns, ip) -> str:
    """The MAC ns's kernel holds for ip ('' when none)."""
    out = lab.ip(ns, "neigh", "show", ip).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else ""


def stale_gateway(lab):
    gw = lab.add_host("gw", "10.0.0.1/24")
    lab.ip(gw, "addr", "add", "fd00::1/64", "dev", "eth0", "nodad")
    lab.wait_link_ready()
    for ip in ("10.0.0.151", "fd00::151"):
        lab.ip(gw, "neigh", "replace", ip, "lladdr", SQUAT_MAC, "dev", "eth0", "nud", "stale")
        assert neigh(lab, gw, ip) == SQUAT_MAC
    return gw


def post_start(lab, pve, vmid=951):
    """Run post-start as PVE does and read its output to the end; (exit code, output, EOF time)."""
    lab.wait_link_ready()
    p = subprocess.Popen(["ip", "netns", "exec", lab.pve, sys.executable,
                          str(HOOKSCRIPT), str(vmid), "post-start"], env=pve.env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/")
    out = p.stdout.read()                       # PVE reads to EOF: every holder of the pipe closed it
    eof = time.monotonic()
    return p.wait(10), out, eof


def announcements(lines, ip="10.0.0.151", vlan=None):
    """Times the listener saw an ARP announcement for ip from the guest's MAC."""
    return [float(x.split()[0]) for x in lines
            if f" seen op1 for {ip} from {GUEST_MAC} " in x and x.endswith(f"vlan={vlan}")]


def test_post_start_corrects_stale_neighbour_entries_after_the_hook_is_done(lab, pve, responder):
    pve.guest(951, nets={"net0": NET0})
    gw = stale_gateway(lab)
    ear = responder(lab.add_host("ear"), "--iface", "eth0", "--ip", "10.0.0.151", "--drop", "100")
    code, out, eof = post_start(lab, pve)
    assert code == 0
    assert out == f"{P} CT 951: announcing 10.0.0.151, fd00::151 to the LAN (in the background)\n"
    wait_until(lambda: neigh(lab, gw, "10.0.0.151") == GUEST_MAC, what="the gateway's ARP entry corrected")
    wait_until(lambda: neigh(lab, gw, "fd00::151") == GUEST_MAC, what="the gateway's ND entry corrected")
    # ANNOUNCE_NUM 2, ANNOUNCE_INTERVAL 2 s: the second came after the hook's output had ended
    seen = wait_until(lambda: len(announcements(ear.lines())) >= 2 and announcements(ear.lines()),
                      what="two announcements")
    assert len(seen) == 2 and seen[1] > eof and seen[1] - seen[0] >= 1.9, (seen, eof)
    assert pve.records() == []                  # nothing failed


def test_announce_false_leaves_them_stale(lab, pve, responder):
    pve.guest(951, nets={"net0": NET0})
    pve.settings(announce="false")
    gw = stale_gateway(lab)
    ear = responder(lab.add_host("ear"), "--iface", "eth0", "--ip", "10.0.0.151", "--ip", MARKER_IP,
                    "--drop", "100")
    code, out, _eof = post_start(lab, pve)
    assert (code, out) == (0, "")
    send_marker(lab)
    lines = ear.wait_for(lambda ls: any(f" seen probe for {MARKER_IP} " in x for x in ls))
    assert announcements(lines) == []
    assert neigh(lab, gw, "10.0.0.151") == SQUAT_MAC and neigh(lab, gw, "fd00::151") == SQUAT_MAC


def test_a_tagged_guest_is_announced_in_its_vlan(lab, pve, responder):
    pve.guest(951, nets={"net0": NET0.replace(",ip6=fd00::151/64", "") + ",tag=20"})
    ear = responder(lab.add_host("v20"), "--iface", "eth0", "--ip", "10.0.0.151", "--vlan", "20", "--drop", "100")
    code, out, _eof = post_start(lab, pve)
    assert code == 0 and "announcing 10.0.0.151" in out
    seen = wait_until(lambda: len(announcements(ear.lines(), vlan=20)) >= 2 and ear.lines(),
                      what="two tagged announcements")
    assert announcements(seen, vlan=None) == []


def test_dhcp_and_manual_nics_are_never_announced(lab, pve, responder):
    pve.guest(951, nets={"net0": NET0.replace("ip=10.0.0.151/24", "ip=dhcp").replace("fd00::151/64", "auto"),
                         "net1": "name=eth1,bridge=vmbr0,hwaddr=BC:24:11:5E:2A:01,ip=manual"})
    code, out, _eof = post_start(lab, pve)
    assert (code, out) == (0, "")
