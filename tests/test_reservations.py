"""reservations: DHCP reservations that the target servers really accept.

- dnsmasq: `dnsmasq --test --conf-file=FILE` (Debian package dnsmasq-base);
- ISC dhcpd: `dhcpd -t -cf FILE` (isc-dhcp-server);
- Kea: `kea-dhcp4 -t FILE` (kea-dhcp4-server) and, always, a JSON-schema check.
Each server check is skipped with a reason when its binary is missing, and each
has a negative control, so "accepted" means the server really looked.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import LAB_PLAN

from phoenix_hook.cli import main as cli
from phoenix_hook.net import lab as labmod
from phoenix_hook.checks import reservations
from phoenix_hook.pve.guest import parse_config

FIXTURE = LAB_PLAN        # the deployment's plan shape, guests of our own (tests/data)


def fixture_guests():
    out = []
    for k, v in json.loads(FIXTURE.read_text())["lxc_configs"].items():
        n = v["network_config"]
        out.append(parse_config(f"hostname: {v['name']}\nnet0: name={n['name']},bridge={n['bridge']},gw={n['gw']},"
                                f"hwaddr={v['mac_address']},ip={n['ip']},type=veth\n", int(k), "lxc", "pve1"))
    return out


def cluster():
    """The fixture, a VM on VLAN 30 with two NICs, a template, a DHCP guest, an odd name."""
    extra = [
        parse_config("name: web_120.example\nnet0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0,tag=30\n"
                     "ipconfig0: ip=10.0.30.5/24,gw=10.0.30.1\nnet1: e1000=A2:C0:43:67:08:A2,bridge=vmbr1\n"
                     "ipconfig1: ip=192.168.50.120/24\n", 120, "qemu", "pve2"),
        parse_config("hostname: tmpl\ntemplate: 1\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:09:70,"
                     "ip=10.0.0.170/24\n", 970, "lxc", "pve1"),
        parse_config("hostname: dyn\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:09:71,ip=dhcp\n",
                     971, "lxc", "pve1"),
        parse_config("hostname: --Ünïcode--\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:09:72,"
                     "ip=10.0.0.172/24\n", 972, "lxc", "pve1"),
    ]
    return fixture_guests() + extra


def test_collect():
    rs, skipped = reservations.collect(cluster())
    assert skipped == []
    by = {(r.vmid, r.nic): r for r in rs}
    assert len(rs) == 13 + 2 + 1
    assert (970, "net0") not in by and (971, "net0") not in by          # template, dhcp
    r = by[(951, "net0")]
    assert (r.mac, r.ip, r.hostname, r.subnet) == ("52:54:00:67:89:b1", "10.0.0.151", "embed-api",
                                                   "10.0.0.0/24")
    assert by[(950, "net0")].hostname == "llm-chat"
    assert by[(120, "net0")].hostname == "web-120-example" and by[(120, "net0")].vlan == 30
    assert by[(120, "net1")].hostname == "web-120-example-net1"
    assert by[(972, "net0")].hostname == "n-code"


def test_duplicates_are_skipped_with_reasons_and_names_made_unique():
    gs = fixture_guests()
    gs.append(parse_config("hostname: embed-api\nnet0: name=eth0,bridge=vmbr0,"
                           "hwaddr=52:54:00:67:89:B1,ip=10.0.0.158/24\n", 958, "lxc", "pve1"))
    gs.append(parse_config("hostname: inference\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:09:59,"
                           "ip=10.0.0.157/24\n", 959, "lxc", "pve1"))
    gs.append(parse_config("hostname: inference\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:09:60,"
                           "ip=10.0.0.160/24\n", 960, "lxc", "pve1"))
    gs.append(parse_config("hostname: nomac\nnet0: name=eth0,bridge=vmbr0,ip=10.0.0.161/24\n", 961, "lxc", "pve1"))
    rs, skipped = reservations.collect(gs)
    assert {r.vmid for r in rs}.isdisjoint({951, 958, 957, 959, 961})
    assert len(skipped) == 5
    assert any("CT 951 net0 10.0.0.151: MAC 52:54:00:67:89:b1 is also on CT 958 net0" in s for s in skipped)
    assert any("CT 959 net0 10.0.0.157: the address is also configured on CT 957 net0" in s for s in skipped)
    assert any("CT 961 net0 10.0.0.161: no MAC" in s for s in skipped)
    assert [r.hostname for r in rs if r.vmid == 960] == ["inference"]      # 957 was skipped: no clash left


def test_hostname_clash_gets_the_vmid():
    gs = [parse_config(f"hostname: web\nnet0: name=eth0,hwaddr=52:54:00:00:0{i}:01,ip=10.0.0.{i}/24\n",
                       100 + i, "lxc", "pve1") for i in (1, 2)]
    rs, _ = reservations.collect(gs)
    assert [r.hostname for r in rs] == ["web", "web-102"]


def _same_ip_in_two_vlans():
    return [parse_config("hostname: a\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:10:05,ip=10.0.0.5/24,"
                         "tag=10\n", 105, "lxc", "pve1"),
            parse_config("hostname: b\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:20:05,ip=10.0.0.5/24,"
                         "tag=20\n", 205, "lxc", "pve2"),
            parse_config("hostname: c\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:20:06,ip=10.0.0.6/24,"
                         "tag=20\n", 206, "lxc", "pve2")]


def test_same_ip_in_two_vlans_is_reserved_for_neither():
    """One reservation file feeds one server: it refuses the second reservation of an address,
    whatever the VLANs (dnsmasq: "duplicate dhcp-host IP address"; kea-dhcp4 -t likewise)."""
    rs, skipped = reservations.collect(_same_ip_in_two_vlans())
    assert [r.vmid for r in rs] == [206]
    assert len(skipped) == 2
    assert any(s.startswith("CT 105 net0 10.0.0.5: the address is also configured on CT 205 net0 on pve2, "
                            "VLAN 20") for s in skipped), skipped


def test_same_ip_in_two_vlans_output_is_accepted(tmp_path):
    rs, _ = reservations.collect(_same_ip_in_two_vlans())
    checked = []
    for binary, fmt, argv in [("dnsmasq", "dnsmasq", lambda p: ["--test", f"--conf-file={p}"]),
                              ("kea-dhcp4", "kea", lambda p: ["-t", str(p)])]:
        path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
        if not path:
            continue
        p = tmp_path / f"vlans.{fmt}"
        p.write_text(reservations.render(rs, fmt))
        ok = subprocess.run([path, *argv(p)], capture_output=True, text=True)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        checked.append(binary)
    if not checked:
        pytest.skip("neither dnsmasq nor kea-dhcp4 is installed")


# dnsmasq's own reading of a dhcp-host field without ':' that is not an IPv4 address
# (src/option.c): digits with one s/m/h/d/w suffix (case-insensitive) are a lease time,
# "infinite" too, "ignore" turns DHCP off for the host; anything else is the name.
def _dnsmasq_reads_as_name(field):
    f = field
    if len(f) > 1 and f[-1] in "smhdwSMHDW":
        f = f[:-1]
    if f and all(c.isdigit() or c == " " for c in f) and any(c.isdigit() for c in f):
        return False
    return field not in ("infinite", "ignore")


@pytest.mark.parametrize("name,gtype,expect", [
    ("3600", "lxc", "ct-3600"), ("12h", "qemu", "vm-12h"), ("7", "lxc", "ct-7"), ("2W", "lxc", "ct-2w"),
    ("infinite", "lxc", "ct-infinite"), ("ignore", "qemu", "vm-ignore"), ("-3600-", "lxc", "ct-3600"),
    ("web", "lxc", "web"), ("12hours", "lxc", "12hours"), ("h", "lxc", "h"), ("3600.example", "lxc", "3600-example"),
])
def test_a_name_dnsmasq_would_read_as_a_lease_time_gets_a_prefix(name, gtype, expect):
    g = parse_config(f"{'hostname' if gtype == 'lxc' else 'name'}: {name}\n", 130, gtype, "pve1")
    got = reservations.hostname_for(g, "net0")
    assert got == expect and _dnsmasq_reads_as_name(got)


def test_dnsmasq_gets_the_name_not_a_lease_time(tmp_path):
    gs = [parse_config(f"hostname: {n}\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:00:00:{i:02x},"
                       f"ip=10.0.0.{i}/24\n", 100 + i, "lxc", "pve1")
          for i, n in enumerate(["3600", "12h", "ignore", "infinite"], 1)]
    rs, skipped = reservations.collect(gs)
    assert skipped == []
    text = reservations.render(rs, "dnsmasq")
    fields = [line.split(",")[2] for line in text.splitlines() if line.startswith("dhcp-host=")]
    assert fields == ["ct-3600", "ct-12h", "ct-ignore", "ct-infinite"]
    assert all(_dnsmasq_reads_as_name(f) for f in fields)
    dnsmasq = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
    if dnsmasq:
        p = tmp_path / "names.conf"
        p.write_text(text)
        ok = subprocess.run([dnsmasq, "--test", f"--conf-file={p}"], capture_output=True, text=True)
        assert ok.returncode == 0 and "syntax check OK" in ok.stderr, ok.stderr


def _write(tmp_path, fmt):
    rs, _ = reservations.collect(cluster())
    p = tmp_path / f"reservations.{fmt}"
    p.write_text(reservations.render(rs, fmt))
    return p, rs


def _need(binary):
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if not path:
        pytest.skip(f"{binary} not installed (apt-get install "
                    f"{ {'dnsmasq': 'dnsmasq-base', 'dhcpd': 'isc-dhcp-server', 'kea-dhcp4': 'kea-dhcp4-server'}[binary]})")
    return path


def test_dnsmasq_accepts_it(tmp_path):
    dnsmasq = _need("dnsmasq")
    p, rs = _write(tmp_path, "dnsmasq")
    lines = [x for x in p.read_text().splitlines() if not x.startswith("#")]
    assert len(lines) == len(rs) and "dhcp-host=52:54:00:67:89:b1,10.0.0.151,embed-api" in lines
    ok = subprocess.run([dnsmasq, "--test", f"--conf-file={p}"], capture_output=True, text=True)
    assert ok.returncode == 0 and "syntax check OK" in ok.stderr, ok.stderr
    # negative control: dnsmasq does reject a bad dhcp-host hostname
    bad = tmp_path / "bad.conf"
    bad.write_text("dhcp-host=52:54:00:67:89:b1,10.0.0.151,-bad-\n")
    no = subprocess.run([dnsmasq, "--test", f"--conf-file={bad}"], capture_output=True, text=True)
    assert no.returncode != 0 and "bad DHCP host name" in no.stderr


def test_isc_dhcpd_accepts_it(tmp_path):
    dhcpd = _need("dhcpd")
    p, rs = _write(tmp_path, "isc")
    text = p.read_text()
    assert text.count("host ") == len(rs)
    assert "host ct951-net0 {\n  hardware ethernet 52:54:00:67:89:b1;\n  fixed-address 10.0.0.151;\n" \
           "  option host-name \"embed-api\";\n}" in text
    ok = subprocess.run([dhcpd, "-t", "-cf", str(p)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text("host x { hardware ethernet 52:54:00:67:89:b1; fixed-address 10.0.0.151 }\n")
    assert subprocess.run([dhcpd, "-t", "-cf", str(bad)], capture_output=True).returncode != 0


KEA_SCHEMA = {
    "type": "object", "required": ["Dhcp4"], "additionalProperties": False,
    "properties": {"Dhcp4": {
        "type": "object", "required": ["subnet4"], "additionalProperties": False,
        "properties": {"subnet4": {"type": "array", "items": {
            "type": "object", "required": ["id", "subnet", "reservations"], "additionalProperties": False,
            "properties": {
                "id": {"type": "integer", "minimum": 1, "maximum": 4294967294},
                "subnet": {"type": "string", "pattern": r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$"},
                "reservations": {"type": "array", "items": {
                    "type": "object", "required": ["hw-address", "ip-address"], "additionalProperties": False,
                    "properties": {
                        "hw-address": {"type": "string", "pattern": "^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"},
                        "ip-address": {"type": "string", "format": "ipv4"},
                        "hostname": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"}}}}}}}}}},
}


def test_kea_json_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    p, rs = _write(tmp_path, "kea")
    doc = json.loads(p.read_text())
    jsonschema.validate(doc, KEA_SCHEMA, format_checker=jsonschema.FormatChecker())
    subnets = {s["subnet"]: s for s in doc["Dhcp4"]["subnet4"]}
    assert list(subnets) == ["10.0.0.0/24", "10.0.30.0/24", "192.168.50.0/24"]
    assert sum(len(s["reservations"]) for s in subnets.values()) == len(rs)
    import ipaddress
    for s in subnets.values():                        # every reservation inside its own subnet
        net = ipaddress.IPv4Network(s["subnet"])
        assert all(ipaddress.IPv4Address(r["ip-address"]) in net for r in s["reservations"])


def test_kea_dhcp4_accepts_it(tmp_path):
    kea = _need("kea-dhcp4")
    p, _rs = _write(tmp_path, "kea")
    ok = subprocess.run([kea, "-t", str(p)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Dhcp4": {"subnet4": [{"id": 1, "subnet": "10.0.0.0/24", "reservations": [
        {"hw-address": "52:54:00:67:89:b1", "ip-address": "10.0.1.5"}]}]}}))
    no = subprocess.run([kea, "-t", str(bad)], capture_output=True, text=True)
    assert no.returncode != 0 and "not within the IPv4 subnet" in no.stdout + no.stderr


def test_csv_round_trip(tmp_path):
    p, rs = _write(tmp_path, "csv")
    rows = list(csv.DictReader(io.StringIO(p.read_text())))
    assert list(rows[0]) == ["mac", "ip", "hostname", "vmid", "type", "node", "nic", "vlan"]
    assert len(rows) == len(rs)
    vm = next(r for r in rows if r["vmid"] == "120" and r["nic"] == "net0")
    assert (vm["type"], vm["node"], vm["vlan"], vm["mac"]) == ("qemu", "pve2", "30", "a2:c0:43:67:08:a1")


def test_cli(tmp_path, capsys):
    root = tmp_path / "etc-pve"
    data = json.loads(FIXTURE.read_text())["lxc_configs"]
    cfgs = {}
    for k, v in data.items():
        n = v["network_config"]
        cfgs[int(k)] = (f"hostname: {v['name']}\nnet0: name=eth0,bridge=vmbr0,gw={n['gw']},"
                        f"hwaddr={v['mac_address']},ip={n['ip']},type=veth\n")
    labmod.write_tree(str(root), "pve1", cfgs)
    conf = tmp_path / "s.conf"
    conf.write_text(f"[phoenix-hook]\npve_root = {root}\nnode = pve1\n")
    assert cli.main(["--config", str(conf), "reservations", "--format", "dnsmasq"]) == 0
    out, err = capsys.readouterr()
    assert out.count("dhcp-host=") == 13 and err == ""
    labmod.write_tree(str(root), "pve2", {958: cfgs[951]})        # a clone that kept its MAC
    assert cli.main(["--config", str(conf), "reservations", "--format", "csv"]) == 1
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 + 12                           # header, 14 NICs less the two clones
    assert err.count("phoenix-hook: not reserved: ") == 2 and "MAC 52:54:00:67:89:b1" in err
    with pytest.raises(SystemExit) as ei:
        cli.main(["--config", str(conf), "reservations", "--format", "yaml"])
    assert ei.value.code == 2
