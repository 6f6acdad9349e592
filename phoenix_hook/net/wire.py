"""The one module with raw sockets: send and receive Ethernet frames on an interface.

No decisions live here: frames go out as given, frames come back as bytes
with the VLAN tag the kernel reported. What is a conflict is acd.py's call.

- AF_PACKET, SOCK_RAW: we build whole frames (arp.py), so tagged frames for
  a VLAN guest are sent as-is on the bridge (REFERENCE section 4). The socket
  is bound with protocol ETH_P_ALL, which is also the protocol of what it
  sends: the kernel looks for an in-band 802.1Q tag only when that is 0 or
  ETH_P_ALL (af_packet.c packet_parse_headers); with any other a VLAN-aware
  bridge takes a tagged frame for untagged traffic of its PVID, and the
  probe asks the wrong VLAN (tests/vmlab/test_vm_wire.py shows both).
- A classic BPF program on the socket drops everything but ARP and IPv6
  Neighbor Solicitations/Advertisements (untagged, or 802.1Q-tagged in the
  frame) and our own outgoing copies, so a busy bridge does not wake us for
  every frame; arp.parse / ndp.parse still validate each frame.
- PACKET_AUXDATA gives the VLAN tag the kernel moved out of the frame on
  receive (tpacket_auxdata.tp_vlan_tci, TP_STATUS_VLAN_VALID), see
  linux/if_packet.h and packet(7).
- Lost frames are counted, never guessed: the kernel drops what does not fit
  the socket's receive buffer and says how many in PACKET_STATISTICS
  (tpacket_stats.tp_drops, reset on every read; packet(7)). Under a storm a
  holder's answer can be among them, so callers ask `dropped()` and treat
  silence with losses as "could not check". To make losses rare, a probe's
  socket only takes ARP / ND about the probed addresses (`Wire(..., only=)`)
  and asks for a large buffer (SO_RCVBUFFORCE, as root; else SO_RCVBUF).
"""
from __future__ import annotations

import array
import errno
import os
import select
# The C module itself: socket.py's enum wrappers and its selectors import cost a
# hook run about 2 ms of CPU, and only the C socket type is used here.
import _socket as socket
import struct

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33                   # asm-generic/socket.h; needs CAP_NET_ADMIN
PACKET_STATISTICS = 6
_STATS = struct.Struct("II")          # struct tpacket_stats {tp_packets, tp_drops}
TP_STATUS_VLAN_VALID = 0x10
PACKET_OUTGOING = 4
_AUXDATA = struct.Struct("IIIHHHH")   # struct tpacket_auxdata
_CMSG_SPACE = socket.CMSG_SPACE(_AUXDATA.size)
_RCVBUF = 4 << 20
MAX_NARROW = 256                      # more addresses than this: the plain ARP/ND filter
MAX_BATCH = 256


class WireError(OSError):
    """The wire could not be used: no such interface, no permission, a failed send."""


def _arp_filter() -> bytes:
    """Classic BPF: accept ARP and IPv6 NS/NA (plain or in-frame 802.1Q), drop outgoing copies.

    IPv6 is matched at fixed offsets: next header 58 (ICMPv6) right after
    the 40-byte IPv6 header, ICMPv6 type 135 (NS) or 136 (NA). ND messages
    carry no extension headers in practice; one that does is not ours
    to judge (ndp.py does not follow them either). X holds the tag's
    4 bytes so one tail serves both layouts. Equivalent bpf_asm:
        ld #type; jeq #4, drop          ; PACKET_OUTGOING: our own frames
        ldx #0
        ldh [12]; jneq #0x8100, check
        ldx #4; ldh [16]
        check: jeq #0x0806, accept      ; ARP
        jneq #0x86dd, drop
        ldb [x + 20]; jneq #58, drop    ; IPv6 next header: ICMPv6
        ldb [x + 54]; jeq #135, accept  ; Neighbor Solicitation
        jeq #136, accept                ; Neighbor Advertisement
        drop: ret #0 / accept: ret #65535
    """
    ld_w_abs, ld_h_abs, ld_b_ind, ldx_imm, jeq, ret = 0x20, 0x28, 0x50, 0x01, 0x15, 0x06
    skf_ad_pkttype = (-0x1000 + 4) & 0xFFFFFFFF
    prog = [
        (ld_w_abs, 0, 0, skf_ad_pkttype),  # 0
        (jeq, 12, 0, PACKET_OUTGOING),     # 1 -> 14 drop
        (ldx_imm, 0, 0, 0),                # 2
        (ld_h_abs, 0, 0, 12),              # 3
        (jeq, 0, 2, 0x8100),               # 4 untagged -> 7
        (ldx_imm, 0, 0, 4),                # 5
        (ld_h_abs, 0, 0, 16),              # 6
        (jeq, 7, 0, 0x0806),               # 7 ARP -> 15 accept
        (jeq, 0, 5, 0x86DD),               # 8 not IPv6 -> 14 drop
        (ld_b_ind, 0, 0, 20),              # 9  IPv6 next header
        (jeq, 0, 3, 58),                   # 10 not ICMPv6 -> 14 drop
        (ld_b_ind, 0, 0, 54),              # 11 ICMPv6 type
        (jeq, 2, 0, 135),                  # 12 NS -> 15 accept
        (jeq, 1, 0, 136),                  # 13 NA -> 15 accept
        (ret, 0, 0, 0),                    # 14 drop
        (ret, 0, 0, 0xFFFF),               # 15 accept
    ]
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


