"""Values inside a PVE config line, read by PVE's own rules. Pure, linear time.

Each reader returns (value, error) and never raises: the error is one phrase
naming the key and the value (repr, so control characters show escaped).
The rules are those of pve-common src/PVE/JSONSchema.pm (parse_property_string,
pve_verify_mac_addr, pve_verify_cidrv4/6, parse_boolean, integer checks) and
the pve-container / qemu-server NIC schemas; REFERENCE section 3.
"""
from __future__ import annotations

import ipaddress
import re

WS = " \t\n\r\f\v"                 # Perl's \s on the bytes of a config file (ASCII only)
MAX_VALUE = 256                    # longer values of the keys we read are never valid
_MAC_RE = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")
_IFNAME_RE = re.compile(r"[-_.A-Za-z0-9]+")    # pve-bridge-id / netconf name pattern ([-_.\w\d]+)
_INT_RE = re.compile(r"[+-]?[0-9]{1,12}")      # JSONSchema is_integer, ASCII digits only
_PREFIX_RE = re.compile(r"[0-9]{1,10}")
IFNAMSIZ = 15                      # a Linux interface name has at most 15 characters
IP6_MODES = ("auto", "dhcp", "manual")


def show(value, limit: int = 60) -> str:
    """A value for a message: repr (escapes control characters), shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def property_string(value: str, default_key: str | None = None,
                    aliases: frozenset = frozenset(), alias_of: str = "", alias_to: str = ""):
    """({key: value}, error) for "a=1,b=2" as JSONSchema parse_property_string reads it.

    Parts are split at ',' and blank parts skipped; a part is key=value with a
    non-empty key (everything before the first '=') and a non-empty value,
    nothing stripped (" bridge=x" has the key " bridge"). A key given twice is
    an error. A part without '=' is the default key's value (QEMU: the model);
    aliases: keys standing for "alias_of=<key>, alias_to=<value>" (QEMU's
    "virtio=<MAC>" is model=virtio, macaddr=<MAC>). Unknown keys are kept:
    newer PVE releases add keys, and they must not break reading.
    """
    out: dict[str, str] = {}
    for part in value.split(","):
        if not part.strip(WS):
            continue
        k, sep, v = part.partition("=")
        if sep:
            if not k or not v:
                return out, f"{show(part)} has no key or no value"
            if k in aliases:
                if alias_of in out:
                    return out, f"{alias_of} is given twice ({show(part)})"
                out[alias_of] = k
                k = alias_to
            if k in out:
                return out, f"{k}= is given twice" if k.isprintable() else f"{show(k)} is given twice"
            out[k] = v
        elif default_key is None:
            return out, f"{show(part)} has no key"
        elif default_key in out:
            return out, f"{default_key} is given twice ({show(part)})"
        else:
            out[default_key] = part
    return out, None


def mac(value: str | None, key: str = "hwaddr"):
    """(lower-case MAC, error): pve_verify_mac_addr, a unicast MAC only."""
    if value is None:
        return None, None
    if len(value) != 17 or not _MAC_RE.fullmatch(value):
        return None, f"{key}={show(value)} is not a MAC address"
    if int(value[:2], 16) & 1:
        return None, (f"{key}={show(value)} is a multicast MAC address; PVE refuses it "
                      f"(pve_verify_mac_addr: a NIC needs a unicast MAC)")
    return value.lower(), None


def ifname(value: str | None, key: str = "bridge"):
    """(name, error) for an interface name: PVE's [-_.\\w\\d]+ and at most IFNAMSIZ characters."""
    if value is None:
        return None, None
    if len(value) > IFNAMSIZ or not _IFNAME_RE.fullmatch(value):
        return None, f"{key}={show(value)} is not an interface name (letters, digits, - _ ., at most 15)"
    return value, None


def integer(value: str | None, key: str, lo: int, hi: int, what: str):
    """(int, error): JSONSchema's integer (optional sign, ASCII digits) within lo..hi."""
    if value is None:
        return None, None
    if len(value) > 13 or not _INT_RE.fullmatch(value) or not lo <= int(value) <= hi:
        return None, f"{key}={show(value)} is not {what} ({lo}-{hi})"
    return int(value), None


