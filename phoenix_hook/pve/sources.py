"""Which guest source a command reads: the /etc/pve tree (files) or the API.

`--source files|api` on every command; without it: files when pve_root
exists (on a PVE node the whole cluster is there, REFERENCE section 3),
else the API from [api]. Also the cluster's node addresses, which each
source knows in its own way.
"""
from __future__ import annotations

import json
import os

CHOICES = ("files", "api")


def add_argument(parser) -> None:
    parser.add_argument("--source", choices=CHOICES, default=None,
                        help="where guest configs come from: files (pve_root, the default where it "
                             "exists) or api ([api] in the settings)")


def choose(requested: str | None, settings) -> str:
    if requested:
        return requested
    return "files" if os.path.isdir(settings.pve_root) else "api"


def open_source(settings, requested: str | None = None, warn=None):
    """A FileSource or ApiSource. Raises cli.UsageError for what the admin must fix
    in the settings (exit 2); pve.SourceError from the source later means exit 3."""
    from phoenix_hook.errors import UsageError
    kind = choose(requested, settings)
    where = settings.path or "the settings file (/etc/phoenix-hook/phoenix-hook.conf)"
    if kind == "files":
        from phoenix_hook.pve.files import FileSource
        if requested == "files" and not os.path.isdir(settings.pve_root):
            raise UsageError(f"--source files: pve_root {settings.pve_root} does not exist; run this on "
                             f"a Proxmox VE node, set pve_root in {where}, or use --source api")
        return FileSource(settings.pve_root, settings.node)
    if not settings.api and requested == "api":
        from phoenix_hook.paths import settings_file
        what = (f"{settings.path} has no [api] section" if settings.path else
                f"there is no settings file ({settings_file()}), so no [api] section")
        raise UsageError(f"--source api: {what}; add [api] with host, user, token_name and token_file "
                         f"(README 'Off the node: the Proxmox API')")
    if not settings.api:
        raise UsageError(f"no guest configs: pve_root {settings.pve_root} does not exist and {where} "
                         f"has no [api] section; run on a PVE node, set pve_root, or configure [api] "
                         f"(README 'Off the node: the Proxmox API')")
    from phoenix_hook.pve.api import ApiSettingsError, ApiSource
    try:
        return ApiSource(settings.api, node=settings.node, settings_path=settings.path, warn=warn)
    except ApiSettingsError as exc:
        raise UsageError(str(exc)) from None


def read_guests(settings, requested: str | None = None):
    """(source, every guest of the cluster) for a command; a source failure is cli.CannotCheck."""
    from phoenix_hook.errors import CannotCheck, SourceError
    source = open_source(settings, requested)
    try:
        return source, source.guests()
    except SourceError as exc:
        raise CannotCheck(str(exc)) from None


def node_addresses(source) -> dict[str, str]:
    """{address: node} for the cluster's nodes; {} when the source cannot tell.

    Files: pmxcfs' /etc/pve/.members (JSON: nodelist {name: {ip, ...}}), and
    the ring addresses in /etc/pve/corosync.conf. API: /cluster/status.
    """
    if hasattr(source, "node_addresses"):
        return source.node_addresses()
    root = getattr(source, "root", None)
    if not root:
        return {}
    out: dict[str, str] = {}
    try:
        with open(os.path.join(root, ".members"), encoding="utf-8") as f:
            members = json.load(f)
        for name, info in (members.get("nodelist") or {}).items():
            if isinstance(info, dict) and _is_ipv4(str(info.get("ip", ""))):
                out[str(info["ip"])] = str(name)
    except (OSError, ValueError, AttributeError):
        pass
    try:
        with open(os.path.join(root, "corosync.conf"), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    from phoenix_hook.pve.cluster import corosync_nodes
    for name, addr in corosync_nodes(text):
        out.setdefault(addr, name)
    return out


def _is_ipv4(text: str) -> bool:
    import ipaddress
    try:
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        return False


def running_checker(source):
    """callable(vmid, type) -> bool: may this guest be up, answering from its own MAC?

    The API knows every guest's status. The files source only sees this
    node's guests run (pve.guest_running); a guest configured on another
    node is taken as possibly running, so its own MAC answering is the
    guest itself, not "another copy" (a false conflict on every re-check
    of a deployed cluster otherwise).
    """
    if hasattr(source, "status"):
        return lambda vmid, _type: source.status(vmid) == "running"
    from phoenix_hook.pve.files import SourceError, guest_running

    def running(vmid, gtype):
        try:
            cf = source.locate(vmid)
        except SourceError:
            return False
        if cf.node != source.node:
            return True
        return guest_running(vmid, gtype)
    return running