_FILTER = _arp_filter()


def raw_access() -> str | None:
    """None when this process may open raw (AF_PACKET) sockets, else why not.

    Opens one and closes it at once: protocol 0 and never bound, so it sees no
    frame and sends none. This asks the kernel, so root without CAP_NET_RAW
    (a container, `setpriv --bounding-set -net_raw`) and a non-root user with
    the capability are both told right; the uid alone would tell neither.
    """
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        return "raw sockets need root (CAP_NET_RAW)"
    except OSError as exc:
        return f"this system has no raw (AF_PACKET) sockets: {exc.strerror}"
    sock.close()
    return None


class Wire:
    """Raw Ethernet access to a set of interfaces (one AF_PACKET socket each)."""

    def __init__(self, ifnames, only=None):
        """only: IPv4/IPv6 addresses (strings); when given, the kernel passes just the
        ARP whose sender or target address, and the NS/NA whose target or source
        address, is one of them (narrow_filter)."""
        self._socks: dict[str, socket.socket] = {}
        self._by_fd: dict[int, str] = {}
        self._filter = narrow_filter(only) if only is not None else _FILTER
        self._dropped: dict[str, int] = {}
        try:
            for name in dict.fromkeys(ifnames):
                self._open(name)
        except BaseException:
            self.close()
            raise

    def _open(self, name: str) -> None:
        try:
            # Protocol 0 first: the socket receives nothing until bound, so no
            # unfiltered frame slips in before the filter is attached.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise WireError(errno.EPERM, "raw sockets need root (CAP_NET_RAW)") from None
        except OSError as exc:
            raise WireError(exc.errno, f"no raw (AF_PACKET) sockets here: {exc.strerror}") from None
        self._socks[name] = sock
        try:
            # struct sock_fprog {len, *filter}: the address of a buffer that
            # outlives the setsockopt call (array, not ctypes: 3 ms less per hook run).
            buf = array.array("B", self._filter)
            fprog = struct.pack("HL", len(self._filter) // 8, buf.buffer_info()[0])
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        except OSError as exc:
            raise WireError(exc.errno, f"cannot set up the ARP filter on {name}: {exc.strerror}") from None
        _raise_rcvbuf(sock)
        try:
            sock.bind((name, ETH_P_ALL))
        except OSError as exc:
            raise WireError(exc.errno, f"cannot open {name}: {exc.strerror}") from None
        sock.setblocking(False)
        self._by_fd[sock.fileno()] = name

    def send(self, ifname: str, frame: bytes) -> None:
        """Send one frame; any failure is an error, never silently 'sent'."""
        try:
            sent = self._socks[ifname].send(frame)
        except OSError as exc:
            raise WireError(exc.errno, f"sending on {ifname} failed: {os.strerror(exc.errno or 0)}") from None
        if sent != len(frame):
            raise WireError(errno.EIO, f"sending on {ifname} failed: short write")

    def receive(self, timeout: float):
        """Wait up to timeout seconds; return [(ifname, frame, aux_vlan)] of all frames ready."""
        out = []
        try:
            ready, _, _ = select.select(list(self._socks.values()), [], [], max(0.0, timeout))
        except InterruptedError:
            return out
        except OSError as exc:
            raise WireError(exc.errno, f"waiting for frames failed: {exc.strerror}") from None
        for sock in ready:
            name = self._by_fd[sock.fileno()]
            # At most MAX_BATCH frames per call: under a storm (a switching
            # loop) the caller still gets back to its clock and deadline.
            for _ in range(MAX_BATCH):
                try:
                    frame, ancdata, _flags, addr = sock.recvmsg(65535, _CMSG_SPACE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    # e.g. ENETDOWN when the bridge goes down mid-probe: the
                    # probe proves nothing now, which is an error, not "clear"
                    raise WireError(exc.errno, f"receiving on {name} failed: {exc.strerror}") from None
                if addr[2] == PACKET_OUTGOING:
                    continue
                out.append((name, frame, _vlan_from(ancdata)))
        return out

    def dropped(self) -> dict[str, int]:
        """Frames the kernel dropped on each interface since this Wire opened (the
        receive buffer was full). An interface whose counter cannot be read counts
        as one loss: unknown is not "none lost"."""
        for name, sock in self._socks.items():
            try:
                _packets, drops = _STATS.unpack(sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size))
            except OSError:
                drops = 1
            self._dropped[name] = self._dropped.get(name, 0) + drops   # the read reset it
        return dict(self._dropped)

    def close(self) -> None:
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()
        self._by_fd.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _raise_rcvbuf(sock) -> None:
    """A large receive buffer: SO_RCVBUFFORCE passes net.core.rmem_max (root), SO_RCVBUF
    is capped by it. A smaller buffer only matters under a flood, which dropped() reports."""
    for opt in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, _RCVBUF)
            return
        except OSError:
            continue


