"""Property tests: the parsers never crash and never invent an address (no false conflicts)."""
from __future__ import annotations

import ipaddress
import re

from hypothesis import HealthCheck, example, given, settings, strategies as st

from phoenix_hook.net import arp
from phoenix_hook import settings as ph_settings
from phoenix_hook.pve import conffile
from phoenix_hook.pve.guest import parse_config, parse_props
from phoenix_hook.pve.values import property_string

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# PVE's section lines (conffile.py), restated: LXC knows [pve:pending] and [name]; QEMU any [..]
_LXC_SECTION = re.compile(r"\[(?i:pve:pending|[a-z][a-z0-9_\-]+)\][ \t\r\f\v]*")
_QEMU_SECTION = re.compile(r"\[[^\]]*\][ \t\r\f\v]*")


def _is_section(line: str, gtype: str) -> bool:
    return bool((_LXC_SECTION if gtype == "lxc" else _QEMU_SECTION).fullmatch(line))


def current_text(text: str, gtype: str = "lxc") -> str:
    """The text before the first [section] line: the only place an address may come from.
    Lines split at "\n" only, as PVE splits them."""
    out = []
    for line in text.split("\n"):
        if _is_section(line, gtype):
            break
        out.append(line)
    return "\n".join(out)


def section_text(text: str, name: str, gtype: str = "lxc") -> str:
    out, inside = [], False
    for line in text.split("\n"):
        if _is_section(line, gtype):
            inside = line.rstrip(" \t\r\f\v")[1:-1].lower() == name.lower()
            continue
        if inside:
            out.append(line)
    return "\n".join(out)


def check_no_invented_address(g, allowed_text: str):
    """Every address comes from the allowed text, is a unicast host address, and every message
    is printable (control characters escaped): nothing for a false conflict, nothing to mangle
    a task log."""
    for n in g.nics:
        assert (n.key.startswith("net") and 0 <= n.index <= 31) or n.key.startswith("lxc.net.")
        assert all(x is None or x.isprintable() for x in (n.error, n.skip, n.note4, n.note6))
        if n.error or n.address is None:
            assert n.address is None or not n.error
            assert n.address6 is None or not n.error
            continue
        assert n.ip_mode == "static"
        a = ipaddress.IPv4Address(n.address)
        assert not (a.is_unspecified or a.is_multicast or a.is_loopback or a.is_reserved)
        assert n.address in allowed_text
        assert 8 <= n.prefixlen <= 32 or n.key.startswith("lxc.net.")
        assert n.tag is None or 1 <= n.tag <= 4094
        assert n.bridge is None or (n.bridge.isascii() and n.bridge.isprintable() and len(n.bridge) <= 15)
        assert n.hwaddr is None or int(n.hwaddr[:2], 16) & 1 == 0
    assert all(e.isprintable() for e in g.errors)
    assert g.name is None or g.name.isprintable()


# -- arbitrary text ------------------------------------------------------------

@FAST
@given(st.text(), st.sampled_from(["lxc", "qemu"]), st.booleans())
def test_parse_config_never_raises_on_any_text(text, gtype, with_pending):
    g = parse_config(text, 100, gtype, with_pending=with_pending)
    allowed = current_text(text, gtype)
    if with_pending:
        allowed += "\n" + section_text(text, "pve:pending" if gtype == "lxc" else "PENDING", gtype)
    check_no_invented_address(g, allowed)


# -- config-shaped text ----------------------------------------------------------

octet = st.integers(0, 255)
ipv4 = st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", octet, octet, octet, octet)
hexbyte = st.integers(0, 255).map(lambda b: f"{b:02X}")
mac = st.one_of(st.lists(hexbyte, min_size=6, max_size=6).map(":".join),
                st.text("0123456789abcdefxyz:-", max_size=20))
junk = st.text(alphabet=st.characters(blacklist_characters="\n\r,=", blacklist_categories=("Cs",)),
               max_size=12)
