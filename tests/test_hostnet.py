"""hostnet.py: the host's own addresses and links (fib_trie parsed purely; /sys faked in tmp)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoenix_hook.net import hostnet, vendor

REPO = Path(__file__).resolve().parents[1]

# /proc/net/fib_trie of a PVE node with vmbr0 10.0.0.2/24, vmbr1 192.168.50.2/24 and a
# /32 service address 10.0.5.5 on vmbr0; both tables list the same trie (kernel >= 4.x).
FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.0.0.0/21 2 0 2
        +-- 10.0.0.0/24 2 0 2
           +-- 10.0.0.0/30 2 0 2
              |-- 10.0.0.0
                 /24 link UNICAST
              |-- 10.0.0.2
                 /32 host LOCAL
           |-- 10.0.0.255
              /32 link BROADCAST
        |-- 10.0.5.5
           /32 host LOCAL
           /32 link UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.168.50.0/24 2 0 2
        +-- 192.168.50.0/30 2 0 2
           |-- 192.168.50.0
              /24 link UNICAST
           |-- 192.168.50.2
              /32 host LOCAL
        |-- 192.168.50.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.0.0.0/21 2 0 2
        +-- 10.0.0.0/24 2 0 2
           +-- 10.0.0.0/30 2 0 2
              |-- 10.0.0.0
                 /24 link UNICAST
              |-- 10.0.0.2
                 /32 host LOCAL
           |-- 10.0.0.255
              /32 link BROADCAST
        |-- 10.0.5.5
           /32 host LOCAL
           /32 link UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.168.50.0/24 2 0 2
        +-- 192.168.50.0/30 2 0 2
           |-- 192.168.50.0
              /24 link UNICAST
           |-- 192.168.50.2
              /32 host LOCAL
        |-- 192.168.50.255
           /32 link BROADCAST
"""


def test_parse_fib_trie_two_interfaces():
    assert list(hostnet.parse_fib_trie(FIB_TRIE)) == ["10.0.0.2", "10.0.5.5", "192.168.50.2"]


def test_parse_fib_trie_excludes_networks_broadcasts_loopback():
    found = hostnet.parse_fib_trie(FIB_TRIE)
    for not_ours in ("10.0.0.0", "10.0.0.255", "192.168.50.255", "127.0.0.1", "127.0.0.0", "0.0.0.0"):
        assert not_ours not in found


def test_parse_fib_trie_empty_and_garbage():
    assert hostnet.parse_fib_trie("") == {}
    assert hostnet.parse_fib_trie("/32 host LOCAL\n|--\n   /32 host LOCAL\nnonsense") == {}


# -- /sys/class/net, faked in a temporary directory ----------------------------

def _iface(root, name, mac, flags, carrier=None, bridge=None):
    d = root / name
    d.mkdir()
    (d / "address").write_text(mac + "\n")
    (d / "flags").write_text(f"0x{flags:x}\n")
    if carrier is not None:
        (d / "carrier").write_text(f"{carrier}\n")
    if bridge is not None:
        (d / "bridge").mkdir()
        (d / "bridge" / "vlan_filtering").write_text(f"{bridge}\n")


@pytest.fixture
def sysnet(tmp_path, monkeypatch):
    monkeypatch.setattr(hostnet, "SYS_NET", str(tmp_path))
    _iface(tmp_path, "lo", "00:00:00:00:00:00", 0x9, carrier=1)
    _iface(tmp_path, "vmbr0", "02:AA:00:00:00:01", 0x1003, carrier=1, bridge=0)
    _iface(tmp_path, "vmbr1", "02:aa:00:00:00:02", 0x1003, carrier=0, bridge=1)
    _iface(tmp_path, "vmbr2", "02:aa:00:00:00:03", 0x1002, bridge=0)          # down: no carrier file
    _iface(tmp_path, "eno1", "00:1b:21:00:00:01", 0x1083, carrier=1)          # NOARP
    return tmp_path


def test_link_reads_state(sysnet):
    br = hostnet.link("vmbr0")
    assert (br.mac, br.up, br.noarp, br.carrier, br.is_bridge, br.vlan_filtering) == (
        "02:aa:00:00:00:01", True, False, True, True, False)
    aware = hostnet.link("vmbr1")
    assert aware.vlan_filtering and not aware.carrier
    down = hostnet.link("vmbr2")
    assert not down.up and not down.carrier
    nic = hostnet.link("eno1")
    assert nic.noarp and not nic.is_bridge


