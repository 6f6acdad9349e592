"""Lab tests of IPv6 Duplicate Address Detection (RFC 4862 5.4) for static ip6= addresses.

The real hookscript and `phoenix-hook check`, run as in test_lab_hook.py, against
real kernels holding an IPv6 address (added with `nodad`, so they hold it at
once) and, for what the kernel here cannot play (VLANs, a rival prober), the
user-space responder in its IPv6 modes. Every frame stays inside the lab's
own namespaces, which the `lab` fixture removes afterwards.
"""
from __future__ import annotations

import json

import pytest

from test_lab_hook import P, SQUAT_MAC, net, record_of

IP6 = "fd00::151"
GUEST_MAC = "52:54:00:67:89:b1"


def net6(ip6, ip="10.0.0.151/24", mac="52:54:00:67:89:B1", **kw):
    """An LXC netN value with ip= and ip6= (ip=None: no ip= at all, IPv6 only)."""
    value = net(ip, mac, **kw) if ip else net("x", mac, **kw).replace(",ip=x", "")
    return value + f",ip6={ip6}" + (",gw6=fd00::1" if "/" in ip6 else "")


def v6_of(record, key="net0") -> dict:
    """The IPv6 entry of a NIC in a decision record: its "ip" holds a ':'."""
    return next(n for n in record["report"]["nics"] if n["nic"] == key and ":" in (n["ip"] or ""))


def v4_of(record, key="net0") -> dict:
    return next(n for n in record["report"]["nics"] if n["nic"] == key and ":" not in (n["ip"] or ""))


def hold6(lab, ns, cidr=f"{IP6}/64", dev="eth0") -> None:
    """The host's kernel holds the address now: no DAD delay (it would be tentative ~1 s)."""
    lab.ip(ns, "addr", "add", cidr, "dev", dev, "nodad")


def dads_seen(lines, ip=IP6, vlan=None) -> list[str]:
    return [x for x in lines if f" seen dad for {ip} " in x and x.endswith(f"vlan={vlan}")]


def bridge_mac(lab) -> str:
    return json.loads(lab.ip(lab.pve, "-j", "link", "show", "vmbr0").stdout)[0]["address"]


def test_free_ip6_is_probed_and_clear(lab, pve, run_hook, responder):
    pve.guest(951, nets={"net0": net6(f"{IP6}/64")})
    lab.add_host("gw", "10.0.0.1/24")
    ear = responder(lab.add_host("ear"), "--iface", "eth0", "--ip6", IP6, "--drop", "100")
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    lines = out.splitlines()
    assert any(x.startswith(f"{P} CT 951 net0 {IP6} is free on vmbr0 (no answer in ")
               and x.endswith("ms, 3 probes)") for x in lines), out
    assert any(x.startswith(f"{P} CT 951 net0 10.0.0.151 is free on vmbr0") for x in lines), out
    r = record_of(recs)
    assert (r["verdict"], r["action"], r["exit"]) == ("clear", "allowed", 0)
    assert [(n["nic"], n["ip"], n["verdict"]) for n in r["report"]["nics"]] == \
           [("net0", "10.0.0.151", "clear"), ("net0", IP6, "clear")]
    # On the wire: three untagged DAD probes (NS from ::) from vmbr0's MAC.
    seen = dads_seen(ear.wait_for(lambda ls: len(dads_seen(ls)) >= 3))
    assert all(f"from {bridge_mac(lab)} " in x for x in seen), seen


@pytest.mark.parametrize("mac, words", [(SQUAT_MAC, "vendor unknown, locally administered"),
                                        ("00:1b:21:3a:4b:5c", "Intel Corporate")])
def test_kernel_host_holding_the_ip6_refuses_start(lab, pve, run_hook, mac, words):
    # Linux answers a DAD probe for an address it holds with an NA to all-nodes
    # (net/ipv6/ndisc.c ndisc_recv_ns); the bridge floods it to vmbr0.
    pve.guest(951, nets={"net0": net6(f"{IP6}/64", ip="manual")})
    hold6(lab, lab.add_host("rogue", mac=mac))
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    assert f"{P} CT 951 net0 {IP6} is in use by {mac} ({words}) on vmbr0 - start refused" in out.splitlines(), out
    r = record_of(recs)
    assert (r["verdict"], r["action"], r["exit"]) == ("conflict", "refused", 1)
    c = v6_of(r)["conflicts"]
    assert [(x["source"], x["mac"]) for x in c] == [("ndp", mac)]
    assert c[0]["detail"] == f"{mac} advertised this address (IPv6 Neighbor Advertisement)"
    assert v4_of(r)["verdict"] == "skipped" and "ip=manual" in v4_of(r)["note"]


def test_only_the_ip6_is_squatted(lab, pve, run_hook, run_cli):
    """Both addresses are checked, each as its own entry: the IPv6 one is taken, the IPv4 one free."""
    pve.guest(951, nets={"net0": net6(f"{IP6}/64")})
    gw = lab.add_host("gw", "10.0.0.1/24")
    hold6(lab, lab.add_host("rogue", mac=SQUAT_MAC))
    hold6(lab, gw, "fd00::1/64")                         # the IPv6 gateway is another address
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    assert f"{P} CT 951 net0 {IP6} is in use by {SQUAT_MAC} (vendor unknown, locally administered) " \
           f"on vmbr0 - start refused" in out.splitlines(), out
    assert "10.0.0.151 is in use" not in out
    r = record_of(recs)
    assert v6_of(r)["verdict"] == "conflict" and v4_of(r)["conflicts"] == []
    # `check` probes everything to the end: the IPv4 entry comes out clear, same JSON keys.
    code, stdout, err = run_cli(lab, "check", "951", "--json")
    assert code == 1 and "Traceback" not in err, err
    nics = json.loads(stdout)["guests"][0]["nics"]
    assert [(n["nic"], n["ip"], n["verdict"]) for n in nics] == \
           [("net0", "10.0.0.151", "clear"), ("net0", IP6, "conflict")]
    assert set(nics[0]) == set(nics[1])
    assert [(c["source"], c["mac"]) for c in nics[1]["conflicts"]] == [("ndp", SQUAT_MAC)]