ip_value = st.one_of(
    st.builds(lambda a, p: f"{a}/{p}", ipv4, st.integers(-1, 40)),
    ipv4,
    st.sampled_from(["dhcp", "manual", "auto", "", "10.0.0.1/24/24", "10.0.0.1/\u00b2\u2074"]),
    junk,
)
tag_value = st.one_of(st.integers(-2, 5000).map(str), junk, st.just("\u00b2"))
prop = st.one_of(
    st.tuples(st.just("name"), st.sampled_from(["eth0", "eth1", ""])),
    st.tuples(st.just("bridge"), st.sampled_from(["vmbr0", "vmbr1", ""])),
    st.tuples(st.just("hwaddr"), mac),
    st.tuples(st.just("macaddr"), mac),
    st.tuples(st.sampled_from(["virtio", "e1000", "model"]), mac),
    st.tuples(st.just("ip"), ip_value),
    st.tuples(st.just("gw"), st.one_of(ipv4, junk)),
    st.tuples(st.just("ip6"), st.sampled_from(["auto", "dhcp", "fd00::5/64", "junk"])),
    st.tuples(st.just("tag"), tag_value),
    st.tuples(st.just("trunks"), st.sampled_from(["10;20", "", "x"])),
    st.tuples(junk, junk),
)
prop_string = st.lists(prop, max_size=8).map(lambda ps: ",".join(f"{k}={v}" for k, v in ps))
key = st.one_of(st.integers(0, 40).map(lambda i: f"net{i}"), st.integers(0, 40).map(lambda i: f"ipconfig{i}"),
                st.sampled_from(["hostname", "name", "template", "delete", "lock", "lxc.idmap", "Net0", "net"]))
ctrl = st.sampled_from(["\x00", "\x1b[31m", "\x1c", "\x1e", "\x85", "\u2028", "\r", "\x0b", "\t", " "])
raw_sub = st.sampled_from(["type", "link", "hwaddr", "name", "ipv4.address", "ipv6.address", "vlan.id",
                           "flags", "macvlan.mode", "bogus"])
raw_value = st.one_of(st.sampled_from(["veth", "macvlan", "empty", "none", "phys", "vlan", "vmbr0", "vmbr0.20",
                                       "02:00:00:00:01:01", "01:00:5e:00:00:01", "00:16:3e:xx:xx:xx",
                                       "10.0.0.7/24", "10.0.0.7", "192.168.1.5/24 192.168.1.255", "fd00::7/64",
                                       "127.0.0.1/8", "", "20", "up"]), ip_value, junk)
raw_line = st.builds(lambda i, sub, sep, v: f"lxc.net.{i}.{sub}{sep}{v}", st.integers(0, 3), raw_sub,
                     st.sampled_from([": ", ":", " = ", "=", "\t=", " : "]), raw_value)
line = st.one_of(
    st.builds(lambda k, sep, v: f"{k}{sep}{v}", key, st.sampled_from([": ", ":", " : ", ":\t", " "]), prop_string),
    raw_line,
    st.builds(lambda k, v, c, w: f"{k}: {v}{c}{w}", key, prop_string, ctrl, prop_string),
    st.builds(lambda v: f"net0: {v},link_down=1", prop_string),
    st.builds(lambda v: f"delete: {v}", st.lists(key, max_size=3).map(",".join)),
    st.sampled_from(["[pve:pending]", "[PENDING]", "[special:cloudinit]", "[snap1]", "[ bad", "#net0: ip=10.9.9.9/24",
                     "", "   ", "template: 1"]),
    junk,
)
config_text = st.builds(lambda ls, nl: nl.join(ls), st.lists(line, max_size=25),
                        st.sampled_from(["\n", "\r\n", "\n ", "\x1e", "\u2028"]))


