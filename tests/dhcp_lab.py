"""Real DHCP servers and a real DHCP client inside a test's own namespaces.

dnsmasq, ISC dhcpd and Kea each serve one pool from a lab namespace and write
their lease file under the test's tmp_path; ISC dhclient (isc-dhcp-client)
asks from another namespace. The client's script only puts the address on its
interface: no resolv.conf, no routes, nothing outside the namespace. Every
process is the lab's (Lab.spawn), killed when the lab closes.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

PACKAGES = {"dnsmasq": "dnsmasq-base", "dhcpd": "isc-dhcp-server", "kea-dhcp4": "kea-dhcp4-server",
            "dhclient": "isc-dhcp-client"}


def need(binary: str) -> str:
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        pytest.skip(f"{binary} is not installed (Debian package {PACKAGES[binary]}; ./dev.sh setup "
                    f"installs it as root)")
    return path


def dnsmasq(lab, ns, tmp: Path, first: str, last: str, hosts=(), iface="eth0") -> Path:
    """dnsmasq as a DHCP server only (--port=0: no DNS), pool first..last of a /24."""
    leases = tmp / "dnsmasq.leases"
    leases.touch()
    argv = [need("dnsmasq"), "--no-daemon", "--conf-file=/dev/null", "--port=0", "--no-hosts",
            "--no-resolv", f"--interface={iface}", "--bind-interfaces",
            f"--dhcp-range={first},{last},255.255.255.0,1h", f"--dhcp-leasefile={leases}",
            f"--pid-file={tmp / 'dnsmasq.pid'}", "--user=root", "--group=root"]
    argv += [f"--dhcp-host={h}" for h in hosts]
    lab.spawn(ns, argv)
    return leases


def dhcpd(lab, ns, tmp: Path, first: str, last: str, iface="eth0") -> Path:
    """ISC dhcpd in the foreground with its own config and lease file."""
    leases = tmp / "dhcpd.leases"
    leases.touch()
    conf = tmp / "dhcpd.conf"
    conf.write_text("authoritative;\nddns-update-style none;\ndefault-lease-time 3600;\nmax-lease-time 7200;\n"
                    f"subnet 10.0.0.0 netmask 255.255.255.0 {{\n  range {first} {last};\n}}\n")
    lab.spawn(ns, [need("dhcpd"), "-f", "-4", "-cf", str(conf), "-lf", str(leases),
                   "-pf", str(tmp / "dhcpd.pid"), iface])
    return leases


def kea(lab, ns, tmp: Path, first: str, last: str, iface="eth0") -> Path:
    """kea-dhcp4 with a memfile lease database under tmp (raw sockets, as on a server)."""
    exe = need("kea-dhcp4")
    leases = tmp / "kea-leases4.csv"
    conf = tmp / "kea-dhcp4.conf"
    conf.write_text(json.dumps({"Dhcp4": {
        "interfaces-config": {"interfaces": [iface], "dhcp-socket-type": "raw"},
        "lease-database": {"type": "memfile", "persist": True, "name": str(leases), "lfc-interval": 0},
        "valid-lifetime": 3600,
        "subnet4": [{"id": 1, "subnet": "10.0.0.0/24", "pools": [{"pool": f"{first} - {last}"}]}],
        "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "WARN"}]}}))
    env = dict(os.environ, KEA_LOCKFILE_DIR=str(tmp), KEA_PIDFILE_DIR=str(tmp), KEA_DHCP_DATA_DIR=str(tmp))
    lab.spawn(ns, [exe, "-c", str(conf)], env=env)
    return leases


def dhclient(lab, ns, tmp: Path, hostname: str, iface="eth0") -> None:
    """ISC dhclient in the foreground, once, sending a host name; the address goes on iface."""
    exe = need("dhclient")
    script = tmp / f"dhclient-script-{ns}"
    script.write_text('#!/bin/sh\ncase "$reason" in\n  BOUND|RENEW|REBIND|REBOOT)\n'
                      '    ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;\nesac\nexit 0\n')
    script.chmod(0o755)
    conf = tmp / f"dhclient-{ns}.conf"
    conf.write_text(f'send host-name "{hostname}";\n')
    lab.spawn(ns, [exe, "-d", "-1", "-sf", str(script), "-lf", str(tmp / f"dhclient-{ns}.leases"),
                   "-pf", str(tmp / f"dhclient-{ns}.pid"), "-cf", str(conf), iface])


def release(lab, ns, tmp: Path, iface="eth0") -> None:
    """dhclient -r: the client sends DHCPRELEASE for its lease (the server records it)."""
    p = lab.run(ns, [need("dhclient"), "-r", "-sf", str(tmp / f"dhclient-script-{ns}"),
                     "-lf", str(tmp / f"dhclient-{ns}.leases"), "-pf", str(tmp / f"dhclient-{ns}-r.pid"),
                     iface], timeout=30)
    assert p.returncode == 0, p.stderr


def wait_for(path: Path, needle: str, timeout: float = 30.0, gone: bool = False) -> str:
    """Wait until the lease file holds needle (or, gone=True, a later change after it)."""
    end = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        if needle in text:
            return text
        if time.monotonic() >= end:
            raise AssertionError(f"{path.name} never held {needle!r}; it holds: {text[-600:]!r}")
        time.sleep(0.05)
