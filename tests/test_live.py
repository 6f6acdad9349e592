"""`audit --live`: what running guests really hold (pve/live.py) against their configs (checks/live.py).

Shapes as Proxmox VE and QEMU give them: iproute2's `ip --json a` (what
PVE::LXC::get_interfaces runs inside a container), the API's
/nodes/{node}/lxc/{vmid}/interfaces answer (get_interfaces' own objects), and
the guest agent's network-get-interfaces result ({"result": [...]} through
the API, the bare list from `qm guest cmd`). The API paths run through
`responses`; the lab test (test_live_lab.py) runs lxc-info/nsenter for real.
"""
from __future__ import annotations

import json

import pytest
import responses
from hypothesis import given, settings as hsettings, strategies as st

from phoenix_hook.checks import live as checks
from phoenix_hook.cli import main as cli
from phoenix_hook.pve import api as pveapi, live
from phoenix_hook.pve.guest import parse_config

from test_pveapi import BASE, PveFailure, api_settings, conf_file

# `ip --json a` inside a container: lo, eth0 with a second address and an IPv6 link-local
IP_JSON = json.dumps([
    {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"], "mtu": 65536, "qdisc": "noqueue",
     "operstate": "UNKNOWN", "group": "default", "txqlen": 1000, "link_type": "loopback",
     "address": "00:00:00:00:00:00", "broadcast": "00:00:00:00:00:00",
     "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host", "label": "lo",
                    "valid_life_time": 4294967295, "preferred_life_time": 4294967295},
                   {"family": "inet6", "local": "::1", "prefixlen": 128, "scope": "host",
                    "valid_life_time": 4294967295, "preferred_life_time": 4294967295}]},
    {"ifindex": 3, "link_index": 4, "ifname": "eth0", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
     "mtu": 1500, "qdisc": "noqueue", "operstate": "UP", "group": "default", "txqlen": 1000,
     "link_type": "ether", "address": "52:54:00:67:89:b1", "broadcast": "ff:ff:ff:ff:ff:ff",
     "link_netnsid": 0,
     "addr_info": [{"family": "inet", "local": "10.0.0.151", "prefixlen": 24, "scope": "global", "label": "eth0",
                    "valid_life_time": 4294967295, "preferred_life_time": 4294967295},
                   {"family": "inet", "local": "10.0.0.219", "prefixlen": 24, "scope": "global",
                    "secondary": True, "label": "eth0", "valid_life_time": 4294967295,
                    "preferred_life_time": 4294967295},
                   {"family": "inet6", "local": "fd00::151", "prefixlen": 64, "scope": "global",
                    "dadfailed": True, "tentative": True, "valid_life_time": 4294967295,
                    "preferred_life_time": 4294967295},
                   {"family": "inet6", "local": "fe80::5054:ff:fe67:89b1", "prefixlen": 64, "scope": "link",
                    "valid_life_time": 4294967295, "preferred_life_time": 4294967295}]}])

# GET /nodes/pve1/lxc/951/interfaces: PVE::LXC::get_interfaces (deprecated keys included)
PVE_IFACES = [
    {"name": "lo", "hwaddr": "00:00:00:00:00:00", "hardware-address": "00:00:00:00:00:00",
     "inet": "127.0.0.1/8", "inet6": "::1/128",
     "ip-addresses": [{"ip-address-type": "inet", "ip-address": "127.0.0.1", "prefix": 8},
                      {"ip-address-type": "inet6", "ip-address": "::1", "prefix": 128}]},
    {"name": "eth0", "hwaddr": "52:54:00:67:89:b1", "hardware-address": "52:54:00:67:89:b1",
     "inet": "10.0.0.219/24", "inet6": "fe80::5054:ff:fe67:89b1/64",
     "ip-addresses": [{"ip-address-type": "inet", "ip-address": "10.0.0.219", "prefix": 24},
                      {"ip-address-type": "inet6", "ip-address": "fe80::5054:ff:fe67:89b1", "prefix": 64}]},
]

# the QEMU guest agent's guest-network-get-interfaces, as the API wraps it
AGENT = {"result": [
    {"name": "lo", "hardware-address": "00:00:00:00:00:00",
     "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},
                      {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128}],
     "statistics": {"rx-packets": 12, "rx-bytes": 1000, "rx-errs": 0, "rx-dropped": 0,
                    "tx-packets": 12, "tx-bytes": 1000, "tx-errs": 0, "tx-dropped": 0}},
    {"name": "ens18", "hardware-address": "bc:24:11:00:01:20",
     "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "10.0.0.153", "prefix": 24},
                      {"ip-address-type": "ipv6", "ip-address": "fe80::be24:11ff:fe00:120", "prefix": 64}],
     "statistics": {"rx-packets": 5, "rx-bytes": 600, "rx-errs": 0, "rx-dropped": 0,
                    "tx-packets": 7, "tx-bytes": 800, "tx-errs": 0, "tx-dropped": 0}},
]}


