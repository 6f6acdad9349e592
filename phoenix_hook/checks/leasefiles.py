"""DHCP lease files, read as their servers write them. Pure.

Three formats, told apart by their content (REFERENCE section 11):
- dnsmasq (also PVE's SDN DHCP): one lease a line,
  `<expiry epoch> <mac> <ip> <hostname|*> <client-id|*>`, expiry 0 for an
  infinite lease (dnsmasq src/lease.c lease_update_file); IPv6 leases follow a
  `duid <server DUID>` line and carry the IAID where the MAC was and the
  client's DUID last.
- ISC dhcpd `dhcpd.leases` (dhcpd.leases(5)): `lease <ip> { starts ..; ends ..;
  binding state active; hardware ethernet <mac>; client-hostname "..."; }`
  blocks appended over time; the last block of an address wins, as dhcpd
  reads the file at start. Times are UTC (`ends 3 2025/09/17 22:00:00;`),
  `epoch N` with `db-time-format local`, or `never`. dhcpd6.leases: `ia-na
  "<IAID+DUID>" { iaaddr <ip6> { binding state active; ends ..; } }`.
- Kea memfile CSV (kea-leases4.csv / kea-leases6.csv): a header row naming the
  columns, rows appended; the last row of an address wins, valid_lifetime 0
  marks a deleted lease, state 0 is the default (assigned) state.

Every parser takes any text and never raises: a line or block it cannot read
is counted in `bad_lines` and skipped. What a lease means (its owner, flags) is
checks/leases.py's.
"""
from __future__ import annotations

import calendar
import ipaddress
import re
import time
from phoenix_hook.records import dataclass, field

INFINITE_KEA = 0xFFFFFFFF          # Kea: valid_lifetime 4294967295 = infinite (Lease::INFINITY_LFT)


@dataclass(frozen=True)
class Lease:
    ip: str
    mac: str | None                # lower-case; None when the file gives none (or not Ethernet)
    hostname: str | None
    expires: int | None            # epoch seconds; None = never expires
    file: str
    state: str = "active"          # as the server wrote it: active, free, expired, released, ...

    def active(self, now: float) -> bool:
        return self.state == "active" and (self.expires is None or self.expires > now)

    def to_json(self) -> dict:
        return {"ip": self.ip, "mac": self.mac, "hostname": self.hostname,
                "expires": iso_time(self.expires), "file": self.file}


@dataclass
class LeaseFile:
    file: str
    format: str | None             # "dnsmasq" | "isc" | "kea" | None (not a lease file we know)
    leases: list = field(default_factory=list)   # one per address, the one that wins; any state
    bad_lines: int = 0
    empty: bool = False            # nothing in it at all (a server that has leased nothing yet)

    def to_json(self) -> dict:
        return {"file": self.file, "format": self.format, "leases": len(self.leases),
                "bad_lines": self.bad_lines}


def iso_time(epoch: int | None) -> str | None:
    if epoch is None:
        return None
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    except (OverflowError, OSError, ValueError):
        return None


# -- small readers ----------------------------------------------------------------
_HEX2 = re.compile(r"^[0-9a-f]{1,2}$")


def norm_mac(text) -> str | None:
    """'52:54:0:67:89:B1' -> '52:54:00:67:89:b1'; None unless six hex octets."""
    if not isinstance(text, str):
        return None
    parts = text.strip().lower().replace("-", ":").split(":")
    if len(parts) != 6 or not all(_HEX2.match(p) for p in parts):
        return None
    mac = ":".join(p.rjust(2, "0") for p in parts)
    return None if mac == "00:00:00:00:00:00" else mac


def norm_ip(text) -> str | None:
    if not isinstance(text, str):
        return None
    try:
        a = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return a.compressed


