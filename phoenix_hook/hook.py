"""The hookscript: `<vmid> <phase>`, as Proxmox VE calls it (REFERENCE section 1).

pre-start probes the guest's static addresses and decides; every other phase
returns at once with no network I/O and no heavy import (only os and sys
are loaded at module level; of the settings only pve_root, where chain
records live). PVE applies no timeout to a hookscript, so the run is
bounded here, in two layers:

- the check runs in a child process; the parent only waits for it, and at
  deadline_s + BACKSTOP_S kills it and decides by on_error. The parent never
  runs our parsing or probing, so nothing the child does (a regex holding the
  GIL, a C call that never returns, a crash) can keep it from deciding;
- inside the child, the probe stops at the deadline and SIGALRM ends what
  hangs in a system call (a pmxcfs read), with the usual "could not check".

Every start that goes on unchecked says so on a `WARNING:` line in the task
log and in the journal (`logger -p warning`), never only in the decision log.
"""
import os
import sys

from phoenix_hook import paths

P = "phoenix-hook:"
BACKSTOP_S = 1.0       # after deadline_s, the parent stops waiting for the check


class DeadlineExceeded(Exception):
    pass


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def journal(line: str) -> None:
    """One warning to the system log (journald on PVE), as `logger` sends it; never fails."""
    import subprocess
    try:
        subprocess.run(["logger", "-t", "phoenix-hook", "-p", "daemon.warning", "--", line],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        pass


def main(argv=None, environ=None, watchdog: bool = True) -> int:
    """watchdog=False runs the check in this process (tests that call main() directly)."""
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    if len(argv) != 2 or not (argv[0].isascii() and argv[0].isdigit()):
        say(f"{P} usage: phoenix-hook.py <vmid> <phase> (Proxmox VE calls it this way)")
        return 2
    vmid, phase = int(argv[0]), argv[1]
    if phase == "post-start":
        post_start(vmid, environ)
    if phase != "pre-start":
        return run_chained(vmid, phase, environ)
    if environ.get("PVE_MIGRATED_FROM"):
        # Live migration target: the source still holds the address until
        # the switch-over, so a probe would answer "conflict" falsely.
        say(f"{P} guest {vmid} arrives by migration from {environ['PVE_MIGRATED_FROM']}: not probed")
        _log_migration(vmid, environ)
        return run_chained(vmid, phase, environ)
    code = pre_start(vmid, environ, watchdog=watchdog)
    if code != 0:
        return code
    code = run_chained(vmid, phase, environ)
    if code != 0:                      # the previous hookscript stopped the start after all
        _release_claims(vmid, environ)
    return code


def _settings(environ):
    from phoenix_hook.settings import load_lenient
    return load_lenient(environ)


def _release_claims(vmid: int, environ) -> None:
    from phoenix_hook.pve import claims
    claims.release_all(_settings(environ)[0].run_dir, vmid)


def pre_start(vmid: int, environ, watchdog: bool = True) -> int:
    import time

    t0 = time.monotonic()
    settings, problems = _settings(environ)
    for line in problems:
        # A mistake in the settings never switches the guard off: what could
        # not be read takes its default, and the check goes on (settings.py).
        say(f"WARNING: {P} settings: {line}")
        journal(f"guest {vmid}: settings: {line}")
    mode, timeout = settings.for_guest(vmid)
    record = {"vmid": vmid, "phase": "pre-start", "node": settings.node, "mode": mode}
    if problems:
        record["settings_errors"] = problems
    if mode == "off":
        say(f"{P} guest {vmid}: mode = off, not checked")
        _log(settings, record, "skipped", "allowed", 0, t0)
        return 0
    if not watchdog:
        return _checked(vmid, settings, mode, timeout, t0, record)
    return _watched(vmid, settings, record, t0,
                    lambda: _checked(vmid, settings, mode, timeout, t0, record))


def _watched(vmid, settings, record, t0, check) -> int:
    """Run check() in a child process and wait for it until deadline_s + BACKSTOP_S.

    The child's exit code is the answer. A child still running then is killed
    and on_error decides, as for any check that could not finish; so does a
    child that died of a signal. Its claims are released when the start is
    refused (claims.py), as the child would have done itself.
    """
    import select
    import signal
    import time

    sys.stdout.flush()
    rfd, wfd = os.pipe()               # EOF on rfd: the child is gone
    try:
        pid = os.fork()
    except OSError as exc:             # no process to spare: check here, with SIGALRM only
        os.close(rfd)
        os.close(wfd)
        say(f"{P} note: cannot start the check's watchdog ({exc.strerror}); checking without it")
        return check()
    if pid == 0:                       # the child: check, say, exit
        code = 1
        try:
            os.close(rfd)
            code = check()
        except BaseException:          # noqa: B036 - whatever happens, the parent decides
            code = 70
        finally:
            try:
                sys.stdout.flush()
            finally:
                os._exit(code)
    os.close(wfd)
    hard = t0 + settings.deadline_s + BACKSTOP_S
    finished = False
    while not finished:
        left = hard - time.monotonic()
        if left <= 0:
            break
        finished = bool(select.select([rfd], [], [], left)[0])
    os.close(rfd)
    if finished:
        _pid, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) in (0, 1):
            return os.WEXITSTATUS(status)
        why = (f"the check ended abnormally ({_ended(status)}; a phoenix-hook bug, "
               f"please report it with the decision log line)")
    else:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        why = (f"the check did not finish within deadline_s = {settings.deadline_s:g} "
               f"and was stopped")
    # A child that died mid-probe leaves its temporary VLAN probe port behind
    # (net/probeport.py); its PID is gone now, so it counts as stale.
    from phoenix_hook.net import probeport
    probeport.clean_stale()
    code = _could_not_check(vmid, settings, dict(record), t0, why)
    if code != 0:
        from phoenix_hook.pve import claims
        claims.release_all(settings.run_dir, vmid)
    return code


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        import signal
        try:
            return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        except ValueError:
            return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.WEXITSTATUS(status)}"


