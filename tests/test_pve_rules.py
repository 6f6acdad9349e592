"""Configs as Proxmox VE writes and reads them (REFERENCE section 3).

Part one runs the parser over the guest configs Proxmox developers wrote
(../shared/fixtures/pve-configs, SOURCES.md; skipped with a reason where that
directory is absent). Part two holds each rule PVE applies that a lenient
parser misses, on small configs written here, so a clone alone tests them.
"""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from conftest import shared_fixture

from phoenix_hook.checks.check import HostFacts, families, plan_nic
from phoenix_hook.checks.report import NicResult
from phoenix_hook.net import acd
from phoenix_hook.net import lab as labmod
from phoenix_hook.net.hostnet import Link
from phoenix_hook.pve import conffile
from phoenix_hook.pve.guest import merge_pending, parse_config, pending_network_changes, split_sections
from phoenix_hook.settings import Settings

def real_configs() -> list[tuple[str, Path]]:
    d = shared_fixture("pve-configs")
    return [(kind, f) for kind in ("lxc", "qemu") for f in sorted((d / kind).iterdir()) if f.is_file()]


def read(f: Path) -> str:
    return f.read_bytes().decode("utf-8", "replace")


def current_lines(text: str) -> list[str]:
    """A deliberately simple reference: the lines before the first line that starts with '['."""
    out = []
    for line in text.split("\n"):
        if line.startswith("["):
            break
        out.append(line)
    return out


# -- part one: the configs Proxmox developers wrote ---------------------------------------

def test_every_config_listed_in_sources_is_there_and_there_are_198():
    configs = real_configs()
    sources = (shared_fixture("pve-configs") / "SOURCES.md").read_text()
    listed = re.findall(r"^\| (lxc|qemu) \| (\S+) \|", sources, re.M)
    assert sorted((k, n) for k, n in listed) == sorted((k, f.name) for k, f in configs)
    assert len(configs) == 198


def test_every_real_config_parses_and_every_netn_is_accounted_for():
    """Each netN of the current section is a NIC, or (VM) dropped with a note naming it; no
    address comes from anywhere but the current section; nothing raises."""
    seen_static = 0
    for kind, f in real_configs():
        text = read(f)
        g = parse_config(text, 100, kind, node="pve1")
        cur = current_lines(text)
        nets = sorted({m.group(1) for line in cur for m in [re.match(r"(net[0-9]+):", line)] if m})
        got = {n.key for n in g.nics if n.key.startswith("net")}
        dropped = {e.split(":")[0] for e in g.errors if "PVE drops this NIC" in e}
        assert set(nets) == got | dropped, (f.name, nets, got, g.errors)
        assert not (got & dropped)
        cur_text = "\n".join(cur)
        for n in g.nics:
            if n.address:
                seen_static += 1
                assert re.search(rf"(^|[=,]){re.escape(n.address)}/{n.prefixlen}($|[,\s])", cur_text, re.M), \
                    (f.name, n)
            if n.address6:
                assert n.ip6 in cur_text, (f.name, n)
    assert seen_static >= 20


def test_real_configs_with_a_multicast_mac_are_nic_errors():
    """pve-container's tests used 11:22:33:44:55:66 until it was fixed (pve_verify_mac_addr
    refuses a MAC with the I/G bit set): such a container cannot start."""
    old = [f for kind, f in real_configs() if f.name.endswith("@46ea63682ebf")]
    assert len(old) == 2
    for f in old:
        g = parse_config(read(f), 100)
        bad = [n for n in g.nics if n.error]
        assert bad and all("multicast MAC" in n.error and n.address is None for n in bad)
        assert {n.key for n in bad} == {"net0", "net2"}
    fixed = [f for kind, f in real_configs() if f.name == old[0].name.split("@")[0]]
    assert fixed and all(n.error is None for n in parse_config(read(fixed[0]), 100).nics)


_READ = re.compile(r"(net|ipconfig)[0-9]+|name|hostname|template|delete|hookscript")


