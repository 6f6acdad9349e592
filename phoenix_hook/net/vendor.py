"""Who made a MAC: the IEEE OUI registry file that netaddr reads (or Debian's ieee-data).

The file is read directly, and only when a MAC has to be named, so a hook
run that finds nothing never pays for it; netaddr itself is imported only
when no file can be read.
"""
from __future__ import annotations


def locally_administered(mac: str) -> bool:
    """IEEE 802 U/L bit (bit 1 of the first octet): set = not from a vendor's OUI."""
    try:
        return bool(int(mac.split(":")[0], 16) & 0x02)
    except ValueError:
        return False


IEEE_DATA_OUI = "/usr/share/ieee-data/oui.txt"    # Debian's ieee-data, what python3-netaddr reads


def vendor(mac: str) -> str | None:
    """The registered organisation for this MAC's OUI, or None."""
    if not mac or locally_administered(mac):
        return None
    try:
        key = _oui_key(mac)
    except ValueError:
        return None                # not a MAC: "vendor unknown", never a traceback
    found = _from_files(key)
    if found is not None:
        return found or None
    return _from_netaddr(mac)


def _oui_key(mac: str) -> bytes:
    """b"3C-52-82": the OUI as the IEEE registry writes it."""
    octets = mac.replace("-", ":").split(":")
    if len(octets) != 6 or any(len(o) != 2 for o in octets):
        raise ValueError(f"not a MAC address: {mac!r}")
    int("".join(octets), 16)       # ValueError for a non-hex octet
    return "-".join(octets[:3]).upper().encode()


def _oui_files():
    """(oui.txt, oui.idx or None) to try: netaddr's own, then Debian's ieee-data.

    netaddr's directory is found as the import system would (the first
    sys.path entry holding the package), without importing netaddr or
    importlib.util (4 ms of a hook run's CPU).
    """
    import os
    import sys
    for entry in sys.path:
        base = os.path.join(entry or ".", "netaddr")
        if os.path.isfile(os.path.join(base, "__init__.py")):
            yield os.path.join(base, "eui", "oui.txt"), os.path.join(base, "eui", "oui.idx")
            break
    yield IEEE_DATA_OUI, None


def _from_files(key: bytes) -> str | None:
    """The organisation of OUI `key` from the registry file itself.

    Records in oui.txt start "3C-52-82   (hex)\t\tHewlett Packard". netaddr's
    oui.idx ("<oui as int>,<offset>,<size>" lines) finds one without reading
    the whole file, but only while it was built from that very oui.txt:
    Debian's python3-netaddr 0.8 ships an index from 2021 and links oui.txt
    to ieee-data's newer file, so its offsets land on other records (3C-52-82
    read as "White"). An entry is therefore used only when the record it
    points at carries the same OUI; otherwise the file is searched.
    Returns "" when the OUI is not registered, None when no file is readable.
    """
    for txt, idx in _oui_files():
        try:
            found = _via_index(txt, idx, key) if idx else None
            return found if found is not None else _search(txt, key)
        except (OSError, ValueError):          # missing, unreadable or empty
            continue
    return None


def _via_index(txt: str, idx: str, key: bytes) -> str | None:
    try:
        with open(idx, "rb") as f:
            index = f.read()
    except OSError:
        return None
    entry = b"%d," % int(key.replace(b"-", b""), 16)
    if index.startswith(entry):
        i = 0
    else:
        i = index.find(b"\n" + entry)
        if i < 0:
            return None
        i += 1
    end = index.find(b"\n", i)
    try:
        _oui, offset, size = (int(x) for x in index[i:end if end >= 0 else None].split(b","))
    except ValueError:
        return None
    with open(txt, "rb") as f:
        f.seek(offset)
        record = f.read(min(size, 4096))
    return _org(record, 0) if record.startswith(key + b" ") else None


_TEXT: dict = {}                   # oui.txt mapped, by path: scan and neigh name many MACs


def _search(txt: str, key: bytes) -> str:
    """Search the whole file (5 MB, mapped: about 2 ms) for the OUI's "(hex)" line."""
    data = _TEXT.get(txt)
    if data is None:
        import mmap
        with open(txt, "rb") as f:
            data = _TEXT[txt] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    # The IEEE writes three spaces before "(hex)": one pass for the exact
    # line; a file spaced otherwise is searched for the OUI and a space.
    needle = key + (b"   (hex)" if data.find(b"   (hex)", 0, 4096) >= 0 else b" ")
    i = data.find(needle)
    while i >= 0:
        if i == 0 or data[i - 1:i] == b"\n":
            org = _org(data, i)
            if org is not None:
                return org
        i = data.find(needle, i + 1)
    return ""


def _org(data: bytes, start: int) -> str | None:
    """The organisation on the "(hex)" line starting at `start`, or None if it is not one."""
    end = data.find(b"\n", start)
    line = data[start:end if end >= 0 else None]
    head, sep, org = line.partition(b"(hex)")
    if not sep or len(head.split()) != 1:
        return None
    return org.decode("utf-8", "replace").strip()


def _from_netaddr(mac: str) -> str | None:
    """netaddr's own lookup, when its data files could not be read directly."""
    try:
        from netaddr import EUI
        from netaddr.core import AddrFormatError, NotRegisteredError
    except ImportError:
        return None
    try:
        return EUI(mac).oui.registration().org.strip() or None
    except (AddrFormatError, NotRegisteredError, ValueError, IndexError, KeyError, OSError):
        # AddrFormatError is not a ValueError: a string that is no MAC must
        # give "vendor unknown", not a traceback in the task log
        return None


def describe(mac: str) -> tuple[str | None, str]:
    """(vendor or None, words for a task-log line)."""
    v = vendor(mac)
    if v:
        return v, v
    if locally_administered(mac):
        return None, "vendor unknown, locally administered"
    return None, "vendor unknown"
