"""`phoenix-hook leases [FILE...] [--json]`: the DHCP server's active leases, against the guest configs.

The files: FILE arguments, else `dhcp_leases` in the settings; the format of
each is told from its content (checks/leasefiles.py: dnsmasq, ISC dhcpd, Kea).
JSON (one object): {"files": [{"file", "format", "leases", "bad_lines"}],
  "rows": [{"ip", "mac", "hostname", "expires", "file", "owner", "owner_vmid", "flags"}]}
Exit: 0 nothing wrong, 1 a STATIC-IP lease, 2 bad usage (no files named),
3 a lease file that cannot be read or is no lease file.
"""
from __future__ import annotations

import json
import sys
import time

from phoenix_hook.cli.main import CannotCheck, UsageError, load_settings

MAX_BYTES = 64 << 20        # a lease file of a busy server is a few MB; more is not a lease file


def add_parser(sub):
    from phoenix_hook.pve import sources
    p = sub.add_parser("leases", help="the DHCP server's active leases, and whose guest address each is",
                       description="Read DHCP lease files (dnsmasq, ISC dhcpd, Kea memfile CSV; the "
                       "format is told from the content) and list every active lease with its "
                       "owner. Flags: STATIC-IP (the lease hands a guest's static address to "
                       "another MAC), GUEST (a guest's own lease). Exit 0 nothing wrong, 1 a "
                       "STATIC-IP lease, 2 bad usage, 3 a lease file could not be read.")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="lease files (default: dhcp_leases in the settings)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    sources.add_argument(p)
    return p


def read_files(paths) -> list:
    """Read and parse each lease file; CannotCheck naming the first that cannot be read
    or is no lease file phoenix-hook knows."""
    from phoenix_hook.checks import leasefiles
    out = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_BYTES + 1)
        except OSError as exc:
            raise CannotCheck(f"cannot read lease file {path}: {exc.strerror}; fix dhcp_leases in "
                              f"the settings or the file's permissions") from None
        if len(raw) > MAX_BYTES:
            raise CannotCheck(f"{path} is larger than {MAX_BYTES >> 20} MB; is it a lease file?")
        parsed = leasefiles.parse(raw.decode("utf-8", errors="replace"), path)
        if parsed.format is None and not parsed.empty:
            raise CannotCheck(f"{path} is not a dnsmasq, ISC dhcpd or Kea lease file phoenix-hook "
                              f"can read; check dhcp_leases in the settings")
        out.append(parsed)
    return out


def load(settings, paths=None) -> list:
    """The lease files named (or the settings' dhcp_leases), parsed; [] when none are set."""
    return read_files(paths if paths else settings.dhcp_leases)


def run(args) -> int:
    from phoenix_hook.checks import leases
    from phoenix_hook.cli.tables import columns
    from phoenix_hook.pve import sources

    settings = load_settings(args)
    if not args.files and not settings.dhcp_leases:
        where = settings.path or "/etc/phoenix-hook/phoenix-hook.conf"
        raise UsageError(f"no lease files: name them (phoenix-hook leases /var/lib/misc/dnsmasq.leases) "
                         f"or set dhcp_leases in {where}")
    files = load(settings, args.files)
    _source, guests = sources.read_guests(settings, args.source)
    now = time.time()
    rows = leases.rows(leases.active(files, now), guests)
    for f in files:
        if f.bad_lines:
            sys.stderr.write(f"phoenix-hook: note: {f.file}: {f.bad_lines} unreadable "
                             f"line{'s' if f.bad_lines != 1 else ''} skipped\n")
    if args.json:
        print(json.dumps({"files": [f.to_json() for f in files], "rows": [r.to_json() for r in rows]},
                         indent=2))
        return leases.exit_code(rows)
    n = sum(len(f.leases) for f in files)
    print(f"{len(rows)} active lease{'s' if len(rows) != 1 else ''} ({n} in {len(files)} "
          f"file{'s' if len(files) != 1 else ''})")
    if rows:
        cells = [("IP", "MAC", "HOSTNAME", "EXPIRES", "OWNER", "FLAGS")]
        for r in rows:
            lease = r.lease
            cells.append((lease.ip, lease.mac or "-", lease.hostname or "-",
                          leases.until_words(lease.expires, now).replace("until ", ""),
                          r.owner or "-", " ".join(r.flags)))
        from phoenix_hook.cli.tables import terminal
        term = terminal()
        print("\n".join(columns(cells, color=term.color, width=term.width)))
    bad = [r for r in rows if leases.STATIC_IP in r.flags]
    for r in bad:
        print(f"STATIC-IP: {r.lease.ip} is leased to {r.lease.mac or 'a client'} ({r.lease.file}) but "
              f"is the static address of {r.owner} {r.owner_nic}; reserve it in the DHCP server "
              f"(phoenix-hook reservations) or move it out of the pool")
    return leases.exit_code(rows)