def _checked(vmid, settings, mode, timeout, t0, record) -> int:
    """The check itself, bounded by SIGALRM for what hangs in a system call."""
    import signal

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
    if verdict == "conflict":
        _flag_responders(g, settings)
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
    # A NIC that could not be checked is said once, in the loud line below
    # (which names the bridge / the step), not also on a line of its own.
    for line in task_log_lines(g, errors=verdict != "error"):
        say(line)
    if verdict == "error":
        why = "; ".join(dict.fromkeys(([g.error] if g.error else []) +       # a NIC's two addresses
                                      [f"{n.nic}{' ' + n.ip if n.ip else ''}: {n.note}"
                                       for n in g.nics if n.verdict == "error"]))
        return _could_not_check(vmid, settings, record, t0, why or None, label=g.label, shown=True)
    _log(settings, record, verdict, "allowed", 0, t0)
    return 0


def _flag_responders(g, settings) -> None:
    """Name a MAC that answers for many addresses, or for addresses outside the
    bridge's subnets, as a suspicious responder (checks/responders.py): one device
    answering every probe refuses every start, and the admin should know it."""
    try:
        from phoenix_hook.checks import responders
        from phoenix_hook.net import hostnet
        # The bridges' networks from /proc, not `ip -j addr`: no subprocess in a start.
        subnets = {b: hostnet.ip_networks(b) for b in {n.bridge for n in g.nics if n.bridge}}
        g.notes += responders.notes_for(g, responders.parse_history(_log_tail(settings.log_file)), subnets)
    except Exception:              # a hint only: never in the way of the verdict
        pass


