"""Lab tests: the real hookscript, run as PVE runs it, against real kernels and responders.

Every test builds its own namespaces (the `lab` fixture: a PVE host with
vmbr0, LAN hosts on veths) and a config tree from the shared fixture
containers; nothing leaves those namespaces. Each test checks the exit
code and what the admin reads (task-log lines) or what the decision log
says; frame-level claims (tags, probes sent or not) are checked in the
responder's own log of what it saw on its wire.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from conftest import REPO, hook_argv

P = "phoenix-hook:"
SQUAT_MAC = "16:0d:a0:c0:b9:1b"          # locally administered: no vendor
INTEL_MAC = "00:1b:21:3a:4b:5c"          # an IEEE OUI: netaddr names it
MARKER_IP = "10.0.0.250"                 # probed by hand to mark "everything before is seen"


def record_of(records) -> dict:
    """The one decision-log record of a run, checked for the keys every record has."""
    assert len(records) == 1, records
    r = records[0]
    for key in ("vmid", "phase", "mode", "verdict", "action", "exit", "elapsed_ms", "time"):
        assert key in r, (key, r)
    return r


def nic_of(record, key="net0") -> dict:
    return next(n for n in record["report"]["nics"] if n["nic"] == key)


def net(ip, mac, bridge="vmbr0", **kw) -> str:
    extra = "".join(f",{k}={v}" for k, v in kw.items())
    gw = ",gw=" + ip.rsplit(".", 1)[0] + ".1" if "/" in ip else ""
    return f"name=eth0,bridge={bridge}{gw},hwaddr={mac},ip={ip}{extra},type=veth"


def send_marker(lab, ip=MARKER_IP, iface="vmbr0") -> None:
    """One RFC 5227 probe for ip from the PVE host, sent by hand inside the lab."""
    code = ("import sys; from phoenix_hook.net import arp, wire, hostnet\n"
            f"w = wire.Wire([{iface!r}]); w.send({iface!r}, arp.build_probe(hostnet.link({iface!r}).mac, {ip!r}))")
    p = lab.run(lab.pve, [sys.executable, "-c", code], env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr


def probes_seen(lines, ip, vlan=None) -> list[str]:
    return [x for x in lines if f" seen probe for {ip} " in x and x.endswith(f"vlan={vlan}")]


def no_traceback(out):
    assert "Traceback" not in out, out


# -- the basic outcomes -------------------------------------------------------

def test_free_address_is_probed_and_clear(lab, pve, run_hook, responder):
    pve.guest(951)
    lab.add_host("gw", "10.0.0.1/24")
    # A silent listener on the LAN: sees the probes, never answers (--drop 100).
    listener = responder(lab.add_host("ear"), "--iface", "eth0", "--ip", "10.0.0.151", "--drop", "100")
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    assert any(x.startswith(f"{P} CT 951 net0 10.0.0.151 is free on vmbr0 (no answer in ")
               and x.endswith("ms, 3 probes)") for x in out.splitlines()), out
    r = record_of(recs)
    assert (r["vmid"], r["phase"], r["mode"], r["verdict"], r["action"], r["exit"]) == \
           (951, "pre-start", "enforce", "clear", "allowed", 0)
    assert nic_of(r)["verdict"] == "clear"
    # On the wire: three untagged RFC 5227 probes from vmbr0's MAC.
    br_mac = lab.ip(lab.pve, "-j", "link", "show", "vmbr0").stdout
    br_mac = json.loads(br_mac)[0]["address"]
    lines = listener.wait_for(lambda ls: len(probes_seen(ls, "10.0.0.151")) >= 3)
    assert all(f"from {br_mac} " in x for x in probes_seen(lines, "10.0.0.151"))


@pytest.mark.may_skip_in_ci
def test_bridge_without_ports_is_clear_without_probing(lab, pve, run_hook):
    pve.guest(951)
    carrier = lab.run(lab.pve, ["cat", "/sys/class/net/vmbr0/carrier"]).stdout.strip()
    if carrier != "0":
        pytest.skip("this kernel reports carrier on a bridge without ports")
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    assert f"{P} CT 951 net0 10.0.0.151 is free on vmbr0 (no port of vmbr0 is up, so nobody else is on it)" in out
    assert record_of(recs)["verdict"] == "clear"


@pytest.mark.parametrize("mac,words", [(SQUAT_MAC, "vendor unknown, locally administered"),
                                       (INTEL_MAC, "Intel Corporate")])
def test_kernel_host_holding_the_address_refuses_start(lab, pve, run_hook, mac, words):
    pve.guest(951)
    lab.add_host("rogue", "10.0.0.151/24", mac=mac)
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    assert f"{P} CT 951 net0 10.0.0.151 is in use by {mac} ({words}) on vmbr0 - start refused" \
        in out.splitlines(), out
    r = record_of(recs)
    assert (r["verdict"], r["action"], r["exit"]) == ("conflict", "refused", 1)
    c = nic_of(r)["conflicts"]
    assert [(x["source"], x["mac"]) for x in c] == [("arp", mac)]
    assert c[0]["vendor"] == (None if mac == SQUAT_MAC else words)


def test_warn_mode_starts_with_a_warning(lab, pve, run_hook):
    pve.guest(951)
    pve.settings(mode="warn")
    lab.add_host("rogue", "10.0.0.151/24", mac=SQUAT_MAC)
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    warn = [x for x in out.splitlines() if x.startswith("WARNING:")]
    assert f"WARNING: {P} CT 951 net0 10.0.0.151 is in use by {SQUAT_MAC} (vendor unknown, locally " \
           f"administered) on vmbr0 - starting anyway (mode = warn)" in warn, out
    r = record_of(recs)
    assert (r["mode"], r["verdict"], r["action"], r["exit"]) == ("warn", "conflict", "warned", 0)


def test_host_own_address(lab, pve, run_hook):
    pve.guest(951)
    lab.add_host("gw", "10.0.0.1/24")
    lab.add_host_address("10.0.0.151/24")
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    assert f"{P} CT 951 net0 10.0.0.151 is one of this host's own addresses on vmbr0 - start refused" in out
    r = record_of(recs)
    assert (r["verdict"], r["exit"]) == ("conflict", 1)
    assert [x["source"] for x in nic_of(r)["conflicts"]] == ["host"]


# -- answers that are not a plain kernel reply ----------------------------------

def test_slow_responder_within_the_window(lab, pve, run_hook, responder):
    # n-acd scaling: the window lasts at least 4T/9 after the first probe
    # (667 ms for T = 1500), so an answer 300 ms late still lands in it.
    pve.guest(951)
    pve.settings(probe_timeout_ms=1500)
    slow = responder(lab.add_host("slow", mac=SQUAT_MAC), "--iface", "eth0", "--ip", "10.0.0.151",
                     "--delay-ms", "300")
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    assert f"10.0.0.151 is in use by {SQUAT_MAC} (vendor unknown, locally administered) on vmbr0" in out
    r = record_of(recs)
    assert r["verdict"] == "conflict"
    assert r["elapsed_ms"] >= 300, r        # the answer really came late
    assert any(" sent op2 10.0.0.151->0.0.0.0 " in x for x in slow.lines())


def test_gratuitous_arp_instead_of_reply(lab, pve, run_hook, responder):
    pve.guest(951)
    responder(lab.add_host("garp", mac=SQUAT_MAC), "--iface", "eth0", "--ip", "10.0.0.151", "--mode", "garp")
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    assert f"10.0.0.151 is in use by {SQUAT_MAC}" in out
    c = nic_of(record_of(recs))["conflicts"]
    assert c[0]["mac"] == SQUAT_MAC and "announced this address (gratuitous ARP)" in c[0]["detail"], c


def test_another_host_probing_at_the_same_time(lab, pve, run_hook, responder):
    pve.guest(951)
    responder(lab.add_host("rival", mac=SQUAT_MAC), "--iface", "eth0", "--ip", "10.0.0.151", "--mode", "probe")
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    assert f"{P} CT 951 net0 10.0.0.151 is being claimed right now by {SQUAT_MAC} (vendor unknown, locally " \
           f"administered), which is probing for it on vmbr0 - start refused" in out.splitlines(), out
    c = nic_of(record_of(recs))["conflicts"]
    assert "is probing for this address right now" in c[0]["detail"]


def test_guest_own_mac_answering(lab, pve, run_hook):
    pve.guest(951)
    lab.add_host("twin", "10.0.0.151/24", mac="52:54:00:67:89:b1")
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    assert f"{P} CT 951 net0 10.0.0.151 answers from this guest's own MAC 52:54:00:67:89:b1: another copy " \
           f"of this guest is up on vmbr0 - start refused" in out.splitlines(), out
    c = nic_of(record_of(recs))["conflicts"]
    assert c[0]["detail"].startswith("52:54:00:67:89:b1 another copy of this guest (same MAC) is up"), c


# -- several NICs, VLANs, sections ---------------------------------------------

def test_two_nics_conflict_on_net1(lab, pve, run_hook):
    pve.guest(951, nets={"net1": net("192.168.50.151/24", "BC:24:11:5E:2A:01", bridge="vmbr1")})
    lab.add_bridge("vmbr1")
    lab.add_host("gw", "10.0.0.1/24")
    lab.add_host("rogue", "192.168.50.151/24", mac=SQUAT_MAC, bridge="vmbr1")
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    assert f"{P} CT 951 net1 192.168.50.151 is in use by {SQUAT_MAC} (vendor unknown, locally administered) " \
           f"on vmbr1 - start refused" in out.splitlines(), out
    assert "net0 10.0.0.151 is in use" not in out
    r = record_of(recs)
    assert nic_of(r, "net1")["verdict"] == "conflict"
    assert nic_of(r, "net0")["verdict"] != "conflict" and nic_of(r, "net0")["conflicts"] == []


def test_two_nics_both_clear(lab, pve, run_hook):
    pve.guest(951, nets={"net1": net("192.168.50.151/24", "BC:24:11:5E:2A:01", bridge="vmbr1")})
    lab.add_bridge("vmbr1")
    lab.add_host("gw", "10.0.0.1/24")
    lab.add_host("gw1", "192.168.50.1/24", bridge="vmbr1")
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    assert f"{P} CT 951 net0 10.0.0.151 is free on vmbr0" in out
    assert f"{P} CT 951 net1 192.168.50.151 is free on vmbr1" in out
    r = record_of(recs)
    assert [nic_of(r, k)["verdict"] for k in ("net0", "net1")] == ["clear", "clear"]


def test_tagged_guest_squatter_in_its_vlan(lab, pve, run_hook, responder):
    pve.guest(951, nets={"net0": net("10.0.0.151/24", "52:54:00:67:89:B1", tag=20)})
    v20 = responder(lab.add_host("v20", mac=SQUAT_MAC), "--iface", "eth0", "--ip", "10.0.0.151", "--vlan", "20")
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    assert f"{P} CT 951 net0 10.0.0.151 is in use by {SQUAT_MAC} (vendor unknown, locally administered) " \
           f"on vmbr0 VLAN 20 - start refused" in out.splitlines(), out
    assert nic_of(record_of(recs))["vlan"] == 20
    # The responder answers only what arrived tagged 20: the hook put the tag on the wire.
    lines = v20.wait_for(lambda ls: probes_seen(ls, "10.0.0.151", vlan=20))
    assert not probes_seen(lines, "10.0.0.151", vlan=None)


def test_tagged_guest_untagged_kernel_squatter_is_another_vlan(lab, pve, run_hook, responder):
    pve.guest(951, nets={"net0": net("10.0.0.151/24", "52:54:00:67:89:B1", tag=20)})
    ns = lab.add_host("rogue", "10.0.0.151/24", mac=SQUAT_MAC)
    # Same wire as the squatter's kernel, listening only: proves the tagged probes reached it.
    ear = responder(ns, "--iface", "eth0", "--ip", "10.0.0.151", "--vlan", "20", "--drop", "100")
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    assert f"{P} CT 951 net0 10.0.0.151 is free on vmbr0 VLAN 20 (no answer in" in out
    assert record_of(recs)["verdict"] == "clear"
    lines = ear.wait_for(lambda ls: len(probes_seen(ls, "10.0.0.151", vlan=20)) >= 3)
    assert not probes_seen(lines, "10.0.0.151", vlan=None)


def test_untagged_guest_ignores_a_squatter_in_vlan_20(lab, pve, run_hook, responder):
    pve.guest(951)
    v20 = responder(lab.add_host("v20", mac=SQUAT_MAC), "--iface", "eth0", "--ip", "10.0.0.151", "--vlan", "20")
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    assert f"{P} CT 951 net0 10.0.0.151 is free on vmbr0 (no answer in" in out
    assert record_of(recs)["verdict"] == "clear"
    lines = v20.wait_for(lambda ls: len(probes_seen(ls, "10.0.0.151", vlan=None)) >= 3)
    assert not probes_seen(lines, "10.0.0.151", vlan=20)


def test_tagged_guest_squatter_in_another_vlan(lab, pve, run_hook, responder):
    pve.guest(951, nets={"net0": net("10.0.0.151/24", "52:54:00:67:89:B1", tag=20)})
    responder(lab.add_host("v30", mac=SQUAT_MAC), "--iface", "eth0", "--ip", "10.0.0.151", "--vlan", "30")
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    assert f"{P} CT 951 net0 10.0.0.151 is free on vmbr0 VLAN 20" in out
    assert record_of(recs)["verdict"] == "clear"


def test_tagged_guest_on_existing_pve_vlan_bridge(lab, pve, run_hook):
    # Non-VLAN-aware layout: PVE made vmbr0v20 for tag 20; the probe goes there, untagged.
    pve.guest(951, nets={"net0": net("10.0.0.151/24", "52:54:00:67:89:B1", tag=20)})
    lab.add_bridge("vmbr0v20")
    lab.add_host("rogue", "10.0.0.151/24", mac=SQUAT_MAC, bridge="vmbr0v20")
    code, out, recs = run_hook(lab, 951)
    assert code == 1, out
    assert f"10.0.0.151 is in use by {SQUAT_MAC} (vendor unknown, locally administered) on vmbr0 VLAN 20" in out
    assert record_of(recs)["verdict"] == "conflict"


def test_snapshot_section_is_not_probed(lab, pve, run_hook):
    snap = ("\n[snap1]\n" + "net0: " + net("10.0.0.99/24", "52:54:00:67:89:B1") + "\nsnaptime: 1726000000\n")
    pve.guest(951, nets={"parent": "snap1"}, extra=snap)
    lab.add_host("gw", "10.0.0.1/24")
    lab.add_host("rogue", "10.0.0.99/24", mac=SQUAT_MAC)
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    assert f"{P} CT 951 net0 10.0.0.151 is free on vmbr0" in out
    assert "10.0.0.99" not in out
    r = record_of(recs)
    assert r["verdict"] == "clear" and [n["ip"] for n in r["report"]["nics"]] == ["10.0.0.151"]


def test_dhcp_and_manual_nics_are_skipped(lab, pve, run_hook):
    pve.guest(951, nets={"net0": net("dhcp", "52:54:00:67:89:B1"),
                         "net1": net("manual", "BC:24:11:5E:2A:01")})
    lab.add_host("gw", "10.0.0.1/24")
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    assert f"{P} CT 951 net0: ip=dhcp, no static IPv4 address to probe" in out.splitlines()
    assert f"{P} CT 951 net1: ip=manual, no static IPv4 address to probe" in out.splitlines()
    r = record_of(recs)
    assert (r["verdict"], r["action"], r["exit"]) == ("skipped", "allowed", 0)


# -- the hook's own failures -----------------------------------------------------

@pytest.mark.parametrize("on_error,exit_code", [("allow", 0), ("refuse", 1)])
def test_missing_bridge(lab, pve, run_hook, on_error, exit_code):
    pve.guest(951, nets={"net0": net("10.0.0.151/24", "52:54:00:67:89:B1", bridge="vmbr9")})
    pve.settings(on_error=on_error)
    code, out, recs = run_hook(lab, 951)
    assert code == exit_code, out
    no_traceback(out)
    # said once, in the one loud line, with the NIC and its address
    assert out.count("bridge vmbr9 does not exist on this host") == 1, out
    assert "(net0 10.0.0.151: bridge vmbr9 does not exist on this host)" in out
    if on_error == "allow":
        warn = [x for x in out.splitlines() if x.startswith("WARNING:")]
        assert any("vmbr9" in x and "NOT checked" in x and "starting anyway" in x for x in warn), out
    else:
        assert any("vmbr9" in x and "not started" in x and "on_error = refuse" in x
                   for x in out.splitlines()), out
    r = record_of(recs)
    assert (r["verdict"], r["action"], r["exit"]) == \
           ("error", "allowed" if on_error == "allow" else "refused", exit_code)
    assert "vmbr9" in (r.get("error") or ""), r


@pytest.mark.parametrize("on_error,exit_code", [("allow", 0), ("refuse", 1)])
def test_missing_guest_config(lab, pve, run_hook, on_error, exit_code):
    pve.guest(951)
    pve.settings(on_error=on_error)
    code, out, recs = run_hook(lab, 999)
    assert code == exit_code, out
    no_traceback(out)
    assert any(x.startswith(f"{P} guest 999: could not check: guest 999 has no config under ") for x in
               out.splitlines()), out
    if on_error == "allow":
        assert any(x.startswith("WARNING:") and "999" in x for x in out.splitlines()), out
    r = record_of(recs)
    assert (r["vmid"], r["verdict"], r["exit"]) == (999, "error", exit_code)


def test_a_probe_window_longer_than_the_deadline_is_a_settings_error(lab, pve, run_hook):
    """probe_timeout_ms = 5000 against deadline_s = 0.5 could never finish: the mistake is
    named on one WARNING line, and the guest is checked on the defaults for both."""
    pve.guest(951)
    pve.settings(probe_timeout_ms=5000, deadline_s=0.5, on_error="refuse")
    lab.add_host("gw", "10.0.0.1/24")
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    assert any(x.startswith("WARNING:") and "probe_timeout_ms = 5000 can take 5 s, not less than "
               "deadline_s = 0.5" in x and "using the defaults probe_timeout_ms = 1000 and deadline_s = 10"
               in x for x in out.splitlines()), out
    assert f"{P} CT 951 net0 10.0.0.151 is free on vmbr0" in out
    assert record_of(recs)["verdict"] == "clear"
    no_traceback(out)


def test_flood_of_malformed_frames_during_a_clean_probe(lab, pve, run_hook, responder):
    pve.guest(951)
    pve.settings(probe_timeout_ms=300)
    noise = responder(lab.add_host("noise"), "--iface", "eth0", "--ip", "10.0.0.151", "--mode", "flood",
                      "--seed", "7")

    def flooded(lines):
        return max([int(x.rsplit(" ", 1)[1]) for x in lines if " flood sent " in x] or [0])
    noise.wait_for(lambda ls: flooded(ls) >= 200)
    code, out, recs = run_hook(lab, 951)
    done = time.monotonic()
    assert code == 0, out
    no_traceback(out)
    assert f"{P} CT 951 net0 10.0.0.151 is free on vmbr0 (no answer in" in out
    assert "3 probes" in out
    assert record_of(recs)["verdict"] == "clear"
    # The flood was still going when the hook finished.
    lines = noise.wait_for(lambda ls: any(float(x.split()[0]) > done for x in ls if " flood sent " in x))
    assert noise.proc.poll() is None, lines[-3:]


def test_flood_never_sends_a_well_formed_claim():
    """The flood's promise, checked on its own frames (no lab needed): every frame
    about a probed address is malformed, however the kernel hands over the tag."""
    import random

    import responder as resp
    from phoenix_hook.net import arp
    ips = ["10.0.0.151", "10.0.0.152"]
    gen = resp.flood_frames(random.Random(1), "16:0d:a0:c0:b9:1b", ips)
    frames = [next(gen) for _ in range(20000)]
    parsed = 0
    for f in frames:
        assert len(f) >= 14
        views = [(f, None), (f.ljust(arp.MIN_FRAME, b"\0"), None)]
        if f[12:14] in (b"\x81\x00", b"\x88\xa8"):      # the kernel moves an outer tag to auxdata
            views.append((f[:12] + f[16:], int.from_bytes(f[14:16], "big") & 0xFFF))
        for frame, aux in views:
            pkt = arp.parse(frame, aux)
            if pkt is not None:
                parsed += 1
                assert pkt.sender_ip not in ips and pkt.target_ip not in ips, (f.hex(), pkt)
    carrying = sum(1 for f in frames if any(arp.ip_to_bytes(ip) in f for ip in ips))
    assert parsed > 1000 and carrying > 5000, (parsed, carrying)   # both kinds are in the mix


# -- config-level findings, skips and policies -----------------------------------

def test_config_duplicate_on_another_node(lab, pve, run_hook):
    pve.guest(951)
    pve.guest(910, node="pve2", nets={"net0": net("10.0.0.151/24", "52:54:00:67:89:99")})
    # Same address in another VLAN: a different segment, not a duplicate.
    pve.guest(912, node="pve2", spec_vmid=952, nets={"net0": net("10.0.0.151/24", "52:54:00:67:89:B2", tag=30)})
    lab.add_host("gw", "10.0.0.1/24")
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    assert f"{P} CT 951 net0 10.0.0.151 is free on vmbr0" in out
    assert f"WARNING: {P} CT 951 net0 10.0.0.151: CT 910 (dashboard) on node pve2 is also configured with " \
           f"10.0.0.151 (net0)" in out.splitlines(), out
    assert "912" not in out
    r = record_of(recs)
    assert r["verdict"] == "clear" and r["exit"] == 0
    assert nic_of(r)["warnings"] == [{"source": "config", "vmid": 910, "node": "pve2", "detail":
                                      "CT 910 (dashboard) on node pve2 is also configured with 10.0.0.151 (net0)"}]


def test_live_migration_target_is_not_probed(lab, pve, run_hook):
    pve.guest(951)
    lab.add_host("rogue", "10.0.0.151/24", mac=SQUAT_MAC)   # would be a conflict if probed
    code, out, recs = run_hook(lab, 951, env_extra={"PVE_MIGRATED_FROM": "pve2"})
    assert code == 0, out
    assert f"{P} guest 951 arrives by migration from pve2: not probed" in out.splitlines()
    assert SQUAT_MAC not in out
    r = record_of(recs)
    assert (r["verdict"], r["action"], r["migrated_from"]) == ("skipped", "allowed", "pve2")


@pytest.mark.parametrize("phase", ["pre-stop", "post-stop"])     # post-start: test_lab_announce.py
def test_other_phases_do_nothing(lab, pve, run_hook, responder, phase):
    pve.guest(951)
    ear = responder(lab.add_host("ear", mac=SQUAT_MAC), "--iface", "eth0", "--ip", "10.0.0.151",
                    "--ip", MARKER_IP, "--drop", "100")
    code, out, recs = run_hook(lab, 951, phase)
    assert (code, out, recs) == (0, "", [])
    # The marker probe arrives after anything the hook could have sent: nothing for 10.0.0.151.
    send_marker(lab)
    lines = ear.wait_for(lambda ls: probes_seen(ls, MARKER_IP))
    assert probes_seen(lines, "10.0.0.151") == []


def test_unknown_phase_and_bad_usage(lab, pve, run_hook):
    pve.guest(951)
    code, out, recs = run_hook(lab, 951, "pre-migrate")
    assert (code, recs) == (0, []), out
    p = subprocess.run(hook_argv(lab, "abc", "pre-start"), env=pve.env(), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, cwd="/", timeout=10)
    assert p.returncode == 2 and "usage: phoenix-hook.py <vmid> <phase>" in p.stdout
    no_traceback(p.stdout + p.stderr)


def test_mode_off(lab, pve, run_hook):
    pve.guest(951)
    pve.settings(mode="off")
    lab.add_host("rogue", "10.0.0.151/24", mac=SQUAT_MAC)
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    assert out.splitlines() == [f"{P} guest 951: mode = off, not checked"]
    r = record_of(recs)
    assert (r["mode"], r["verdict"], r["action"], r["exit"]) == ("off", "skipped", "allowed", 0)


def test_guest_mode_override(lab, pve, run_hook):
    pve.guest(951)
    pve.guest(952)
    pve.settings(mode="enforce", extra_sections="\n[guest:951]\nmode = warn\n")
    lab.add_host("rogue1", "10.0.0.151/24", mac=SQUAT_MAC)
    lab.add_host("rogue2", "10.0.0.152/24", mac=INTEL_MAC)
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    assert any(x.startswith(f"WARNING: {P} CT 951 net0 10.0.0.151 is in use by {SQUAT_MAC}") for x in
               out.splitlines()), out
    assert (record_of(recs)["mode"], record_of(recs)["action"]) == ("warn", "warned")
    code, out, recs = run_hook(lab, 952)
    assert code == 1, out
    assert f"{P} CT 952 net0 10.0.0.152 is in use by {INTEL_MAC} (Intel Corporate) on vmbr0 - start refused" in out
    assert (record_of(recs)["mode"], record_of(recs)["action"]) == ("enforce", "refused")


def test_bad_settings_value_is_named_and_the_guest_checked_anyway(lab, pve, run_hook):
    pve.guest(951)
    pve.settings(mode="sometimes")
    lab.add_host("rogue", "10.0.0.151/24", mac=SQUAT_MAC)
    code, out, _recs = run_hook(lab, 951)
    assert code == 1, out                        # the default mode (enforce) refused it
    no_traceback(out)
    assert any(x.startswith("WARNING:") and "mode = 'sometimes'" in x and str(pve.conf) in x
               and "using the default (enforce)" in x for x in out.splitlines()), out


# -- many guests at once -----------------------------------------------------------

def test_concurrent_hooks_append_whole_lines(lab, pve):
    vmids = [950, 951, 952, 953, 954, 955, 956, 957]
    squatted = {952, 955}
    for v in vmids:
        pve.guest(v)
    lab.add_host("gw", "10.0.0.1/24")
    for v in squatted:
        lab.add_host(f"rogue{v}", pve.spec(v)["cidr"], mac=f"16:0d:a0:c0:b9:{v - 900:02x}")
    lab.wait_link_ready()
    procs = {v: subprocess.Popen(hook_argv(lab, v), env=pve.env(), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/")
             for v in vmids}
    results = {v: (p.wait(timeout=30), p.stdout.read()) for v, p in procs.items()}
    for p in procs.values():
        p.stdout.close()
    for v, (code, out) in results.items():
        assert code == (1 if v in squatted else 0), (v, out)
    recs = pve.records()                  # every line must parse as one JSON object
    assert sorted(r["vmid"] for r in recs) == vmids
    for r in recs:
        assert r["verdict"] == ("conflict" if r["vmid"] in squatted else "clear"), r
        assert r["exit"] == (1 if r["vmid"] in squatted else 0)
    assert pve.log_file.read_text().endswith("\n")


@pytest.mark.parametrize("state", ["down", "noarp"])
def test_bridge_that_cannot_carry_probes_is_an_error_not_clear(lab, pve, run_hook, state):
    pve.guest(951, nets={"net0": net("192.168.50.151/24", "52:54:00:67:89:B1", bridge="vmbr1")})
    lab.add_bridge("vmbr1", up=(state != "down"))
    lab.add_host("rogue", "192.168.50.151/24", mac=SQUAT_MAC, bridge="vmbr1")
    if state == "noarp":
        lab.ip(lab.pve, "link", "set", "vmbr1", "arp", "off")
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    why = "bridge vmbr1 is down" if state == "down" else "vmbr1 has ARP turned off (NOARP)"
    assert out.count(why) == 1, out                      # said once, in the loud line
    assert any(x.startswith("WARNING:") and f"net0 192.168.50.151: {why}" in x for x in out.splitlines()), out
    r = record_of(recs)
    assert (r["verdict"], r["action"]) == ("error", "allowed")


def test_malformed_address_is_a_clear_error(lab, pve, run_hook):
    pve.guest(951, nets={"net0": net("10.0.0.300/24", "52:54:00:67:89:B1")})
    lab.add_host("gw", "10.0.0.1/24")
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    no_traceback(out)
    assert any("CT 951" in x and "net0" in x and "ip='10.0.0.300/24'" in x for x in out.splitlines()), out
    assert any(x.startswith("WARNING:") for x in out.splitlines()), out
    assert out.count("10.0.0.300") == 1, out             # the NIC's value is said once
    assert record_of(recs)["verdict"] == "error"


def test_qemu_guest_with_cloud_init_address(lab, pve, run_hook):
    from phoenix_hook.net.lab import write_tree
    write_tree(str(pve.root), pve.node, {9100: "name: web1\nnet0: virtio=BC:24:11:00:91:00,bridge=vmbr0,firewall=1\n"
                                               "ipconfig0: ip=10.0.0.151/24,gw=10.0.0.1\nostype: l26\n"}, kind="qemu")
    lab.add_host("rogue", "10.0.0.151/24", mac=SQUAT_MAC)
    code, out, recs = run_hook(lab, 9100)
    assert code == 1, out
    assert f"{P} VM 9100 net0 10.0.0.151 is in use by {SQUAT_MAC} (vendor unknown, locally administered) " \
           f"on vmbr0 - start refused" in out.splitlines(), out
    r = record_of(recs)
    assert (r["type"], r["verdict"]) == ("qemu", "conflict")


@pytest.mark.parametrize("on_error,exit_code", [("allow", 0), ("refuse", 1)])
def test_config_read_that_hangs_ends_at_the_deadline(lab, pve, run_hook, on_error, exit_code):
    # A FIFO in place of the config: open() blocks like a hung pmxcfs read.
    import os
    os.mkfifo(pve.root / "nodes" / pve.node / "lxc" / "951.conf")
    pve.settings(deadline_s=0.5, on_error=on_error)
    code, out, recs = run_hook(lab, 951, timeout=10)
    assert code == exit_code, out
    no_traceback(out)
    assert "did not finish within deadline_s = 0.5" in out, out
    assert record_of(recs)["verdict"] == "error"


def test_unreadable_config_names_the_file(lab, pve, run_hook):
    path = pve.root / "nodes" / pve.node / "lxc" / "951.conf"
    path.mkdir()
    code, out, recs = run_hook(lab, 951)
    assert code == 0, out
    no_traceback(out)
    assert any(f"could not check: cannot read {path}" in x for x in out.splitlines()), out
    assert any(x.startswith("WARNING:") for x in out.splitlines()), out
    assert record_of(recs)["verdict"] == "error"


def test_other_phases_import_nothing_heavy(lab, pve, run_hook):
    pve.guest(951)
    code, out, recs = run_hook(lab, 951, "post-stop", env_extra={"PYTHONPROFILEIMPORTTIME": "1"})
    assert (code, recs) == (0, [])
    lines = [x.rsplit("|", 1)[-1].strip() for x in out.splitlines() if x.startswith("import time:")]
    assert "site" in lines and "phoenix_hook.hook" in lines, out     # the profile did record imports
    imported = set(lines[lines.index("site") + 1:])                  # ours, not the interpreter's startup
    # Only pve_root is read (paths.pve_root: where chain records live, pve/chain.py);
    # nothing that probes, parses guests or runs programs is loaded without a record.
    heavy = {m for m in imported if m.split(".")[0] in ("netaddr", "socket", "json", "subprocess", "threading",
                                                        "dataclasses")
             or m in ("phoenix_hook.checks.check", "phoenix_hook.net.wire", "phoenix_hook.settings",
                      "phoenix_hook.pve.files", "phoenix_hook.pve.guest")}
    assert not heavy, heavy


@pytest.mark.parametrize("squat", [None, INTEL_MAC])
def test_pre_start_imports_nothing_it_does_not_use(lab, pve, run_hook, squat):
    """The CPU of a start is mostly imports (bench/bench_hook.py): a pre-start, clear or
    refused with a vendor named, loads no module that only costs time (dataclasses and
    inspect: records.py; socket.py and selectors: _socket; threading: _thread; ctypes;
    subprocess and shutil: /proc instead of `ip`; netaddr itself: its data file)."""
    pve.guest(951)
    pve.settings(probe_timeout_ms=200)
    if squat:
        lab.add_host("rogue", "10.0.0.151/24", mac=squat)
    code, out, recs = run_hook(lab, 951, env_extra={"PYTHONPROFILEIMPORTTIME": "1"})
    assert code == (1 if squat else 0), out
    if squat:
        assert "Intel Corporate" in out, out
    lines = [x.rsplit("|", 1)[-1].strip() for x in out.splitlines() if x.startswith("import time:")]
    assert "phoenix_hook.net.wire" in lines, out                     # the profile covered the probe
    imported = set(lines[lines.index("site") + 1:])
    unwanted = {"dataclasses", "inspect", "ast", "dis", "socket", "selectors", "threading", "ctypes",
                "subprocess", "shutil", "netaddr", "importlib.util"}
    heavy = {m for m in imported if m in unwanted or m.split(".")[0] in unwanted}
    assert not heavy, heavy


# A squatter that keeps announcing 10.0.0.151 in VLAN 30 (or untagged), asked or
# not: the hook sees those frames on vmbr0 and must judge them by their VLAN.
@pytest.mark.parametrize("guest_tag,squatter_vlan,conflict", [
    (None, "30", False), ("20", "30", False), ("20", None, False), ("30", "30", True), (None, None, True)])
def test_unprompted_announcements_count_only_in_their_vlan(lab, pve, run_hook, responder,
                                                            guest_tag, squatter_vlan, conflict):
    kw = {"tag": guest_tag} if guest_tag else {}
    pve.guest(951, nets={"net0": net("10.0.0.151/24", "52:54:00:67:89:B1", **kw)})
    lab.add_host("gw", "10.0.0.1/24")
    args = ["--iface", "eth0", "--ip", "10.0.0.151", "--mode", "announce", "--delay-ms", "10"]
    chatty = responder(lab.add_host("chatty", mac=SQUAT_MAC), *args, *(["--vlan", squatter_vlan] if squatter_vlan else []))
    chatty.wait_for(lambda ls: sum(" sent announcement " in x for x in ls) >= 3)
    code, out, recs = run_hook(lab, 951)
    where = "vmbr0" + (f" VLAN {guest_tag}" if guest_tag else "")
    r = record_of(recs)
    if conflict:
        assert code == 1, out
        assert f"{P} CT 951 net0 10.0.0.151 is in use by {SQUAT_MAC} (vendor unknown, locally administered) " \
               f"on {where} - start refused" in out.splitlines(), out
        assert "announced this address (gratuitous ARP)" in nic_of(r)["conflicts"][0]["detail"]
    else:
        assert code == 0, out
        assert f"{P} CT 951 net0 10.0.0.151 is free on {where} (no answer in" in out
        assert r["verdict"] == "clear"
    # still announcing after the hook finished: the hook's window was covered
    n = len(chatty.lines())
    chatty.wait_for(lambda ls: len(ls) > n)


def test_two_guests_with_one_address_started_at_once(lab, pve):
    pve.guest(951)
    pve.guest(960, spec_vmid=956, nets={"net0": net("10.0.0.151/24", "52:54:00:67:89:B6")})
    pve.settings(probe_timeout_ms=600)
    lab.add_host("gw", "10.0.0.1/24")
    lab.wait_link_ready()
    procs = [subprocess.Popen(hook_argv(lab, v), env=pve.env(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/")
             for v in (951, 960)]
    codes = [p.wait(timeout=30) for p in procs]
    outs = [p.stdout.read() for p in procs]
    for p in procs:
        p.stdout.close()
    assert all("is also configured with 10.0.0.151" in o for o in outs), outs
    assert sorted(codes) == [0, 1], outs   # exactly one of them starts on the address
    loser = outs[codes.index(1)]
    assert "which this node started" in loser and "start refused" in loser, loser


def test_a_refused_start_releases_its_claim(lab, pve, run_hook):
    """A guest refused for a squatter must not block the next guest with that address."""
    pve.guest(951)
    pve.guest(960, spec_vmid=956, nets={"net0": net("10.0.0.151/24", "52:54:00:67:89:B6")})
    pve.settings(probe_timeout_ms=250)
    squatter = lab.add_host("sq", "10.0.0.151/24", mac="16:0d:a0:c0:b9:1b")
    lab.wait_link_ready()
    code, out, _ = run_hook(lab, 951)
    assert code == 1 and "16:0d:a0:c0:b9:1b" in out, out
    lab.ip(squatter, "addr", "flush", "dev", "eth0")     # the squatter leaves
    code, out, _ = run_hook(lab, 960)
    assert code == 0 and "is free on vmbr0" in out, out


@pytest.mark.parametrize("mode", ["reply", "flood"])
def test_responder_exits_cleanly_on_sigterm(lab, responder, mode):
    r = responder(lab.add_host("r"), "--iface", "eth0", "--ip", "10.0.0.151", "--mode", mode)
    r.proc.terminate()
    assert r.proc.wait(timeout=10) == 0
    no_traceback(r.proc.stderr.read())


@pytest.mark.parametrize("change", ["deleted", "renumbered"])
def test_a_claim_whose_holder_no_longer_means_it_blocks_nobody(lab, pve, run_hook, change):
    """951 started (and claimed 10.0.0.151), then was deleted or given another address:
    960 with 10.0.0.151 must not be refused for 951's old claim."""
    pve.guest(951)
    pve.settings(probe_timeout_ms=200)
    lab.add_host("gw", "10.0.0.1/24")
    lab.wait_link_ready()
    code, out, _ = run_hook(lab, 951)
    assert code == 0 and "is free" in out, out
    conf = pve.root / "nodes" / "pve1" / "lxc" / "951.conf"
    if change == "deleted":
        conf.unlink()
    else:
        conf.write_text(conf.read_text().replace("ip=10.0.0.151/24", "ip=10.0.0.251/24"))
    pve.guest(960, spec_vmid=956, nets={"net0": net("10.0.0.151/24", "52:54:00:67:89:B6")})
    code, out, _ = run_hook(lab, 960)
    assert code == 0 and "is free on vmbr0" in out, out


