#!/usr/bin/env python3
"""Send chosen Ethernet frames from a lab namespace: what the watch tests and benchmark play.

Runs only inside a lab namespace (tests/conftest.py, bench/): it sends
whatever it is told, spoofed MACs included.

    sender.py --iface eth0 --hex FRAME [--hex FRAME ...]   each frame once, in order
    sender.py --iface eth0 --spoof IP --count N [--vlan V] [--ip6]
        N gratuitous ARPs (IPv6: unsolicited NAs) for IP, each from a new random
        locally administered MAC, as fast as the socket takes them
    sender.py --iface eth0 --unrelated RATE --seconds S [--hosts N --base IP]
        ARP requests between random 172.16.0.0/12 addresses (no guest has one) at
        RATE frames per second for S seconds, paced in 10 ms bursts; with --hosts,
        between N stations base, base+1, ... (MAC 02:aa:bb:00:HH:LL each), as on a busy LAN
    sender.py --iface eth0 --stdin
        one hex frame per input line; after each send prints "sent <CLOCK_MONOTONIC seconds
        just before the send>"

Prints "ready" once the socket is open (stdin and pacing modes).
"""
from __future__ import annotations

import argparse
import errno
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from phoenix_hook.net import arp, ndp  # noqa: E402
from phoenix_hook.net.wire import Wire, WireError  # noqa: E402


def random_mac(rng: random.Random) -> str:
    first = (rng.randrange(256) & 0xFC) | 0x02          # unicast, locally administered
    return ":".join(f"{b:02x}" for b in [first] + [rng.randrange(256) for _ in range(5)])


def send(wire: Wire, iface: str, frame: bytes) -> None:
    """Send; on a full queue (ENOBUFS) wait a moment and try again: every frame goes out."""
    for _ in range(1000):
        try:
            wire.send(iface, frame)
            return
        except WireError as exc:
            if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
                raise
            time.sleep(0.001)
    raise SystemExit("sender: the socket stayed full")


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--iface", required=True)
    p.add_argument("--hex", action="append", default=[])
    p.add_argument("--spoof")
    p.add_argument("--ip6", action="store_true")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--vlan", type=int)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--unrelated", type=int)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--stdin", action="store_true")
    p.add_argument("--hosts", type=int, default=0)
    p.add_argument("--base", default="10.0.0.10")
    a = p.parse_args(argv)
    rng = random.Random(a.seed)
    with Wire([a.iface]) as wire:
        for h in a.hex:
            send(wire, a.iface, bytes.fromhex(h))
        if a.spoof:
            for _ in range(a.count):
                mac = random_mac(rng)
                frame = (ndp.build_advert(mac, a.spoof, vlan=a.vlan) if a.ip6
                         else arp.build_announcement(mac, a.spoof, vlan=a.vlan))
                send(wire, a.iface, frame)
            print(f"sent {a.count}", flush=True)
        if a.unrelated:
            print("ready", flush=True)
            src = "02:aa:bb:00:00:01"
            base = int.from_bytes(arp.ip_to_bytes(a.base), "big")
            stations = [(arp.ip_to_str((base + i).to_bytes(4, "big")), f"02:aa:bb:00:{i >> 8:02x}:{i & 255:02x}")
                        for i in range(a.hosts)]
            burst = max(1, a.unrelated // 100)
            start = time.monotonic()
            sent = 0
            while time.monotonic() - start < a.seconds:
                for _ in range(burst):
                    if stations:
                        (sip, smac), (tip, _tmac) = rng.choice(stations), rng.choice(stations)
                        frame = arp.build_request(smac, sip, tip)
                    else:
                        sip = f"172.{16 + rng.randrange(16)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                        tip = f"172.{16 + rng.randrange(16)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                        frame = arp.build_request(src, sip, tip)
                    send(wire, a.iface, frame)
                    sent += 1
                ahead = start + sent / a.unrelated - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            print(f"sent {sent} in {time.monotonic() - start:.2f} s", flush=True)
        if a.stdin:
            print("ready", flush=True)
            for line in sys.stdin:
                line = line.strip()
                if not line:
                    continue
                t = time.monotonic()
                send(wire, a.iface, bytes.fromhex(line))
                print(f"sent {t:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