def mac_from_duid(raw: bytes) -> str | None:
    """The MAC inside a DUID-LLT (type 1) or DUID-LL (type 3) of an Ethernet client
    (RFC 8415 11.2, 11.4; hardware type 1). Other DUIDs carry none."""
    if len(raw) < 4:
        return None
    kind, hwtype = int.from_bytes(raw[0:2], "big"), int.from_bytes(raw[2:4], "big")
    lladdr = raw[8:] if kind == 1 else raw[4:] if kind == 3 else b""
    if hwtype != 1 or len(lladdr) != 6:
        return None
    return norm_mac(lladdr.hex(":"))


def _hex_bytes(text: str) -> bytes | None:
    """'00:01:00:01:...' (dnsmasq, Kea) -> bytes."""
    try:
        parts = text.split(":")
        if not all(1 <= len(p) <= 2 for p in parts):
            return None
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        return None


def _int(text) -> int | None:
    if isinstance(text, str) and text.isascii() and text.strip().isdigit():
        return int(text.strip())
    return None


# -- format sniffing ---------------------------------------------------------------
_ISC_HINT = re.compile(r"^\s*(lease\s+\S+\s*\{|ia-na\s|ia-ta\s|ia-pd\s|server-duid\s|"
                       r"authoring-byte-order\s|failover\s+peer\s|host\s+\S+\s*\{)", re.M)
_DNSMASQ_LINE = re.compile(r"^(\d+ \S+ \S+ \S+( \S+)?|duid \S+)$")


def sniff(text: str) -> str | None:
    """Which server wrote this: "dnsmasq", "isc", "kea", or None."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    meaningful = [ln for ln in lines if not ln.startswith("#")]
    if not meaningful:
        # a fresh dhcpd.leases holds only dhcpd's header comments
        return "isc" if any("dhcpd.leases" in ln or "isc-dhcp" in ln for ln in lines) else None
    first = meaningful[0]
    if first.startswith("address,") and ("hwaddr" in first or "duid" in first):
        return "kea"
    if _ISC_HINT.search(text):
        return "isc"
    if _DNSMASQ_LINE.match(first):
        return "dnsmasq"
    return None


def parse(text: str, file: str) -> LeaseFile:
    """Any text -> LeaseFile; format None when it is no lease file phoenix-hook knows."""
    if not isinstance(text, str):
        return LeaseFile(file=file, format=None)
    fmt = sniff(text)
    if fmt is None:
        return LeaseFile(file=file, format=None, empty=not text.strip())
    leases, bad = {"dnsmasq": parse_dnsmasq, "isc": parse_isc, "kea": parse_kea}[fmt](text, file)
    return LeaseFile(file=file, format=fmt, leases=leases, bad_lines=bad)


def _last_wins(items: list[Lease]) -> list[Lease]:
    out: dict[str, Lease] = {}
    for lease in items:
        out.pop(lease.ip, None)           # re-insert: file order of the winning entries
        out[lease.ip] = lease
    return list(out.values())


# -- dnsmasq -----------------------------------------------------------------------
def parse_dnsmasq(text: str, file: str) -> tuple[list[Lease], int]:
    """dnsmasq's lease file (src/lease.c): IPv4 lines, then `duid ...` and IPv6 lines."""
    out, bad = [], 0
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "duid" and len(f) == 2:
            continue                      # the server's own DUID: IPv6 leases follow
        if len(f) not in (4, 5):
            bad += 1
            continue
        expiry, ip = _int(f[0]), norm_ip(f[2])
        if expiry is None or ip is None:
            bad += 1
            continue
        if ":" in ip:                     # IPv6: f[1] is the IAID ("T" prefix: temporary)
            duid = _hex_bytes(f[4]) if len(f) == 5 and f[4] != "*" else None
            mac = mac_from_duid(duid) if duid else None
        else:
            # Non-Ethernet hardware is written "<type>-xx:xx:..."; Ethernet as plain xx:xx:..
            mac = norm_mac(f[1]) if "-" not in f[1] else None
        host = f[3] if f[3] != "*" else None
        out.append(Lease(ip=ip, mac=mac, hostname=host, expires=expiry or None, file=file))
    return _last_wins(out), bad


