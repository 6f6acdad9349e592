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


def describe(mac: str) -> tuple[str | None, str]:
    """(vendor or None, words for a task-log line)."""
    v = vendor(mac)
    if v:
        return v, v
    if locally_administered(mac):
        return None, "vendor unknown, locally administered"
    return None, "vendor unknown"


def warm_up() -> None:
    """Load netaddr's OUI index (about 60 ms) ahead of need.

    The hook calls this in a thread while its probes are on the wire, so a
    conflict can be named the moment it is seen instead of 60 ms later.
    """
    try:
        from netaddr.eui import ieee  # noqa: F401  (importing builds the index)
    except Exception:
        pass
