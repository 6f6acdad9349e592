"""A throwaway lab of network namespaces: a PVE-like host with vmbr0 and LAN hosts.

Used by `phoenix-hook demo`, the lab tests and the benchmarks. Nothing here
touches the machine's own interfaces: every device is created inside
namespaces named with a per-run prefix, and close() deletes them all (also
on failure and Ctrl-C, as long as the caller uses `with Lab() as lab:`).

Layout:
    <prefix>-pve       the "Proxmox host": bridge vmbr0 (and others on demand)
    <prefix>-<name>    one namespace per LAN host, joined to a bridge by a
                       veth pair (host side "<short>p" on the bridge)
    <prefix>-lan       optional: one veth to vmbr0 with many macvlan hosts on
                       its far end, for large subnets (scan benchmarks)
"""
from __future__ import annotations

import itertools
import os
import secrets
import shutil
import subprocess
import threading
import time


class LabError(RuntimeError):
    pass


def _run(argv, check=True, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {p.stderr.strip() or p.stdout.strip()}")
    return p


def available() -> str | None:
    """None when a lab can be built here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "lab needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "lab needs iproute2's ip command"
    return None


class Lab:
    def __init__(self, prefix: str | None = None):
        self.prefix = prefix or f"phx{secrets.token_hex(3)}"
        self.pve = f"{self.prefix}-pve"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self._n = itertools.count(1)
        self._lan: str | None = None
        self._macvlan_ns: set[str] = set()

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self):
        try:
            self.add_namespace(self.pve)
            self.add_bridge("vmbr0")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for pipe in (p.stdout, p.stderr):
                if pipe:
                    pipe.close()
        self.procs.clear()
        for ns in reversed(self.namespaces):
            _run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()

    # -- building ----------------------------------------------------------
    def add_namespace(self, name: str) -> str:
        _run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.ip(name, "link", "set", "lo", "up")
        return name

    def ip(self, ns: str, *args, check=True):
        return _run(["ip", "-n", ns, *args], check=check)

    def add_bridge(self, name: str, up: bool = True) -> None:
        self.ip(self.pve, "link", "add", name, "type", "bridge")
        # Forward at once: no STP listening/learning delay in the lab.
        self.ip(self.pve, "link", "set", name, "type", "bridge", "forward_delay", "0", "stp_state", "0")
        if up:
            self.ip(self.pve, "link", "set", name, "up")

    def add_host(self, name: str, cidr: str | None = None, mac: str | None = None,
                 bridge: str = "vmbr0", ifname: str = "eth0", port: str | None = None) -> str:
        """A LAN host whose own kernel answers ARP for cidr. Returns its namespace.

        Its bridge port is an uplink by name; port="veth951i0" makes it look
        like a running guest's port instead (hostnet.is_guest_port).
        """
        ns = self.add_namespace(f"{self.prefix}-{name}")
        port = port or f"p{self.prefix[-4:]}{next(self._n)}"
        self.ip(self.pve, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns)
        self.ip(self.pve, "link", "set", port, "master", bridge)
        self.ip(self.pve, "link", "set", port, "up")
        if mac:
            self.ip(ns, "link", "set", ifname, "address", mac)
        if cidr:
            # nodad: the lab host must hold the address now, not after IPv6-style DAD
            self.ip(ns, "addr", "add", cidr, "dev", ifname)
        self.ip(ns, "link", "set", ifname, "up")
        return ns

    def add_macvlan_hosts(self, cidrs, bridge: str = "vmbr0") -> list[str]:
        """Many kernel hosts cheaply: macvlans on the far end of one veth.

        macvlan cannot sit on vmbr0 itself: frames the bridge device sends
        never reach macvlans stacked on it, so they hang off a veth peer.
        """
        if self._lan is None:
            self._lan = self.add_namespace(f"{self.prefix}-lan")
            self.ip(self.pve, "link", "add", "plan", "type", "veth", "peer", "name", "lan0",
                    "netns", self._lan)
            self.ip(self.pve, "link", "set", "plan", "master", bridge)
            self.ip(self.pve, "link", "set", "plan", "up")
            self.ip(self._lan, "link", "set", "lan0", "up")
        out = []
        for cidr in cidrs:
            i = next(self._n)
            ns = self.add_namespace(f"{self.prefix}-m{i}")
            self._macvlan_ns.add(ns)
            dev = f"mv{i}"
            self.ip(self._lan, "link", "add", dev, "link", "lan0", "type", "macvlan", "mode", "bridge")
            self.ip(self._lan, "link", "set", dev, "netns", ns)
            self.ip(ns, "link", "set", dev, "name", "eth0")
            self.ip(ns, "addr", "add", cidr, "dev", "eth0")
            self.ip(ns, "link", "set", "eth0", "up")
            out.append(ns)
        return out

    def add_host_address(self, cidr: str, dev: str = "vmbr0") -> None:
        """Give the PVE host itself an address (its management IP)."""
        self.ip(self.pve, "addr", "add", cidr, "dev", dev)

    # -- running -----------------------------------------------------------
    def run(self, ns: str, argv, env=None, timeout=60, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                              env=env, timeout=timeout, **kw)

    def spawn(self, ns: str, argv, env=None, ready: str | None = None, timeout=10.0,
              **kw) -> subprocess.Popen:
        """Start a background process in ns; wait for a line containing `ready` on its stdout."""
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, **kw)
        self.procs.append(p)
        if ready:
            # readline() blocks: wait for it in a thread, so a process that
            # neither prints nor exits still ends at the timeout.
            found = threading.Event()

            def _read():
                for line in p.stdout:
                    if ready in line:
                        found.set()
                        return
            reader = threading.Thread(target=_read, daemon=True)
            reader.start()
            reader.join(timeout)
            if not found.is_set():
                if reader.is_alive():
                    p.kill()
                    raise LabError(f"{argv[0]} was not ready within {timeout} s")
                p.wait()
                raise LabError(f"{argv[0]} exited before it was ready: {p.stderr.read().strip()}")
        return p

    def links_not_ready(self, ns: str) -> list[str]:
        """Links in ns that are set up but not usable yet: no carrier (LOWER_UP),
        or a bridge port not yet forwarding. Links left down on purpose are fine."""
        import json
        out = []
        links = json.loads(self.ip(ns, "-j", "-d", "link", "show").stdout or "[]")
        up = {x["ifname"] for x in links if "UP" in x.get("flags", [])}
        for link in links:
            flags = link.get("flags", [])
            if "UP" not in flags or link.get("ifname") == "lo":
                continue
            info = link.get("linkinfo", {})
            if "LOWER_UP" not in flags and info.get("info_kind") != "bridge":
                out.append(f"{ns}/{link['ifname']}: no carrier")
            elif info.get("info_slave_kind") == "bridge" and link.get("master") in up and \
                    info.get("info_slave_data", {}).get("state") != "forwarding":
                out.append(f"{ns}/{link['ifname']}: bridge port not forwarding")
        return out

    def wait_link_ready(self, ns: str | None = None, timeout: float = 5.0) -> None:
        """Wait until every link that is up in the lab (or in ns) carries frames.

        veths get their carrier and bridge ports reach 'forwarding'
        asynchronously; a probe sent before that would go nowhere and the
        hook would call the address free.
        """
        end = time.monotonic() + timeout
        # A macvlan's carrier follows lan0's, checked in the -lan namespace;
        # skipping their namespaces keeps a 250-host lab quick to check.
        spaces = [ns] if ns else [n for n in self.namespaces if n not in self._macvlan_ns]
        while True:
            waiting = [x for n in spaces for x in self.links_not_ready(n)]
            if not waiting:
                return
            if time.monotonic() >= end:
                raise LabError(f"links not ready within {timeout} s: {', '.join(waiting)}")
            time.sleep(0.02)


def write_tree(root: str, node: str, configs: dict, kind: str = "lxc") -> None:
    """Write guest configs {vmid: text} into a /etc/pve-shaped tree."""
    sub = "lxc" if kind == "lxc" else "qemu-server"
    d = os.path.join(root, "nodes", node, sub)
    os.makedirs(d, exist_ok=True)
    for vmid, text in configs.items():
        with open(os.path.join(d, f"{vmid}.conf"), "w") as f:
            f.write(text)
