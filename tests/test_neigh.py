"""neigh.py parsers (fuzzed: they never raise) and `phoenix-hook neigh` on a lab host's table."""
from __future__ import annotations

import ipaddress
import json

from hypothesis import given, strategies as st

from phoenix_hook.net import neigh
from phoenix_hook.checks.answers import neigh_rows as rows_for
from phoenix_hook.pve.guest import parse_config
from phoenix_hook.checks import answers
from phoenix_hook.checks.owners import DUP, MISMATCH, UNCLAIMED, Owners, guest_claims, host_claims, mac_claims

IP_NEIGH = json.dumps([
    {"dst": "10.0.0.151", "dev": "vmbr0", "lladdr": "52:54:00:67:89:B1", "state": ["REACHABLE"]},
    {"dst": "10.0.0.1", "dev": "vmbr0", "lladdr": "00:1b:21:aa:bb:cc", "router": None, "state": ["STALE"]},
    {"dst": "10.0.0.99", "dev": "vmbr0", "state": ["FAILED"]},
    {"dst": "fe80::5054:ff:fe67:89b1", "dev": "vmbr0", "lladdr": "52:54:00:67:89:b1", "state": ["DELAY", "PROBE"]},
    {"dst": "fd00::152", "dev": "vmbr1", "lladdr": "02:00:00:00:01:52", "state": ["PERMANENT"]},
    {"dst": "not-an-ip", "dev": "x"}, "junk", {"dst": 7},
])

PROC_ARP = """\
IP address       HW type     Flags       HW address            Mask     Device
10.0.0.151       0x1         0x2         52:54:00:67:89:b1     *        vmbr0
10.0.0.99        0x1         0x0         00:00:00:00:00:00     *        vmbr0
10.0.0.7         0x1         0x6         02:00:00:00:00:07     *        vmbr0
garbage line
10.0.0.8 0x1 zz 02:00:00:00:00:08 * vmbr0
"""

IP_ADDR = json.dumps([
    {"ifindex": 1, "ifname": "lo", "address": "00:00:00:00:00:00",
     "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifindex": 5, "ifname": "vmbr0", "address": "02:AA:00:00:00:01",
     "addr_info": [{"family": "inet", "local": "10.0.0.1", "prefixlen": 24},
                   {"family": "inet6", "local": "fe80::aa:ff:fe00:1", "prefixlen": 64},
                   {"family": "inet", "local": "10.0.0.2", "prefixlen": 99}]},
])


def test_ip_neigh_json():
    got = neigh.parse_ip_neigh_json(IP_NEIGH)
    assert [(n.ip, n.family, n.mac, n.dev, n.state, n.router) for n in got] == [
        ("10.0.0.151", 4, "52:54:00:67:89:b1", "vmbr0", ("REACHABLE",), False),
        ("10.0.0.1", 4, "00:1b:21:aa:bb:cc", "vmbr0", ("STALE",), True),
        ("10.0.0.99", 4, None, "vmbr0", ("FAILED",), False),
        ("fe80::5054:ff:fe67:89b1", 6, "52:54:00:67:89:b1", "vmbr0", ("DELAY", "PROBE"), False),
        ("fd00::152", 6, "02:00:00:00:01:52", "vmbr1", ("PERMANENT",), False),
    ]


def test_proc_net_arp():
    got = neigh.parse_proc_arp(PROC_ARP)
    assert [(n.ip, n.mac, n.state) for n in got] == [
        ("10.0.0.151", "52:54:00:67:89:b1", ("COMPLETE",)),
        ("10.0.0.99", None, ("INCOMPLETE",)),
        ("10.0.0.7", "02:00:00:00:00:07", ("PERMANENT",)),
    ]


def test_ip_addr_json():
    got = neigh.parse_ip_addr_json(IP_ADDR)
    assert [(a.ifname, a.ip, a.prefixlen, a.mac, a.family) for a in got] == [
        ("lo", "127.0.0.1", 8, None, 4),
        ("vmbr0", "10.0.0.1", 24, "02:aa:00:00:00:01", 4),
        ("vmbr0", "fe80::aa:ff:fe00:1", 64, "02:aa:00:00:00:01", 6),
    ]
    assert str(got[1].network) == "10.0.0.0/24"


@given(st.text())
def test_parsers_never_raise_on_text(text):
    for parse in (neigh.parse_ip_neigh_json, neigh.parse_proc_arp, neigh.parse_ip_addr_json):
        parse(text)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
                    | st.sampled_from(["10.0.0.5", "fe80::1", "02:00:00:00:00:05", "::ffff:1.2.3.4", "inet"]),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.sampled_from(["dst", "dev", "lladdr", "state", "router", "ifname", "address",
                                         "addr_info", "local", "prefixlen", "family", "x"]), inner, max_size=6),
                    max_leaves=25)


@given(st.lists(JSON, max_size=5))
def test_parsers_never_raise_on_any_json(doc):
    text = json.dumps(doc)
    for n in neigh.parse_ip_neigh_json(text):
        ipaddress.ip_address(n.ip)
        assert n.mac is None or len(n.mac) == 17
    for a in neigh.parse_ip_addr_json(text):
        ipaddress.ip_interface(f"{a.ip}/{a.prefixlen}")


