"""The three lease file formats (checks/leasefiles.py), what a lease means (checks/leases.py),
and `phoenix-hook leases`.

The samples are shaped like the files the servers themselves write (the lab
tests in test_leases_lab.py read files written by real dnsmasq, ISC dhcpd and
Kea runs); every parser is fuzzed with arbitrary text.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from phoenix_hook.checks import leasefiles, leases
from phoenix_hook.cli import main as cli
from phoenix_hook.pve.guest import parse_config

NOW = 1_758_100_000          # 2025-09-17T09:06:40Z

DNSMASQ = """\
1758103600 3c:52:82:11:22:33 10.0.0.219 laptop-bob 01:3c:52:82:11:22:33
1758099000 52:54:00:67:89:b9 10.0.0.218 * *
0 52:54:00:67:89:b5 10.0.0.155 model-server *
1758103600 20-00:00:00:00:00:00:00:00 10.0.0.217 ib-node *
duid 00:01:00:01:2c:5f:1e:0a:02:00:00:00:02:54
1758103600 1179023 fd00::219 laptop-bob 00:01:00:01:2c:5f:1e:0b:3c:52:82:11:22:33
1758103600 T77 fd00::21a * 00:02:00:00:ab:11:01:02:03:04:05:06
"""

ISC = """\
# The format of this file is documented in the dhcpd.leases(5) manual page.
# This lease file was written by isc-dhcp-4.4.3-P1

# authoring-byte-order entry is generated, DO NOT DELETE
authoring-byte-order little-endian;

server-duid "\\000\\001\\000\\0012\\240\\347g\\002\\000\\000\\000\\002T";

lease 10.0.0.219 {
  starts 3 2025/09/17 08:00:00;
  ends 3 2025/09/17 20:00:00;
  cltt 3 2025/09/17 08:00:00;
  binding state active;
  next binding state free;
  rewind binding state free;
  hardware ethernet 3c:52:82:11:22:33;
  uid "\\001<R\\202\\021\\"3";
  set vendor-class-identifier = "MSFT 5.0";
  client-hostname "laptop-bob";
}
lease 10.0.0.218 {
  starts 3 2025/09/17 08:00:00;
  ends 3 2025/09/17 20:00:00;
  binding state active;
  hardware ethernet 52:54:0:67:89:b9;
  on commit { set x = "y"; }
}
lease 10.0.0.218 {
  starts 3 2025/09/17 08:30:00;
  ends 3 2025/09/17 08:30:00;
  tstp 3 2025/09/17 08:30:00;
  binding state free;
  hardware ethernet 52:54:0:67:89:b9;
}
lease 10.0.0.216 {
  starts epoch 1758096000; # Wed Sep 17 08:00:00 2025
  ends epoch 1758139200; # Wed Sep 17 20:00:00 2025
  binding state active;
  hardware ethernet 02:00:00:00:02:16;
  client-hostname "printer";
}
lease 10.0.0.215 {
  starts 3 2025/09/17 08:00:00;
  ends never;
  binding state active;
  hardware ethernet 02:00:00:00:02:15;
}
lease 10.0.0.214 {
  starts 3 2025/09/16 08:00:00;
  ends 3 2025/09/16 20:00:00;
  binding state active;
  hardware ethernet 02:00:00:00:02:14;
}
host laptop-static { dynamic; hardware ethernet 02:00:00:00:99:99; fixed-address 10.0.0.99; }
"""

ISC6 = """\
server-duid "\\000\\001\\000\\001)\\213\\027\\223\\002\\000\\000\\000\\002T";