def ct(vmid, net0, node="pve1", name=None, extra=""):
    return parse_config(f"hostname: {name or f'ct{vmid}'}\nnet0: {net0}\n{extra}", vmid, "lxc", node)


CT951 = ct(951, "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B1,ip=10.0.0.151/24,ip6=fd00::151/64,type=veth",
           name="embed-api")
CT953 = ct(953, "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B3,ip=10.0.0.153/24,type=veth", name="web-proxy")
VM120 = parse_config("name: web\nnet0: virtio=BC:24:11:00:01:20,bridge=vmbr0\nipconfig0: ip=dhcp\n", 120, "qemu", "pve2")


# -- parsers ------------------------------------------------------------------------------
def test_ip_json_as_pve_reads_it():
    ifaces = {i.name: i for i in live.parse_ip_json(IP_JSON)}
    assert ifaces["lo"].mac is None
    eth0 = ifaces["eth0"]
    assert eth0.mac == "52:54:00:67:89:b1"
    # the address whose DAD failed is not held; the link-local one is (drift leaves it aside)
    assert [a.text for a in eth0.addresses] == ["10.0.0.151/24", "10.0.0.219/24", "fe80::5054:ff:fe67:89b1/64"]


def test_pve_and_agent_shapes_read_alike():
    pve = {i.name: i for i in live.parse_interfaces(PVE_IFACES)}
    assert [(a.ip, a.family) for a in pve["eth0"].addresses] == [("10.0.0.219", 4), ("fe80::5054:ff:fe67:89b1", 6)]
    agent = {i.name: i for i in live.parse_interfaces(AGENT)}
    assert agent["ens18"].mac == "bc:24:11:00:01:20"
    assert [a.text for a in agent["ens18"].addresses] == ["10.0.0.153/24", "fe80::be24:11ff:fe00:120/64"]
    assert live.parse_interfaces(AGENT["result"]) == live.parse_interfaces(AGENT)   # `qm guest cmd` prints the list


@pytest.mark.parametrize("text,pid", [("PID:          4242\n", 4242), ("PID: 17", 17), ("", None),
                                      ("State: STOPPED\n", None), ("PID:\n", None)])
def test_lxc_info_pid(text, pid):
    assert live.parse_lxc_pid(text) == pid


_JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
                     lambda c: st.one_of(st.lists(c, max_size=5), st.dictionaries(
                         st.sampled_from(["ifname", "address", "addr_info", "family", "local", "prefixlen",
                                          "name", "hardware-address", "hwaddr", "ip-addresses", "ip-address",
                                          "ip-address-type", "prefix", "result", "dadfailed"]), c, max_size=6)),
                     max_leaves=30)


@hsettings(max_examples=300)
@given(_JSON)
def test_fuzz_live_parsers(data):
    for ifaces in (live.parse_ip_json(json.dumps(data)), live.parse_interfaces(data)):
        for i in ifaces:
            assert isinstance(i.name, str)
            checks.drift(CT951, [i])
            checks.duplicates(CT951, [i], [CT951, CT953])
    live.parse_lxc_pid(json.dumps(data))


@hsettings(max_examples=200)
@given(st.text(max_size=300))
def test_fuzz_ip_json_text(text):
    live.parse_ip_json(text)


# -- the decisions --------------------------------------------------------------------------
def test_drift_names_guest_nic_and_both_addresses():
    f, f6 = checks.drift(CT951, live.parse_interfaces(PVE_IFACES))
    assert (f.kind, f.ip, f.vmids) == ("drift", "10.0.0.151", [951])
    assert (f6.ip, f6.detail) == ("fd00::151", "CT 951 net0 (eth0): configured with fd00::151, but holds "
                                               "no IPv6 address")      # link-local fe80:: does not count
    assert "CT 951 net0 (eth0): configured with 10.0.0.151, but holds 10.0.0.219/24" in f.detail
    # ip6=fd00::151 is static too: its DAD failed in the guest, so it lacks it as well
    found = checks.drift(CT951, live.parse_ip_json(IP_JSON))
    words = sorted(x.detail for x in found)
    assert words == ["CT 951 net0 (eth0): configured with fd00::151, but holds no IPv6 address",
                     "CT 951 net0 (eth0): holds 10.0.0.219/24 besides its configured 10.0.0.151"]


