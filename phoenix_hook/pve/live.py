"""The addresses a running guest really holds, read the way Proxmox VE reads them.

Containers (pve-container src/PVE/LXC.pm find_lxc_pid, get_interfaces):
`lxc-info -n <vmid> -p` prints `PID:  <pid>`, then
`nsenter -t <pid> --net -- ip --json a` lists the container's interfaces.
VMs (qemu-server src/PVE/CLI/qm.pm, API2/Qemu/Agent.pm): the QEMU guest agent,
`qm guest cmd <vmid> network-get-interfaces`, which prints the agent's result
array. The API's answers (`/nodes/{node}/lxc/{vmid}/interfaces`,
`/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces`) have the same keys
and are read by the same parser (pve/api.py fetches them).

Pure parsers at the top (any input, never raise); the readers that run the
commands at the bottom.
"""
from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
from phoenix_hook.records import dataclass

TIMEOUT_S = 10


@dataclass(frozen=True)
class LiveAddress:
    ip: str              # RFC 5952 / dotted form
    prefixlen: int | None
    family: int          # 4 or 6

    @property
    def text(self) -> str:
        return self.ip + (f"/{self.prefixlen}" if self.prefixlen is not None else "")


@dataclass(frozen=True)
class LiveIface:
    name: str
    mac: str | None
    addresses: tuple[LiveAddress, ...] = ()


class LiveError(Exception):
    """A guest's addresses could not be read; str() is the note for the admin."""


class NoAgent(LiveError):
    """A VM without a (running) guest agent: skipped with a note, not an error."""