def _sections(text: str, kind: str):
    """The sections and the values of the keys the parser reads (qemu-server also drops
    values its schema refuses, e.g. 'numa: verify meee~ :)', which phoenix-hook never reads)."""
    cfg = conffile.read(text, kind)

    def keep(sec):
        return None if sec is None else {k: v for k, v in sec.values.items() if _READ.fullmatch(k)}
    return (keep(cfg.current), keep(cfg.pending), {k: keep(s) for k, s in cfg.special.items()},
            {k: keep(s) for k, s in cfg.snapshots.items()})


def test_qemu_server_parse_config_expectations():
    """qemu-server's own test pairs: the input parses to what its expected file holds
    (a second [PENDING] or [special:cloudinit] replaces the first; unknown sections skipped)."""
    configs = dict((f.name, f) for kind, f in real_configs() if kind == "qemu")
    pairs = [(n, n.replace("parse-config-input", "parse-config-expected")) for n in configs
             if "parse-config-input" in n and n.replace("parse-config-input", "parse-config-expected") in configs]
    assert len(pairs) >= 3
    for inp, exp in pairs:
        assert _sections(read(configs[inp]), "qemu") == _sections(read(configs[exp]), "qemu"), inp
    dup = _sections(read(configs[[p for p in pairs if "duplicate-sections" in p[0]][0][0]]), "qemu")
    assert dup[1] == {} and dup[2]["cloudinit"] == {"name": "deb123"}
    assert conffile.read(read(configs[[p for p in pairs if "duplicate-sections" in p[0]][0][0]]), "qemu") \
        .pending.values == {"vga": "qxl"}


def test_raw_lxc_keys_with_colon_and_equals():
    """pve-docs pct.adoc shows raw keys written both ways; both are config, neither is unreadable."""
    docs = [f for kind, f in real_configs() if "pct.adoc__L121" in f.name]
    assert len(docs) == 2
    for f in docs:
        cfg = conffile.read(read(f), "lxc")
        assert cfg.current.raw == [("lxc.init_cmd", "/sbin/my_own_init")] and cfg.current.bad == []


def test_real_vm_rs_config_spaces_after_the_colon():
    f = [f for kind, f in real_configs() if kind == "lxc" and "vm.rs__L544" in f.name][0]
    g = parse_config(read(f), 100)
    assert g.errors == ()
    assert [(n.key, n.address, n.ip6) for n in g.nics] == [
        ("net0", None, "auto"), ("net2", "123.123.123.123", None), ("net5", None, "fd80::1/64")]


# -- part two: each rule, on configs written here ------------------------------------------

def test_lines_split_at_newline_only_the_issue_example():
    """str.splitlines() also splits at \\x1c-\\x1e, \\x85, \\u2028: a searchdomain value must
    never become a net0 (a probe on a bridge and VLAN its owner may not use)."""
    text = ("name: web\n"
            "net0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0\n"
            "ipconfig0: ip=10.0.0.5/24\n"
            "searchdomain: x\x1enet0: virtio=A2:C0:43:67:08:A9,bridge=vmbr9,tag=99"
            "\x1eipconfig0: ip=10.0.0.151/24\n")
    g = parse_config(text, 120, "qemu")
    [n] = g.nics
    assert (n.bridge, n.tag, n.address, n.hwaddr) == ("vmbr0", None, "10.0.0.5", "a2:c0:43:67:08:a1")
    assert g.errors == ()
    for sep in ("\x1c", "\x1d", "\x85", "\u2028", "\u2029", "\r", "\x0b", "\x0c"):
        t = f"hostname: a{sep}net0: name=eth0,bridge=vmbr9,ip=10.9.9.9/24\n"
        assert parse_config(t, 5).nics == (), repr(sep)