def test_no_drift_when_it_holds_what_it_should_and_dhcp_is_left_alone():
    good = live.parse_interfaces([{"name": "eth0", "hardware-address": "52:54:00:67:89:b3",
                                   "ip-addresses": [{"ip-address-type": "inet", "ip-address": "10.0.0.153",
                                                     "prefix": 24},
                                                    {"ip-address-type": "inet6",
                                                     "ip-address": "fe80::1", "prefix": 64}]}])
    assert checks.drift(CT953, good) == []
    assert checks.drift(VM120, live.parse_interfaces(AGENT)) == []      # ip=dhcp: whatever it got


def test_an_unplugged_nic_is_left_alone():
    down = ct(953, "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B3,ip=10.0.0.153/24,link_down=1,type=veth")
    assert down.nics[0].skip
    assert checks.drift(down, []) == []
    assert len(checks.drift(CT953, [])) == 1          # the same NIC plugged in: it lacks its address


def test_no_interface_with_the_mac():
    [f] = checks.drift(CT953, live.parse_interfaces([{"name": "eth1", "hardware-address": "02:00:00:00:00:01",
                                                       "ip-addresses": []}]))
    assert "no interface with MAC 52:54:00:67:89:b3 or name eth0" in f.detail


def test_live_duplicate_names_both_guests_and_respects_vlans():
    [f] = checks.duplicates(VM120, live.parse_interfaces(AGENT), [CT951, CT953, VM120])
    assert (f.kind, f.ip, f.vmids) == ("duplicate-ip", "10.0.0.153", [120, 953])
    assert "VM 120 net0 (ens18) holds 10.0.0.153, which is the configured address of CT 953 net0 on pve1" in f.detail
    other_vlan = ct(953, "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B3,ip=10.0.0.153/24,tag=20,type=veth")
    assert checks.duplicates(VM120, live.parse_interfaces(AGENT), [other_vlan]) == []
    template = ct(953, "name=eth0,bridge=vmbr0,ip=10.0.0.153/24,type=veth", extra="template: 1\n")
    assert checks.duplicates(VM120, live.parse_interfaces(AGENT), [template]) == []


def test_live_duplicate_not_repeated_when_the_configs_already_clash():
    twin = ct(952, "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B2,ip=10.0.0.151/24,type=veth")
    ifaces = live.parse_interfaces([{"name": "eth0", "hardware-address": "52:54:00:67:89:b1",
                                     "ip-addresses": [{"ip-address-type": "inet", "ip-address": "10.0.0.151",
                                                       "prefix": 24}]}])
    assert checks.duplicates(CT951, ifaces, [CT951, twin]) == []     # audit's config-level duplicate-ip says it


# -- the API ------------------------------------------------------------------------------------
RESOURCES = [
    {"id": "lxc/951", "type": "lxc", "vmid": 951, "node": "pve1", "name": "embed-api", "status": "running"},
    {"id": "lxc/953", "type": "lxc", "vmid": 953, "node": "pve1", "name": "web-proxy", "status": "stopped"},
    {"id": "qemu/120", "type": "qemu", "vmid": 120, "node": "pve2", "name": "web", "status": "running"},
    {"id": "qemu/121", "type": "qemu", "vmid": 121, "node": "pve2", "name": "noagent", "status": "running"},
    {"id": "lxc/900", "type": "lxc", "vmid": 900, "node": "pve1", "name": "base-template", "status": "stopped",
     "template": 1},
]
CONFIGS = {
    ("pve1", "lxc", 951): {"hostname": "embed-api",
                           "net0": "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B1,ip=10.0.0.151/24,type=veth"},
    ("pve1", "lxc", 953): {"hostname": "web-proxy",
                           "net0": "name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B3,ip=10.0.0.153/24,type=veth"},
    ("pve2", "qemu", 120): {"name": "web", "net0": "virtio=BC:24:11:00:01:20,bridge=vmbr0", "ipconfig0": "ip=dhcp",
                            "agent": "1"},
    ("pve2", "qemu", 121): {"name": "noagent", "net0": "virtio=BC:24:11:00:01:21,bridge=vmbr0",
                            "ipconfig0": "ip=10.0.0.121/24"},
    ("pve1", "lxc", 900): {"hostname": "base-template", "template": 1,
                           "net0": "name=eth0,bridge=vmbr0,hwaddr=52:54:00:AA:BB:CC,ip=10.0.0.200/24,type=veth"},
}


HOOK = "local:snippets/phoenix-hook.py"         # every guest guarded: audit's coverage findings stay out


