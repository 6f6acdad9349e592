"""`phoenix-hook locate` on real kernels: one lab for the module, ports named as on a PVE node.

  pve      vmbr0 10.0.0.1/24 + fd00::1/64 (this host, node pve1); vmbr0v20 (PVE's bridge
           for VLAN 20 on a non-VLAN-aware vmbr0)
  vmbr0 ports, as PVE names them:
    veth951i0   CT 951 running, 10.0.0.151
    fwpr952p0   CT 952 running with firewall=1, 10.0.0.152
    veth954i0   CT 954 running, 10.0.0.154 ...
    tap120i0    VM 120 running, 10.0.0.120
    veth956i0   CT 956 running, fd00::156 (IPv6 only)
    eno1        the uplink to a LAN switch (its own namespace) with:
                router   10.0.0.254, dnsmasq handing out 10.0.0.219 only
                laptop   dhclient -> 10.0.0.219, host name laptop-bob (the outage's address)
                stranger 10.0.0.154 too: a second holder of CT 954's address
                ct957    CT 957 running on node pve2, 10.0.0.157
  vmbr0v20 ports: veth955i0 CT 955 (tag=20), 10.0.0.155
  CT 950 (10.0.0.150) is configured but stopped: nobody answers.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import dhcp_lab
from conftest import PveTree, load_fixture_guests
from phoenix_hook.net import lab as labmod

pytestmark = pytest.mark.skipif(labmod.available() is not None, reason=f"locate lab: {labmod.available()}")

LAPTOP = "3c:52:82:11:22:33"          # an HP OUI
STRANGER = "02:00:00:00:01:54"
VM120_MAC = "bc:24:11:00:01:20"
NAME = {vmid: spec["name"] for vmid, spec in load_fixture_guests().items()}


def lan_host(lab, switch, name, cidr, mac):
    """A host on the LAN switch behind eno1 (its own namespace, a port of sw0)."""
    ns = lab.add_namespace(f"{lab.prefix}-{name}")
    port = f"sw{name[:6]}"
    lab.ip(switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
    lab.ip(switch, "link", "set", port, "master", "sw0")
    lab.ip(switch, "link", "set", port, "up")
    lab.ip(ns, "link", "set", "eth0", "address", mac)
    if cidr:
        lab.ip(ns, "addr", "add", cidr, "dev", "eth0")
    lab.ip(ns, "link", "set", "eth0", "up")
    return ns


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("locate")
    tree = PveTree(tmp)
    f = tree.fixture
    mac = {v: f[v]["mac_address"].lower() for v in f}
    for vmid in (950, 951, 954):
        tree.guest(vmid)
    tree.guest(952, nets={"net0": f"name=eth0,bridge=vmbr0,firewall=1,gw=10.0.0.1,hwaddr={mac[952]},"
                                  f"ip=10.0.0.152/24,type=veth"})
    tree.guest(955, nets={"net0": f"name=eth0,bridge=vmbr0,hwaddr={mac[955]},ip=10.0.0.155/24,tag=20,type=veth"})
    tree.guest(956, nets={"net0": f"name=eth0,bridge=vmbr0,hwaddr={mac[956]},ip6=fd00::156/64,type=veth"})
    tree.guest(957, node="pve2")
    qemu = tree.root / "nodes" / "pve1" / "qemu-server"
    qemu.mkdir(parents=True)
    (qemu / "120.conf").write_text(f"name: web\nnet0: virtio={VM120_MAC.upper()},bridge=vmbr0\n"
                                   f"ipconfig0: ip=10.0.0.120/24,gw=10.0.0.1\n")
    with labmod.Lab() as lab:
        lab.add_host_address("10.0.0.1/24")
        lab.ip(lab.pve, "addr", "add", "fd00::1/64", "dev", "vmbr0", "nodad")
        lab.add_bridge("vmbr0v20")
        lab.add_host("ct951", "10.0.0.151/24", mac[951], port="veth951i0")
        lab.add_host("ct952", "10.0.0.152/24", mac[952], port="fwpr952p0")
        lab.add_host("ct954", "10.0.0.154/24", mac[954], port="veth954i0")
        lab.add_host("vm120", "10.0.0.120/24", VM120_MAC, port="tap120i0")
        ns956 = lab.add_host("ct956", None, mac[956], port="veth956i0")
        lab.ip(ns956, "addr", "add", "fd00::156/64", "dev", "eth0", "nodad")
        lab.add_host("ct955", "10.0.0.155/24", mac[955], port="veth955i0", bridge="vmbr0v20")
        # the uplink: eno1 to a LAN switch in its own namespace
        switch = lab.add_namespace(f"{lab.prefix}-switch")
        lab.ip(switch, "link", "add", "sw0", "type", "bridge")
        lab.ip(switch, "link", "set", "sw0", "type", "bridge", "forward_delay", "0", "stp_state", "0")
        lab.ip(switch, "link", "set", "sw0", "up")
        lab.ip(lab.pve, "link", "add", "eno1", "type", "veth", "peer", "name", "swup", "netns", switch)
        lab.ip(lab.pve, "link", "set", "eno1", "master", "vmbr0")
        lab.ip(lab.pve, "link", "set", "eno1", "up")
        lab.ip(switch, "link", "set", "swup", "master", "sw0")
        lab.ip(switch, "link", "set", "swup", "up")
        router = lan_host(lab, switch, "router", "10.0.0.254/24", "02:00:00:00:02:54")
        laptop = lan_host(lab, switch, "laptop", None, LAPTOP)
        lan_host(lab, switch, "stranger", "10.0.0.154/24", STRANGER)
        lan_host(lab, switch, "ct957", "10.0.0.157/24", mac[957])
        lab.wait_link_ready()
        leases = dhcp_lab.dnsmasq(lab, router, tmp, "10.0.0.219", "10.0.0.219")
        dhcp_lab.dhclient(lab, laptop, tmp, "laptop-bob")
        dhcp_lab.wait_for(leases, LAPTOP)
        tree.settings(dhcp_leases=leases)
        yield lab, tree, mac
        prefix = lab.prefix
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in out, "lab namespaces left behind"


def locate(world, *args):
    lab, tree, _mac = world
    lab.wait_link_ready()
    p = subprocess.run(["ip", "netns", "exec", lab.pve, sys.executable, "-m", "phoenix_hook", "locate", *args],
                       env=tree.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd="/",
                       timeout=60)
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stdout, p.stderr


def locate_json(world, address, *args):
    code, out, err = locate(world, address, "--json", *args)
    assert out, err
    doc = json.loads(out)
    assert set(doc) >= {"address", "owner", "answers", "verdict"}
    for a in doc["answers"]:
        assert set(a) >= {"mac", "vendor", "port", "where", "vmid", "nic", "lease"}
    return code, doc


def test_the_outage_who_has_10_0_0_219(world):
    """The address nobody's config has: a laptop behind the uplink, with a DHCP lease."""
    code, doc = locate_json(world, "10.0.0.219")
    assert (code, doc["verdict"], doc["owner"]) == (1, "foreign", None)
    [a] = doc["answers"]
    assert (a["mac"], a["port"], a["where"], a["vmid"], a["nic"]) == (LAPTOP, "eno1", "uplink", None, None)
    assert a["vendor"] and "hewlett" in a["vendor"].lower()
    assert a["lease"]["hostname"] == "laptop-bob" and a["lease"]["ip"] == "10.0.0.219"
    assert a["lease"]["file"].endswith("dnsmasq.leases") and a["lease"]["expires"].endswith("Z")
    code, out, _err = locate(world, "10.0.0.219")
    [line] = out.splitlines()
    assert code == 1
    assert line.startswith(f"10.0.0.219 answered by {LAPTOP} (Hewlett Packard) behind uplink eno1, "
                           f"DHCP lease 'laptop-bob' until ")
    assert line.endswith("; no guest or node is configured with it")