# -- ISC dhcpd ---------------------------------------------------------------------
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{};]|#[^\n]*|[^\s{};"#]+')
_ISC_ESC = re.compile(r"\\([0-7]{1,3}|.)", re.S)


def _isc_string(tok: str) -> bytes:
    """An ISC quoted string with its escapes (\\NNN octal, \\", \\\\) as bytes."""
    body = tok[1:-1] if len(tok) >= 2 and tok[0] == tok[-1] == '"' else tok

    def one(m):
        e = m.group(1)
        if e[0] in "01234567":
            return chr(int(e, 8) & 0xFF)
        return {"n": "\n", "t": "\t", "r": "\r"}.get(e, e)
    return _ISC_ESC.sub(one, body).encode("latin-1", "replace")


def _isc_time(words: list[str]) -> tuple[bool, int | None]:
    """(readable, epoch or None for never) of `ends 3 2025/09/17 22:00:00` style values."""
    if words == ["never"]:
        return True, None
    if len(words) == 2 and words[0] == "epoch" and _int(words[1]) is not None:
        return True, _int(words[1])
    if len(words) == 3 and _int(words[0]) is not None:
        try:
            t = time.strptime(f"{words[1]} {words[2]}", "%Y/%m/%d %H:%M:%S")
            return True, calendar.timegm(t)        # dhcpd writes UTC (dhcpd.leases(5))
        except (ValueError, OverflowError):
            return False, None
    return False, None


class _Tokens:
    def __init__(self, text: str):
        self.toks = [t for t in _TOKEN.findall(text) if not t.startswith("#")]
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self) -> str | None:
        t = self.peek()
        self.i += 1
        return t

    def statement(self) -> list[str] | None:
        """The words of one statement up to ';' (None at a '}' or the end). A nested
        { ... } (`on commit { ... }`) is skipped whole and ends the statement."""
        words = []
        while True:
            t = self.peek()
            if t is None or t == "}":
                return words or None
            self.i += 1
            if t == ";":
                return words
            if t == "{":
                self.skip_block()
                return words
            words.append(t)

    def skip_block(self) -> None:
        """Skip to the '}' matching an already consumed '{'."""
        depth = 1
        while depth and self.peek() is not None:
            t = self.next()
            depth += (t == "{") - (t == "}")


def _isc_body(tk: _Tokens) -> tuple[dict, list[tuple[str, dict]], int]:
    """The statements of one { ... } block (already past '{'), up to its '}':
    (values, nested iaaddr blocks, unreadable statements)."""
    vals: dict = {}
    nested: list[tuple[str, dict]] = []
    bad = 0
    while True:
        t = tk.peek()
        if t is None:
            return vals, nested, bad + 1          # unterminated block
        if t == "}":
            tk.next()
            return vals, nested, bad
        if t == "iaaddr":
            tk.next()
            ip = tk.next()
            if tk.peek() == "{":
                tk.next()
                inner, _n, b = _isc_body(tk)
                bad += b
                nested.append((ip or "", inner))
            continue
        words = tk.statement()
        if not words:
            if tk.peek() == ";":
                tk.next()
            continue
        key = words[0]
        if key in ("starts", "ends"):
            ok, when = _isc_time(words[1:])
            if ok:
                vals[key] = when
            else:
                bad += 1
        elif words[:2] == ["binding", "state"] and len(words) == 3:
            vals["state"] = words[2]
        elif key == "abandoned":
            vals["state"] = "abandoned"
        elif words[:2] == ["hardware", "ethernet"] and len(words) == 3:
            vals["mac"] = norm_mac(words[2])
        elif key == "client-hostname" and len(words) == 2:
            name = _isc_string(words[1]).decode("latin-1").strip()
            vals["hostname"] = name or None