def _log_tail(path: str, size: int = 256 * 1024) -> list[str]:
    """The last whole lines of the decision log (at most size bytes), [] if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(max(0, end - size))
        lines = f.read().decode("utf-8", "replace").split("\n")
    return lines[1:] if end > size else lines


def _log_migration(vmid, environ) -> None:
    import time

    settings = _settings(environ)[0]
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
        journal(f"{label} not started: the address check failed{because} and on_error = refuse")
        _log(settings, record, "error", "refused", 1, t0)
        return 1
    say(f"WARNING: {P} {label} was NOT checked for address conflicts{because}; "
        f"starting anyway (on_error = allow)")
    journal(f"{label} started WITHOUT an address conflict check{because} (on_error = allow)")
    _log(settings, record, "error", "allowed", 0, t0)
    return 0


def _log(settings, record, verdict, action, code, t0) -> None:
    """Append one JSON line per decision; one write() on an O_APPEND file, so
    lines from guests starting at the same time never interleave. O_NOFOLLOW:
    a symlink planted as the log must not make root append to another file."""
    import json
    import time
    record = dict(record, verdict=verdict, action=action, exit=code,
                  elapsed_ms=round((time.monotonic() - t0) * 1000, 1),
                  time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    try:
        os.makedirs(os.path.dirname(settings.log_file), mode=0o750, exist_ok=True)
        fd = os.open(settings.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        say(f"{P} note: cannot write the decision log {settings.log_file}: {exc.strerror}")


def post_start(vmid: int, environ) -> None:
    """Announce the guest's static addresses to the LAN (watch/announce.py), detached.

    PVE reads the hook's stdout and stderr to the end before the start task
    goes on, so the process that spends ~2 s announcing must hold neither:
    it is forked twice into its own session with stdin, stdout and stderr on
    /dev/null and every other descriptor closed, and this one returns at once.
    `announce = false` in the settings turns it off.
    """
    import time

    t0 = time.monotonic()
    settings = _settings(environ)[0]    # a mistake in the file: pre-start said so already
    if not settings.announce:
        return
    from phoenix_hook.pve.files import FileSource, SourceError
    from phoenix_hook.watch.announce import static_addresses
    try:
        guest = FileSource(settings.pve_root, settings.node).guest(vmid)
    except SourceError:
        return
    ignored = settings.ignored if settings.ignore else (lambda ip: False)
    addresses = [ip for bridge, ip in static_addresses(guest, ignored)
                 if os.path.isdir(os.path.join("/sys/class/net", bridge))]
    if not addresses:
        return
    say(f"{P} {guest.label}: announcing {', '.join(addresses)} to the LAN (in the background)")
    sys.stderr.flush()
    try:
        child = os.fork()
    except OSError as exc:              # no process to spare: the start goes on unannounced
        say(f"{P} {guest.label}: not announced: cannot start a process ({exc.strerror})")
        return
    if child:
        os.waitpid(child, 0)            # the first child exits at once
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        import signal
        signal.alarm(30)                # never outlive a stuck send
        from phoenix_hook.watch import announce
        try:
            announce.run(vmid, settings)
        except Exception as exc:        # nobody reads our output now: the decision log says it
            _log(settings, {"vmid": vmid, "phase": "post-start", "node": settings.node,
                            "error": f"announcing failed: {type(exc).__name__}: {exc}"},
                 "error", "announce", 0, t0)
    finally:
        os._exit(0)


def run_chained(vmid: int, phase: str, environ) -> int:
    """Run the hookscript install.sh --chain found on this guest before us (pve/chain.py).

    Its exit code is ours: in pre-start a failure aborts the start, as it
    would have without phoenix-hook. A record that is not this guest's (a
    new guest or a clone with the same VMID) is not run, loudly; one that is
    unsafe (not root's, writable by others), or names a missing script,
    fails pre-start, as a missing hookscript would.
    """
    from phoenix_hook.pve import chain
    try:
        rec = chain.load(paths.pve_root(environ), vmid)
    except chain.ChainError as exc:
        return _chain_refused(vmid, phase, f"{exc}; chained hookscript not run")
    if rec is None:
        _old_record(vmid, phase, environ)
        return 0
    settings = _settings(environ)[0]
    from phoenix_hook.pve.files import FileSource, SourceError
    source = FileSource(settings.pve_root, settings.node)
    try:
        cf = source.locate(vmid)
        text = source.read(cf)
        from phoenix_hook.pve.guest import parse_config
        macs, vmgenid = chain.identity(text, parse_config(text, vmid, cf.type, cf.node))
    except SourceError as exc:
        return _chain_refused(vmid, phase, f"cannot read guest {vmid}'s config to match the chain "
                                           f"record {rec.file}: {exc}")
    why = chain.mismatch(rec, macs, vmgenid)
    if why:
        line = (f"the chain record {rec.file} is not this guest's: {why}; its hookscript {rec.path} "
                f"was NOT run. If it is this guest's, re-run install.sh --attach {vmid} --chain; "
                f"else delete the record")
        say(f"WARNING: {P} guest {vmid}: {line}")
        journal(f"guest {vmid} {phase}: {line}")
        return 0
    unsafe = chain.check_script(rec.path)
    if unsafe:
        return _chain_refused(vmid, phase, f"{unsafe}; not run as root (chown root, chmod go-w)")
    if not os.access(rec.path, os.X_OK):
        return _chain_refused(vmid, phase, f"chained hookscript {rec.path} of guest {vmid} is missing "
                                           f"or not executable; restore it or re-run install.sh")
    import subprocess
    sys.stdout.flush()
    return subprocess.run([rec.path, str(vmid), phase], stdin=subprocess.DEVNULL).returncode


def _chain_refused(vmid: int, phase: str, why: str) -> int:
    """A chained hookscript that should run but may not: pre-start fails, as PVE fails a
    start whose hookscript is missing; other phases only warn (PVE ignores their exit)."""
    if phase == "pre-start":
        say(f"{P} guest {vmid} not started: {why}")
        journal(f"guest {vmid} not started: {why}")
        return 1
    say(f"WARNING: {P} guest {vmid} {phase}: {why}")
    journal(f"guest {vmid} {phase}: {why}")
    return 0


def _old_record(vmid: int, phase: str, environ) -> None:
    """A record in the old node-local format (before records were tied to the guest)
    is never run: say how to convert it."""
    old = os.path.join(paths.chain_dir(environ), str(vmid))
    if os.path.exists(old):
        line = (f"the old chain record {old} is not used any more (it is not tied to the guest); "
                f"its hookscript was NOT run: re-run install.sh to convert it")
        say(f"WARNING: {P} guest {vmid}: {line}")
        journal(f"guest {vmid} {phase}: {line}")


if __name__ == "__main__":
    sys.exit(main())