def test_ip6_auto_and_dhcp_are_skipped(lab, pve, run_hook, responder):
    pve.guest(951, nets={"net0": net6("auto"), "net1": net6("dhcp", ip="10.0.0.152/24", mac="BC:24:11:5E:2A:01")})
    gw = lab.add_host("gw", "10.0.0.1/24")
    ear = responder(gw, "--iface", "eth0", "--ip", "10.0.0.152", "--drop", "100")
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    assert f"{P} CT 951 net0: ip6=auto, no static IPv6 address to probe" in out.splitlines(), out
    assert f"{P} CT 951 net1: ip6=dhcp, no static IPv6 address to probe" in out.splitlines(), out
    r = record_of(recs)
    assert r["verdict"] == "clear"
    assert [(n["nic"], n["ip"], n["verdict"]) for n in r["report"]["nics"]] == [
        ("net0", "10.0.0.151", "clear"), ("net0", None, "skipped"),
        ("net1", "10.0.0.152", "clear"), ("net1", None, "skipped")]
    lines = ear.wait_for(lambda ls: any(" seen probe for 10.0.0.152 " in x for x in ls))
    assert not [x for x in lines if " seen dad " in x]        # no DAD probe at all


def test_host_own_ip6_on_the_bridge(lab, pve, run_hook):
    pve.guest(951, nets={"net0": net6(f"{IP6}/64")})
    lab.add_host("gw", "10.0.0.1/24")
    hold6(lab, lab.pve, dev="vmbr0")
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    assert f"{P} CT 951 net0 {IP6} is one of this host's own addresses on vmbr0 - start refused" in out, out
    r = record_of(recs)
    assert [x["source"] for x in v6_of(r)["conflicts"]] == ["host"]


def test_link_local_static_held_by_a_kernel_host(lab, pve, run_hook):
    pve.guest(951, nets={"net0": net6("fe80::151/64", ip=None)})
    hold6(lab, lab.add_host("rogue", mac=SQUAT_MAC), "fe80::151/64")
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    assert f"{P} CT 951 net0 fe80::151 is in use by {SQUAT_MAC}" in out, out
    assert v6_of(record_of(recs))["verdict"] == "conflict"


def test_rival_dad_prober(lab, pve, run_hook, responder):
    pve.guest(951, nets={"net0": net6(f"{IP6}/64", ip=None)})
    responder(lab.add_host("rival", mac=SQUAT_MAC), "--iface", "eth0", "--ip6", IP6, "--mode", "probe")
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    assert f"{P} CT 951 net0 {IP6} is being claimed right now by {SQUAT_MAC} (vendor unknown, locally " \
           f"administered), which is probing for it (IPv6 DAD) on vmbr0 - start refused" in out.splitlines(), out
    r = record_of(recs)
    assert "is probing for this address right now" in v6_of(r)["conflicts"][0]["detail"]
    assert [n["ip"] for n in r["report"]["nics"]] == [IP6]       # IPv6-only NIC: one entry
    assert "no IPv4 address" not in out


def test_tagged_guest_ip6_squatter_in_its_vlan(lab, pve, run_hook, responder):
    pve.guest(951, nets={"net0": net6(f"{IP6}/64", ip=None, tag=20)})
    v20 = responder(lab.add_host("v20", mac=SQUAT_MAC), "--iface", "eth0", "--ip6", IP6, "--vlan", "20")
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    assert f"{P} CT 951 net0 {IP6} is in use by {SQUAT_MAC} (vendor unknown, locally administered) " \
           f"on vmbr0 VLAN 20 - start refused" in out.splitlines(), out
    assert v6_of(record_of(recs))["vlan"] == 20
    lines = v20.wait_for(lambda ls: dads_seen(ls, vlan=20))
    assert not dads_seen(lines, vlan=None)


def test_tagged_guest_ip6_squatters_in_other_vlans(lab, pve, run_hook, responder):
    """A host in VLAN 30 advertising the address all the time, and an untagged kernel
    holding it: neither is in VLAN 20, so the address is free there."""
    pve.guest(951, nets={"net0": net6(f"{IP6}/64", ip=None, tag=20)})
    chatty = responder(lab.add_host("v30", mac=SQUAT_MAC), "--iface", "eth0", "--ip6", IP6, "--vlan", "30",
                       "--mode", "announce")
    rogue = lab.add_host("rogue", mac="16:0d:a0:c0:b9:1c")
    hold6(lab, rogue)
    # On the kernel squatter's wire, listening only: the tagged probes did reach it.
    ear = responder(rogue, "--iface", "eth0", "--ip6", IP6, "--vlan", "20", "--drop", "100")
    chatty.wait_for(lambda ls: len([x for x in ls if x.endswith("vlan=30") and " sent na " in x]) >= 3)
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    assert f"{P} CT 951 net0 {IP6} is free on vmbr0 VLAN 20 (no answer in" in out, out
    assert record_of(recs)["verdict"] == "clear"
    lines = ear.wait_for(lambda ls: len(dads_seen(ls, vlan=20)) >= 3)
    assert not dads_seen(lines, vlan=None)
    assert chatty.proc.poll() is None                        # it was advertising all along