def test_crlf_lines_read_as_pve_reads_them():
    """PVE splits at \\n; the \\r left at a line's end is trailing whitespace."""
    g = parse_config("hostname: a\r\nnet0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24\r\n\r\n[snap]\r\n"
                     "net0: name=eth0,bridge=vmbr0,ip=10.0.0.6/24\r\n", 5)
    assert [n.address for n in g.nics] == ["10.0.0.5"] and g.errors == () and g.name == "a"


def test_leading_whitespace_makes_a_line_unreadable_never_a_section():
    text = ("net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24\n"
            " [snap]\n"
            "net1: name=eth1,bridge=vmbr0,ip=10.0.0.6/24\n"
            "\tnet2: name=eth2,bridge=vmbr0,ip=10.0.0.7/24\n")
    g = parse_config(text, 5)
    assert [n.address for n in g.nics] == ["10.0.0.5", "10.0.0.6"]     # net1 is still current
    assert len(g.errors) == 2 and "line 2" in g.errors[0] and "line 4" in g.errors[1]


def test_bad_lines_of_a_snapshot_are_not_the_current_configs():
    """Only the current section's unreadable lines are the guest's problem: a snapshot (or a
    pending section that is not merged) can hold anything."""
    text = ("hostname: a\nnet0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24\n"
            "[snap1]\nthis is not a config line\n  indented: x\n"
            "[pve:pending]\nneither is this\n")
    g = parse_config(text, 5)
    assert g.errors == ()
    assert split_sections(text)[2] == []
    assert parse_config(text.replace("[snap1]\n", ""), 5).errors != ()       # the same line, current


def test_lxc_and_qemu_sections_differ():
    """LXC: [pve:pending] and [name]; anything else is an unreadable line and the section goes
    on. QEMU: [PENDING], [special:cloudinit|fleecing], [name]; an unknown [..] is skipped."""
    body = "net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24\n[special:cloudinit]\nhostname: x\n"
    g = parse_config(body, 5)
    assert g.name == "x" and len(g.errors) == 1 and "[special:cloudinit]" in g.errors[0]
    vm = ("net0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0\nipconfig0: ip=10.0.0.5/24\n"
          "[weird section!]\nnet1: virtio=A2:C0:43:67:08:A2,bridge=vmbr0\n"
          "[PENDING]\nipconfig0: ip=10.0.0.6/24\n")
    g = parse_config(vm, 100, "qemu")
    assert [n.key for n in g.nics] == ["net0"] and g.errors == ()
    assert parse_config(vm, 100, "qemu", with_pending=True).nics[0].address == "10.0.0.6"
    lxc_pending_upper = "net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24\n[PENDING]\nnet0: name=eth0,ip=10.0.0.6/24\n"
    assert not pending_network_changes(lxc_pending_upper, "lxc")       # for LXC a snapshot named PENDING


def test_second_pending_section_replaces_the_first():
    text = ("net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24\nnet1: name=eth1,bridge=vmbr0,ip=10.0.0.6/24\n"
            "[pve:pending]\nnet0: name=eth0,bridge=vmbr0,ip=10.0.0.50/24\n"
            "[pve:pending]\ndelete: net1\n")
    g = parse_config(text, 5, with_pending=True)
    assert [(n.key, n.address) for n in g.nics] == [("net0", "10.0.0.5")]
    assert g.pending


@pytest.mark.parametrize("delete", ["net1;net2", "net1 net2", "net1,\tnet2", " !net1 ; ,net2 "])
def test_pending_delete_list_splits_on_comma_semicolon_and_whitespace(delete):
    merged = merge_pending({"net0": "a", "net1": "b", "net2": "c"}, {"delete": delete})
    assert merged == {"net0": "a"}


def test_unicast_mac_rule():
    for mac, ok in (("52:54:00:67:89:B1", True), ("02:00:00:00:00:01", True), ("AA:AA:AA:F2:FE:75", True),
                    ("01:00:5e:00:00:01", False), ("33:33:00:00:00:01", False), ("ff:ff:ff:ff:ff:ff", False)):
        n = parse_config(f"net0: name=eth0,bridge=vmbr0,hwaddr={mac},ip=10.0.0.5/24\n", 5).nics[0]
        assert (n.error is None) == ok, mac
        v, _ = parse_config(f"net0: virtio={mac},bridge=vmbr0\nipconfig0: ip=10.0.0.5/24\n", 100, "qemu"), None
        assert bool(v.nics) == ok, mac