def boolean(value: str | None, key: str):
    """(bool, error): JSONSchema parse_boolean (1/on/yes/true, 0/off/no/false, any case)."""
    if value is None:
        return None, None
    v = value.lower() if len(value) <= 5 else ""
    if v in ("1", "on", "yes", "true"):
        return True, None
    if v in ("0", "off", "no", "false"):
        return False, None
    return None, f"{key}={show(value)} is not a boolean (1 or 0)"


def ipv4_address(value: str | None, key: str = "gw"):
    """(address, error) for a plain IPv4 address (JSONSchema 'ipv4': dotted quad, no leading zeros)."""
    if value is None:
        return None, None
    try:
        if len(value) > 15:
            raise ValueError
        return str(ipaddress.IPv4Address(value)), None
    except ValueError:
        return None, f"{key}={show(value)} is not an IPv4 address"


def ipv6_address(value: str | None, key: str = "gw6"):
    """(address, error) for a plain IPv6 address (no zone: '%' is not in PVE's IPV6RE)."""
    if value is None:
        return None, None
    try:
        if len(value) > 45 or "%" in value:
            raise ValueError
        return ipaddress.IPv6Address(value).compressed, None
    except ValueError:
        return None, f"{key}={show(value)} is not an IPv6 address"


def unusable4(a: ipaddress.IPv4Address) -> str | None:
    """Why a valid config address is no unicast host address (and so is never probed)."""
    if a.packed[0] == 0:
        return "in 0.0.0.0/8"
    if a.is_loopback:
        return "a loopback address"
    if a.is_multicast:
        return "a multicast address"
    if a.is_reserved:                       # 240.0.0.0/4, 255.255.255.255 included
        return "a reserved or broadcast address"
    return None


def unusable6(a: ipaddress.IPv6Address) -> str | None:
    if a.is_unspecified:
        return "the unspecified address"
    if a.is_loopback:
        return "the loopback address"
    if a.is_multicast:
        return "a multicast address"
    if a.ipv4_mapped is not None:
        return "an IPv4-mapped address"
    return None


def ipv4_config(value: str | None, key: str = "ip"):
    """(address, prefixlen, note, error) for pve-ipv4-config: dhcp, manual or IPv4/CIDR.

    pve_verify_cidrv4 takes prefixes 8 to 32 only. A valid address that is no
    unicast host address (127.0.0.1/8, 255.255.255.255/32) is accepted by PVE:
    note says why it is not probed.
    """
    if value is None or value in ("dhcp", "manual"):
        return None, None, None, None
    addr, sep, plen = value.partition("/")
    try:
        if len(value) > 28 or not sep or not _PREFIX_RE.fullmatch(plen) or not 8 <= int(plen) <= 32:
            raise ValueError
        a = ipaddress.IPv4Address(addr)
    except ValueError:
        return None, None, None, (f"{key}={show(value)} is not dhcp, manual or an IPv4 address "
                                  f"with /prefix (8 to 32)")
    why = unusable4(a)
    if why:
        return None, None, f"{key}={value} is {why}, not probed", None
    return str(a), int(plen), None, None


def ipv6_config(value: str | None, key: str = "ip6"):
    """(address, prefixlen, note, error) for pve-ipv6-config: auto, dhcp, manual or IPv6/CIDR (8-128).

    Link-local (fe80::/10) statics are allowed: DAD covers them too (RFC 4862 5.4).
    """
    if value is None or value in IP6_MODES:
        return None, None, None, None
    addr, sep, plen = value.partition("/")
    try:
        if (len(value) > 60 or "%" in addr or not sep or not _PREFIX_RE.fullmatch(plen)
                or not 8 <= int(plen) <= 128):
            raise ValueError
        a = ipaddress.IPv6Address(addr)
    except ValueError:
        return None, None, None, (f"{key}={show(value)} is not auto, dhcp, manual or an IPv6 address "
                                  f"with /prefix (8 to 128)")
    why = unusable6(a)
    if why:
        return None, None, f"{key}={value} is {why}, not probed", None
    return a.compressed, int(plen), None, None


def pending_delete(value: str) -> list[str]:
    """The keys of a pending 'delete:' list (AbstractConfig parse_pending_delete): split at
    ',', ';' and whitespace; a leading '!' (force) is not part of the key."""
    keys = []
    for item in re.split(r"[ \t\n\r\f\v,;]+", value):
        if item:
            keys.append(item[1:] if item.startswith("!") else item)
    return keys