def test_a_start_refused_by_on_error_releases_its_claim(lab, pve, run_hook):
    pve.guest(951, nets={"net0": net("10.0.0.151/24", "52:54:00:67:89:B1"),
                         "net1": net("10.0.9.1/24", "52:54:00:67:89:C1", bridge="vmbr9")})
    pve.guest(960, spec_vmid=956, nets={"net0": net("10.0.0.151/24", "52:54:00:67:89:B6")})
    pve.settings(probe_timeout_ms=200, on_error="refuse")
    lab.add_host("gw", "10.0.0.1/24")
    lab.wait_link_ready()
    code, out, _ = run_hook(lab, 951)
    assert code == 1 and "vmbr9 does not exist" in out, out
    code, out, _ = run_hook(lab, 960)
    assert code == 0 and "is free on vmbr0" in out, out


def test_a_hung_read_of_another_guests_config_does_not_hold_the_start(lab, pve, run_hook):
    """The cluster's configs only add warnings: a FIFO (a hung pmxcfs read) among them must
    not keep a decided start waiting until deadline_s, and the note says what was skipped."""
    import os
    pve.guest(951)
    (pve.root / "nodes" / "pve2" / "lxc").mkdir(parents=True)
    os.mkfifo(pve.root / "nodes" / "pve2" / "lxc" / "999.conf")
    pve.settings(deadline_s=8, probe_timeout_ms=200)
    lab.add_host("rogue", "10.0.0.151/24", mac=SQUAT_MAC)
    lab.wait_link_ready()
    code, out, recs = run_hook(lab, 951, timeout=20)
    assert code == 1 and SQUAT_MAC in out, out
    assert "could not read the other guests' configs (not read within 0.5 s)" in out, out
    assert record_of(recs)["elapsed_ms"] < 8000          # decided, not held until the deadline


def test_uplink_without_carrier_is_could_not_check_not_free(lab, pve, run_hook):
    """The switch is down (uplink without carrier) while a running guest's port is up: the
    probe reaches only local guests, so silence proves nothing."""
    pve.guest(951)
    pve.settings(probe_timeout_ms=200, on_error="refuse")
    switch = lab.add_host("switch", "10.0.0.151/24", mac=SQUAT_MAC, port="eno1")  # the LAN + squatter
    lab.add_host("ct960", "10.0.0.160/24", port="veth960i0")             # a running guest of this node
    lab.wait_link_ready()
    lab.ip(switch, "link", "set", "eth0", "down")      # the switch goes away: eno1 (still up) loses carrier
    p = subprocess.run(hook_argv(lab, 951), env=pve.env(), stdin=subprocess.DEVNULL, text=True, cwd="/",
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)   # run_hook would wait for eno1
    code, out, recs = p.returncode, p.stdout, pve.records()
    assert code == 1, out
    assert "no uplink of vmbr0 has carrier" in out and "is free" not in out, out
    assert record_of(recs)["verdict"] == "error"
