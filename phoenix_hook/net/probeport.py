"""A temporary bridge port in one VLAN: how the host probes a VLAN its VLAN-aware bridge is not in.

On a standard PVE VLAN-aware bridge (`bridge-vlan-aware yes`, `bridge-vids
2-4094`) the VIDs go to the bridge's ports only; the bridge device itself
stays in VID 1 (ifupdown2 addons/bridge.py; REFERENCE section 4). A tagged
frame the host sends on it in VLAN N is dropped by the bridge (br_dev_xmit,
the send still "succeeds"), and answers in VLAN N never reach the host: a
probe there would always look free.

So the probe goes through a port of its own, plugged into VLAN N exactly as
PVE plugs a guest with tag=N (pve-common Network.pm bridge_add_interface:
`bridge vlan del dev P vid 1`, `bridge vlan add dev P vid N pvid untagged`):
a veth pair whose bridge end is that port and whose host end sends and hears
VLAN N untagged. The frames take the path the guest's own frames will take.

Why a port and not "add VLAN N to the bridge itself for the probe, remove it
after": that changes the admin's bridge, and two guests starting in VLAN N
at once would race (the first to finish removes N under the other's probe,
whose silence then reads "free"); a crash would leave N on the bridge with no
way to tell it from the admin's own. A port of our own is private to one run:
concurrent runs get their own, and a stale one is recognised by its name.

Names: "vethphx<pid><i>" (bridge end) and "phxq<pid><i>" (host end), pid and
index in base 36 (hostnet.PROBE_PORT): PVE's ifupdown2 leaves ports matching
^(tap|veth|fwpr) on the bridge at ifreload, and nothing in PVE takes it for a
guest's veth<vmid>i<n>. IPv6 address generation is off on both ends (PVE does
the same for guest ports), so the port itself says nothing on the LAN. The
port is deleted when the probe ends, also on a timeout (the caller's finally);
one left by a check killed mid-probe is deleted by the hook's watchdog right
after, or else by the next run that opens a port (its owner's PID is gone).
"""
from __future__ import annotations

import os
import subprocess
import time
from phoenix_hook.records import dataclass

from phoenix_hook.net import hostnet

BR_STATE_FORWARDING = 3          # /sys/class/net/<port>/brport/state (linux/if_bridge.h)
FORWARD_WAIT_S = 0.5             # a port on a bridge without STP forwards at once
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


class PortError(Exception):
    """The temporary port could not be made or used; the message says why, for the admin."""


def _b36(n: int, width: int) -> str:
    out = ""
    for _ in range(width):
        n, r = divmod(n, 36)
        out = _B36[r] + out
    return out


def names(pid: int, index: int) -> tuple[str, str]:
    """(bridge end, host end) of this process's index-th port."""
    tail = _b36(pid, 5) + _B36[index % 36]
    return f"vethphx{tail}", f"phxq{tail}"


def owner_pid(name: str) -> int | None:
    """The PID encoded in a probe port's name, None for any other name."""
    m = hostnet.PROBE_PORT.match(name)
    return int(m.group(2), 36) if m else None


@dataclass
class ProbePort:
    bridge: str
    vid: int
    port: str          # the bridge end, in VLAN vid (PVID, egress untagged)
    peer: str          # the host end: send and listen here, untagged
    mac: str           # the host end's MAC: the probes' sender
    ifindex: str

    def broken(self) -> str | None:
        """Why the port cannot carry the probe any more (an ifreload took it off the bridge,
        someone deleted it), or None while it is whole."""
        base = os.path.join(hostnet.SYS_NET, self.port)
        if _read(os.path.join(base, "ifindex")) != self.ifindex:
            return f"the temporary probe port {self.port} was deleted during the probe"
        master = os.path.basename(os.path.realpath(os.path.join(base, "master")))
        if master != self.bridge:
            return f"the temporary probe port {self.port} was taken off {self.bridge} during the probe"
        if _read(os.path.join(base, "brport", "state")) != str(BR_STATE_FORWARDING):
            return f"the temporary probe port {self.port} stopped forwarding during the probe"
        if _read(os.path.join(hostnet.SYS_NET, self.peer, "carrier")) != "1":
            return f"the temporary probe port {self.peer} lost its carrier during the probe"
        return None

    def close(self) -> None:
        _delete(self.port)                           # deleting one end deletes the pair


_count = 0


