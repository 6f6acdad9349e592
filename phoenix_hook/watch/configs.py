"""The cluster's guest configs for a long-running reader: only changed files are parsed again.

An edge module (files). The watch re-reads the tree every reload_s; with a
few thousand guests, parsing each config every time would be most of its
work, so a file is parsed again only when its (mtime, size, inode) moved.
pmxcfs keeps mtimes (pve-cluster src/pmxcfs/cfs-plug-memdb.c).
"""
from __future__ import annotations

import os
import re

from phoenix_hook.errors import SourceError
from phoenix_hook.pve.files import KIND_DIRS
from phoenix_hook.pve.guest import Guest, parse_config

_CONF_RE = re.compile(r"^(\d+)\.conf$")


class ConfigTree:
    def __init__(self, pve_root: str):
        self.root = pve_root
        self._cache: dict[str, tuple[tuple, Guest]] = {}
        self.parsed = 0                 # files parsed by the last read()
        self.unreadable: list[str] = []  # files that could not be read by the last read()

    def read(self) -> list[Guest]:
        """Every guest of the tree (current sections). SourceError when nodes/ cannot be listed:
        the caller keeps what it had, rather than taking "no guests" for a clean cluster."""
        nodes_dir = os.path.join(self.root, "nodes")
        try:
            nodes = sorted(os.listdir(nodes_dir))
        except OSError as exc:
            raise SourceError(f"cannot read {nodes_dir}: {exc.strerror}") from None
        guests: list[Guest] = []
        seen: set[str] = set()
        self.parsed = 0
        self.unreadable = []
        for node in nodes:
            for gtype, sub in KIND_DIRS.items():
                d = os.path.join(nodes_dir, node, sub)
                try:
                    names = os.listdir(d)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise SourceError(f"cannot read {d}: {exc.strerror}") from None
                for name in names:
                    m = _CONF_RE.match(name)
                    if not m:
                        continue
                    path = os.path.join(d, name)
                    g = self._guest(path, int(m.group(1)), gtype, node)
                    if g is not None:
                        seen.add(path)
                        guests.append(g)
        for path in [p for p in self._cache if p not in seen]:
            del self._cache[path]
        return sorted(guests, key=lambda g: (g.vmid, g.node or ""))

    def _guest(self, path: str, vmid: int, gtype: str, node: str) -> Guest | None:
        try:
            st = os.stat(path)
        except OSError:
            return None                   # gone between listdir and stat: moved or deleted
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        old = self._cache.get(path)
        if old is not None and old[0] == key:
            return old[1]
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            self.unreadable.append(path)
            return old[1] if old else None   # keep the last good parse of this guest
        self.parsed += 1
        g = parse_config(text, vmid, gtype, node)
        self._cache[path] = (key, g)
        return g