def serve_live(rsps):
    rsps.add(responses.GET, f"{BASE}/cluster/resources", json={"data": RESOURCES})
    rsps.add(responses.GET, f"{BASE}/cluster/status", json={"data": []})
    rsps.add(responses.GET, f"{BASE}/nodes", json={"data": [{"node": n, "status": "online"} for n in ("pve1", "pve2")]})
    for n in ("pve1", "pve2"):
        rsps.add(responses.GET, f"{BASE}/nodes/{n}/storage/local/content", json={"data": [{"volid": HOOK}]})
    for (node, kind, vmid), cfg in CONFIGS.items():
        rsps.add(responses.GET, f"{BASE}/nodes/{node}/{kind}/{vmid}/config", json={"data": dict(cfg, hookscript=HOOK)})
    rsps.add(responses.GET, f"{BASE}/nodes/pve1/lxc/951/interfaces", json={"data": PVE_IFACES})
    rsps.add(responses.GET, f"{BASE}/nodes/pve2/qemu/120/agent/network-get-interfaces", json={"data": AGENT})
    # qemu-server Agent.pm assert_agent_available: die "No QEMU guest agent configured\n"
    rsps.add(PveFailure(f"{BASE}/nodes/pve2/qemu/121/agent/network-get-interfaces", 500,
                        "No QEMU guest agent configured"))


@responses.activate
def test_api_live_interfaces(tmp_path):
    serve_live(responses)
    responses.add(responses.GET, f"{BASE}/nodes/pve1/lxc/953/interfaces", json={"data": None})
    src = pveapi.ApiSource(api_settings(tmp_path), node="pve1")
    assert [i.name for i in src.live_interfaces("pve1", "lxc", 951)] == ["lo", "eth0"]
    assert src.live_interfaces("pve1", "lxc", 953) is None           # get_interfaces: not running
    assert [i.mac for i in src.live_interfaces("pve2", "qemu", 120)] == [None, "bc:24:11:00:01:20"]
    with pytest.raises(live.NoAgent, match="no QEMU guest agent answers"):
        src.live_interfaces("pve2", "qemu", 121)


@responses.activate
def test_api_older_than_8_1_says_so(tmp_path):
    responses.add(PveFailure(f"{BASE}/nodes/pve1/lxc/951/interfaces", 501,
                             "Method 'GET /nodes/pve1/lxc/951/interfaces' not implemented"))
    src = pveapi.ApiSource(api_settings(tmp_path), node="pve1")
    with pytest.raises(live.LiveError, match="8.1 or later"):
        src.live_interfaces("pve1", "lxc", 951)


@responses.activate
def test_audit_live_through_the_api(tmp_path, capsys):
    serve_live(responses)
    code = cli.main(["--config", conf_file(tmp_path), "audit", "--live", "--source", "api", "--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    doc = json.loads(out)
    assert code == 1
    assert [(f["kind"], f["vmids"], f["ip"]) for f in doc["findings"]] == [
        ("duplicate-ip", [120, 953], "10.0.0.153"), ("drift", [951], "10.0.0.151")]
    assert doc["live"]["read"] == [120, 951] and doc["live"]["stopped"] == 1
    [skip] = doc["live"]["skipped"]
    assert (skip["vmid"], skip["kind"]) == (121, "no-agent") and "VM 121 skipped" in skip["reason"]
    assert "phoenix-hook: note: VM 121 skipped: no QEMU guest agent answers" in err
    # text: the same findings, and the live summary line
    code = cli.main(["--config", conf_file(tmp_path), "audit", "--live", "--source", "api"])
    out, _err = capsys.readouterr()
    assert code == 1 and "drift" in out and "live: 2 running guests read, 1 skipped, 1 not running" in out


@responses.activate
def test_audit_live_every_read_failing_is_could_not_check(tmp_path, capsys):
    responses.add(responses.GET, f"{BASE}/cluster/resources", json={"data": RESOURCES[:1]})
    responses.add(responses.GET, f"{BASE}/cluster/status", json={"data": []})
    responses.add(responses.GET, f"{BASE}/nodes", json={"data": [{"node": "pve1", "status": "online"}]})
    responses.add(responses.GET, f"{BASE}/nodes/pve1/storage/local/content", json={"data": [{"volid": HOOK}]})
    responses.add(responses.GET, f"{BASE}/nodes/pve1/lxc/951/config",
                  json={"data": dict(CONFIGS[("pve1", "lxc", 951)], hookscript=HOOK)})
    responses.add(PveFailure(f"{BASE}/nodes/pve1/lxc/951/interfaces", 403,
                             "Permission check failed (/vms/951, VM.Audit)"))
    code = cli.main(["--config", conf_file(tmp_path), "audit", "--live", "--source", "api"])
    _out, err = capsys.readouterr()
    assert code == 3 and "CT 951 skipped" in err and "403" in err and len(err.strip().splitlines()) == 1