def narrow_filter(addresses) -> bytes:
    """Classic BPF like _arp_filter, but only for frames about `addresses`.

    ARP (RFC 826): the sender protocol address (ARP offset 14) or the target
    one (offset 24) is a probed IPv4 address; that covers replies, requests
    from the address, announcements and rival probes (RFC 5227 2.1.1).
    NS/NA (RFC 4861 4.3, 4.4): the target (ICMPv6 offset 8) or the IPv6
    source (IPv6 offset 8) is a probed IPv6 address (RFC 4862 5.4.3, 5.4.4).
    Every comparison jumps only forward over a few instructions, so the
    8-bit jump offsets hold for any number of addresses; past MAX_NARROW
    the plain filter is used (BPF programs are capped at 4096 instructions).
    """
    import ipaddress
    v4, v6 = [], []
    for a in dict.fromkeys(addresses):
        ip = ipaddress.ip_address(a)
        (v4 if ip.version == 4 else v6).append(ip.packed)
    if len(v4) + len(v6) > MAX_NARROW:
        return _FILTER
    ld_w_abs, ld_h_abs, ld_w_ind, ld_b_ind, ldx_imm, jeq, ret = 0x20, 0x28, 0x40, 0x50, 0x01, 0x15, 0x06
    skf_ad_pkttype = (-0x1000 + 4) & 0xFFFFFFFF
    accept, drop = (ret, 0, 0, 0xFFFF), (ret, 0, 0, 0)
    arp_part = []
    for off in (28, 38):                        # 14 (Ethernet) + ARP spa 14 / tpa 24
        arp_part.append((ld_w_ind, 0, 0, off))
        for packed in v4:
            arp_part += [(jeq, 0, 1, int.from_bytes(packed, "big")), accept]
    arp_part.append(drop)
    nd_part = []
    for off in (62, 22):                        # ICMPv6 target (54 + 8), IPv6 source (14 + 8)
        for packed in v6:
            words = [int.from_bytes(packed[i:i + 4], "big") for i in range(0, 16, 4)]
            for i, w in enumerate(words):       # a mismatch skips the rest of this address
                skip = 2 * (3 - i) + 1
                nd_part += [(ld_w_ind, 0, 0, off + 4 * i), (jeq, 0, skip, w)]
            nd_part.append(accept)
    nd_part.append(drop)
    head = [
        (ld_w_abs, 0, 0, skf_ad_pkttype),
        (jeq, 0, 1, PACKET_OUTGOING), drop,     # our own frames
        (ldx_imm, 0, 0, 0),
        (ld_h_abs, 0, 0, 12),
        (jeq, 0, 2, 0x8100),                    # an in-frame 802.1Q tag: X = 4
        (ldx_imm, 0, 0, 4),
        (ld_h_abs, 0, 0, 16),
        (jeq, 0, 1, 0x0806), "ARP",
        (jeq, 0, 1, 0x86DD), "ND", drop,
    ]
    nd_check = [
        (ld_b_ind, 0, 0, 20), (jeq, 1, 0, 58), drop,          # IPv6 next header: ICMPv6
        (ld_b_ind, 0, 0, 54), (jeq, 2, 0, 135), (jeq, 1, 0, 136), drop,   # NS or NA
    ]
    # Lay out: head, ARP block, ND block; the two placeholders become jumps.
    arp_at = len(head)
    nd_at = arp_at + len(arp_part)
    prog = []
    for i, ins in enumerate(head):
        if ins == "ARP":
            ins = (0x05, 0, 0, arp_at - i - 1)  # ja: jumps take 32-bit offsets
        elif ins == "ND":
            ins = (0x05, 0, 0, nd_at - i - 1)
        prog.append(ins)
    prog += arp_part + nd_check + nd_part
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


def _vlan_from(ancdata) -> int | None:
    for level, kind, data in ancdata:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
            status, _len, _snap, _mac, _net, tci, _tpid = _AUXDATA.unpack_from(data)
            if status & TP_STATUS_VLAN_VALID:
                return tci & 0x0FFF
    return None