@pytest.mark.parametrize("name", ["vmbr9", "", "..", ".", "../etc", "vmbr0/../vmbr1"])
def test_link_missing_or_unsafe_name(sysnet, name):
    assert hostnet.link(name) is None


def test_all_macs(sysnet):
    assert hostnet.all_macs() == {"02:aa:00:00:00:01", "02:aa:00:00:00:02", "02:aa:00:00:00:03",
                                  "00:1b:21:00:00:01"}


# -- vendor ----------------------------------------------------------------------

@pytest.mark.parametrize("mac, local", [
    ("16:0d:a0:c0:b9:1b", True),       # 0x16: U/L bit set
    ("02:00:00:00:00:01", True),
    ("bc:24:11:5e:2a:01", False),      # Proxmox's OUI
    ("00:1b:21:12:34:56", False),
    ("52:54:00:67:89:b1", True),       # QEMU's 52:54:00 is locally administered
    ("zz:00:00:00:00:00", False),
])
def test_locally_administered(mac, local):
    assert vendor.locally_administered(mac) is local


def test_describe_locally_administered_never_looks_up_a_vendor():
    assert vendor.vendor("16:0d:a0:c0:b9:1b") is None
    assert vendor.describe("16:0d:a0:c0:b9:1b") == (None, "vendor unknown, locally administered")


def test_vendor_known_oui():
    pytest.importorskip("netaddr")
    v = vendor.vendor("00:1b:21:12:34:56")
    assert v is not None and "intel" in v.lower()
    assert vendor.describe("00:1b:21:12:34:56") == (v, v)


def test_vendor_unregistered_or_garbage():
    pytest.importorskip("netaddr")
    assert vendor.vendor("") is None
    assert vendor.vendor("not a mac") is None
    assert vendor.describe("not a mac") == (None, "vendor unknown")
    assert vendor.describe("fc:ff:ff:00:00:00") == (None, "vendor unknown")   # no such OUI


# /proc/net/route of that node (x86: the be32 addresses print byte-reversed): default
# via 10.0.0.1 on vmbr0, the connected 10.0.0.0/24 and 192.168.50.0/24, a down route,
# and a line too short to read.
PROC_ROUTE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
vmbr0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0
vmbr0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
vmbr1\t0032A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
vmbr2\t0033A8C0\t00000000\t0000\t0\t0\t0\t00FFFFFF\t0\t0\t0
vmbr3\t0034A8C0
"""
IF_INET6 = """\
fd000000000000000000000000000002 05 40 00 80   vmbr0
fe80000000000000be2411fffe000001 05 40 20 80   vmbr0
00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000099 05 40 00 08   vmbr0
"""


@pytest.mark.skipif(__import__("sys").byteorder != "little", reason="the sample is x86's /proc/net/route")
def test_parse_proc_route_on_link_routes_only():
    assert hostnet.parse_proc_route(PROC_ROUTE) == [("vmbr0", "10.0.0.0/24"), ("vmbr1", "192.168.50.0/24")]


def test_parse_if_inet6_networks():
    assert hostnet.parse_if_inet6_networks(IF_INET6) == [("vmbr0", "fd00::/64"), ("vmbr0", "fe80::/64")]


@given(st.text(max_size=300))
def test_route_and_inet6_parsers_never_raise(text):
    assert isinstance(hostnet.parse_proc_route("Iface\n" + text), list)
    assert isinstance(hostnet.parse_if_inet6_networks(text), list)


def test_ip_networks_are_what_ip_addr_says(lab):
    """In a lab namespace: hostnet.ip_networks (from /proc) against `ip -j addr` (neigh.read_addresses)."""
    import json
    import sys
    lab.add_host_address("10.0.0.2/24")
    lab.add_host_address("192.168.77.9/28")
    lab.add_host_address("fd00:77::2/64")
    code = ("import json; from phoenix_hook.net import hostnet, neigh; "
            "mine = sorted(str(n) for n in hostnet.ip_networks('vmbr0')); "
            "ip = sorted({str(a.network) for a in neigh.read_addresses() if a.ifname == 'vmbr0'}); "
            "print(json.dumps([mine, ip]))")
    p = lab.run(lab.pve, [sys.executable, "-c", code], env={"PYTHONPATH": str(REPO), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert p.returncode == 0, p.stderr
    mine, ip = json.loads(p.stdout)
    assert "10.0.0.0/24" in mine and "192.168.77.0/28" in mine and "fd00:77::/64" in mine
    assert mine == ip
