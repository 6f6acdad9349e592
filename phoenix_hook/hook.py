"""The hookscript: `<vmid> <phase>`, as Proxmox VE calls it (REFERENCE section 1).

pre-start probes the guest's static addresses and decides; every other phase
returns at once with no network I/O and no heavy import (only os and sys
are loaded at module level). PVE applies no timeout to a hookscript, so the
run is bounded here: the probe by the deadline, the rest by SIGALRM, and a
last-resort timer that exits the process whatever it is doing.
"""
import os
import sys

from phoenix_hook import paths

P = "phoenix-hook:"


class DeadlineExceeded(Exception):
    pass


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv=None, environ=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    if len(argv) != 2 or not (argv[0].isascii() and argv[0].isdigit()):
        say(f"{P} usage: phoenix-hook.py <vmid> <phase> (Proxmox VE calls it this way)")
        return 2
    vmid, phase = int(argv[0]), argv[1]
    if phase != "pre-start":
        return run_chained(vmid, phase, environ)
    if environ.get("PVE_MIGRATED_FROM"):
        # Live migration target: the source still holds the address until
        # the switch-over, so a probe would answer "conflict" falsely.
        say(f"{P} guest {vmid} arrives by migration from {environ['PVE_MIGRATED_FROM']}: not probed")
        _log_migration(vmid, environ)
        return run_chained(vmid, phase, environ)
    code = pre_start(vmid, environ)
    if code != 0:
        return code
    code = run_chained(vmid, phase, environ)
    if code != 0:                      # the previous hookscript stopped the start after all
        _release_claims(vmid, environ)
    return code


def _release_claims(vmid: int, environ) -> None:
    from phoenix_hook.pve import claims
    from phoenix_hook.settings import SettingsError, load
    try:
        claims.release_all(load(environ=environ).run_dir, vmid)
    except SettingsError:
        pass


def pre_start(vmid: int, environ) -> int:
    import signal
    import threading
    import time

    from phoenix_hook.settings import SettingsError, load

    t0 = time.monotonic()
    try:
        settings = load(environ=environ)
    except SettingsError as exc:
        say(f"WARNING: {P} bad settings, guest {vmid} not checked: {exc}")
        say(f"WARNING: {P} starting anyway; fix the settings file to re-enable checking")
        return 0
    mode, timeout = settings.for_guest(vmid)
    record = {"vmid": vmid, "phase": "pre-start", "node": settings.node, "mode": mode}
    if mode == "off":
        say(f"{P} guest {vmid}: mode = off, not checked")
        _log(settings, record, "skipped", "allowed", 0, t0)
        return 0

    refuse = settings.on_error == "refuse"
    # Backstop: if something blocks where SIGALRM cannot reach (a hung
    # pmxcfs read), still end the process shortly after the deadline.
    def _backstop():
        if refuse:
            from phoenix_hook.pve import claims
            claims.release_all(settings.run_dir, vmid)
        why = f"the check did not finish within deadline_s = {settings.deadline_s:g}"
        say(f"{P} guest {vmid}: {why}; "
            + ("start refused (on_error = refuse)" if refuse else "starting anyway (on_error = allow)"))
        _log(settings, dict(record, error=why), "error", "refused" if refuse else "allowed",
             1 if refuse else 0, t0)
        os._exit(1 if refuse else 0)
    timer = threading.Timer(settings.deadline_s + 1.0, _backstop)
    timer.daemon = True
    timer.start()

    def _alarm(_sig, _frame):
        raise DeadlineExceeded()
    signal.signal(signal.SIGALRM, _alarm)
    # The probe itself stops at the deadline; the alarm fires a little later
    # for anything else that hangs.
    signal.setitimer(signal.ITIMER_REAL, settings.deadline_s + 0.25)
    claimed: list = []                 # (address, bridge, tag) this start claimed (claims.py)
    code = 1
    try:
        code = _decide(vmid, settings, mode, timeout, t0, record, claimed)
    except DeadlineExceeded:
        code = _could_not_check(vmid, settings, record, t0,
                                f"the check did not finish within deadline_s = {settings.deadline_s:g}")
    except Exception as exc:       # a bug in phoenix-hook must not decide the start: on_error does
        why = (f"internal error {type(exc).__name__}: {exc} (a phoenix-hook bug; "
               f"please report it with the decision log line)")
        if record.get("report", {}).get("verdict") == "conflict" and mode == "enforce":
            # the conflict was already seen on the wire: only reporting it failed
            say(f"{P} guest {vmid}: an address conflict was found (see the decision log); "
                f"start refused; {why}")
            _log(settings, dict(record, error=why), "conflict", "refused", 1, t0)
            code = 1
        else:
            code = _could_not_check(vmid, settings, record, t0, why)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        timer.cancel()
        if code != 0:                  # not starting: the addresses are not ours to hold
            from phoenix_hook.pve import claims
            for address, bridge, tag in claimed:
                claims.release(settings.run_dir, vmid, address, bridge, tag)
    return code