@FAST
@given(config_text, st.sampled_from(["lxc", "qemu"]), st.booleans())
@example("net0: name=eth0,bridge=vmbr0,ip=10.0.0.1/24,tag=\u00b2", "lxc", False)
@example("net0: name=eth0,bridge=vmbr0,ip=10.0.0.1/24,hwaddr=xx", "lxc", False)
@example("net0: virtio=zz,bridge=vmbr0\nipconfig0: ip=10.0.0.1/24", "qemu", False)
@example("net0: name=eth0,ip=10.0.0.1/24\n[pve:pending]\nnet1: name=eth1,ip=10.0.0.2/24", "lxc", True)
@example("searchdomain: x\x1enet0: virtio=A2:C0:43:67:08:A9,bridge=vmbr9,tag=99\x1eipconfig0: ip=10.0.0.151/24",
         "qemu", False)
@example("lxc.net.0.type: veth\nlxc.net.0.ipv4.address: 10.0.0.9/24\n[snap]\nlxc.net.1.ipv4.address: 10.0.0.8/24",
         "lxc", False)
@example("net0: name=eth0,bridge=vmbr\x000,ip=10.0.0.1/24", "lxc", False)
def test_parse_config_shaped_text(text, gtype, with_pending):
    g = parse_config(text, 951, gtype, node="pve1", with_pending=with_pending)
    allowed = current_text(text, gtype)
    if with_pending:
        allowed += "\n" + section_text(text, "pve:pending" if gtype == "lxc" else "PENDING", gtype)
    check_no_invented_address(g, allowed)
    keys = [n.key for n in g.nics if not n.raw]
    assert keys == sorted(set(keys), key=lambda k: int(k[3:]))


@FAST
@given(st.lists(st.tuples(ipv4, st.integers(8, 30)), min_size=1, max_size=3), st.lists(ipv4, max_size=3))
def test_snapshot_addresses_never_probed(current, snap):
    """Addresses only in a snapshot never show up, whatever the current section holds."""
    cur = [f"net{i}: name=eth{i},bridge=vmbr0,ip={a}/{p}" for i, (a, p) in enumerate(current)]
    snp = [f"net{i}: name=eth{i},bridge=vmbr0,ip={a}/24" for i, a in enumerate(snap)]
    text = "\n".join(cur + ["[snap]"] + snp) + "\n"
    got = {n.address for n in parse_config(text, 1).nics if n.address}
    assert got <= {a for a, _ in current}


@FAST
@given(st.text(), st.one_of(st.none(), st.sampled_from(["model", "name"])))
def test_parse_props_never_raises(value, default_key):
    out = parse_props(value, default_key)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in out.items())
    assert all("," not in v for v in out.values())
    _, err = property_string(value, default_key)
    assert err is None or err.isprintable()


@FAST
@given(st.text(), st.sampled_from(["lxc", "qemu"]))
def test_conffile_read_never_raises_and_names_lines_printably(text, gtype):
    cfg = conffile.read(text, gtype)
    sections = [cfg.current, cfg.pending, *cfg.special.values(), *cfg.snapshots.values()]
    for sec in filter(None, sections):
        assert all(b.isprintable() for b in sec.bad)
        assert all(k and ":" not in k for k in sec.values)


value_text = st.text(max_size=40)


@FAST
@given(value_text, st.sampled_from(["ip", "gw", "ip6", "gw6", "mac", "ifname", "int", "bool"]))
def test_value_readers_never_raise_and_errors_are_printable(value, kind):
    from phoenix_hook.pve import values as V
    got = {"ip": lambda v: V.ipv4_config(v), "ip6": lambda v: V.ipv6_config(v),
           "gw": lambda v: V.ipv4_address(v), "gw6": lambda v: V.ipv6_address(v), "mac": lambda v: V.mac(v),
           "ifname": lambda v: V.ifname(v), "int": lambda v: V.integer(v, "tag", 1, 4094, "a VLAN ID"),
           "bool": lambda v: V.boolean(v, "link_down")}[kind](value)
    err = got[-1]
    assert err is None or err.isprintable()
    if err is None and kind == "ifname":
        assert got[0] is None or len(got[0]) <= 15


# -- frames --------------------------------------------------------------------------

