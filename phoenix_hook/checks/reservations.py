"""DHCP reservations (MAC -> IPv4, hostname) for every guest with a static address. Pure.

The mitigation from the outage behind the fixture: reserve the static IPs in
the DHCP server, so its pool never hands them to another device. One entry
per NIC with a static IPv4 and a MAC, in each server's own syntax:

- dnsmasq:  dhcp-host=<mac>,<ip>,<hostname>          (dnsmasq(8) --dhcp-host)
- ISC dhcpd: host <name> { hardware ethernet <mac>; fixed-address <ip>;
             option host-name "<hostname>"; }          (dhcpd.conf(5))
- Kea:      {"Dhcp4": {"subnet4": [{"id", "subnet", "reservations": [{"hw-address",
             "ip-address", "hostname"}]}]}}              (Kea ARM, host reservations)
- CSV:      mac,ip,hostname,vmid,type,node,nic,vlan

Templates never start and are left out. A MAC or an IP held by more than one
NIC cannot be reserved for either (the server would refuse or pick one at
random): those are skipped, each with a reason (`phoenix-hook audit` shows
them too). An IP counts once whatever its VLAN: one reservation file feeds one
server, which refuses a second reservation of an address ("duplicate
dhcp-host IP address" in dnsmasq, "There's already a reservation for this
address" in kea-dhcp4 -t), even where the VLANs make two different networks.
"""
from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
from phoenix_hook.records import dataclass

from phoenix_hook.checks.report import printable
from phoenix_hook.pve.guest import Guest, label_for

FORMATS = ("dnsmasq", "isc", "kea", "csv")
_LABEL_BAD = re.compile(r"[^a-z0-9-]+")
# What dnsmasq reads as something other than a name in a dhcp-host field
# (src/option.c, --dhcp-host): digits with an optional s/m/h/d/w suffix is a
# lease time ("3600", "12h", "5"), "infinite" too, and "ignore" turns DHCP off
# for the MAC.
_NOT_A_NAME = re.compile(r"^([0-9]+[smhdw]?|infinite|ignore)$")


@dataclass(frozen=True)
class Reservation:
    vmid: int
    type: str
    node: str | None
    nic: str
    mac: str
    ip: str
    prefixlen: int
    hostname: str
    vlan: int | None = None

    @property
    def label(self) -> str:
        return f"{label_for(self.type, self.vmid)} {self.nic}"

    @property
    def subnet(self) -> str:
        return str(ipaddress.IPv4Network(f"{self.ip}/{self.prefixlen}", strict=False))


def hostname_for(g: Guest, nic_key: str) -> str:
    """A DNS label (RFC 1123: a-z, 0-9, '-', at most 63) from the guest's name.

    A name dnsmasq would read as a lease time or a keyword ("3600", "12h",
    "ignore") gets "ct-"/"vm-" in front, in every format, so the hostname is
    the same whichever server the reservations go to.
    """
    kind = "ct" if g.type == "lxc" else "vm"
    base = _LABEL_BAD.sub("-", (g.name or "").lower()).strip("-")
    if not base:
        base = f"{kind}{g.vmid}"
    if nic_key != "net0":
        nic_key = nic_key.replace(".", "-")          # a raw NIC: lxc.net.1 -> lxc-net-1
        base = f"{base[:63 - len(nic_key) - 1]}-{nic_key}"
    base = base[:63].strip("-") or f"guest{g.vmid}"
    if _NOT_A_NAME.match(base):
        base = f"{kind}-{base}"
    return base


