"""The cluster's nodes as corosync.conf names them. Pure: text in, (name, address) out."""
from __future__ import annotations

import ipaddress
import re

_NODE_KEY = re.compile(r"^\s*(name|ring\d+_addr)\s*:\s*(\S+)\s*$")


def corosync_nodes(text: str) -> list[tuple[str, str]]:
    """(node name, address) from corosync.conf's nodelist { node { name: ..; ringN_addr: .. } }.

    corosync.conf(5); PVE keeps it at /etc/pve/corosync.conf. Addresses that
    are host names, not IPs, are skipped. Never raises.
    """
    out, stack, name, addrs = [], [], None, []
    for line in text.splitlines():
        s = line.split("#", 1)[0].strip()
        if s.endswith("{"):
            stack.append(s[:-1].strip())
            if stack[-2:] == ["nodelist", "node"]:
                name, addrs = None, []
        elif s == "}":
            if stack[-2:] == ["nodelist", "node"] and name:
                out += [(name, a) for a in addrs]
            if stack:
                stack.pop()
        elif stack[-2:] == ["nodelist", "node"]:
            m = _NODE_KEY.match(s)
            if m and m.group(1) == "name":
                name = m.group(2)
            elif m:
                try:
                    addrs.append(str(ipaddress.ip_address(m.group(2))))
                except ValueError:
                    pass
    return out