def parse_isc(text: str, file: str) -> tuple[list[Lease], int]:
    """dhcpd.leases / dhcpd6.leases: the last block of an address wins (dhcpd.leases(5))."""
    tk = _Tokens(text)
    out, bad = [], 0
    while tk.peek() is not None:
        t = tk.next()
        if t == "lease":
            ip = norm_ip(tk.next() or "")
            if tk.peek() != "{":
                bad += 1
                continue
            tk.next()
            vals, _nested, b = _isc_body(tk)
            bad += b
            if ip is None:
                bad += 1
                continue
            out.append(Lease(ip=ip, mac=vals.get("mac"), hostname=vals.get("hostname"),
                             expires=vals.get("ends"), file=file,
                             state=vals.get("state", "active")))
        elif t in ("ia-na", "ia-ta"):
            ident = tk.next() or ""
            if tk.peek() != "{":
                bad += 1
                continue
            tk.next()
            _vals, nested, b = _isc_body(tk)
            bad += b
            raw = _isc_string(ident)
            mac = mac_from_duid(raw[4:])          # the IA's ID: 4 bytes IAID, then the DUID
            for ip6, v in nested:
                ip = norm_ip(ip6)
                if ip is None:
                    bad += 1
                    continue
                out.append(Lease(ip=ip, mac=mac, hostname=None, expires=v.get("ends"), file=file,
                                 state=v.get("state", "active")))
        elif t == "{":
            tk.skip_block()                       # host, failover, ia-pd, class ...: not leases
        elif t not in (";", "}"):
            # any other top-level statement (server-duid, authoring-byte-order): to its end
            while tk.peek() not in (None, ";", "{"):
                tk.next()
            if tk.peek() == "{":
                tk.next()
                tk.skip_block()
            elif tk.peek() == ";":
                tk.next()
    return _last_wins(out), bad


# -- Kea memfile ---------------------------------------------------------------------
def _kea_text(value: str) -> str:
    """Kea escapes commas in CSV fields as '&#x2c' (util/csv_file.cc escapeCharacters)."""
    return value.replace("&#x2c", ",")


def parse_kea(text: str, file: str) -> tuple[list[Lease], int]:
    """kea-leases4.csv / kea-leases6.csv: columns from the header row, the last row of an
    address wins, valid_lifetime 0 is a deleted lease (Memfile_LeaseMgr deleteLease)."""
    out, bad = [], 0
    cols: dict[str, int] = {}
    v6 = False
    for line in text.splitlines():
        if not line.strip():
            continue
        f = line.rstrip("\r").split(",")
        if f[0] == "address":              # a header (a file after LFC starts with one too)
            cols = {name: i for i, name in enumerate(f)}
            v6 = "duid" in cols
            continue

        def col(name, _f=f):
            i = cols.get(name)
            return _f[i] if i is not None and i < len(_f) else None
        ip = norm_ip(col("address"))
        valid, expire = _int(col("valid_lifetime")), _int(col("expire"))
        state = _int(col("state"))
        if not cols or ip is None or valid is None or expire is None:
            bad += 1
            continue
        if v6 and col("lease_type") == "2":
            continue                          # IA_PD: a delegated prefix, not an address
        mac = norm_mac(col("hwaddr") or "")
        if mac is None and v6:
            duid = _hex_bytes(col("duid") or "")
            mac = mac_from_duid(duid) if duid else None
        name = _kea_text(col("hostname") or "").strip().rstrip(".") or None
        if valid == 0:
            kind = "deleted"
        else:
            kind = {0: "active", 1: "declined", 2: "expired-reclaimed", 3: "released"}.get(
                state if state is not None else 0, f"state {state}")
        out.append(Lease(ip=ip, mac=mac, hostname=name,
                         expires=None if valid == INFINITE_KEA else expire, file=file, state=kind))
    return _last_wins(out), bad
