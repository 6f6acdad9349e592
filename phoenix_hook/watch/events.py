"""An event in the admin's words: the JSON record, the journal line, the PVE notification. Pure.

Journal lines carry a syslog priority prefix ("<3>"), which journald reads
as the line's priority (sd-daemon(3)); under `SyslogIdentifier=phoenix-hook`
they read "phoenix-hook[PID]: conflict: CT 951 ...".
"""
from __future__ import annotations

import time

from phoenix_hook.watch.targets import Watched

# syslog priorities (sd-daemon.h SD_ERR ...) and PVE notification severities per event
PRIORITY = {"conflict": 3, "claim": 4, "resolved": 5, "suppressed": 4}
SEVERITY = {"conflict": "error", "claim": "warning", "resolved": "notice"}
ERR, WARNING, NOTICE, INFO = 3, 4, 5, 6

HOW = {
    (4, "reply"): "sent an ARP reply from it",
    (4, "request"): "sent an ARP request from it",
    (4, "announcement"): "announced it (gratuitous ARP)",
    (4, "probe"): "is probing for it (ARP probe, RFC 5227)",
    (6, "advertisement"): "advertised it (IPv6 Neighbor Advertisement)",
    (6, "solicitation"): "sent an IPv6 Neighbor Solicitation from it",
    (6, "probe"): "is probing for it (IPv6 DAD)",
}


def iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(wall))


def record(event: str, w: Watched, mac: str, *, how: str | None, vendor: str | None, mac_owner: str | None,
           running: bool, watch_node: str, wall: float, since: float | None = None) -> dict:
    """The JSON line for log_file and the webhook (README "After the start: phoenix-hook watch")."""
    r = {
        "event": event,
        "time": iso(wall),
        "node": w.node,
        "vmid": w.vmid,
        "type": w.type,
        "id": w.id,
        "name": w.name,
        "nic": w.nic,
        "family": w.family,
        "ip": w.ip,
        "guest_mac": w.guest_mac,
        "mac": mac,
        "vendor": vendor,
        "mac_owner": mac_owner,
        "bridge": w.bridge,
        "vlan": w.vlan,
        "guest_running": running,
        "how": how,
        "watch_node": watch_node,
    }
    if since is not None:
        r["since"] = iso(since)
    r["message"] = message(r)
    return r


def _device(r: dict) -> str:
    if r.get("vendor"):
        words = r["vendor"]
    elif int(r["mac"].split(":")[0], 16) & 0x02:
        words = "vendor unknown, locally administered"
    else:
        words = "vendor unknown"
    owner = f", the MAC of {r['mac_owner']}" if r.get("mac_owner") else ""
    return f"{r['mac']} ({words}{owner})"


def _guest(r: dict) -> str:
    from phoenix_hook.pve.guest import label_for
    name = f" ({r['name']})" if r.get("name") else ""
    where = r["bridge"] + (f" VLAN {r['vlan']}" if r.get("vlan") is not None else "")
    return f"{label_for(r['type'], r['vmid'])}{name} {r['nic']} {r['ip']} on {where}"


def _state(r: dict) -> str:
    from phoenix_hook.pve.guest import label_for
    label = label_for(r["type"], r["vmid"])
    if r.get("node") and r["node"] != r.get("watch_node"):
        return f"{label} lives on node {r['node']}" + (" and is up" if r["guest_running"] else "")
    return f"{label} is {'running' if r['guest_running'] else 'stopped'}"


def message(r: dict) -> str:
    """One line: what happened to which guest address, and who did it."""
    how = HOW.get((r["family"], r.get("how")), "")
    if r["event"] == "conflict":
        return f"{_guest(r)} is in use by {_device(r)}, which {how}; {_state(r)}"
    if r["event"] == "claim":
        return f"{_guest(r)} is being claimed by {_device(r)}, which {how}; {_state(r)}"
    since = f" (in conflict since {r['since']})" if r.get("since") else ""
    return f"{_guest(r)}: {_device(r)} no longer answers for it{since}"


def journal(r: dict) -> str:
    """The journal line: '<3>conflict: CT 951 ...'."""
    return f"<{PRIORITY[r['event']]}>{r['event']}: {r['message']}"


def notification(r: dict) -> tuple[str, dict, dict]:
    """(severity, template data, fields) for PVE::Notify::notify.

    Template data are strings only (Handlebars renders them as they are);
    the fields are what notifications.cfg matchers match on
    (`match-field exact:type=phoenix-hook`, hostname).
    """
    from phoenix_hook.pve.guest import label_for
    label = label_for(r["type"], r["vmid"])
    titles = {"conflict": f"{label}: {r['ip']} is in use by another device",
              "claim": f"{label}: another device is claiming {r['ip']}",
              "resolved": f"{label}: the conflict on {r['ip']} is over"}
    data = {
        "title": titles[r["event"]],
        "message": r["message"],
        "event": r["event"],
        "guest": label + (f" ({r['name']})" if r.get("name") else ""),
        "vmid": str(r["vmid"]),
        "node": r.get("node") or "",
        "nic": r["nic"],
        "ip": r["ip"],
        "guest_mac": r["guest_mac"],
        "mac": r["mac"],
        "vendor": r.get("vendor") or "unknown",
        "mac_owner": r.get("mac_owner") or "",
        "bridge": r["bridge"],
        "vlan": "" if r.get("vlan") is None else str(r["vlan"]),
        "guest_running": "yes" if r["guest_running"] else "no",
        "time": r["time"],
        "watch_node": r["watch_node"],
    }
    fields = {"type": "phoenix-hook", "hostname": r.get("node") or r["watch_node"]}
    return SEVERITY[r["event"]], data, fields


def suppressed(count: int, per_minute: int, watch_node: str, wall: float) -> dict:
    return {"event": "suppressed", "time": iso(wall), "count": count, "watch_node": watch_node,
            "message": f"{count} more alert{'s' if count != 1 else ''} held back "
                       f"(max_alerts_per_minute = {per_minute}); all are counted in the metrics "
                       f"(phoenix_hook_conflicts_total)"}
