"""Lease files written by real DHCP servers for a real client, read by `phoenix-hook leases` and `audit`.

Each test builds its own lab: the "router" namespace (bridge port eno2) runs the
server with a pool of CT 950's static address only, the "laptop" namespace
(port eno1) runs dhclient, and the lease the server writes must come back as a
STATIC-IP row naming CT 950, the outage's likely cause. Releasing the lease
must end it, as the server records it (ISC: a later block; Kea: a later row;
dnsmasq: the line goes).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import dhcp_lab
from conftest import load_fixture_guests
from phoenix_hook.net import lab as labmod

pytestmark = pytest.mark.skipif(labmod.available() is not None, reason=f"leases lab: {labmod.available()}")

LAPTOP = "3c:52:82:11:22:33"
DHCP_GUEST = "52:54:00:67:89:b8"       # CT 958 (ip=dhcp)'s MAC
NAME950 = load_fixture_guests()[950]["name"]


def world(lab, pve, tmp_path):
    for vmid in (950, 951):
        pve.guest(vmid)
    pve.guest(958, spec_vmid=957, nets={"net0": f"name=eth0,bridge=vmbr0,hwaddr={DHCP_GUEST},ip=dhcp,type=veth"})
    lab.add_host_address("10.0.0.1/24")
    router = lab.add_host("router", "10.0.0.254/24", "02:00:00:00:02:54", port="eno2")
    laptop = lab.add_host("laptop", None, LAPTOP, port="eno1")
    lab.wait_link_ready()
    return router, laptop


def leases_cli(pve, leases_file, *args):
    pve.settings(dhcp_leases=leases_file)
    p = subprocess.run([sys.executable, "-m", "phoenix_hook", *args], env=pve.env(), capture_output=True,
                       text=True, timeout=60, cwd="/")
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stdout, p.stderr


def static_ip_row(doc, ip="10.0.0.150"):
    [row] = [r for r in doc["rows"] if r["ip"] == ip]
    assert row["mac"] == LAPTOP and row["hostname"] == "laptop-bob"
    assert (row["owner"], row["owner_vmid"], row["flags"]) == (f"CT 950 {NAME950}", 950, ["STATIC-IP"])
    assert row["expires"].endswith("Z")
    return row


def test_dnsmasq(lab, pve, tmp_path):
    router, laptop = world(lab, pve, tmp_path)
    guest = lab.add_host("ct958", None, DHCP_GUEST, port="veth958i0")
    lab.wait_link_ready()
    leases = dhcp_lab.dnsmasq(lab, router, tmp_path, "10.0.0.150", "10.0.0.150",
                              hosts=[f"{DHCP_GUEST},10.0.0.158"])
    dhcp_lab.dhclient(lab, laptop, tmp_path, "laptop-bob")
    dhcp_lab.dhclient(lab, guest, tmp_path, "dhcp-guest")
    dhcp_lab.wait_for(leases, LAPTOP)
    dhcp_lab.wait_for(leases, DHCP_GUEST)
    code, out, _err = leases_cli(pve, leases, "leases", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["files"][0]["format"] == "dnsmasq" and doc["files"][0]["bad_lines"] == 0
    static_ip_row(doc)
    [own] = [r for r in doc["rows"] if r["ip"] == "10.0.0.158"]
    assert (own["mac"], own["owner_vmid"], own["flags"]) == (DHCP_GUEST, 958, ["GUEST"])
    code, out, _err = leases_cli(pve, leases, "audit", "--json")
    found = [(f["kind"], f["ip"], f["vmids"]) for f in json.loads(out)["findings"]]
    assert code == 1 and ("dhcp-lease", "10.0.0.150", [950]) in found
    dhcp_lab.release(lab, laptop, tmp_path)
    text = leases.read_text()
    assert LAPTOP not in text                          # dnsmasq drops a released lease's line
    code, out, _err = leases_cli(pve, leases, "leases", "--json")
    assert code == 0 and [r["ip"] for r in json.loads(out)["rows"]] == ["10.0.0.158"]


def test_isc_dhcpd(lab, pve, tmp_path):
    router, laptop = world(lab, pve, tmp_path)
    leases = dhcp_lab.dhcpd(lab, router, tmp_path, "10.0.0.150", "10.0.0.150")
    dhcp_lab.dhclient(lab, laptop, tmp_path, "laptop-bob")
    dhcp_lab.wait_for(leases, LAPTOP)
    code, out, _err = leases_cli(pve, leases, "leases", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["files"][0]["format"] == "isc"
    static_ip_row(doc)
    dhcp_lab.release(lab, laptop, tmp_path)
    text = dhcp_lab.wait_for(leases, "binding state free")
    assert text.count("lease 10.0.0.150 {") == 2        # the release is a second block, appended
    code, out, _err = leases_cli(pve, leases, "leases", "--json")
    assert code == 0 and json.loads(out)["rows"] == []  # the last block of the address wins


def test_kea(lab, pve, tmp_path):
    router, laptop = world(lab, pve, tmp_path)
    leases = dhcp_lab.kea(lab, router, tmp_path, "10.0.0.150", "10.0.0.150")
    dhcp_lab.dhclient(lab, laptop, tmp_path, "laptop-bob")
    dhcp_lab.wait_for(leases, LAPTOP)
    code, out, _err = leases_cli(pve, leases, "leases", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["files"][0]["format"] == "kea"
    static_ip_row(doc)
    before = leases.read_text().count(LAPTOP)
    dhcp_lab.release(lab, laptop, tmp_path)
    import time
    end = time.monotonic() + 10
    while leases.read_text().count(LAPTOP) == before and time.monotonic() < end:
        time.sleep(0.05)
    assert leases.read_text().count(LAPTOP) > before    # the release is a later row
    code, out, _err = leases_cli(pve, leases, "leases", "--json")
    assert code == 0 and json.loads(out)["rows"] == []