ia-na "\\001\\002\\003\\004\\000\\001\\000\\001)\\213\\027\\224<R\\202\\021\\"3" {
  cltt 3 2025/09/17 08:00:00;
  iaaddr fd00::219 {
    binding state active;
    preferred-life 27000;
    max-life 43200;
    ends 3 2025/09/17 20:00:00;
  }
}
"""

KEA4 = """\
address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context
10.0.0.219,3c:52:82:11:22:33,01:3c:52:82:11:22:33,3600,1758103600,1,0,0,laptop-bob,0,
10.0.0.218,52:54:00:67:89:b9,,3600,1758103600,1,0,0,,0,
10.0.0.218,52:54:00:67:89:b9,,0,1758100000,1,0,0,,0,
10.0.0.217,02:00:00:00:02:17,,3600,1758103600,1,0,0,bad-host,1,
10.0.0.216,02:00:00:00:02:16,,4294967295,1758103600,1,0,0,smith&#x2c office,0,
"""

KEA6 = """\
address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source
fd00::219,00:03:00:01:3c:52:82:11:22:33,3600,1758103600,1,3000,0,1,128,0,0,laptop-bob,,0,,1,0
fd00:1::,00:03:00:01:3c:52:82:11:22:33,3600,1758103600,1,3000,2,1,56,0,0,,,0,,1,0
"""


def by_ip(items):
    return {x.ip: x for x in items}


# -- the formats --------------------------------------------------------------------
def test_dnsmasq_lines_ipv6_after_duid():
    f = leasefiles.parse(DNSMASQ, "/var/lib/misc/dnsmasq.leases")
    assert (f.format, f.bad_lines) == ("dnsmasq", 0)
    got = by_ip(f.leases)
    assert (got["10.0.0.219"].mac, got["10.0.0.219"].hostname, got["10.0.0.219"].expires) == \
        ("3c:52:82:11:22:33", "laptop-bob", 1758103600)
    assert got["10.0.0.218"].hostname is None                     # "*": no name
    assert got["10.0.0.155"].expires is None                      # 0: an infinite lease
    assert got["10.0.0.217"].mac is None                          # not Ethernet (type 0x20)
    assert got["fd00::219"].mac == "3c:52:82:11:22:33"            # from the client's DUID-LLT
    assert got["fd00::21a"].mac is None                           # DUID-EN carries no MAC
    active = by_ip(leases.active([f], NOW))
    assert set(active) == {"10.0.0.219", "10.0.0.155", "10.0.0.217", "fd00::219", "fd00::21a"}


def test_isc_last_block_wins_and_time_forms():
    f = leasefiles.parse(ISC, "/var/lib/dhcp/dhcpd.leases")
    assert (f.format, f.bad_lines) == ("isc", 0)
    got = by_ip(f.leases)
    assert got["10.0.0.219"].hostname == "laptop-bob"
    assert got["10.0.0.219"].expires == 1758139200                 # 2025/09/17 20:00:00 UTC
    assert got["10.0.0.218"].state == "free"                       # released: the later block
    assert got["10.0.0.218"].mac == "52:54:00:67:89:b9"            # "0" padded to "00"
    assert got["10.0.0.216"].expires == 1758139200                 # db-time-format local: epoch
    assert got["10.0.0.215"].expires is None                       # ends never
    assert "10.0.0.99" not in got                                  # a host block is no lease
    active = by_ip(leases.active([f], NOW))
    assert set(active) == {"10.0.0.219", "10.0.0.216", "10.0.0.215"}   # .214 ended yesterday


def test_isc_ipv6_ia_na():
    f = leasefiles.parse(ISC6, "/var/lib/dhcp/dhcpd6.leases")
    assert f.format == "isc"
    [lease] = f.leases
    assert (lease.ip, lease.mac, lease.state, lease.expires) == ("fd00::219", "3c:52:82:11:22:33", "active",
                                                                  1758139200)


def test_kea_last_row_wins_deleted_and_states():
    f = leasefiles.parse(KEA4, "/var/lib/kea/kea-leases4.csv")
    assert (f.format, f.bad_lines) == ("kea", 0)
    got = by_ip(f.leases)
    assert got["10.0.0.218"].state == "deleted"                    # valid_lifetime 0
    assert got["10.0.0.217"].state == "declined"
    assert got["10.0.0.216"].expires is None and got["10.0.0.216"].hostname == "smith, office"
    assert {x.ip for x in leases.active([f], NOW)} == {"10.0.0.219", "10.0.0.216"}


def test_kea_v6_addresses_not_prefixes():
    f = leasefiles.parse(KEA6, "/var/lib/kea/kea-leases6.csv")
    assert f.format == "kea"
    assert [(x.ip, x.mac) for x in f.leases] == [("fd00::219", "3c:52:82:11:22:33")]


@pytest.mark.parametrize("text,fmt", [
    ("", None), ("   \n", None), ("hello world\n", None), ("<html></html>", None),
    ("address,hwaddr,client_id\n", "kea"), ("duid 00:01:00:01\n", "dnsmasq"),
    ("# This lease file was written by isc-dhcp-4.4.3-P1\n", "isc"),
    ("lease 10.0.0.5 {\n}\n", "isc"), ("1758103600 aa:bb:cc:dd:ee:ff 10.0.0.5 x *\n", "dnsmasq"),
])
def test_sniff(text, fmt):
    assert leasefiles.sniff(text) == fmt


def test_bad_lines_are_counted_not_fatal():
    text = DNSMASQ + "garbage here\n1758103600 aa:bb 10.0.0.300 x *\n"
    f = leasefiles.parse(text, "x")
    assert f.format == "dnsmasq" and f.bad_lines == 2 and len(f.leases) == 6
    f = leasefiles.parse(ISC + "lease 10.0.0.999 { ends 3 2025/13/45 99:00:00; }\nlease 10.0.0.7 {\n", "x")
    assert f.format == "isc" and f.bad_lines >= 2


def test_empty_file_is_not_an_error():
    f = leasefiles.parse("", "/var/lib/misc/dnsmasq.leases")
    assert f.format is None and f.empty and f.leases == []


# -- fuzz: arbitrary text never raises, and what comes out is well-formed ------------------
_WORDS = st.sampled_from(["lease", "10.0.0.5", "{", "}", ";", "ends", "never", "epoch", "3", "2025/09/17",
                          "20:00:00", "binding", "state", "active", "hardware", "ethernet",
                          "aa:bb:cc:dd:ee:ff", '"x\\"y"', "ia-na", "iaaddr", "fd00::1", "#", "\n",
                          "client-hostname", "address,hwaddr,valid_lifetime,expire,state", ",", "0",
                          "4294967295", "duid", "*", "T1", "00:01:00:01:00:00:00:00:aa:bb:cc:dd:ee:ff"])
_TEXTS = st.one_of(st.text(max_size=400), st.lists(_WORDS, max_size=80).map(" ".join),
                   st.lists(_WORDS, max_size=80).map("".join))


def _well_formed(items):
    import ipaddress
    for x in items:
        ipaddress.ip_address(x.ip)
        assert x.mac is None or (len(x.mac) == 17 and x.mac == x.mac.lower())
        assert x.expires is None or isinstance(x.expires, int)


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXTS)
def test_fuzz_dnsmasq(text):
    items, bad = leasefiles.parse_dnsmasq(text, "f")
    _well_formed(items)
    assert bad >= 0


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXTS)
def test_fuzz_isc(text):
    items, _bad = leasefiles.parse_isc(text, "f")
    _well_formed(items)


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXTS)
def test_fuzz_kea(text):
    items, _bad = leasefiles.parse_kea(text, "f")
    _well_formed(items)


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXTS, st.integers(min_value=-2**40, max_value=2**40))
def test_fuzz_parse_and_meaning(text, now):
    f = leasefiles.parse(text, "f")
    assert f.format in (None, "dnsmasq", "isc", "kea")
    _well_formed(f.leases)
    rows = leases.rows(leases.active([f], now), [GUESTS[0]])
    for r in rows:
        json.dumps(r.to_json())
        leases.until_words(r.lease.expires, now)


# -- what a lease means -------------------------------------------------------------------
GUESTS = [
    parse_config("hostname: embed-api\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B1,"
                 "ip=10.0.0.219/24,gw=10.0.0.1,ip6=fd00::219/64,type=veth\n", 951, "lxc", "pve1"),
    parse_config("hostname: dhcp-guest\nnet0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B9,ip=dhcp,type=veth\n",
                 958, "lxc", "pve1"),
    parse_config("hostname: own-lease\nnet0: name=eth0,bridge=vmbr0,hwaddr=02:00:00:00:02:16,ip=10.0.0.216/24,"
                 "type=veth\n", 959, "lxc", "pve2"),
    parse_config("template: 1\nhostname: base-template\nnet0: name=eth0,bridge=vmbr0,hwaddr=02:00:00:00:02:15,"
                 "ip=10.0.0.215/24,type=veth\n", 900, "lxc", "pve1"),
]


def test_static_ip_and_guest_flags():
    rows = {r.lease.ip: r for r in leases.rows(leases.active([leasefiles.parse(ISC, "f"), leasefiles.parse(DNSMASQ, "g")],
                                                                   NOW), GUESTS)}
    r = rows["10.0.0.219"]                      # CT 951's static address, leased to a laptop
    assert (r.flags, r.owner, r.owner_vmid, r.owner_nic) == (["STATIC-IP"], "CT 951 embed-api",
                                                             951, "net0")
    assert rows["fd00::219"].flags == ["STATIC-IP"]                # IPv6 too (the laptop's DUID)
    r = rows["10.0.0.216"]                      # CT 959's own address, leased to its own MAC
    assert (r.flags, r.owner_vmid) == (["GUEST"], 959)
    r = rows["10.0.0.215"]                      # a template's address: templates own nothing
    assert (r.flags, r.owner) == ([], None)
    assert leases.exit_code(rows.values()) == 1
    assert leases.exit_code([rows["10.0.0.216"]]) == 0


def test_a_dhcp_guest_lease_is_guest():
    f = leasefiles.parse("1758103600 52:54:00:67:89:b9 10.0.0.218 dhcp-guest *\n", "g")
    [r] = leases.rows(leases.active([f], NOW), GUESTS)
    assert (r.flags, r.owner, r.owner_vmid) == (["GUEST"], "CT 958 dhcp-guest", 958)
    assert set(r.to_json()) == {"ip", "mac", "hostname", "expires", "file", "owner", "owner_vmid", "flags"}
    assert r.to_json()["expires"] == "2025-09-17T10:06:40Z"


def test_audit_findings_name_both_sides():
    rows = leases.rows(leases.active([leasefiles.parse(ISC, "/var/lib/dhcp/dhcpd.leases")], NOW), GUESTS)
    [f] = leases.findings(rows, NOW)
    assert (f.kind, f.ip, f.mac, f.vmids) == ("dhcp-lease", "10.0.0.219", "3c:52:82:11:22:33", [951])
    assert "laptop-bob" in f.detail and "CT 951 net0" in f.detail and "/var/lib/dhcp/dhcpd.leases" in f.detail


def test_until_words(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    import time
    time.tzset()
    try:
        assert leases.until_words(None, NOW) == "with no expiry"
        assert leases.until_words(NOW + 3600, NOW) == "until 10:06"
        assert leases.until_words(NOW + 86400, NOW) == "until 2025-09-18 09:06"
    finally:
        monkeypatch.undo()
        time.tzset()


# -- the command -------------------------------------------------------------------------
def _tree(tmp_path, **settings):
    from phoenix_hook.net.lab import write_tree
    root = tmp_path / "etc-pve"
    write_tree(str(root), "pve1", {951: "hookscript: local:snippets/phoenix-hook.py\nhostname: embed-api\n"
                                        "net0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B1,ip=10.0.0.219/24,"
                                        "gw=10.0.0.1,type=veth\n"})
    conf = tmp_path / "phoenix-hook.conf"
    extra = "".join(f"{k} = {v}\n" for k, v in settings.items())
    conf.write_text(f"[phoenix-hook]\npve_root = {root}\nnode = pve1\nlog_file = {tmp_path}/log\n{extra}")
    return str(conf)


def _cli(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_leases_without_files_is_usage(tmp_path, capsys):
    code, out, err = _cli(["--config", _tree(tmp_path), "leases"], capsys)
    assert code == 2 and out == "" and "dhcp_leases" in err and len(err.strip().splitlines()) == 1


def test_unreadable_and_unknown_files_exit_3(tmp_path, capsys):
    missing = tmp_path / "nope.leases"
    code, _out, err = _cli(["--config", _tree(tmp_path, dhcp_leases=missing), "leases"], capsys)
    assert code == 3 and str(missing) in err and len(err.strip().splitlines()) == 1
    junk = tmp_path / "junk"
    junk.write_text("<html>not a lease file</html>\n")
    code, _out, err = _cli(["--config", _tree(tmp_path), "leases", str(junk)], capsys)
    assert code == 3 and str(junk) in err and "not a dnsmasq, ISC dhcpd or Kea" in err
    code, _out, err = _cli(["--config", _tree(tmp_path, dhcp_leases=missing), "audit"], capsys)
    assert code == 3 and str(missing) in err


def test_relative_path_in_settings_is_a_settings_error(tmp_path, capsys):
    code, _out, err = _cli(["--config", _tree(tmp_path, dhcp_leases="dnsmasq.leases"), "leases"], capsys)
    assert code == 2 and "dhcp_leases" in err and "absolute" in err


def test_leases_json_and_exit_1(tmp_path, capsys):
    import time
    f = tmp_path / "dhcpd.leases"
    f.write_text(ISC.replace("2025/09/17 20:00:00", time.strftime("%Y/%m/%d %H:%M:%S",
                                                                  time.gmtime(time.time() + 3600))))
    conf = _tree(tmp_path, dhcp_leases=f)
    code, out, _err = _cli(["--config", conf, "leases", "--json"], capsys)
    assert code == 1
    doc = json.loads(out)
    assert doc["files"] == [{"file": str(f), "format": "isc", "leases": 5, "bad_lines": 0}]
    row = next(r for r in doc["rows"] if r["ip"] == "10.0.0.219")
    assert row == {"ip": "10.0.0.219", "mac": "3c:52:82:11:22:33", "hostname": "laptop-bob",
                   "expires": row["expires"], "file": str(f), "owner": "CT 951 embed-api",
                   "owner_vmid": 951, "flags": ["STATIC-IP"]}
    code, out, _err = _cli(["--config", conf, "leases"], capsys)
    assert code == 1 and "STATIC-IP: 10.0.0.219 is leased to 3c:52:82:11:22:33" in out
    code, out, _err = _cli(["--config", conf, "audit", "--json"], capsys)
    doc = json.loads(out)
    assert code == 1 and [(x["kind"], x["ip"]) for x in doc["findings"]] == [("dhcp-lease", "10.0.0.219")]
    # the same lease file without the guest's address in it: nothing to say
    f.write_text("")
    code, out, _err = _cli(["--config", conf, "audit"], capsys)
    assert code == 0 and out.startswith("no findings")