def test_a_vm_whose_only_nic_pve_drops_starts_even_with_on_error_refuse():
    """The check of such a VM has nothing to probe and nothing it could not check: the hook's
    verdict is not an error, so on_error = refuse has nothing to refuse."""
    from phoenix_hook.checks.check import Options, run_check
    g = parse_config("name: vm\nnet0: virtio=A2:C0:43:67:08:A1,bridge=vmbr\x000\nipconfig0: ip=10.0.0.5/24\n",
                     120, "qemu")
    s = Settings(node="pve1", on_error="refuse")
    report = run_check([g], s, Options(), facts=LINKS, wire_factory=lambda names: pytest.fail("no wire"))
    gr = report.guests[0]
    assert report.verdict == "skipped" and report.exit_code == 0
    assert any("PVE drops this NIC" in n and "\\x00" in n for n in gr.notes)


def test_ipconfig_dhcp_with_gw_yields_no_address():
    """Network.pm parse_ipconfig: gw= with ip=dhcp is refused; the whole ipconfig is ignored,
    its static ip6 too."""
    g = parse_config("net0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0\n"
                     "ipconfig0: ip=dhcp,gw=10.0.0.1,ip6=fd00::5/64\n", 100, "qemu")
    n = g.nics[0]
    assert (n.address, n.address6, n.error) == (None, None, None)
    assert "ipconfig0: gw= together with ip=dhcp" in g.errors[0]


# -- link_down ------------------------------------------------------------------------------

LINKS = HostFacts(links={"vmbr0": Link(name="vmbr0", mac="02:aa:00:00:00:01", up=True, noarp=False,
                                       carrier=True, is_bridge=True, vlan_filtering=False)},
                  macs=frozenset({"02:aa:00:00:00:01"}))


@pytest.mark.parametrize("value", ["1", "yes", "on", "true", "TRUE"])
def test_link_down_nic_is_not_probed_and_says_so(value):
    for text, kind in ((f"net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24,ip6=fd00::5/64,link_down={value}\n", "lxc"),
                       (f"net0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0,link_down={value}\n"
                        f"ipconfig0: ip=10.0.0.5/24\n", "qemu")):
        g = parse_config(text, 100, kind)
        n = g.nics[0]
        assert n.address == "10.0.0.5" and n.error is None      # still configured (audit sees it)
        assert families(n) == (4,)
        r = plan_nic(g, n, Settings(node="pve1"), LINKS)
        assert isinstance(r, NicResult) and r.verdict == "skipped" and "link_down=1" in r.note


def test_link_down_0_is_probed_and_a_bad_value_is_pves_verdict():
    g = parse_config("net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24,link_down=0\n", 5)
    assert isinstance(plan_nic(g, g.nics[0], Settings(node="pve1"), LINKS), acd.Candidate)
    assert "link_down='2'" in parse_config("net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24,link_down=2\n", 5).nics[0].error
    vm = parse_config("net0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0,link_down=2\n", 100, "qemu")
    assert vm.nics == () and "link_down='2'" in vm.errors[0]


# -- raw lxc.net.N NICs ---------------------------------------------------------------------

