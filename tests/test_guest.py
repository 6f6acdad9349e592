"""guest.py: reading PVE guest configs (REFERENCE section 3)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import shared_fixture

from phoenix_hook.pve.guest import (merge_pending, parse_config, parse_props, pending_network_changes,
                                split_sections, with_node)

# REFERENCE section 3, verbatim.
EXAMPLE_951 = """\
arch: amd64
hostname: embed-api
memory: 72000
net0: name=eth0,bridge=vmbr0,firewall=1,gw=10.0.0.1,hwaddr=52:54:00:67:89:B1,ip=10.0.0.151/24,type=veth
net1: name=eth1,bridge=vmbr1,hwaddr=BC:24:11:5E:2A:01,ip=192.168.50.151/24,tag=20,type=veth
ostype: ubuntu
parent: before-upgrade
rootfs: local-lvm:vm-951-disk-0,size=128G

[before-upgrade]
net0: name=eth0,bridge=vmbr0,hwaddr=52:54:00:67:89:B1,ip=10.0.0.99/24,type=veth
snaptime: 1726000000
"""




def lxc(*lines: str) -> str:
    return "\n".join(lines) + "\n"


# -- the REFERENCE example --------------------------------------------------

def test_reference_example_current_section():
    g = parse_config(EXAMPLE_951, 951, node="pve1")
    assert (g.vmid, g.type, g.name, g.node) == (951, "lxc", "embed-api", "pve1")
    assert [n.key for n in g.nics] == ["net0", "net1"]
    net0, net1 = g.nics
    assert (net0.address, net0.prefixlen, net0.bridge, net0.gw) == ("10.0.0.151", 24, "vmbr0", "10.0.0.1")
    assert net0.hwaddr == "52:54:00:67:89:b1"          # lower-cased
    assert net0.name == "eth0" and net0.tag is None and net0.error is None
    assert net0.ip_mode == "static"
    assert str(net0.network) == "10.0.0.0/24"
    assert (net1.address, net1.bridge, net1.tag, net1.hwaddr) == ("192.168.50.151", "vmbr1", 20,
                                                                 "bc:24:11:5e:2a:01")
    assert net1.index == 1
    assert not g.template and not g.pending and g.errors == ()


def test_reference_example_snapshot_never_leaks():
    g = parse_config(EXAMPLE_951, 951)
    assert "10.0.0.99" not in [n.address for n in g.nics]
    assert g.nic("net0").address == "10.0.0.151"
    current, sections, bad = split_sections(EXAMPLE_951)
    assert sections["before-upgrade"]["net0"].endswith("ip=10.0.0.99/24,type=veth")
    assert "snaptime" not in current and bad == []


def test_snapshot_before_current_keys_is_still_a_snapshot():
    # Everything after the first [section] is not current, even a netN the current lacks.
    text = lxc("hostname: a", "net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24",
               "[snap1]", "net1: name=eth1,bridge=vmbr0,ip=10.0.0.6/24")
    g = parse_config(text, 5)
    assert [n.key for n in g.nics] == ["net0"]


# -- pending, cloud-init ----------------------------------------------------

PENDING = lxc(
    "hostname: ct",
    "net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24",
    "net1: name=eth1,bridge=vmbr0,ip=10.0.0.6/24",
    "",
    "[pve:pending]",
    "net0: name=eth0,bridge=vmbr0,ip=10.0.0.50/24",
    "delete: net1",
)


def test_pending_ignored_by_default():
    g = parse_config(PENDING, 5)
    assert [(n.key, n.address) for n in g.nics] == [("net0", "10.0.0.5"), ("net1", "10.0.0.6")]
    assert not g.pending


def test_pending_merged_with_delete():
    g = parse_config(PENDING, 5, with_pending=True)
    assert [(n.key, n.address) for n in g.nics] == [("net0", "10.0.0.50")]
    assert g.pending
    assert pending_network_changes(PENDING)


def test_pending_without_network_change_is_not_flagged():
    text = lxc("net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24", "[pve:pending]", "memory: 4096")
    g = parse_config(text, 5, with_pending=True)
    assert not g.pending and g.nic("net0").address == "10.0.0.5"
    assert not pending_network_changes(text)


def test_pending_force_delete_and_list():
    merged = merge_pending({"net0": "a", "net1": "b", "net2": "c", "memory": "1"},
                           {"delete": "net1, !net2", "memory": "2"})
    assert merged == {"net0": "a", "memory": "2"}


def test_qemu_pending_section_name():
    text = lxc("net0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0", "ipconfig0: ip=10.0.30.5/24",
               "[PENDING]", "ipconfig0: ip=10.0.30.6/24",
               "[pve:pending]", "ipconfig0: ip=10.0.30.7/24")
    assert parse_config(text, 100, "qemu", with_pending=True).nics[0].address == "10.0.30.6"
    assert parse_config(text, 100, "qemu").nics[0].address == "10.0.30.5"


def test_special_cloudinit_section_ignored():
    text = lxc("name: vm", "net0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0", "ipconfig0: ip=10.0.30.5/24",
               "[special:cloudinit]", "ipconfig0: ip=10.0.30.99/24", "net0: virtio=A2:C0:43:67:08:A1,bridge=vmbr9")
    g = parse_config(text, 100, "qemu")
    assert (g.nics[0].address, g.nics[0].bridge) == ("10.0.30.5", "vmbr0")
    assert g.name == "vm"


# -- keys, numbering, ip modes ---------------------------------------------

def test_unknown_keys_and_lxc_raw_keys_do_not_break():
    text = lxc("lxc.apparmor.profile: unconfined", "lxc.cgroup2.devices.allow: c 195:* rwm",
               "futurekey: whatever", "features: nesting=1,keyctl=1",
               "net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24,host-managed=1,newfangled=yes,mtu=9000,rate=10")
    g = parse_config(text, 5)
    assert g.nic("net0").address == "10.0.0.5" and g.nic("net0").error is None
    assert g.errors == ()


def test_unreadable_current_line_is_a_guest_error_not_a_crash():
    g = parse_config(lxc("this is not a key value line", "net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24"), 5)
    assert g.nic("net0").address == "10.0.0.5"
    assert len(g.errors) == 1 and "this is not a key value line" in g.errors[0]


def test_net0_to_net31_only_sorted_numerically():
    lines = [f"net{i}: name=eth{i},bridge=vmbr0,ip=10.0.1.{i + 1}/24" for i in (31, 32, 2, 10, 0)]
    g = parse_config(lxc(*lines), 5)
    assert [n.key for n in g.nics] == ["net0", "net2", "net10", "net31"]
    assert "10.0.1.33" not in [n.address for n in g.nics]


@pytest.mark.parametrize("ip, mode", [("dhcp", "dhcp"), ("manual", "manual"), (None, "none")])
def test_non_static_ip_modes_have_no_address(ip, mode):
    value = "name=eth0,bridge=vmbr0" + (f",ip={ip}" if ip else "")
    n = parse_config(lxc(f"net0: {value}"), 5).nics[0]
    assert n.ip_mode == mode and n.address is None and n.error is None and n.network is None


def test_ip6_values_are_kept_and_never_break_ipv4():
    n = parse_config(lxc("net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24,ip6=fd00::5/64,gw6=fd00::1"), 5).nics[0]
    assert (n.address, n.ip6) == ("10.0.0.5", "fd00::5/64")
    for v in ("auto", "dhcp", "manual"):
        n = parse_config(lxc(f"net0: name=eth0,bridge=vmbr0,ip6={v}"), 5).nics[0]
        assert n.ip6 == v and n.address is None and n.error is None


def test_tag_and_trunks():
    g = parse_config(lxc("net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24,tag=4094,trunks=10;20;30",
                         "net1: name=eth1,bridge=vmbr0,ip=10.0.0.6/24,trunks=10;20"), 5)
    assert g.nic("net0").tag == 4094 and g.nic("net0").error is None
    assert g.nic("net1").tag is None and g.nic("net1").error is None


# -- malformed values: an error naming key and value, and no address ------

@pytest.mark.parametrize("extra, key, value", [
    ("hwaddr=52:54:00:67:89", "hwaddr", "52:54:00:67:89"),
    ("hwaddr=zz:54:00:67:89:b1", "hwaddr", "zz:54:00:67:89:b1"),
    ("tag=0", "tag", "0"),
    ("tag=4095", "tag", "4095"),
    ("tag=abc", "tag", "abc"),
    ("tag=\u00b2", "tag", "\u00b2"),              # isdigit() but not int()-able
    ("gw=10.0.0.256", "gw", "10.0.0.256"),
])
def test_malformed_value_is_nic_error_without_address(extra, key, value):
    n = parse_config(lxc(f"net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24,{extra}"), 5).nics[0]
    assert n.error and f"{key}={value!r}" in n.error
    assert n.address is None and n.ip_mode == "invalid" and n.network is None


@pytest.mark.parametrize("ip", ["10.0.0.5", "10.0.0.5/33", "10.0.0.300/24", "10.0.0.5/", "fd00::1/64",
                                "0.0.0.0/0", "224.0.0.1/4", "10.0.0.5/7", "10.0.0.5/0",
                                "10.0.0.5/\u0662\u0664", "010.0.0.5/24", "static", "DHCP"])
def test_malformed_ip_is_nic_error(ip):
    """pve-ipv4-config: dhcp, manual or IPv4/CIDR with a prefix of 8 to 32 (pve_verify_cidrv4)."""
    n = parse_config(lxc(f"net0: name=eth0,bridge=vmbr0,ip={ip}"), 5).nics[0]
    assert n.error and f"ip={ip!r}" in n.error
    assert n.address is None


@pytest.mark.parametrize("ip, words", [("127.0.0.1/8", "loopback"), ("255.255.255.255/32", "broadcast"),
                                       ("224.0.0.1/8", "multicast"), ("0.0.0.0/8", "0.0.0.0/8"),
                                       ("240.0.0.1/24", "reserved")])
def test_valid_ip_that_is_no_host_address_is_not_probed_and_no_error(ip, words):
    """PVE accepts these, so the container starts: not an error (on_error = refuse would refuse a
    start PVE allows), and never probed."""
    n = parse_config(lxc(f"net0: name=eth0,bridge=vmbr0,ip={ip}"), 5).nics[0]
    assert n.error is None and n.address is None and n.ip_mode == "unusable"
    assert words in n.note4 and ip in n.note4


def test_missing_name_is_an_error():
    n = parse_config(lxc("net0: bridge=vmbr0,ip=10.0.0.5/24"), 5).nics[0]
    assert n.error == "name= is missing" and n.address is None


def test_one_bad_nic_does_not_hide_the_others():
    g = parse_config(lxc("net0: name=eth0,bridge=vmbr0,ip=bogus", "net1: name=eth1,bridge=vmbr0,ip=10.0.0.6/24"), 5)
    assert g.nic("net0").error and g.nic("net1").address == "10.0.0.6"


# -- description, spacing, line endings, template --------------------------

def test_description_lines_are_not_config():
    text = lxc("#net0: name=eth0,bridge=vmbr0,ip=10.0.0.77/24", "#  [snapshot-like] header in text",
               "net0: name=eth0,bridge=vmbr0,ip=10.0.0.5/24", "# hostname: nope", "hostname: real")
    g = parse_config(text, 5)
    assert [n.address for n in g.nics] == ["10.0.0.5"] and g.name == "real" and g.errors == ()


def test_spacing_as_pve_reads_it():
    """parse_pct_config: patterns anchored at the line start, the key right before ':',
    whitespace after ':' and at the end stripped; inside property strings nothing is stripped."""
    text = ("   hostname: indented\n"            # leading whitespace: unreadable
            "hostname :spaced-key\n"             # space before ':': unreadable
            "hostname:\t  fine  \t\n"
            "net0:name=eth0,bridge=vmbr0,ip=10.0.0.5/24,tag=7  \n"
            "net1: name=eth1, bridge=vmbr0,ip=10.0.0.6/24\n"   # " bridge": a key PVE does not know
            "net2: name=eth2,bridge= vmbr0,ip=10.0.0.7/24\n\n\n")
    g = parse_config(text, 5)
    assert g.name == "fine"
    n0, n1, n2 = g.nics
    assert (n0.name, n0.bridge, n0.address, n0.tag) == ("eth0", "vmbr0", "10.0.0.5", 7)
    assert n1.bridge is None and n1.address == "10.0.0.6"      # no bridge: nothing to probe on
    assert "bridge=' vmbr0'" in n2.error and n2.address is None
    assert len(g.errors) == 2 and "'   hostname: indented'" in g.errors[0] and "line 1" in g.errors[0]
    assert "'hostname :spaced-key'" in g.errors[1] and "line 2" in g.errors[1]


def test_crlf_line_endings():
    text = EXAMPLE_951.replace("\n", "\r\n")
    g = parse_config(text, 951)
    assert [n.address for n in g.nics] == ["10.0.0.151", "192.168.50.151"]
    assert g.nics[0].bridge == "vmbr0" and g.errors == ()


def test_template_flag_and_hookscript():
    g = parse_config(lxc("template: 1", "hookscript: local:snippets/phoenix-hook.py",
                         "net0: name=eth0,bridge=vmbr0,ip=10.0.0.200/24"), 900)
    assert g.template and g.hookscript == "local:snippets/phoenix-hook.py"
    assert not parse_config(lxc("template: 0"), 900).template


def test_empty_config_and_label():
    g = parse_config("", 7)
    assert g.nics == () and g.name is None and g.label == "CT 7"
    assert parse_config("", 7, "qemu").label == "VM 7"
    assert with_node(g, "pve2").node == "pve2"


# -- QEMU ------------------------------------------------------------------

def test_qemu_reference_lines():
    text = lxc("name: web", "net0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0,firewall=1,tag=30",
               "ipconfig0: ip=10.0.30.5/24,gw=10.0.30.1")
    g = parse_config(text, 100, "qemu")
    n = g.nics[0]
    assert g.name == "web" and g.type == "qemu"
    assert (n.name, n.hwaddr, n.bridge, n.tag) == ("virtio", "a2:c0:43:67:08:a1", "vmbr0", 30)
    assert (n.address, n.prefixlen, n.gw) == ("10.0.30.5", 24, "10.0.30.1")


def test_qemu_ipconfig_paired_by_index():
    text = lxc("net0: e1000=A2:C0:43:67:08:A0,bridge=vmbr0", "net2: virtio=A2:C0:43:67:08:A2,bridge=vmbr1",
               "ipconfig2: ip=10.0.2.5/24,ip6=fd00::5/64", "ipconfig0: ip=dhcp", "ipconfig1: ip=10.0.1.5/24")
    g = parse_config(text, 100, "qemu")
    assert [(n.key, n.name, n.ip_mode, n.address) for n in g.nics] == [
        ("net0", "e1000", "dhcp", None), ("net2", "virtio", "static", "10.0.2.5")]
    assert g.nic("net2").ip6 == "fd00::5/64"


def test_qemu_model_macaddr_form():
    n = parse_config(lxc("net0: model=virtio,macaddr=A2:C0:43:67:08:A1,bridge=vmbr0",
                         "ipconfig0: ip=10.0.30.5/24"), 100, "qemu").nics[0]
    assert (n.name, n.hwaddr, n.address) == ("virtio", "a2:c0:43:67:08:a1", "10.0.30.5")


def test_qemu_bare_model_without_mac():
    n = parse_config(lxc("net0: virtio,bridge=vmbr0", "ipconfig0: ip=10.0.30.5/24"), 100, "qemu").nics[0]
    assert n.name == "virtio" and n.hwaddr is None and n.address == "10.0.30.5" and n.error is None


def test_qemu_without_ipconfig_has_no_address():
    g = parse_config(lxc("net0: virtio=A2:C0:43:67:08:A1,bridge=vmbr0"), 100, "qemu")
    assert g.nics[0].ip_mode == "none" and g.nics[0].address is None and g.nics[0].error is None


def test_qemu_netn_pve_drops_is_dropped_with_a_note_not_an_error():
    """qemu-server parse_vm_config drops a netN (or ipconfigN) whose value does not parse, and
    the VM starts without it: no NIC error, so on_error = refuse cannot refuse that start."""
    g = parse_config(lxc("net0: virtio=nope,bridge=vmbr0", "ipconfig0: ip=10.0.30.5/24",
                         "net1: bridge=vmbr0", "ipconfig1: ip=10.0.30.6/24",
                         "net2: virtio=A2:C0:43:67:08:A1,bridge=vmbr0", "ipconfig2: ip=10.0.30.7/24,gw=x",
                         "net3: virtio=A2:C0:43:67:08:A3,bridge=vmbr\x000", "ipconfig3: ip=10.0.30.8/24",
                         "net4: virtio=03:C0:43:67:08:A4,bridge=vmbr0", "ipconfig4: ip=10.0.30.9/24",
                         "net5: virtio=A2:C0:43:67:08:A5,bridge=vmbr0,tag=4095", "ipconfig5: ip=10.0.30.10/24",
                         "net6: virtio=A2:C0:43:67:08:A6,bridge=vmbr0", "ipconfig6: ip=dhcp,gw=10.0.30.1",
                         "net7: virtio=A2:C0:43:67:08:A7,bridge=vmbr0", "ipconfig7: ip=10.0.30.11/24"),
                     100, "qemu")
    assert [n.key for n in g.nics] == ["net2", "net6", "net7"]
    assert all(n.error is None for n in g.nics)
    assert g.nic("net2").address is None and g.nic("net6").address is None      # ipconfig ignored
    assert g.nic("net7").address == "10.0.30.11"
    text = "\n".join(g.errors)
    for needle in ("net0: macaddr='nope'", "net1: no NIC model", "ipconfig2: gw='x'",
                   "net3: bridge='vmbr\\x000'", "net4: macaddr='03:C0:43:67:08:A4' is a multicast",
                   "net5: tag='4095'", "ipconfig6: gw= together with ip=dhcp"):
        assert needle in text, (needle, text)
    assert "PVE drops this NIC and starts the VM without it" in text
    assert "\x00" not in text                                  # the NUL is shown escaped


def test_lxc_ipconfig_is_not_used():
    g = parse_config(lxc("net0: name=eth0,bridge=vmbr0", "ipconfig0: ip=10.0.0.5/24"), 5)
    assert g.nics[0].address is None


# -- parse_props -----------------------------------------------------------

def test_parse_props():
    """JSONSchema parse_property_string: nothing stripped, blank parts skipped, the first '='
    splits; a value without key only where the format has a default key."""
    assert parse_props("a=1, b = 2,,  ,c=3") == {"a": "1", " b ": " 2", "c": "3"}
    assert parse_props("virtio,bridge=vmbr0", default_key="model") == {"model": "virtio", "bridge": "vmbr0"}
    assert parse_props("x=a=b") == {"x": "a=b"}
    assert parse_props("") == {}


@pytest.mark.parametrize("value, words", [("a=1,c", "'c' has no key"), ("a=1,a=2", "a= is given twice"),
                                          ("a=", "no key or no value"), ("=1", "no key or no value")])
def test_property_string_errors(value, words):
    from phoenix_hook.pve.values import property_string
    _, err = property_string(value)
    assert words in err


# -- the real fixture ------------------------------------------------------

def _fixture_configs():
    return json.loads(shared_fixture("phoenix_lxc_configs.json").read_text())["lxc_configs"]


def _as_lxc_conf(c: dict) -> str:
    nc = c["network_config"]
    return lxc(
        "arch: amd64",
        f"cores: {c.get('cores', 1)}",
        f"hostname: {c['name']}",
        f"memory: {c.get('memory_mb', 512)}",
        f"net0: name={nc['name']},bridge={nc['bridge']},gw={nc['gw']},hwaddr={c['mac_address']},"
        f"ip={nc['ip']},type=veth",
        "ostype: ubuntu",
        f"rootfs: {c.get('storage_pool', 'local-lvm')}:vm-disk-0,size={c.get('storage_size_gb', 8)}G",
        f"unprivileged: {int(bool(c.get('unprivileged', True)))}",
    )


def test_fixture_every_container_parses():
    configs = _fixture_configs()
    assert configs
    seen = set()
    for vmid, c in configs.items():
        g = parse_config(_as_lxc_conf(c), int(vmid), node="pve1")
        n = g.nic("net0")
        assert n is not None and n.error is None, (vmid, n)
        assert g.name == c["name"]
        assert n.address == c["network_config"]["ip"].split("/")[0]
        assert n.hwaddr == c["mac_address"].lower()
        assert n.bridge == c["network_config"]["bridge"] and n.gw == c["network_config"]["gw"]
        seen.add(n.address)
    assert len(seen) == len(configs)      # the fixture's addresses are distinct