def test_a_running_container_is_its_own_owner(world):
    mac = world[2]
    code, doc = locate_json(world, "10.0.0.151")
    assert (code, doc["verdict"]) == (0, "owner")
    assert doc["owner"] == {"vmid": 951, "type": "lxc", "node": "pve1", "nic": "net0",
                            "name": NAME[951], "mac": mac[951]}
    [a] = doc["answers"]
    assert (a["mac"], a["port"], a["where"], a["vmid"], a["nic"], a["lease"]) == \
        (mac[951], "veth951i0", "guest", 951, "net0", None)
    code, out, _err = locate(world, "10.0.0.151")
    assert out.strip().endswith(f"on CT 951 {NAME[951]} net0 (port veth951i0); that is its owner, "
                                f"CT 951 {NAME[951]} net0")


def test_firewall_port_and_vm_tap_port(world):
    mac = world[2]
    code, doc = locate_json(world, "10.0.0.152")
    [a] = doc["answers"]
    assert (code, a["port"], a["where"], a["vmid"], a["nic"], a["mac"]) == (0, "fwpr952p0", "guest", 952, "net0",
                                                                             mac[952])
    code, doc = locate_json(world, "10.0.0.120")
    [a] = doc["answers"]
    assert (code, doc["owner"]["type"], a["port"], a["vmid"]) == (0, "qemu", "tap120i0", 120)