def test_raw_macvlan_nic_is_read_with_its_address_mac_and_link():
    """The deployment's CT 101 style: a NIC set up by raw keys alone, ':' or '=' written."""
    text = ("hostname: nginx\n"
            "lxc.net.1.type: macvlan\n"
            "lxc.net.1.macvlan.mode = bridge\n"
            "lxc.net.1.link = vmbr0.20\n"
            "lxc.net.1.hwaddr: 02:00:00:00:01:09\n"
            "lxc.net.1.ipv4.address = 172.16.100.10/24\n"
            "lxc.net.1.ipv6.address: fd00::10/64\n")
    g = parse_config(text, 101)
    [n] = g.nics
    assert (n.key, n.bridge, n.hwaddr, n.address, n.prefixlen, n.address6) == (
        "lxc.net.1", "vmbr0.20", "02:00:00:00:01:09", "172.16.100.10", 24, "fd00::10")
    assert n.index == 1 and n.raw and g.errors == ()
    r = plan_nic(g, n, Settings(node="pve1"), LINKS)
    assert isinstance(r, NicResult) and "vmbr0.20 does not exist" in r.note     # probed on its link


def test_raw_keys_override_netn_and_add_their_address():
    """PVE writes lxc.net.0.* for net0 first and the raw lines after them (LXC.pm
    update_lxc_config): raw link and hwaddr win; a raw address is a second address."""
    text = ("net0: name=eth0,bridge=vmbr0.20,hwaddr=02:00:00:00:01:01,ip=dhcp\n"
            "lxc.net.0.type: macvlan\nlxc.net.0.link: vmbr7\n"
            "net1: name=eth1,bridge=vmbr0,ip=10.0.0.5/24\n"
            "lxc.net.1.ipv4.address = 10.0.0.6/24\n"
            "lxc.net.1.ipv4.address = 10.0.0.7/24\n")
    g = parse_config(text, 101)
    assert [(n.key, n.bridge, n.address) for n in g.nics] == [
        ("net0", "vmbr7", None), ("net1", "vmbr0", "10.0.0.5"), ("lxc.net.1", "vmbr0", "10.0.0.6")]
    assert g.nic("net0").hwaddr == "02:00:00:00:01:01"
    assert g.errors == ("lxc.net.1 has 2 ipv4.address lines: only the first is checked",)


def test_raw_address_without_prefix_takes_the_classful_one_and_empty_clears():
    g = parse_config("lxc.net.0.type: veth\nlxc.net.0.link: vmbr0\nlxc.net.0.ipv4.address: 192.168.5.5\n", 5)
    assert (g.nics[0].address, g.nics[0].prefixlen) == ("192.168.5.5", 24)
    g = parse_config("lxc.net.0.type: veth\nlxc.net.0.link: vmbr0\nlxc.net.0.ipv4.address: 10.1.1.1/8\n"
                     "lxc.net.0.ipv4.address =\n", 5)
    assert g.nics[0].address is None and g.nics[0].error is None


@pytest.mark.parametrize("lines, words", [
    (["lxc.net.0.type: bogus"], "type='bogus'"),
    (["lxc.net.0.link: vmbr0"], "type is missing"),
    (["lxc.net.0.type: veth", "lxc.net.0.link: vmbr\x000"], "link='vmbr\\x000'"),
    (["lxc.net.0.type: veth", "lxc.net.0.hwaddr: 01:00:5e:00:00:01"], "multicast"),
    (["lxc.net.0.type: veth", "lxc.net.0.ipv4.address: 10.0.0.300/24"], "ipv4.address='10.0.0.300/24'"),
])
def test_raw_nic_that_liblxc_refuses_is_that_nics_error(lines, words):
    g = parse_config("\n".join(lines) + "\n", 5)
    [n] = g.nics
    assert n.key == "lxc.net.0" and words in n.error and n.address is None


def test_raw_type_empty_or_none_is_not_probed():
    g = parse_config("lxc.net.0.type: empty\nlxc.net.0.ipv4.address: 10.0.0.5/24\n", 5)
    r = plan_nic(g, g.nics[0], Settings(node="pve1"), LINKS)
    assert r.verdict == "skipped" and "type=empty" in r.note


# -- interface names and control characters -------------------------------------------------