@FAST
@given(st.binary(max_size=120), st.one_of(st.none(), st.integers(0, 4095)))
def test_arp_parse_never_raises(frame, aux):
    p = arp.parse(frame, aux)
    assert p is None or isinstance(p, arp.ArpPacket)
    if p is not None:
        assert p.op in (arp.ARP_REQUEST, arp.ARP_REPLY)
        assert p.vlan is None or 1 <= p.vlan <= 4095


macs = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))
ips = st.binary(min_size=4, max_size=4).map(lambda b: "%d.%d.%d.%d" % tuple(b))


@FAST
@given(st.sampled_from([arp.ARP_REQUEST, arp.ARP_REPLY]), macs, macs, macs, ips, macs, ips,
       st.one_of(st.none(), st.integers(1, 4094)))
def test_build_parse_round_trip(op, eth_src, eth_dst, smac, sip, tmac, tip, vlan):
    f = arp.build(op, eth_src=eth_src, eth_dst=eth_dst, sender_mac=smac, sender_ip=sip,
                  target_mac=tmac, target_ip=tip, vlan=vlan)
    assert len(f) >= arp.MIN_FRAME
    p = arp.parse(f)
    assert p == arp.ArpPacket(op=op, sender_mac=smac, sender_ip=sip, target_mac=tmac, target_ip=tip,
                              eth_src=eth_src, eth_dst=eth_dst, vlan=vlan)
    if vlan is None:
        assert arp.parse(f, aux_vlan=vlan) == p


@FAST
@given(macs, ips, st.integers(1, 4094))
def test_kernel_stripped_tag_round_trip(src, ip, vlan):
    """The same probe seen tagged in-frame or untagged with PACKET_AUXDATA parses the same."""
    tagged = arp.build_probe(src, ip, vlan=vlan)
    untagged = arp.build_probe(src, ip)
    assert arp.parse(tagged) == arp.parse(untagged, aux_vlan=vlan)


# -- settings --------------------------------------------------------------------------

@FAST
@given(st.text())
def test_settings_parse_arbitrary_text_only_settings_error(text):
    try:
        ph_settings.parse(text, "/x.conf")
    except ph_settings.SettingsError as e:
        assert "\n" not in str(e) and str(e).startswith("/x.conf")


settings_key = st.sampled_from(sorted(ph_settings.KNOWN_KEYS) + ["bogus"])
settings_value = st.one_of(junk, st.integers(-10, 100000).map(str), st.sampled_from(
    ["enforce", "warn", "off", "allow", "refuse", "rfc5227", "/etc/pve", "pve1", "10.0.0.1",
     "10.0.0.0/24", "10.0.0.1-10.0.0.9", "nan", "inf", "1e3", "\u00b2"]))
settings_text = st.builds(
    lambda sec, kvs, g: f"[{sec}]\n" + "".join(f"{k} = {v}\n" for k, v in kvs) + g,
    st.sampled_from(["phoenix-hook", "guest:951", "guest:x", "guest:\u00b2", "other"]),
    st.lists(st.tuples(settings_key, settings_value), max_size=6, unique_by=lambda kv: kv[0]),
    st.sampled_from(["", "[guest:1]\nmode = warn\n", "[guest:2]\nprobe_timeout_ms = \u00b9\u2070\u2070\n"]),
)


@FAST
@given(settings_text)
@example("[phoenix-hook]\nprobe_timeout_ms = \u00b2\n")
@example("[guest:\u00b2]\nmode = warn\n")
def test_settings_parse_ini_shaped_only_settings_error(text):
    try:
        s = ph_settings.parse(text, "/x.conf")
    except ph_settings.SettingsError as e:
        assert "\n" not in str(e) and str(e).startswith("/x.conf")
        return
    assert s.mode in ph_settings.MODES and s.on_error in ph_settings.ON_ERROR
    assert s.probe_timeout_ms == "rfc5227" or 50 <= s.probe_timeout_ms <= 60000
    assert 0.5 <= s.deadline_s <= 300
