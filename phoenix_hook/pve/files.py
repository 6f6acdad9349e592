"""Where guest configs come from. An edge module: files only (the API lives in pveapi.py).

On a PVE node /etc/pve (pmxcfs) holds every guest config of the cluster:
nodes/<node>/lxc/<vmid>.conf and nodes/<node>/qemu-server/<vmid>.conf
(pve-docs pmxcfs.adoc, REFERENCE section 3). `pve_root` and `node` in the
settings point this at a copy of such a tree, which is how the tests and
the demo use it.
"""
from __future__ import annotations

import os
import re
from phoenix_hook.records import dataclass

from phoenix_hook.pve.conffile import MAX_CONFIG
from phoenix_hook.pve.guest import Guest, parse_config

KIND_DIRS = {"lxc": "lxc", "qemu": "qemu-server"}
_CONF_RE = re.compile(r"^(\d+)\.conf$")


from phoenix_hook.errors import NoSuchGuest, SourceError  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class ConfigFile:
    vmid: int
    type: str
    node: str
    path: str


class FileSource:
    """Guest configs from a /etc/pve-shaped tree."""

    def __init__(self, pve_root: str, node: str):
        self.root = pve_root
        self.node = node

    def _nodes_dir(self) -> str:
        return os.path.join(self.root, "nodes")

    def _tree(self) -> str:
        """nodes/ under pve_root, or SourceError: without it this is not a PVE tree, and
        "no guests" read from it would look like a clean cluster."""
        d = self._nodes_dir()
        if not os.path.isdir(d):
            raise SourceError(f"{d} does not exist; is this a Proxmox VE node? "
                              f"(set pve_root in the settings to use another tree)")
        return d

    def locate(self, vmid: int) -> ConfigFile:
        """This node first (the hook's guest is always local), then the rest of the cluster."""
        self._tree()
        nodes = [self.node] + sorted(n for n in self._list(self._nodes_dir()) if n != self.node)
        for node in nodes:
            for gtype, sub in KIND_DIRS.items():
                path = os.path.join(self._nodes_dir(), node, sub, f"{vmid}.conf")
                if os.path.exists(path):
                    return ConfigFile(vmid, gtype, node, path)
        raise NoSuchGuest(f"guest {vmid} has no config under {self._nodes_dir()}/*/lxc or qemu-server; "
                          f"check the VMID (pct list / qm list)")

    def read(self, cf: ConfigFile) -> str:
        try:
            with open(cf.path, encoding="utf-8", errors="replace") as f:
                # a config is at most what pmxcfs holds; parse_config names a cut one
                return f.read(MAX_CONFIG + 1)
        except OSError as exc:
            raise SourceError(f"cannot read {cf.path}: {exc.strerror}") from None

    def guest(self, vmid: int, with_pending: bool = False) -> Guest:
        cf = self.locate(vmid)
        return parse_config(self.read(cf), vmid, cf.type, cf.node, with_pending=with_pending)

    @staticmethod
    def _list(path: str) -> list[str]:
        try:
            return os.listdir(path)
        except OSError:
            return []

    def config_files(self, node: str | None = None, types=("lxc", "qemu")) -> list[ConfigFile]:
        """Every guest config in the tree (or on one node), sorted by VMID.
        SourceError when pve_root has no nodes/ (guests() too)."""
        out = []
        tree = self._tree()
        nodes = [node] if node else self._list(tree)
        for n in nodes:
            for gtype in types:
                d = os.path.join(tree, n, KIND_DIRS[gtype])
                for name in self._list(d):
                    m = _CONF_RE.match(name)
                    if m:
                        out.append(ConfigFile(int(m.group(1)), gtype, n, os.path.join(d, name)))
        return sorted(out, key=lambda c: (c.vmid, c.node))

    def guests(self, node: str | None = None, types=("lxc", "qemu")) -> list[Guest]:
        """Every guest, current section only. Unreadable files become guests with an error."""
        out = []
        for cf in self.config_files(node, types):
            try:
                text = self.read(cf)
            except SourceError as exc:
                out.append(Guest(vmid=cf.vmid, type=cf.type, node=cf.node, errors=(str(exc),)))
                continue
            out.append(parse_config(text, cf.vmid, cf.type, cf.node))
        return out


def unix_socket_paths(text: str) -> set[str]:
    """The Path column of /proc/net/unix (net/unix/af_unix.c unix_seq_show: "Num RefCount
    Protocol Flags Type St Inode Path"; an abstract name starts with '@'). Lines are split
    at '\n' only, and a line counts only with exactly those eight columns. Pure."""
    out = set()
    for line in text.split("\n")[1:]:
        parts = line.split()
        if len(parts) == 8 and parts[0].endswith(":") and parts[6].isdigit():
            out.add(parts[7])
    return out


def guest_running(vmid: int, gtype: str) -> bool:
    """Is the guest running on this node? `check` asks it; the hook asks it about the
    holder of a claim only (claims.py), never about the guest it is starting.

    LXC: the container's monitor listens on the abstract unix socket
    "@/var/lib/lxc/<vmid>/command"; PVE::LXC::list_active_containers matches
    that path exactly (`^@/var/lib/lxc/(\\d+)/command$`), and so do we: a
    socket a local user binds at "@x/var/lib/lxc/951/command" is not a
    running CT 951.
    QEMU: /var/run/qemu-server/<vmid>.pid names a live process
    (PVE::QemuServer::Helpers::vm_running_locally).
    """
    if gtype == "lxc":
        try:
            with open("/proc/net/unix", encoding="utf-8", errors="replace") as f:
                return f"@/var/lib/lxc/{vmid}/command" in unix_socket_paths(f.read())
        except OSError:
            return False
    try:
        with open(f"/var/run/qemu-server/{vmid}.pid") as f:
            pid = int(f.read().strip())
        return os.path.exists(f"/proc/{pid}")
    except (OSError, ValueError):
        return False
