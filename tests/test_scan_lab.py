"""`phoenix-hook scan` on real kernels: one lab of namespaces for the whole module.

Layout (all inside the lab, removed afterwards, also on failure):
  pve    vmbr0 10.0.0.1/24 (this host, node pve1), vmbr1 with no address
  h151   kernel host 10.0.0.151, CT 951's MAC            -> owner CT 951, no flags
  h152   kernel host 10.0.0.152, a stranger's MAC        -> MAC-MISMATCH (CT 952)
  h154   kernel host 10.0.0.154, CT 954's MAC, and
  r154   responder.py answering 10.0.0.154 from another  -> DUP on both rows
         MAC, plus a second one in VLAN 20 for 10.0.0.155 (CT 955, tag=20)
  h157   kernel host 10.0.0.157, CT 957 on node pve2     -> owner from another node
  h120   kernel host 10.0.0.120, VM 120 (QEMU, cloud-init ipconfig0)
  h60    kernel host 10.0.0.60, nobody's                  -> UNCLAIMED
  thief  kernel host holding 10.0.0.1, the host's own     -> owner "host pve1", MAC-MISMATCH
  h9     kernel host 10.0.1.9 on vmbr1                    -> found by 0.0.0.0 probes
  CT 953 (10.0.0.153) has no host: silent. Template 900 (10.0.0.200): neither.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys

import pytest

from phoenix_hook.net import lab as labmod

from conftest import RESPONDER, PveTree

pytestmark = pytest.mark.skipif(labmod.available() is not None, reason=f"scan lab: {labmod.available()}")

STRANGER = "02:00:00:00:01:52"
DUP_MAC = "02:00:00:00:01:54"
THIEF = "02:00:00:00:00:01"
VM120_MAC = "bc:24:11:00:01:20"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tree = PveTree(tmp_path_factory.mktemp("scan"))
    f = tree.fixture
    mac = {v: f[v]["mac_address"].lower() for v in f}
    for vmid in (951, 952, 953, 954):
        tree.guest(vmid)
    tree.guest(955, nets={"net0": f"name=eth0,bridge=vmbr0,hwaddr={mac[955]},ip=10.0.0.155/24,tag=20,type=veth"})
    tree.guest(957, node="pve2")
    tree.guest(900, extra="template: 1\n")
    qemu = tree.root / "nodes" / "pve2" / "qemu-server"
    qemu.mkdir(parents=True)
    (qemu / "120.conf").write_text(f"name: web\nnet0: virtio={VM120_MAC.upper()},bridge=vmbr0\n"
                                   f"ipconfig0: ip=10.0.0.120/24,gw=10.0.0.1\n")
    with labmod.Lab() as lab:
        lab.add_host_address("10.0.0.1/24")
        lab.add_bridge("vmbr1")
        lab.add_host("h151", "10.0.0.151/24", mac[951])
        lab.add_host("h152", "10.0.0.152/24", STRANGER)
        lab.add_host("h154", "10.0.0.154/24", mac[954])
        lab.add_host("h157", "10.0.0.157/24", mac[957])
        lab.add_host("h120", "10.0.0.120/24", VM120_MAC)
        lab.add_host("h60", "10.0.0.60/24")
        lab.add_host("thief", "10.0.0.1/24", THIEF)
        lab.add_host("h9", "10.0.1.9/24", bridge="vmbr1")
        r = lab.add_host("r154", None, DUP_MAC)
        lab.spawn(r, [sys.executable, str(RESPONDER), "--iface", "eth0", "--ip", "10.0.0.154"], ready="ready")
        lab.spawn(r, [sys.executable, str(RESPONDER), "--iface", "eth0", "--ip", "10.0.0.155", "--vlan", "20",
                      "--mac", mac[955]], ready="ready")
        lab.wait_link_ready()
        yield lab, tree, mac
        prefix = lab.prefix
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in out, "lab namespaces left behind"


def cli(world, *args, timeout=30, argv_prefix=()):
    lab, tree, _mac = world
    p = subprocess.run(["ip", "netns", "exec", lab.pve, *argv_prefix, sys.executable, "-m", "phoenix_hook",
                        *args], env=tree.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       cwd="/", timeout=timeout)
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def full(world):
    """The default sweep: vmbr0's own subnet, 10.0.0.0/24, as JSON."""
    code, out, err = cli(world, "scan", "--json")
    return code, json.loads(out), err


def rows(doc):
    return {(r["ip"], r["mac"]): r for r in doc["rows"]}


def test_default_subnet_and_json_shape(full):
    code, doc, _err = full
    assert code == 1                                  # DUP and MAC-MISMATCH below
    assert (doc["cidr"], doc["bridge"], doc["iface"], doc["vlan"], doc["source_ip"]) == \
        ("10.0.0.0/24", "vmbr0", "vmbr0", None, "10.0.0.1")
    assert set(doc) >= {"rows", "silent", "local", "sent", "elapsed_ms"}
    for r in doc["rows"]:
        assert set(r) >= {"ip", "mac", "vendor", "owner", "owner_vmid", "flags"}
        assert isinstance(r["flags"], list)
    assert doc["sent"] >= 256 and 0 < doc["elapsed_ms"] < 5000
    assert doc["local"] == [{"ip": "10.0.0.1", "iface": "vmbr0", "mac": doc["local"][0]["mac"]}]