@pytest.mark.parametrize("bridge", ["vmbr\x000", "vmbr0\x1e", "vmbr 0", "vmbr0/1", "a" * 16, "vmbr\u00e90"])
def test_bad_bridge_name_is_that_nics_error_naming_it(bridge):
    n = parse_config(f"net0: name=eth0,bridge={bridge},ip=10.0.0.5/24\n", 5).nics[0]
    assert n.error and f"bridge={bridge!r}" in n.error and n.address is None
    assert n.error.isprintable()


def test_control_characters_in_a_value_are_a_malformed_value():
    n = parse_config("net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24\x07\n", 5).nics[0]
    assert n.error and "'10.0.0.5/24\\x07'" in n.error
    g = parse_config("hostname: evil\x1b[31m\nnet0: name=eth\x1b0,bridge=vmbr0,ip=10.0.0.5/24\n", 5)
    assert g.name is None and "name='eth\\x1b0'" in g.nics[0].error


# -- linear time and caps -------------------------------------------------------------------

def test_over_long_lines_are_cut_and_named():
    text = ("hostname: a\nciuser: a" + " " * 60000 + "b\n"
            "net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24," + "x=y," * 6000 + "\n"
            "net1: name=eth1,bridge=vmbr0,ip=10.0.0.6/24\n")
    g = parse_config(text, 5)
    assert g.nic("net1").address == "10.0.0.6"
    assert "its line is" in g.nic("net0").error and g.nic("net0").address is None
    assert any(f"ciuser is {60010} characters long, more than" in e for e in g.errors), g.errors
    vm = parse_config("net0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0\nipconfig0: ip=10.0.0.5/24" +
                      "," * 20000 + "\n", 100, "qemu")
    assert "ipconfig0" in vm.nics[0].error and vm.nics[0].address is None


def test_over_long_file_is_cut_at_a_line_and_named():
    text = "hostname: a\n" + ("#" + "d" * 1000 + "\n") * 1100 + "net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24\n"
    g = parse_config(text, 5)
    assert g.nics == () and "longer than pmxcfs allows" in g.errors[0]


def test_a_file_source_reads_no_more_than_a_config_can_hold(tmp_path):
    from phoenix_hook.pve.files import FileSource
    labmod.write_tree(str(tmp_path), "pve1", {5: "hostname: a\nnet0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24\n"
                                                 + "#" * (conffile.MAX_CONFIG * 3) + "\n"})
    src = FileSource(str(tmp_path), "pve1")
    assert len(src.read(src.locate(5))) == conffile.MAX_CONFIG + 1
    g = src.guest(5)
    assert g.nics[0].address == "10.0.0.5" and "longer than pmxcfs allows" in g.errors[0]


def test_address_never_from_outside_the_current_section_with_raw_keys():
    text = ("lxc.net.0.type: veth\nlxc.net.0.link: vmbr0\n[snap]\nlxc.net.0.ipv4.address: 10.0.0.9/24\n")
    assert all(n.address is None for n in parse_config(text, 5).nics)


def test_every_address_is_a_valid_unicast_host_address():
    text = ("net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24\nlxc.net.1.type: veth\nlxc.net.1.link: vmbr0\n"
            "lxc.net.1.ipv4.address: 10.0.0.6/16\n")
    for n in parse_config(text, 5).nics:
        a = ipaddress.IPv4Address(n.address)
        assert not (a.is_multicast or a.is_loopback or a.is_unspecified)


def test_api_config_keeps_raw_lxc_keys():
    """The API gives raw keys as [[key, value], ...]: a raw NIC is read from the API too."""
    from phoenix_hook.pve.api import config_text
    text = config_text({"hostname": "nginx", "lxc": [["lxc.net.1.type", "macvlan"], ["lxc.net.1.link", "vmbr0"],
                                                     ["lxc.net.1.ipv4.address", "172.16.100.10/24"],
                                                     ["lxc.bad", "x\ny"], "junk", ["lxc.x"]]})
    g = parse_config(text, 101)
    assert [(n.key, n.address) for n in g.nics] == [("lxc.net.1", "172.16.100.10")] and g.errors == ()
