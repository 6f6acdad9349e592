"""Who made a MAC: netaddr's copy of the IEEE OUI registry.

netaddr is imported here only, and only when a MAC has to be named, so a
hook run that finds nothing never pays for it.
"""
from __future__ import annotations


def locally_administered(mac: str) -> bool:
    """IEEE 802 U/L bit (bit 1 of the first octet): set = not from a vendor's OUI."""
    try:
        return bool(int(mac.split(":")[0], 16) & 0x02)
    except ValueError:
        return False


def vendor(mac: str) -> str | None:
    """The registered organisation for this MAC's OUI, or None."""
    if not mac or locally_administered(mac):
        return None
    try:
        found = _from_index(mac)
    except Exception:              # a damaged data file: ask netaddr itself
        found = None
    if found is not None:
        return found or None
    try:
        from netaddr import EUI
        from netaddr.core import AddrFormatError, NotRegisteredError
    except ImportError:
        return None
    try:
        return EUI(mac).oui.registration().org.strip() or None
    except (AddrFormatError, NotRegisteredError, ValueError, IndexError, KeyError):
        # AddrFormatError is not a ValueError: a string that is no MAC must
        # give "vendor unknown", not a traceback in the task log
        return None


def _from_index(mac: str) -> str | None:
    """One OUI straight from netaddr's own data files (eui/oui.idx, oui.txt).

    `import netaddr.eui.ieee` builds an index of every OUI first (about
    60 ms); the hook names one MAC with a start waiting, so it looks up just
    that entry in the same files: oui.idx lines are "<oui as int>,<offset>,
    <size>" into oui.txt, whose record starts "00-1B-21   (hex)\t\t<org>".
    Returns "" when the OUI is not registered, None when netaddr is not
    installed; raises when its files are missing or damaged (the caller
    then asks netaddr itself).
    """
    import importlib.util
    import os
    spec = importlib.util.find_spec("netaddr")
    if spec is None or not spec.submodule_search_locations:
        return None
    base = os.path.join(spec.submodule_search_locations[0], "eui")
    octets = mac.replace("-", ":").split(":")
    if len(octets) != 6 or any(len(o) != 2 for o in octets):
        raise ValueError(f"not a MAC address: {mac!r}")
    key = int("".join(octets[:3]), 16)
    with open(os.path.join(base, "oui.idx"), "rb") as f:
        idx = b"\n" + f.read()
    i = idx.find(b"\n%d," % key)
    if i < 0:
        return ""
    end = idx.find(b"\n", i + 1)
    _key, offset, size = idx[i + 1:end if end > 0 else None].split(b",")
    with open(os.path.join(base, "oui.txt"), "rb") as f:
        f.seek(int(offset))
        first = f.read(int(size)).decode("utf-8", "replace").splitlines()[0]
    head, sep, org = first.partition("(hex)")
    return org.strip() if sep else None


def describe(mac: str) -> tuple[str | None, str]:
    """(vendor or None, words for a task-log line)."""
    v = vendor(mac)
    if v:
        return v, v
    if locally_administered(mac):
        return None, "vendor unknown, locally administered"
    return None, "vendor unknown"
