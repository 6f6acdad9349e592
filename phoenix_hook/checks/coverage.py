"""Which guests phoenix-hook really guards: `audit`'s coverage findings. Pure.

- unprotected         a guest with a static address whose hookscript is not
                      phoenix-hook's (none, or another script): nothing checks
                      its addresses before it starts. Guests created after
                      install.sh ran are the usual case.
- hookscript-missing  the snippet a guest is attached to does not exist on a
                      node: a start there, or a migration there, fails with
                      "hookscript ... does not exist" (pve-guest-common
                      GuestHelpers.pm check_hookscript). REFERENCE section 12:
                      `local` storage is per node.
Templates never start and are left out; so are guests without a static address
(a DHCP guest's address is the DHCP server's to keep unique).
"""
from __future__ import annotations

from phoenix_hook.checks.audit import AuditFinding, where_of
from phoenix_hook.paths import SNIPPET_NAME


def is_ours(volid: str | None) -> bool:
    """A hookscript volid STORAGE:snippets/phoenix-hook.py, on any storage."""
    if not volid or ":" not in volid:
        return False
    path = volid.split(":", 1)[1]
    return path.rsplit("/", 1)[-1] == SNIPPET_NAME


def split_volid(volid: str) -> tuple[str, str] | None:
    """('local', 'snippets/x.py') for a STORAGE:PATH volid, None for anything else."""
    storage, sep, path = volid.partition(":")
    if not sep or not storage or not path:
        return None
    return storage, path


def _static(g) -> list[str]:
    return [a for n in g.nics if not n.error for a in (n.address, n.address6) if a]


def unprotected(guests) -> list[AuditFinding]:
    out = []
    for g in guests:
        addrs = _static(g)
        if g.template or not addrs or is_ours(g.hookscript):
            continue
        shown = ", ".join(addrs[:3]) + (f" and {len(addrs) - 3} more" if len(addrs) > 3 else "")
        vms = " --vms" if g.type == "qemu" else ""
        if g.hookscript:
            why = (f"its hookscript is {g.hookscript}, not phoenix-hook; attach ours in front of it: "
                   f"./install.sh --attach {g.vmid} --chain{vms}")
        else:
            why = f"it has no hookscript; attach: ./install.sh --attach {g.vmid}{vms}"
        out.append(AuditFinding("unprotected", f"{g.label} has static {shown} but nothing checks them "
                                f"at start: {why}" + (f" (on node {g.node})" if g.node else ""),
                                (where_of(g),), ip=addrs[0]))
    return out


def missing_snippets(guests, nodes, listing) -> list[AuditFinding]:
    """listing(node, storage) -> set of volids on that storage of that node, or None when the
    node could not say (offline, no permission): such a node is not judged.

    One finding per (node, volid) that is missing there, naming the guests of that node
    (cannot start) and of other nodes (cannot migrate there)."""
    by_volid: dict[str, list] = {}
    for g in guests:
        if g.hookscript and not g.template and split_volid(g.hookscript):
            by_volid.setdefault(g.hookscript, []).append(g)
    out = []
    for volid, users in sorted(by_volid.items()):
        storage, _path = split_volid(volid)
        for node in sorted(nodes):
            have = listing(node, storage)
            if have is None or volid in have:
                continue
            here = [g for g in users if g.node == node]
            there = [g for g in users if g.node != node]
            parts = []
            if here:
                parts.append(", ".join(g.label for g in here) + " cannot start")
            if there:
                parts.append(", ".join(g.label for g in there[:5]) + (f" and {len(there) - 5} more"
                             if len(there) > 5 else "") + " cannot migrate there")
            fix = (f"run install.sh on {node}" if is_ours(volid) else
                   f"copy the script to {storage} on {node}") + " or use a shared snippets storage"
            out.append(AuditFinding("hookscript-missing", f"{volid} does not exist on node {node}: "
                                    + "; ".join(parts) + f" ({fix})",
                                    tuple(where_of(g) for g in here + there)))
    return out