_read = hostnet.read_sys


COMMAND_WAIT_S = 10.0            # rtnl_lock can be busy while many guests start at once


def _run(argv, stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=COMMAND_WAIT_S)
    except FileNotFoundError:
        raise PortError(f"{argv[0]} (iproute2) is not installed") from None
    except subprocess.TimeoutExpired:
        raise PortError(f"{argv[0]} did not answer within {COMMAND_WAIT_S:g} s") from None


def _delete(name: str) -> None:
    """`ip link del name`, waited for up to COMMAND_WAIT_S. A slower one is left to finish
    on its own (never killed half-way); a port it leaves is stale for the next run."""
    try:
        p = subprocess.Popen(["ip", "link", "del", name], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        return
    try:
        p.wait(timeout=COMMAND_WAIT_S)
    except subprocess.TimeoutExpired:
        pass


def clean_stale() -> list[str]:
    """Delete probe ports whose owner process is gone (a run killed mid-probe). Returns their names."""
    try:
        present = os.listdir(hostnet.SYS_NET)
    except OSError:
        return []
    gone = []
    for name in present:
        pid = owner_pid(name)
        if pid is None or not name.startswith("vethphx") or pid == os.getpid():
            continue
        if not os.path.exists(f"/proc/{pid}"):
            _delete(name)
            gone.append(name)
    return gone


def open_port(bridge: str, vid: int, wait_s: float = FORWARD_WAIT_S) -> ProbePort:
    """Plug a temporary port into bridge in VLAN vid, as PVE plugs a guest with tag=vid.

    Raises PortError (nothing left behind) when it cannot be made or does
    not forward within wait_s (a bridge running STP holds a new port in
    listening/learning for twice its forward delay).
    """
    global _count
    clean_stale()
    port, peer = names(os.getpid(), _count)
    _count += 1
    what = f"a temporary port in VLAN {vid} on {bridge}"
    # One `ip` for the pair (no IPv6 address generation: it stays silent), one
    # `bridge` for its VLAN: as pve-common bridge_add_interface does for a guest.
    p = _run(["ip", "-batch", "-"], "\n".join([
        f"link add {port} type veth peer name {peer}",
        f"link set {port} addrgenmode none",
        f"link set {peer} addrgenmode none",
        f"link set {port} master {bridge}",
    ]) + "\n")
    if p.returncode != 0:
        _delete(port)
        raise PortError(f"could not add {what}: {_first_line(p.stderr)}")
    try:
        default_pvid = _read(os.path.join(hostnet.SYS_NET, bridge, "bridge", "default_pvid")) or "1"
        cmds = [f"vlan del dev {port} vid {default_pvid}"] if default_pvid not in ("0", str(vid)) else []
        cmds.append(f"vlan add dev {port} vid {vid} pvid untagged")
        p = _run(["bridge", "-batch", "-"], "\n".join(cmds) + "\n")
        if p.returncode != 0:
            raise PortError(f"could not put {what}: {_first_line(p.stderr)}")
        p = _run(["ip", "-batch", "-"], f"link set {port} up\nlink set {peer} up\n")
        if p.returncode != 0:
            raise PortError(f"could not bring up {what}: {_first_line(p.stderr)}")
        state = os.path.join(hostnet.SYS_NET, port, "brport", "state")
        end = time.monotonic() + wait_s
        while not (_read(state) == str(BR_STATE_FORWARDING)
                   and _read(os.path.join(hostnet.SYS_NET, peer, "carrier")) == "1"):
            if time.monotonic() >= end:
                raise PortError(f"{what} did not forward within {wait_s:g} s ({bridge} runs STP?); "
                                f"add VLAN {vid} to {bridge} itself to probe there: "
                                f"bridge vlan add dev {bridge} vid {vid} self")
            time.sleep(0.005)
        mac = _read(os.path.join(hostnet.SYS_NET, peer, "address"))
        ifindex = _read(os.path.join(hostnet.SYS_NET, port, "ifindex"))
        if not mac or not ifindex:
            raise PortError(f"{what} vanished while it was made")
    except BaseException:
        _delete(port)
        raise
    return ProbePort(bridge=bridge, vid=vid, port=port, peer=peer, mac=mac.lower(), ifindex=ifindex)


def _first_line(text: str) -> str:
    line = (text or "").strip().splitlines()
    return line[0] if line else "no reason given"