def _decide(vmid, settings, mode, timeout, t0, record, claimed) -> int:
    import signal

    from phoenix_hook.pve import claims
    from phoenix_hook.checks.check import Options, run_check
    from phoenix_hook.pve.files import FileSource, SourceError, guest_running
    from phoenix_hook.checks.report import task_log_lines

    source = FileSource(settings.pve_root, settings.node)
    try:
        guest = source.guest(vmid)          # PVE has applied pending changes already
    except SourceError as exc:
        return _could_not_check(vmid, settings, record, t0, str(exc))
    record["type"] = guest.type

    def _still_holds(other, age, nic, address):
        try:
            holder = source.guest(other)
        except SourceError:                 # deleted since: its claim is void
            return False
        if holder.node != settings.node or not any(
                address in (n.address, n.address6) and (n.bridge, n.tag) == (nic.bridge, nic.tag)
                for n in holder.nics):
            return False
        return age < claims.STARTING_S or guest_running(other, holder.type)

    def _claim(g, nic, address):
        # Node-local claim (claims.py): catches a second guest of this node
        # starting with the same address before the first one is up.
        try:
            held = claims.claim(settings.run_dir, g.vmid, address, nic.bridge, nic.tag,
                                still_holds=lambda other, age: _still_holds(other, age, nic, address))
        except OSError as exc:
            say(f"{P} note: cannot record the claim in {settings.run_dir}: {exc.strerror}")
            return None
        if not held:
            claimed.append((address, nic.bridge, nic.tag))
        return held

    opts = Options(timeout=timeout, stop_on_first=True, deadline=t0 + settings.deadline_s, claim=_claim)
    report = run_check([guest], settings, opts, load_cluster=source.guests)
    # Decided: from here on, only saying so remains; a late alarm must not
    # turn a refusal into "could not check" (on_error = allow would start it).
    signal.setitimer(signal.ITIMER_REAL, 0)
    g = report.guests[0]
    verdict = g.verdict
    record["report"] = g.to_json()
    if verdict == "conflict":
        if mode == "enforce":
            for line in task_log_lines(g, "start refused"):
                say(line)
            say(f"{P} {g.label} not started: fix the address or find the device above "
                f"(set mode = warn to start anyway)")
            _log(settings, record, verdict, "refused", 1, t0)
            return 1
        for line in task_log_lines(g, "starting anyway (mode = warn)", warn=True):
            say(line)
        _log(settings, record, verdict, "warned", 0, t0)
        return 0
    for line in task_log_lines(g):
        say(line)
    if verdict == "error":
        # The per-NIC lines above say what failed; the verdict line repeats it,
        # so the one loud line an admin reads names the bridge / the step.
        why = "; ".join(dict.fromkeys(([g.error] if g.error else []) +       # a NIC's two addresses
                                      [f"{n.nic}: {n.note}" for n in g.nics if n.verdict == "error"]))
        return _could_not_check(vmid, settings, record, t0, why or None, label=g.label, shown=True)
    _log(settings, record, verdict, "allowed", 0, t0)
    return 0


def _log_migration(vmid, environ) -> None:
    import time

    from phoenix_hook.settings import SettingsError, load
    try:
        settings = load(environ=environ)
    except SettingsError:
        return
    _log(settings, {"vmid": vmid, "phase": "pre-start", "node": settings.node,
                    "mode": settings.for_guest(vmid)[0], "migrated_from": environ.get("PVE_MIGRATED_FROM")},
         "skipped", "allowed", 0, time.monotonic())


def _could_not_check(vmid, settings, record, t0, why, label=None, shown=False) -> int:
    label = label or f"guest {vmid}"
    if why and not shown:
        say(f"{P} {label}: could not check: {why}")
    record["error"] = why
    because = f" ({why})" if why else ""
    if settings.on_error == "refuse":
        say(f"{P} {label} not started: the check failed{because} and on_error = refuse")
        _log(settings, record, "error", "refused", 1, t0)
        return 1
    say(f"WARNING: {P} {label} was NOT checked for address conflicts{because}; "
        f"starting anyway (on_error = allow)")
    _log(settings, record, "error", "allowed", 0, t0)
    return 0


def _log(settings, record, verdict, action, code, t0) -> None:
    """Append one JSON line per decision; one write() on an O_APPEND file, so
    lines from guests starting at the same time never interleave."""
    import json
    import time
    record = dict(record, verdict=verdict, action=action, exit=code,
                  elapsed_ms=round((time.monotonic() - t0) * 1000, 1),
                  time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    try:
        os.makedirs(os.path.dirname(settings.log_file), mode=0o750, exist_ok=True)
        fd = os.open(settings.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        say(f"{P} note: cannot write the decision log {settings.log_file}: {exc.strerror}")


def run_chained(vmid: int, phase: str, environ) -> int:
    """Run the hookscript install.sh --chain found on this guest before us.

    Its exit code is ours: in pre-start a failure aborts the start, as it
    would have without phoenix-hook.
    """
    path = None
    try:
        with open(os.path.join(paths.chain_dir(environ), str(vmid))) as f:
            for line in f:
                if line.startswith("path="):
                    path = line[5:].strip()
    except OSError:
        return 0
    if not path:
        return 0
    if not os.access(path, os.X_OK):
        say(f"{P} chained hookscript {path} of guest {vmid} is missing or not executable; "
            f"restore it or re-run install.sh")
        return 1 if phase == "pre-start" else 0
    import subprocess
    sys.stdout.flush()
    return subprocess.run([path, str(vmid), phase], stdin=subprocess.DEVNULL).returncode


if __name__ == "__main__":
    sys.exit(main())