def test_owners_and_flags(full, world):
    _code, doc, _err = full
    mac = world[2]
    got = rows(doc)
    assert got[("10.0.0.151", mac[951])]["owner"] == "CT 951 embed-api"
    assert got[("10.0.0.151", mac[951])]["flags"] == []
    assert got[("10.0.0.151", mac[951])]["owner_vmid"] == 951
    assert got[("10.0.0.152", STRANGER)]["flags"] == ["MAC-MISMATCH"]
    assert got[("10.0.0.152", STRANGER)]["owner_vmid"] == 952
    assert got[("10.0.0.157", mac[957])]["owner"] == "CT 957 inference"      # node pve2
    assert got[("10.0.0.120", VM120_MAC)]["owner"] == "VM 120 web"
    assert got[("10.0.0.60", next(m for ip, m in got if ip == "10.0.0.60"))]["flags"] == ["UNCLAIMED"]
    assert got[("10.0.0.1", THIEF)]["owner"] == "host pve1"
    assert got[("10.0.0.1", THIEF)]["flags"] == ["MAC-MISMATCH"]


def test_dup_shows_both_macs(full, world):
    _code, doc, _err = full
    mac = world[2]
    got = rows(doc)
    assert got[("10.0.0.154", mac[954])]["flags"] == ["DUP"]
    assert got[("10.0.0.154", DUP_MAC)]["flags"] == ["DUP", "MAC-MISMATCH"]
    assert {m for ip, m in got if ip == "10.0.0.154"} == {mac[954], DUP_MAC}


def test_silent_and_vlan_scoping(full):
    _code, doc, _err = full
    assert [(s["ip"], s["vmid"], s["nic"]) for s in doc["silent"]] == [("10.0.0.153", 953, "net0")]
    assert not any(ip == "10.0.0.155" for ip, _m in rows(doc))           # VLAN 20 only


def test_vlan_sweep(world):
    code, out, err = cli(world, "scan", "10.0.0.152/30", "--vlan", "20", "--json")
    doc = json.loads(out)
    assert code == 0, err
    assert [(r["ip"], r["owner"], r["flags"]) for r in doc["rows"]] == [("10.0.0.155", "CT 955 model-server", [])]
    assert doc["vlan"] == 20 and doc["source_ip"] == "0.0.0.0" and doc["silent"] == []


def test_human_table_exit_0(world):
    code, out, err = cli(world, "scan", "10.0.0.150/31")
    assert code == 0, err
    assert "10.0.0.151" in out and "CT 951 embed-api" in out and "\033[" not in out
    code, out, _err = cli(world, "scan", "10.0.0.60/32")
    assert code == 0 and "UNCLAIMED" in out                               # no conflict: exit 0


def test_csv(world):
    code, out, _err = cli(world, "scan", "10.0.0.152/30", "--csv")
    assert code == 1
    got = list(csv.DictReader(io.StringIO(out)))
    assert list(got[0]) == ["ip", "mac", "vendor", "owner", "owner_vmid", "flags"]
    assert sorted((r["ip"], r["flags"]) for r in got) == [
        ("10.0.0.152", "MAC-MISMATCH"), ("10.0.0.153", "SILENT"), ("10.0.0.154", "DUP"),
        ("10.0.0.154", "DUP MAC-MISMATCH")]
    assert got[-1]["ip"] == "10.0.0.153" and got[-1]["mac"] == ""


def test_bridge_without_address_probes_from_zero(world):
    code, out, err = cli(world, "scan", "10.0.1.0/28", "--bridge", "vmbr1", "--json")
    doc = json.loads(out)
    assert code == 0, err
    assert doc["source_ip"] == "0.0.0.0" and [r["ip"] for r in doc["rows"]] == ["10.0.1.9"]
    assert doc["rows"][0]["flags"] == ["UNCLAIMED"]
    code, _out, err = cli(world, "scan", "--bridge", "vmbr1")
    assert code == 2 and "vmbr1 has no IPv4 address" in err and "10.0.0.0/24" in err


def test_rate_is_kept(world):
    code, out, _err = cli(world, "scan", "10.0.0.0/25", "--rate", "1000", "--retries", "0", "--json")
    doc = json.loads(out)
    assert doc["sent"] == 128
    assert doc["elapsed_ms"] >= (128 - 64) / 1000 * 1000          # at most one burst ahead of the rate


@pytest.mark.parametrize("args,code,words", [
    (["scan", "10.0.0.0/33"], 2, "not an IPv4 network"),
    (["scan", "banana"], 2, "not an IPv4 network"),
    (["scan", "fd00::/64"], 2, "IPv6"),
    (["scan", "10.0.0.0/15"], 2, "--yes"),
    (["scan", "10.0.0.0/8"], 2, "/12"),
    (["scan", "10.0.0.0/8", "--yes"], 2, "/12"),
    (["scan", "10.0.0.0/24", "--rate", "0"], 2, "--rate"),
    (["scan", "10.0.0.0/24", "--vlan", "4095"], 2, "VLAN"),
    (["scan", "10.0.0.0/24", "--json", "--csv"], 2, "not allowed"),
    (["scan", "10.0.0.0/24", "--bridge", "vmbr9"], 3, "bridge vmbr9 does not exist"),
    (["scan", "banana", "--bridge", "vmbr9"], 2, "not an IPv4 network"),   # usage before the bridge
])
def test_usage_and_cannot_scan(world, args, code, words):
    got, out, err = cli(world, *args)
    assert got == code and words in err and out == ""
    assert err.strip().splitlines()[-1].startswith("phoenix-hook: ")     # one line says it all


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv to drop CAP_NET_RAW")
def test_without_raw_sockets_exit_3(world):
    code, out, err = cli(world, "scan", "10.0.0.150/31",
                         argv_prefix=("setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw"))
    assert code == 3 and "raw sockets need root" in err