def test_two_holders_the_owner_and_a_stranger_behind_the_uplink(world):
    mac = world[2]
    code, doc = locate_json(world, "10.0.0.154")
    assert (code, doc["verdict"], doc["owner"]["vmid"]) == (1, "foreign", 954)
    assert [(a["mac"], a["where"], a["port"]) for a in doc["answers"]] == [
        (mac[954], "guest", "veth954i0"), (STRANGER, "uplink", "eno1")]
    assert doc["answers"][1]["vendor"] == "locally administered"
    code, out, _err = locate(world, "10.0.0.154")
    lines = out.splitlines()
    assert code == 1 and len(lines) == 2
    assert lines[1] == (f"10.0.0.154 answered by {STRANGER} (locally administered) behind uplink eno1; "
                        f"the address belongs to CT 954 {NAME[954]} net0 on node pve1")


def test_a_guest_of_another_node_answers_from_behind_the_uplink(world):
    mac = world[2]
    code, doc = locate_json(world, "10.0.0.157")
    assert (code, doc["verdict"], doc["owner"]["node"]) == (0, "owner", "pve2")
    [a] = doc["answers"]
    assert (a["mac"], a["where"], a["port"], a["vmid"]) == (mac[957], "uplink", "eno1", None)


def test_vlan_guest_probed_on_pves_vlan_bridge(world):
    mac = world[2]
    code, doc = locate_json(world, "10.0.0.155")
    assert (code, doc["iface"], doc["vlan"]) == (0, "vmbr0v20", 20)
    [a] = doc["answers"]
    assert (a["mac"], a["port"], a["vmid"]) == (mac[955], "veth955i0", 955)


def test_ipv6_by_neighbor_solicitation(world):
    mac = world[2]
    code, doc = locate_json(world, "fd00::156")
    assert (code, doc["verdict"], doc["owner"]["vmid"]) == (0, "owner", 956)
    [a] = doc["answers"]
    assert (a["mac"], a["port"], a["kind"]) == (mac[956], "veth956i0", "advertisement")


def test_this_hosts_own_address(world):
    code, doc = locate_json(world, "10.0.0.1")
    assert (code, doc["verdict"], doc["owner"]["type"], doc["owner"]["node"]) == (0, "owner", "node", "pve1")
    [a] = doc["answers"]
    assert (a["where"], a["port"]) == ("host", "vmbr0")


def test_silence(world):
    code, doc = locate_json(world, "10.0.0.77")
    assert (code, doc["verdict"], doc["answers"], doc["owner"]) == (0, "silent", [], None)
    code, out, _err = locate(world, "10.0.0.150")          # CT 950: configured, stopped
    assert code == 0 and out.startswith("nobody answered for 10.0.0.150 on vmbr0 within ")
    assert out.strip().endswith(f"the address belongs to CT 950 {NAME[950]} net0 on node pve1 "
                                "(stopped, or not reachable from here)")


def test_bridge_named_by_hand(world):
    code, doc = locate_json(world, "10.0.0.219", "--bridge", "vmbr0v20")   # not on VLAN 20: nobody
    assert (code, doc["verdict"], doc["iface"]) == (0, "silent", "vmbr0v20")


@pytest.mark.parametrize("args,code,words", [
    (["10.0.0.300"], 2, "is not an IPv4 or IPv6 address"),
    (["224.0.0.1"], 2, "not a unicast host address"),
    (["192.168.77.5"], 2, "--bridge vmbr0"),
    (["10.0.0.5", "--vlan", "20"], 2, "--vlan needs --bridge"),
    (["10.0.0.5", "--timeout-ms", "5"], 2, "--timeout-ms 5 is out of range"),
    (["10.0.0.5", "--bridge", "vmbr9"], 3, "bridge vmbr9 does not exist on this host"),
])
def test_bad_usage_and_could_not_check(world, args, code, words):
    got, out, err = locate(world, *args)
    assert (got, out) == (code, "")
    assert words in err and len(err.strip().splitlines()) == 1


def _link_local(lab, dev):
    out = json.loads(lab.ip(lab.pve, "-j", "addr", "show", "dev", dev).stdout)
    return next((a["local"] for link in out for a in link.get("addr_info", [])
                 if a.get("family") == "inet6" and a["local"].startswith("fe80:")), None)


def test_link_local_is_the_hosts_on_its_own_link_only(world):
    lab = world[0]
    mine, port = _link_local(lab, "vmbr0"), _link_local(lab, "eno1")
    if mine is None or port is None:
        pytest.fail(f"no IPv6 link-local address on vmbr0 ({mine}) or eno1 ({port}) in the lab")
    code, doc = locate_json(world, mine)
    assert (code, doc["verdict"], doc["owner"]["type"]) == (0, "owner", "node")
    assert [(a["where"], a["port"]) for a in doc["answers"]] == [("host", "vmbr0")]
    # eno1's own link-local address is on eno1's link, not vmbr0's: no host answer here
    code, doc = locate_json(world, port)
    assert (code, doc["verdict"], doc["owner"], doc["answers"]) == (0, "silent", None, [])
