"""Suspicious responders: one device answering for many addresses. Pure.

RFC 5227 trusts every answer: a device that answers every probe (proxy ARP
on a router or firewall, a misconfigured appliance, an attacker with a
ten-line script) makes every start a conflict, and in `enforce` mode
refuses them all (README "Trust model"). Such a device shows itself by
claiming many different addresses, or addresses outside every subnet of
the bridge it answers on; a real holder claims its own one or two. This
module names it, so the admin looks for the device instead of renumbering
guests. It never changes a verdict: an answer is an answer.

The history is the decision log's records (hook.py writes them); the
caller reads the file, this module only looks at the records.
"""
from __future__ import annotations

import ipaddress
import json

MANY = 3           # distinct addresses one MAC claims before it is called suspicious
SHOWN = 4          # addresses named in the note


def claims_in(record) -> list[tuple[str, str]]:
    """(mac, address) of every wire conflict in one decision-log record; [] for anything else."""
    out = []
    try:
        nics = record["report"]["nics"]
        for n in nics:
            for c in n.get("conflicts") or []:
                if c.get("source") in ("arp", "ndp") and isinstance(c.get("mac"), str) and isinstance(n.get("ip"), str):
                    out.append((c["mac"].lower(), n["ip"]))
    except (KeyError, TypeError, AttributeError):
        return []
    return out


def parse_history(lines) -> list[tuple[str, str]]:
    """(mac, address) pairs from decision-log lines; lines that are not records are skipped."""
    out = []
    for line in lines:
        if '"arp"' not in line and '"ndp"' not in line:
            continue                   # no wire conflict in it: not worth parsing (a hook run reads 256 KB)
        try:
            out += claims_in(json.loads(line))
        except ValueError:
            continue
    return out


def _outside(address: str, subnets) -> bool:
    """Is address outside every one of subnets (of its family)? False when none are known."""
    try:
        a = ipaddress.ip_address(address)
    except ValueError:
        return False
    nets = [n for n in subnets if n.version == a.version]
    return bool(nets) and not any(a in n for n in nets)


def notes_for(g, history, subnets: dict) -> list[str]:
    """Notes for a GuestResult (checks/report.py) naming each suspicious responder among
    its wire conflicts. history: (mac, address) pairs seen before; subnets: bridge ->
    the networks of the host's addresses on it."""
    seen: dict[str, set] = {}
    for mac, address in history:
        seen.setdefault(mac, set()).add(address)
    here = [(c.mac.lower(), n) for n in g.nics for c in n.conflicts
            if c.source in ("arp", "ndp") and c.mac and n.ip]
    for mac, n in here:
        seen.setdefault(mac, set()).add(n.ip)
    notes, done = [], set()
    for mac, n in here:
        if mac in done:
            continue
        done.add(mac)
        claimed = sorted(seen[mac], key=_sort_key)
        fix = (f"if {n.ip} is really free, find that device; to start the guest meanwhile, set "
               f"mode = warn in [guest:{g.vmid}]")
        if len(claimed) >= MANY:
            names = ", ".join(claimed[:SHOWN]) + (", ..." if len(claimed) > SHOWN else "")
            notes.append(f"suspicious responder: {mac} has claimed {len(claimed)} different addresses "
                         f"({names}): a device that answers every probe (proxy ARP, a misconfigured "
                         f"router, or an attacker) refuses every start; {fix}")
        elif _outside(n.ip, subnets.get(n.bridge) or []):
            nets = ", ".join(str(x) for x in subnets[n.bridge])
            notes.append(f"suspicious responder: {mac} answers for {n.ip}, outside every subnet of "
                         f"{n.bridge} ({nets}): proxy ARP?; {fix}")
    return notes


def _sort_key(address: str):
    try:
        a = ipaddress.ip_address(address)
        return (a.version, int(a))
    except ValueError:
        return (9, 0)