def _mac(value) -> str | None:
    if not isinstance(value, str):
        return None
    m = value.strip().lower()
    if not re.match(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$", m) or m == "00:00:00:00:00:00":
        return None
    return m


def _address(ip, prefix, kind) -> LiveAddress | None:
    if not isinstance(ip, str):
        return None
    try:
        a = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if kind is not None and {"inet": 4, "ipv4": 4, "inet6": 6, "ipv6": 6}.get(kind) not in (None, a.version):
        return None
    plen = prefix if isinstance(prefix, int) and not isinstance(prefix, bool) else None
    if plen is not None and not 0 <= plen <= (32 if a.version == 4 else 128):
        plen = None
    return LiveAddress(ip=a.compressed, prefixlen=plen, family=a.version)


def parse_ip_json(text) -> list[LiveIface]:
    """`ip --json a`: [{"ifname", "address" (MAC), "addr_info": [{"family", "local", "prefixlen"}]}]."""
    try:
        data = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return []
    out = []
    for link in data if isinstance(data, list) else []:
        if not isinstance(link, dict) or not isinstance(link.get("ifname"), str):
            continue
        infos = link.get("addr_info")
        addrs = []
        for a in infos if isinstance(infos, list) else []:
            # an IPv6 address whose DAD failed is not held (IFA_F_DADFAILED, "dadfailed")
            if isinstance(a, dict) and not a.get("dadfailed"):
                got = _address(a.get("local"), a.get("prefixlen"), a.get("family"))
                if got:
                    addrs.append(got)
        out.append(LiveIface(name=link["ifname"], mac=_mac(link.get("address")), addresses=tuple(addrs)))
    return out


def parse_interfaces(data) -> list[LiveIface]:
    """PVE's `interfaces` answer (PVE::LXC::get_interfaces) or the guest agent's
    network-get-interfaces result, bare or as {"result": [...]}:
    [{"name", "hardware-address" (or "hwaddr"), "ip-addresses": [{"ip-address",
    "ip-address-type" (inet/inet6 from PVE, ipv4/ipv6 from the agent), "prefix"}]}]."""
    if isinstance(data, dict) and "result" in data:
        data = data["result"]
    out = []
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        ips = item.get("ip-addresses")
        addrs = []
        for a in ips if isinstance(ips, list) else []:
            if isinstance(a, dict):
                got = _address(a.get("ip-address"), a.get("prefix"), a.get("ip-address-type"))
                if got:
                    addrs.append(got)
        mac = _mac(item.get("hardware-address")) or _mac(item.get("hwaddr"))
        out.append(LiveIface(name=item["name"], mac=mac, addresses=tuple(addrs)))
    return out


def parse_lxc_pid(text) -> int | None:
    """`lxc-info -n <vmid> -p`: 'PID:          1234' (the regex of find_lxc_pid)."""
    if not isinstance(text, str):
        return None
    for line in text.splitlines():
        m = re.match(r"^PID:\s+(\d+)$", line.strip())
        if m:
            return int(m.group(1))
    return None


# -- readers (the edge) -----------------------------------------------------------------
def _run(argv) -> subprocess.CompletedProcess:
    exe = shutil.which(argv[0]) or shutil.which(argv[0], path="/usr/sbin:/usr/bin:/sbin:/bin")
    if exe is None:
        raise LiveError(f"{argv[0]} is not installed here (run --live on a Proxmox VE node, "
                        f"or use --source api)")
    try:
        return subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise LiveError(f"{' '.join(argv)} did not answer within {TIMEOUT_S} s") from None
    except OSError as exc:
        raise LiveError(f"cannot run {argv[0]}: {exc.strerror}") from None


def _first_line(p) -> str:
    text = (p.stderr or p.stdout or "").strip()
    return text.splitlines()[-1] if text else f"exit code {p.returncode}"


def container_pid(vmid: int) -> int | None:
    """The container's init PID, None when it is not running (lxc-info prints no PID)."""
    p = _run(["lxc-info", "-n", str(vmid), "-p"])
    return parse_lxc_pid(p.stdout) if p.returncode == 0 else None


def container_interfaces(vmid: int) -> list[LiveIface] | None:
    """A running container's interfaces, None when it is not running."""
    pid = container_pid(vmid)
    if pid is None:
        return None
    p = _run(["nsenter", "-t", str(pid), "--net", "--", "ip", "--json", "a"])
    if p.returncode != 0:
        raise LiveError(f"nsenter into its network (PID {pid}) failed: {_first_line(p)}")
    out = parse_ip_json(p.stdout)
    if not out:
        raise LiveError(f"`ip --json a` in its network (PID {pid}) gave nothing readable")
    return out


# qemu-server PVE/QemuServer/Agent.pm assert_agent_available
NO_AGENT = re.compile(r"No QEMU guest agent configured|QEMU guest agent is not running|"
                      r"guest agent is not running", re.I)
NOT_RUNNING = re.compile(r"VM \d+ (is )?not running", re.I)


def vm_interfaces(vmid: int) -> list[LiveIface] | None:
    """A running VM's interfaces from its guest agent; None when the VM is not running,
    NoAgent when it has no agent (or the agent does not answer)."""
    p = _run(["qm", "guest", "cmd", str(vmid), "network-get-interfaces"])
    if p.returncode != 0:
        why = _first_line(p)
        if NOT_RUNNING.search(why):
            return None
        if NO_AGENT.search(why):
            raise NoAgent(f"{why.rstrip('.')}, so its addresses cannot be read "
                          f"(enable the agent: qm set {vmid} --agent enabled=1, and install "
                          f"qemu-guest-agent in the VM)")
        raise LiveError(f"qm guest cmd {vmid} network-get-interfaces failed: {why}")
    try:
        data = json.loads(p.stdout)
    except ValueError:
        raise LiveError("its guest agent gave no JSON") from None
    return parse_interfaces(data)


WORKERS = 8


def read_running(source, guests, node: str):
    """(vmid -> [LiveIface], skipped [{"vmid", "type", "node", "kind", "reason"}], how many not
    running); kind "no-agent" (a VM without a guest agent) or "error".

    Files source (on a node): this node's guests, running by PVE's own test
    (files.guest_running), read with lxc-info + nsenter or the guest agent.
    API source: every running guest of the cluster (/cluster/resources status),
    read through the API, which proxies to the guest's node.
    """
    from concurrent.futures import ThreadPoolExecutor

    from phoenix_hook.pve.files import guest_running
    api = hasattr(source, "live_interfaces")
    todo = []
    stopped = 0
    for g in guests:
        if g.template:
            continue
        if api:
            if source.status(g.vmid) != "running":
                stopped += 1
                continue
        elif g.node != node:
            continue
        elif not guest_running(g.vmid, g.type):
            stopped += 1
            continue
        todo.append(g)

    def one(g):
        try:
            if api:
                return g, source.live_interfaces(g.node, g.type, g.vmid), None
            return g, (container_interfaces(g.vmid) if g.type == "lxc" else vm_interfaces(g.vmid)), None
        except NoAgent as exc:
            return g, None, ("no-agent", str(exc))
        except LiveError as exc:
            return g, None, ("error", str(exc))
        except Exception as exc:             # an API failure for one guest: a note, not the run's end
            return g, None, ("error", " ".join(str(exc).split()))

    seen, skipped = {}, []
    if todo:
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(todo)), thread_name_prefix="phx-live") as pool:
            results = list(pool.map(one, todo))
        for g, ifaces, why in results:
            if why is not None:
                skipped.append({"vmid": g.vmid, "type": g.type, "node": g.node, "kind": why[0],
                                "reason": f"{g.label} skipped: {why[1]}"})
            elif ifaces is None:
                stopped += 1
            else:
                seen[g.vmid] = ifaces
    return seen, skipped, stopped
