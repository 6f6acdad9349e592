"""What running guests really hold against what their configs say. Pure.

Input: the cluster's guests (configs) and, for the running guests that could be
read, their interfaces (pve/live.py: the container's own `ip --json a`, or the
VM's guest agent). A guest interface belongs to the NIC with its MAC (for a
container also its name, eth0 for net0's name=eth0).

Findings, as AuditFinding (checks/audit.py):
- drift         a NIC with a static address in the config, whose interface holds
                another address of that family, or lacks the configured one.
                Link-local addresses (fe80::/10, 169.254.0.0/16) never count;
                NICs set to dhcp, manual or (IPv6) auto are left alone.
- duplicate-ip  a live address that another guest is configured with, in the same
                VLAN (tag), naming both guests. When the guest's own config has the
                address too, audit's config-level duplicate-ip already says it.
"""
from __future__ import annotations

import ipaddress

from phoenix_hook.checks.audit import AuditFinding, where_of
from phoenix_hook.pve.guest import static_addresses


def _counts(a) -> bool:
    """Addresses drift and duplicates are about: not loopback, link-local or unspecified."""
    try:
        ip = ipaddress.ip_address(a.ip)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def match(guest, ifaces) -> dict:
    """NIC key -> the live interface it is (by MAC, else for a container by name)."""
    out = {}
    for n in guest.nics:
        if n.error:
            continue
        hit = next((i for i in ifaces if n.hwaddr and i.mac == n.hwaddr), None)
        if hit is None and guest.type == "lxc" and n.name:
            hit = next((i for i in ifaces if i.name == n.name), None)
        if hit is not None:
            out[n.key] = hit
    return out


def drift(guest, ifaces) -> list[AuditFinding]:
    out = []
    matched = match(guest, ifaces)
    for n in guest.nics:
        if n.error or n.skip:             # link_down=1 and the like: PVE leaves it down
            continue
        for family, want, mode in ((4, n.address, n.ip_mode), (6, n.address6, n.ip6_mode)):
            if mode != "static" or not want:
                continue
            w = where_of(guest, n.key)
            fam = "IPv4" if family == 4 else "IPv6"
            iface = matched.get(n.key)
            if iface is None:
                out.append(AuditFinding(
                    "drift", f"{w.label}: configured with {want}, but the running guest has no "
                    f"interface with MAC {n.hwaddr or '?'}" + (f" or name {n.name}" if guest.type == "lxc" and n.name else ""),
                    (w,), ip=want, mac=n.hwaddr))
                continue
            held = [a for a in iface.addresses if a.family == family and _counts(a)]
            ips = [a.ip for a in held]
            if ips == [want]:
                continue
            if want not in ips:
                holds = ", ".join(a.text for a in held) or f"no {fam} address"
                detail = f"{w.label} ({iface.name}): configured with {want}, but holds {holds}"
            else:
                extra = ", ".join(a.text for a in held if a.ip != want)
                detail = f"{w.label} ({iface.name}): holds {extra} besides its configured {want}"
            out.append(AuditFinding("drift", detail, (w,), ip=want, mac=n.hwaddr))
    return out


def duplicates(guest, ifaces, guests) -> list[AuditFinding]:
    """Live addresses of guest that another guest's config claims (same VLAN)."""
    configured = static_addresses(guests, skip_vmid=guest.vmid)
    nic_of = {i.name: key for key, i in match(guest, ifaces).items()}
    mine = {n.key: n for n in guest.nics}
    out = []
    seen = set()
    for iface in ifaces:
        key = nic_of.get(iface.name)
        nic = mine.get(key) if key else None
        for a in iface.addresses:
            if not _counts(a) or a.ip not in configured:
                continue
            if nic is not None and a.ip in (nic.address, nic.address6):
                continue                  # the config has it too: audit's config-level finding
            for g, n in configured[a.ip]:
                # The same VLAN: a NIC's tag; an interface of no NIC (a raw lxc.net entry,
                # a bridge inside the guest) may be on any of them.
                if nic is not None and n.tag != nic.tag:
                    continue
                if (a.ip, g.vmid, n.key) in seen:
                    continue
                seen.add((a.ip, g.vmid, n.key))
                me = where_of(guest, key)
                other = where_of(g, n.key)
                where = f" ({iface.name})" if key else f" on {iface.name}, which is no netN of its config"
                out.append(AuditFinding(
                    "duplicate-ip", f"{me.label}{where} holds {a.ip}, which is the configured address "
                    f"of {other.label}" + (f" on {g.node}" if g.node else "")
                    + (f" ({g.name})" if g.name else ""), (me, other), ip=a.ip, mac=iface.mac))
    return out


def findings(guests, live: dict) -> list[AuditFinding]:
    """drift and duplicate-ip for every guest read live (live: vmid -> [LiveIface])."""
    by_vmid = {g.vmid: g for g in guests}
    out = []
    for vmid, ifaces in live.items():
        g = by_vmid.get(vmid)
        if g is None:
            continue
        out += drift(g, ifaces)
        out += duplicates(g, ifaces, guests)
    return out
