"""The one module with raw sockets: send and receive Ethernet frames on an interface.

No decisions live here: frames go out as given, frames come back as bytes
with the VLAN tag the kernel reported. What is a conflict is acd.py's call.

- AF_PACKET, SOCK_RAW: we build whole frames (arp.py), so tagged frames for
  a VLAN guest are sent as-is on the bridge (REFERENCE section 4).
- A classic BPF program on the socket drops everything but ARP and IPv6
  Neighbor Solicitations/Advertisements (untagged, or 802.1Q-tagged in the
  frame) and our own outgoing copies, so a busy bridge does not wake us for
  every frame; arp.parse / ndp.parse still validate each frame.
- PACKET_AUXDATA gives the VLAN tag the kernel moved out of the frame on
  receive (tpacket_auxdata.tp_vlan_tci, TP_STATUS_VLAN_VALID), see
  linux/if_packet.h and packet(7).
"""
from __future__ import annotations

import array
import errno
import os
import select
import socket
import struct

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
SO_ATTACH_FILTER = 26
TP_STATUS_VLAN_VALID = 0x10
PACKET_OUTGOING = 4
_AUXDATA = struct.Struct("IIIHHHH")   # struct tpacket_auxdata
_CMSG_SPACE = socket.CMSG_SPACE(_AUXDATA.size)
_RCVBUF = 1 << 20
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


class Wire:
    """Raw Ethernet access to a set of interfaces (one AF_PACKET socket each)."""

    def __init__(self, ifnames):
        self._socks: dict[str, socket.socket] = {}
        self._by_fd: dict[int, str] = {}
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
            buf = array.array("B", _FILTER)
            fprog = struct.pack("HL", len(_FILTER) // 8, buf.buffer_info()[0])
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        except OSError as exc:
            raise WireError(exc.errno, f"cannot set up the ARP filter on {name}: {exc.strerror}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        except OSError:
            pass                      # a smaller buffer only matters under a flood
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

    def close(self) -> None:
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()
        self._by_fd.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _vlan_from(ancdata) -> int | None:
    for level, kind, data in ancdata:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
            status, _len, _snap, _mac, _net, tci, _tpid = _AUXDATA.unpack_from(data)
            if status & TP_STATUS_VLAN_VALID:
                return tci & 0x0FFF
    return None