def _owners():
    g = [parse_config("hostname: embed-api\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B1,"
                      "ip=10.0.0.151/24,ip6=fd00::151/64\n", 951, "lxc", "pve1"),
         parse_config("hostname: qdrant\nnet0: name=eth0,bridge=vmbr1,hwaddr=52:54:00:67:89:B2,"
                      "ip=10.0.1.152/24,ip6=fd00::152/64,tag=30\n", 952, "lxc", "pve1")]
    claims = guest_claims(g, ipv6=True) + host_claims("pve1", [("10.0.0.1", "02:aa:00:00:00:01")])
    return Owners(claims, mac_claims(g))


def test_rows_owner_flags_and_unresolved():
    entries = neigh.parse_ip_neigh_json(IP_NEIGH)
    rows = {(r["ip"], r["mac"]): r for r in rows_for(entries, _owners())}
    assert rows[("10.0.0.151", "52:54:00:67:89:b1")]["owner"] == "CT 951 embed-api"
    assert rows[("10.0.0.1", "00:1b:21:aa:bb:cc")]["flags"] == [MISMATCH]      # someone has our address
    ll = rows[("fe80::5054:ff:fe67:89b1", "52:54:00:67:89:b1")]
    assert (ll["owner_vmid"], ll["owner_by"], ll["flags"]) == (951, "mac", [])       # link-local, by MAC
    v6 = rows[("fd00::152", "02:00:00:00:01:52")]                                    # any bridge, any VLAN
    assert v6["owner"] == "CT 952 qdrant" and v6["flags"] == [MISMATCH]
    assert ("10.0.0.99", None) not in rows
    assert ("10.0.0.99", None) in {(r["ip"], r["mac"]) for r in rows_for(entries, _owners(),
                                                                       include_unresolved=True)}
    assert [r["family"] for r in rows.values()] == sorted(r["family"] for r in rows.values())


def test_dup_across_devices():
    entries = [neigh.Neighbour("10.0.0.5", 4, "02:00:00:00:00:01", "vmbr0"),
               neigh.Neighbour("10.0.0.5", 4, "02:00:00:00:00:02", "vmbr1")]
    rows = rows_for(entries, Owners())
    assert [r["flags"] for r in rows] == [[DUP, UNCLAIMED]] * 2
    assert answers.exit_code(r["flags"] for r in rows) == 1


def test_link_local_is_per_device():
    """fe80::1 (or 169.254.1.1) on vmbr0 and on vmbr1 are two links' hosts, not a DUP;
    two MACs for it on one device still are."""
    entries = [neigh.Neighbour("fe80::1", 6, "02:00:00:00:00:01", "vmbr0"),
               neigh.Neighbour("fe80::1", 6, "02:00:00:00:00:02", "vmbr1"),
               neigh.Neighbour("169.254.1.1", 4, "02:00:00:00:00:03", "vmbr0"),
               neigh.Neighbour("169.254.1.1", 4, "02:00:00:00:00:04", "vmbr1")]
    rows = rows_for(entries, Owners())
    assert all(DUP not in r["flags"] for r in rows), rows
    assert answers.exit_code(r["flags"] for r in rows) == 0
    same_dev = [neigh.Neighbour("fe80::1", 6, "02:00:00:00:00:01", "vmbr0"),
                neigh.Neighbour("fe80::1", 6, "02:00:00:00:00:02", "vmbr0")]
    assert [r["flags"] for r in rows_for(same_dev, Owners())] == [[DUP, UNCLAIMED]] * 2


def test_neigh_command_in_a_lab(lab, pve, run_cli):
    """The lab host's table, with static entries: nothing is sent by `neigh`."""
    spec = pve.spec(951)
    pve.guest(951, nets={"net0": f"name=eth0,bridge=vmbr0,hwaddr={spec['mac']},ip={spec['cidr']},"
                                 f"ip6=fd00::151/64,type=veth"})
    lab.add_host_address("10.0.0.1/24")
    for args in (["10.0.0.151", "lladdr", spec["mac"]], ["10.0.0.60", "lladdr", "02:00:00:00:00:60"],
                 ["fd00::151", "lladdr", "02:00:00:00:00:99"], ["fe80::1", "lladdr", spec["mac"]]):
        lab.ip(lab.pve, "neigh", "add", *args, "dev", "vmbr0", "nud", "permanent")
    code, out, err = run_cli(lab, "neigh", "--json")
    assert code == 1, err
    doc = json.loads(out)
    assert doc["source"] == "ip"
    rows = {r["ip"]: r for r in doc["rows"]}
    assert rows["10.0.0.151"]["owner"] == f"CT 951 {spec['name']}" and rows["10.0.0.151"]["flags"] == []
    assert rows["10.0.0.60"]["flags"] == ["UNCLAIMED"]
    assert rows["fd00::151"]["flags"] == ["MAC-MISMATCH"] and rows["fd00::151"]["owner_vmid"] == 951
    assert rows["fe80::1"]["owner_by"] == "mac"
    code, out, err = run_cli(lab, "neigh")
    assert code == 1 and "UNCLAIMED" in out and "\033[" not in out and "Traceback" not in err
