"""VLAN networks as Proxmox VE wires them, built in the lab's namespaces (VM lab only: 802.1Q).

Every piece lives in the lab's own namespaces (phoenix_hook.net.lab.Lab):
the PVE host's bridges and uplink "eno1" in <prefix>-pve, the LAN behind
the uplink in namespaces of its own. Nothing touches the VM's root
namespace, let alone a real network (the VM has none).

How PVE and ifupdown2 wire it (REFERENCE section 4):
- VLAN-aware bridge (`bridge-vlan-aware yes`, `bridge-vids 2-4094`): the
  uplink is a trunk of 2-4094 with PVID 1; the bridge device itself stays
  in VID 1 alone; a guest with tag=N gets `bridge vlan del dev P vid 1` +
  `bridge vlan add dev P vid N pvid untagged` (pve-common bridge_add_interface).
- Traditional bridge: PVE makes eno1.N and vmbr0vN (eno1.N enslaved to it)
  for the first guest with tag=N (pve-common activate_bridge_vlan).
"""
from __future__ import annotations

import json
import re
import subprocess

GUEST_MAC = "52:54:00:67:89:b1"          # guest 951's own MAC in the lab plan
SQUAT_MAC = "16:0d:a0:c0:b9:1b"
OTHER_MAC = "16:0d:a0:c0:b9:30"
UNTAGGED_MAC = "16:0d:a0:c0:b9:01"
GW_MAC = "16:0d:a0:c0:b9:fe"
PROBE_PORT = re.compile(r"^(vethphx|phxq)[0-9a-z]+$")   # phoenix-hook's temporary probe ports


def bridge_cmd(lab, *args) -> str:
    p = lab.run(lab.pve, ["bridge", *args])
    assert p.returncode == 0, f"bridge {' '.join(args)}: {p.stderr}"
    return p.stdout


def ip_batch(ns: str, *cmds: str, tool: str = "ip") -> None:
    """Several `ip` (or `bridge`) commands in ns with one exec: each exec costs ~0.15 s under TCG."""
    p = subprocess.run(["ip", "netns", "exec", ns, tool, "-batch", "-"], input="\n".join(cmds) + "\n",
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, f"{tool} -batch in {ns}: {p.stderr}\n" + "\n".join(cmds)


def make_vlan_aware(lab, bridge: str = "vmbr0") -> None:
    lab.ip(lab.pve, "link", "set", bridge, "type", "bridge", "vlan_filtering", "1")


def self_vlans(lab, bridge: str = "vmbr0") -> set[int]:
    """The VIDs of the bridge device itself."""
    data = json.loads(bridge_cmd(lab, "-j", "vlan", "show", "dev", bridge) or "[]")
    out = set()
    for entry in data:
        if entry.get("ifname") == bridge:
            for v in entry["vlans"]:
                out |= set(range(v["vlan"], v.get("vlanEnd", v["vlan"]) + 1))
    return out


def add_trunk(lab, name: str = "lan", uplink: str = "eno1", bridge: str = "vmbr0",
              vids: str | None = "2-4094") -> str:
    """The LAN behind the PVE host's uplink: a namespace whose eth0 is the far end of eno1.

    On a VLAN-aware bridge the uplink gets `vids` as ifupdown2's bridge-vids
    does (PVID 1 stays untagged). The LAN namespace answers ARP only for
    addresses on the interface a request came in on (arp_ignore=1): with
    one address per VLAN device, Linux would otherwise answer for all of
    them in every VLAN.
    """
    ns = lab.add_namespace(f"{lab.prefix}-{name}")
    ip_batch(lab.pve, f"link add {uplink} type veth peer name eth0 netns {ns}",
             f"link set {uplink} master {bridge}", f"link set {uplink} up")
    if vids:
        bridge_cmd(lab, "vlan", "add", "dev", uplink, "vid", vids)
    p = lab.run(ns, ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore && ip link set eth0 up"])
    assert p.returncode == 0, p.stderr
    return ns


def add_holder(lab, ns: str, cidr: str, mac: str, vid: int | None = None, parent: str = "eth0",
               name: str | None = None) -> str:
    """A host holding cidr in VLAN vid (None: untagged) behind the trunk: a macvlan with its own
    MAC on eth0 or on eth0.<vid> (the VLAN device made on first use). Returns its device."""
    lower, cmds = parent, []
    made = lab.__dict__.setdefault("_vlan_devs", set())
    if vid is not None:
        lower = f"{parent}.{vid}"
        if (ns, lower) not in made:
            cmds += [f"link add link {parent} name {lower} type vlan id {vid}", f"link set {lower} up"]
            made.add((ns, lower))
    dev = name or f"h{vid or 0}x{mac.replace(':', '')[-4:]}"
    cmds += [f"link add link {lower} name {dev} address {mac} type macvlan mode bridge",
             f"addr add {cidr} dev {dev}", f"link set {dev} up"]
    ip_batch(ns, *cmds)
    return dev


def add_guest_port(lab, vmid: int, cidr: str, mac: str, vid: int | None, bridge: str = "vmbr0",
                   idx: int = 0) -> str:
    """A running guest's port, plugged as PVE plugs it on a VLAN-aware bridge
    (pve-common bridge_add_interface): veth<vmid>i<idx>, VLAN vid as its PVID, untagged."""
    ns = lab.add_namespace(f"{lab.prefix}-g{vmid}")
    port = f"veth{vmid}i{idx}"
    ip_batch(lab.pve, f"link add {port} type veth peer name eth0 netns {ns}", f"link set {port} master {bridge}")
    if vid is not None:
        ip_batch(lab.pve, f"vlan del dev {port} vid 1", f"vlan add dev {port} vid {vid} pvid untagged",
                 tool="bridge")
    ip_batch(lab.pve, f"link set {port} up")
    ip_batch(ns, f"link set eth0 address {mac}", f"addr add {cidr} dev eth0", "link set eth0 up")
    return ns


def add_pve_vlan_bridge(lab, vid: int, uplink: str = "eno1", bridge: str = "vmbr0") -> None:
    """What PVE makes for the first guest with tag=vid on a traditional bridge:
    eno1.<vid> enslaved to vmbr0v<vid> (pve-common activate_bridge_vlan)."""
    vdev, vbr = f"{uplink}.{vid}", f"{bridge}v{vid}"
    ip_batch(lab.pve, f"link add link {uplink} name {vdev} type vlan id {vid}",
             f"link add {vbr} type bridge forward_delay 0 stp_state 0", f"link set {vdev} master {vbr}",
             f"link set {vdev} up", f"link set {vbr} up")


def add_vlan_device(lab, vid: int, up: bool = True, cidr: str | None = None, uplink: str = "eno1") -> str:
    """An admin's own eno1.<vid> on the uplink, with no vmbr0v<vid> (not PVE's arrangement)."""
    vdev = f"{uplink}.{vid}"
    cmds = [f"link add link {uplink} name {vdev} type vlan id {vid}"]
    cmds += [f"addr add {cidr} dev {vdev}"] if cidr else []
    cmds += [f"link set {vdev} up"] if up else []
    ip_batch(lab.pve, *cmds)
    return vdev


def probe_ports(lab) -> list[str]:
    """phoenix-hook's temporary probe ports (and their peers) present in the PVE namespace."""
    links = json.loads(lab.ip(lab.pve, "-j", "link", "show").stdout or "[]")
    return [x["ifname"] for x in links if PROBE_PORT.match(x["ifname"])]
