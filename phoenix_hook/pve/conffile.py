"""A guest config file split into its sections and key lines, as PVE splits it. Pure.

Follows pve-container src/PVE/LXC/Config.pm parse_pct_config and qemu-server
src/PVE/QemuServer.pm parse_vm_config (REFERENCE section 3):
- lines are split at "\\n" only (not at \\r, \\x1c-\\x1e, \\x85, \\u2028...);
  lines of whitespace only are skipped;
- every pattern is anchored at the line's start: leading whitespace makes a
  line unreadable, never a section or a key;
- "[pve:pending]" (LXC) / "[PENDING]" (QEMU) is the pending section,
  "[special:cloudinit]" and "[special:fleecing]" (QEMU) special sections,
  "[name]" with name [a-z][a-z0-9_-]+ a snapshot; a section given twice
  replaces the earlier one. QEMU skips the lines of any other "[...]"
  section; for LXC such a line is just unreadable;
- a key line is "key:value" with the key right before the first ':'
  (LXC [a-z][a-z_]*\\d*, QEMU [a-z][a-z_-]*\\d*) and at least one character
  after it; the value is stripped of whitespace; "#" lines are the description; raw LXC
  keys match ^(lxc\\.[a-z0-9_\\-\\.]+)(:|\\s*=)\\s*(.*?)\\s*$.

Linear time whatever the input: string methods and regexes without
backtracking only. A file longer than pmxcfs allows and lines longer than
MAX_LINE are cut, and what was cut is named in the section's `bad` list.
"""
from __future__ import annotations

import re
from phoenix_hook.records import dataclass, field

from phoenix_hook.pve.values import WS, show

MAX_CONFIG = 1024 * 1024          # pmxcfs refuses files over 1 MiB (memdb MEMDB_MAX_FILE_SIZE)
MAX_LINE = 16384                  # PVE's own lines are far shorter; longer ones are not read
MAX_BAD = 10                      # unreadable lines named per section, then a count
_SNAPSHOT_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9_\-]+")
_KEY_RE = {"lxc": re.compile(r"[a-z][a-z_]*[0-9]*"), "qemu": re.compile(r"[a-z][a-z_\-]*[0-9]*")}
_RAW_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.")
_QEMU_SPECIAL = ("cloudinit", "fleecing")


@dataclass
class Section:
    values: dict = field(default_factory=dict)    # key -> value; a later line wins, as in PVE
    raw: list = field(default_factory=list)       # (lxc.* key, value), in file order
    too_long: dict = field(default_factory=dict)  # key -> length of a line too long to read
    bad: list = field(default_factory=list)       # why lines could not be read
    unreadable: int = 0                           # how many lines could not be read

    def _bad(self, line_no: int, why: str) -> None:
        self.unreadable += 1
        if len(self.bad) < MAX_BAD:
            self.bad.append(f"config line {line_no}: {why}")
        elif len(self.bad) == MAX_BAD:
            self.bad.append("more unreadable config lines (not listed)")


@dataclass
class Config:
    current: Section
    pending: Section | None = None
    special: dict = field(default_factory=dict)      # "cloudinit" -> Section (QEMU)
    snapshots: dict = field(default_factory=dict)    # name -> Section
    cut: str | None = None                           # the file was longer than MAX_CONFIG


def _section_name(line: str, gtype: str):
    """("pending" | "special" | "snapshot" | "unknown", name) for a section line, else None."""
    if not line.startswith("["):
        return None
    head = line.rstrip(WS)
    if not head.endswith("]") or len(head) < 2:
        return None
    inner = head[1:-1]
    if "]" in inner:
        return None
    low = inner.lower()
    if gtype == "lxc":
        if low == "pve:pending":
            return "pending", inner
        return ("snapshot", inner) if _SNAPSHOT_RE.fullmatch(inner) else None
    if low == "pending":
        return "pending", inner
    if low.startswith("special:") and low[8:] in _QEMU_SPECIAL:
        return "special", low[8:]
    if _SNAPSHOT_RE.fullmatch(inner):
        return "snapshot", inner
    return "unknown", inner


def raw_line(line: str):
    """(key, value) of a raw 'lxc.*' line (':' right after the key, or '=' after optional
    whitespace), else None. One pass over the key characters: no backtracking."""
    j = 4
    n = len(line)
    while j < n and line[j] in _RAW_KEY_CHARS:
        j += 1
    if j == 4:
        return None
    key = line[:j]
    if j < n and line[j] == ":":
        return key, line[j + 1:].strip(WS)
    k = j
    while k < n and line[k] in WS:
        k += 1
    if k < n and line[k] == "=":
        return key, line[k + 1:].strip(WS)
    return None


def _key_of(line: str) -> str:
    """The key a line seems to set, for naming an over-long line."""
    cut = min((i for i in (line.find(":", 0, 80), line.find("=", 0, 80)) if i >= 0), default=-1)
    key = line[:cut].strip(WS) if cut > 0 else line[:20]
    return key if key.isidentifier() or key.replace(".", "_").isidentifier() else show(key, 30)


def read(text: str, gtype: str = "lxc") -> Config:
    """Split config text into sections; never raises, linear in len(text)."""
    cfg = Config(current=Section())
    if len(text) > MAX_CONFIG:
        end = text.rfind("\n", 0, MAX_CONFIG)
        cfg.cut = (f"the config is longer than pmxcfs allows ({MAX_CONFIG} characters): "
                   f"only its first {end + 1} characters were read")
        text = text[:end + 1]
    target: Section | None = cfg.current
    key_re = _KEY_RE.get(gtype, _KEY_RE["lxc"])
    for no, line in enumerate(text.split("\n"), 1):
        if not line.strip(WS):
            continue
        sec = _section_name(line, gtype) if len(line) <= MAX_LINE else None
        if sec is not None:
            kind, name = sec
            target = Section()
            if kind == "pending":
                cfg.pending = target            # a second one replaces the first (as PVE)
            elif kind == "special":
                cfg.special[name] = target
            elif kind == "snapshot":
                cfg.snapshots[name] = target
            else:
                target = None                   # QEMU skips an unknown section's lines
            continue
        if target is None or line.startswith("#"):
            continue                            # '#' lines are the guest's description
        if len(line) > MAX_LINE:
            key = _key_of(line)
            target.too_long[key] = len(line)
            target._bad(no, f"{key} is {len(line)} characters long, more than {MAX_LINE}: not read")
            continue
        if gtype == "lxc" and line.startswith("lxc."):
            pair = raw_line(line)
            if pair is not None:
                target.raw.append(pair)
                continue
        colon = line.find(":")
        key = line[:colon] if colon > 0 else ""
        # (.+?)\s*$ needs one character after the ':'; "boot: " is read, as the value " "
        if not key or colon + 1 == len(line) or not key_re.fullmatch(key):
            target._bad(no, f"cannot read {show(line)}")
            continue
        if key == "delete" and target is not cfg.pending:
            target._bad(no, "'delete' is only allowed in the pending section")
            continue
        target.values[key] = line[colon + 1:].strip(WS)
    return cfg