# -- the watch: one long-lived socket per interface ------------------------------
# `phoenix-hook watch` listens for hours on bridges that may go down, vanish
# and come back; these additions serve it alone and change nothing above.
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1


class WatchWire(Wire):
    """A Wire whose interfaces come and go, with a filter of the caller's choice.

    - promiscuous (PACKET_MR_PROMISC, dropped by the kernel when the socket
      closes): a bridge device only passes up frames addressed to the host,
      so unicast ARP replies and NAs between a squatter and its peer would
      go unseen (net/bridge/br_input.c br_handle_frame_finish);
    - filter(prog) replaces the BPF program on every socket at once
      (SO_ATTACH_FILTER swaps it atomically);
    - receive_each() reports a failing interface instead of raising, so one
      bridge going down does not stop the others;
    - take_drops() gives the frames the kernel dropped since the last call.
    """

    def __init__(self):
        super().__init__([])
        self._prog: bytes | None = None
        self.ifindex: dict[str, int] = {}

    def add(self, name: str) -> None:
        """Open name (WireError when it cannot be opened); a no-op when it is open."""
        if name in self._socks:
            return
        try:
            index = socket.if_nametoindex(name)
        except OSError:
            raise WireError(errno.ENODEV, f"no interface {name}") from None
        try:
            self._open(name)
        except WireError:
            self.remove(name)
            raise
        sock = self._socks[name]
        try:
            if self._prog is not None:
                self._attach(sock, self._prog)
            mreq = struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        except OSError as exc:
            self.remove(name)
            raise WireError(exc.errno, f"cannot listen on {name}: {exc.strerror}") from None
        self.ifindex[name] = index

    def remove(self, name: str) -> None:
        sock = self._socks.pop(name, None)
        self.ifindex.pop(name, None)
        if sock is not None:
            self._by_fd.pop(sock.fileno(), None)
            sock.close()

    def names(self) -> list[str]:
        return list(self._socks)

    @staticmethod
    def _attach(sock, prog: bytes) -> None:
        buf = array.array("B", prog)            # as Wire._open: the program outlives setsockopt
        fprog = struct.pack("HL", len(prog) // 8, buf.buffer_info()[0])
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

    def filter(self, prog: bytes | None) -> None:
        """Put this BPF program (None: the generic ARP/ND filter) on every socket, now and later."""
        self._prog = prog
        for name, sock in list(self._socks.items()):
            try:
                self._attach(sock, prog if prog is not None else _FILTER)
            except OSError as exc:
                raise WireError(exc.errno, f"cannot set the filter on {name}: {exc.strerror}") from None

    def receive_each(self, timeout: float, wake_fd: int | None = None):
        """Wait up to timeout s: ([(ifname, frame, aux_vlan)], {ifname: WireError}) of all ready sockets.

        wake_fd (e.g. the signal wakeup pipe) ends the wait early when readable; the caller drains it.
        """
        out, failed = [], {}
        waits = list(self._socks.values()) + ([wake_fd] if wake_fd is not None else [])
        if not waits:
            return out, failed
        try:
            ready, _, _ = select.select(waits, [], [], max(0.0, timeout))
        except InterruptedError:
            return out, failed
        for sock in ready:
            if sock is wake_fd:
                continue
            name = self._by_fd.get(sock.fileno())
            if name is None:
                continue
            for _ in range(MAX_BATCH):
                try:
                    frame, ancdata, _flags, addr = sock.recvmsg(65535, _CMSG_SPACE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    # ENETDOWN once when the interface goes down (af_packet.c
                    # packet_notifier); the socket hears it again once it is up
                    failed[name] = WireError(exc.errno, f"receiving on {name} failed: {exc.strerror}")
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                out.append((name, frame, _vlan_from(ancdata)))
        return out, failed

    def take_drops(self) -> dict[str, int]:
        """Frames the kernel dropped per interface since the last call (Wire.dropped counts)."""
        now = self.dropped()
        seen = getattr(self, "_drops_seen", {})
        self._drops_seen = now
        return {n: v - seen.get(n, 0) for n, v in now.items() if v > seen.get(n, 0)}


def sd_notify(message: str, environ=os.environ) -> bool:
    """Send one datagram of the systemd notify protocol (sd_notify(3)) to $NOTIFY_SOCKET.

    "READY=1", "WATCHDOG=1", "STATUS=...". A leading "@" names an abstract
    socket. False when there is no socket to tell (not under systemd) or
    the send failed: the service goes on either way.
    """
    addr = environ.get("NOTIFY_SOCKET") or ""
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    elif not addr.startswith("/"):
        return False
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    except OSError:
        return False
    try:                               # the C socket type has no `with` (the module is _socket)
        s.connect(addr)
        s.sendall(message.encode("utf-8", "replace"))
    except OSError:
        return False
    finally:
        s.close()
    return True