def collect(guests: list[Guest]) -> tuple[list[Reservation], list[str]]:
    """(reservations, skipped: one line each saying why)."""
    cands: list[Reservation] = []
    skipped: list[str] = []
    for g in sorted(guests, key=lambda g: g.vmid):
        if g.template:
            continue
        for n in g.nics:
            if n.error:
                skipped.append(f"{g.label} {n.key}: the network line cannot be read ({n.error}); "
                               f"fix it with pct/qm set {g.vmid} --{n.key} ...")
                continue
            if not n.address:
                continue
            if not n.hwaddr:
                skipped.append(f"{g.label} {n.key} {n.address}: no MAC in the config (hwaddr=/model=)")
                continue
            cands.append(Reservation(g.vmid, g.type, g.node, n.key, n.hwaddr, n.address, n.prefixlen,
                                     hostname_for(g, n.key), n.tag))
    by_mac: dict = {}
    by_ip: dict = {}
    for r in cands:
        by_mac.setdefault(r.mac, []).append(r)
        by_ip.setdefault(r.ip, []).append(r)       # not per VLAN: see the module docstring
    out = []
    for r in cands:
        twins_mac = [o.label for o in by_mac[r.mac] if o is not r]
        twins_ip = [_comment(o) for o in by_ip[r.ip] if o is not r]
        if twins_mac:
            skipped.append(f"{r.label} {r.ip}: MAC {r.mac} is also on {', '.join(twins_mac)}; "
                           f"give the clone a new MAC")
        elif twins_ip:
            skipped.append(f"{r.label} {r.ip}: the address is also configured on {', '.join(twins_ip)}")
        else:
            out.append(r)
    # Hostnames must be unique to a DHCP server: a second guest of the same
    # name gets -<vmid> appended.
    seen: set = set()
    final = []
    for r in out:
        h = r.hostname
        if h in seen:
            h = f"{h[:63 - len(str(r.vmid)) - 1]}-{r.vmid}"
        seen.add(h)
        final.append(Reservation(r.vmid, r.type, r.node, r.nic, r.mac, r.ip, r.prefixlen, h, r.vlan))
    return final, skipped


def left_out(guests: list[Guest]) -> list[str]:
    """Guests and NICs that need no reservation, one line each saying why (not a
    problem, unlike collect()'s skipped: a template never starts, a DHCP NIC gets
    its address from the server anyway)."""
    out = []
    for g in sorted(guests, key=lambda g: g.vmid):
        if g.template:
            out.append(f"{g.label}: a template (it never starts)")
            continue
        if not g.nics:
            out.append(f"{g.label}: no network interface")
            continue
        for n in g.nics:
            if n.error or n.address:
                continue
            why = {"dhcp": "ip=dhcp: the DHCP server assigns it", "manual": "ip=manual: set inside the guest"}
            out.append(f"{g.label} {n.key}: {why.get(n.ip_mode, 'no static IPv4 address')}")
    return out


def _comment(r: Reservation) -> str:
    # printable: a node name from a tree or the API must not end the comment line
    return printable(f"{r.label}" + (f" on {r.node}" if r.node else "") + (f", VLAN {r.vlan}" if r.vlan else ""))


HEADER = "generated by phoenix-hook reservations: static guest addresses reserved for their MACs"


def render_dnsmasq(rs: list[Reservation]) -> str:
    lines = [f"# {HEADER}"]
    for r in rs:
        lines.append(f"# {_comment(r)}")
        lines.append(f"dhcp-host={r.mac},{r.ip},{r.hostname}")
    return "\n".join(lines) + "\n"


def render_isc(rs: list[Reservation]) -> str:
    lines = [f"# {HEADER}"]
    for r in rs:
        # The declaration name is only a label inside dhcpd; it must be unique.
        name = f"{'ct' if r.type == 'lxc' else 'vm'}{r.vmid}-{r.nic.replace('.', '-')}"
        lines += [f"# {_comment(r)}",
                  f"host {name} {{",
                  f"  hardware ethernet {r.mac};",
                  f"  fixed-address {r.ip};",
                  f"  option host-name \"{r.hostname}\";",
                  "}"]
    return "\n".join(lines) + "\n"


def kea_config(rs: list[Reservation]) -> dict:
    """A Dhcp4 fragment: one subnet4 per guest subnet, with its reservations.

    Merge each "reservations" list into the subnet of the same prefix in the
    server's own config (the subnet ids here are only numbered 1..n).
    """
    subnets: dict[str, list] = {}
    for r in rs:
        subnets.setdefault(r.subnet, []).append(
            {"hw-address": r.mac, "ip-address": r.ip, "hostname": r.hostname})
    ordered = sorted(subnets, key=lambda s: ipaddress.IPv4Network(s))
    return {"Dhcp4": {"subnet4": [{"id": i, "subnet": s, "reservations": subnets[s]}
                                  for i, s in enumerate(ordered, 1)]}}


def render_kea(rs: list[Reservation]) -> str:
    return json.dumps(kea_config(rs), indent=2) + "\n"


def render_csv(rs: list[Reservation]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["mac", "ip", "hostname", "vmid", "type", "node", "nic", "vlan"])
    for r in rs:
        w.writerow([r.mac, r.ip, r.hostname, r.vmid, r.type, r.node or "", r.nic,
                    "" if r.vlan is None else r.vlan])
    return buf.getvalue()


RENDER = {"dnsmasq": render_dnsmasq, "isc": render_isc, "kea": render_kea, "csv": render_csv}


def render(rs: list[Reservation], fmt: str) -> str:
    return RENDER[fmt](rs)
