"""Where the watch's events go: the journal, a JSON log, PVE notifications, a webhook, metrics.

Edge module. Nothing here may hold up the capture loop: the PVE
notification (a perl process) and the webhook (HTTP) run in worker
threads behind bounded queues; a full queue drops the event for that
channel and counts it (the journal line and the JSON log line were written
already). Every failure is said once per FAILURE_EVERY_S, not per event.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time

FAILURE_EVERY_S = 600.0
TEMPLATE = "phoenix-hook-conflict"
TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
# Where pve-manager 8.2+ keeps the default notification templates; pve-manager 8.1
# took the templates as strings in the call instead (REFERENCE section 10).
PVE_TEMPLATES = "/usr/share/pve-manager/templates/default"
TEMPLATES_ENV = "PHOENIX_PVE_TEMPLATES"
PERL = "/usr/bin/perl"

# Read the request as JSON on stdin (no shell, no quoting) and hand it to PVE::Notify:
# notify($severity, $template_name, \%data, \%fields) since PVE 8.2, and
# notify($severity, $title_template, $body_template, \%data, \%fields) in 8.1.
NOTIFY_PERL = r"""
use strict;
use warnings;
use JSON::PP;
my $raw = do { local $/; <STDIN> };
my $req = JSON::PP->new->utf8->decode($raw);
require PVE::Notify;
if ($req->{api} eq '8.1') {
    PVE::Notify::notify($req->{severity}, $req->{subject_template}, $req->{body_template},
        $req->{data}, $req->{fields});
} else {
    PVE::Notify::notify($req->{severity}, $req->{template}, $req->{data}, $req->{fields});
}
"""


class Journal:
    """Lines on stdout for journald; a "<N>" prefix is the line's syslog priority."""

    def __init__(self, stream):
        self.stream = stream
        self._lock = threading.Lock()

    def line(self, text: str, priority: int | None = None) -> None:
        if priority is not None:
            text = f"<{priority}>{text}"
        with self._lock:
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass


class Once:
    """Say a failure of one kind at most once per FAILURE_EVERY_S."""

    def __init__(self, say, clock=time.monotonic):
        self.say, self.clock = say, clock
        self._last: dict[str, float] = {}

    def __call__(self, kind: str, text: str, priority: int = 4) -> None:
        now = self.clock()
        last = self._last.get(kind)
        if last is None or now - last >= FAILURE_EVERY_S:
            self._last[kind] = now
            self.say(text, priority)


class JsonLog:
    """One JSON object per line, appended with one write() (O_APPEND: lines never interleave)."""

    def __init__(self, path: str, once: Once):
        self.path, self.once = path, once

    def write(self, record: dict) -> None:
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o750, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            self.once("log", f"cannot write the event log {self.path}: {exc.strerror}; "
                             f"events still go to the journal")


class Worker:
    """A thread taking items from a bounded queue; submit() never blocks."""

    name = "worker"

    def __init__(self, once: Once, size: int = 100):
        self.once = once
        self.q: queue.Queue = queue.Queue(maxsize=size)
        self.stopping = threading.Event()
        self.dropped = 0
        self.failed = 0
        self.done = 0
        self._thread = threading.Thread(target=self._run, name=f"phoenix-hook-{self.name}", daemon=True)
        self._thread.start()

    def submit(self, item) -> bool:
        try:
            self.q.put_nowait(item)
            return True
        except queue.Full:
            self.dropped += 1
            self.once(f"{self.name}-full", f"{self.name}: {self.q.maxsize} events waiting; dropping new ones "
                                           f"for this channel until it catches up")
            return False

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                item = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.handle(item)
                self.done += 1
            except Exception as exc:          # a channel failure must never end the watch
                self.failed += 1
                self.once(f"{self.name}-error", f"{self.name} failed: {type(exc).__name__}: {exc}")

    def handle(self, item) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 0.3) -> None:
        self.stopping.set()
        self._thread.join(timeout)


def templates_dir(environ=os.environ) -> str:
    return environ.get(TEMPLATES_ENV) or PVE_TEMPLATES


def notify_loads(perl: str = PERL, environ=os.environ, timeout: float = 20.0) -> str | None:
    """None when the system perl loads PVE::Notify (libpve-notify-perl), else why not."""
    try:
        p = subprocess.run([perl, "-e", "require PVE::Notify; 1"], capture_output=True, text=True,
                           timeout=timeout, env=dict(environ), stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return f"{perl} not found"
    except subprocess.TimeoutExpired:
        return f"loading PVE::Notify took over {timeout:g} s"
    except OSError as exc:
        return f"cannot run {perl}: {exc.strerror}"
    if p.returncode != 0:
        first = (p.stderr.strip().splitlines() or ["failed"])[0]
        return f"PVE::Notify does not load ({first[:160]})"
    return None


class PveNotify(Worker):
    """PVE::Notify::notify through the system perl, the JSON request on stdin.

    The environment is passed through (PERL5LIB, proxies); the admin's
    matchers and targets in notifications.cfg route the notification.
    """

    name = "PVE notification"

    def __init__(self, once: Once, perl: str = PERL, environ=os.environ, timeout: float = 30.0):
        self.perl, self.environ, self.timeout = perl, dict(environ), timeout
        self.api = "8.2" if os.path.isdir(templates_dir(environ)) else "8.1"
        with open(os.path.join(TEMPLATE_DIR, f"{TEMPLATE}-subject.txt.hbs"), encoding="utf-8") as f:
            self.subject = f.read()
        with open(os.path.join(TEMPLATE_DIR, f"{TEMPLATE}-body.txt.hbs"), encoding="utf-8") as f:
            self.body = f.read()
        super().__init__(once, size=50)

    def request(self, severity: str, data: dict, fields: dict) -> bytes:
        return json.dumps({"api": self.api, "severity": severity, "template": TEMPLATE, "data": data,
                           "fields": fields, "subject_template": self.subject,
                           "body_template": self.body}).encode()

    def handle(self, item) -> None:
        severity, data, fields = item
        p = subprocess.run([self.perl, "-e", NOTIFY_PERL], input=self.request(severity, data, fields),
                           capture_output=True, timeout=self.timeout, env=self.environ)
        if p.returncode != 0:
            first = (p.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"perl exited {p.returncode}: {first[:200]}")


class Webhook(Worker):
    """POST each event as JSON; timeout per try, retries with doubling backoff."""

    name = "webhook"

    def __init__(self, once: Once, url: str, timeout: float = 5.0, retries: int = 3, backoff: float = 1.0):
        self.url, self.timeout, self.retries, self.backoff = url, timeout, retries, backoff
        super().__init__(once, size=100)

    def handle(self, record: dict) -> None:
        import urllib.error
        import urllib.request
        body = json.dumps(record, sort_keys=True).encode()
        delay = self.backoff
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                if self.stopping.wait(delay):
                    return
                delay *= 2
            req = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "phoenix-hook-watch"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    resp.read(4096)
                    return
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    break                          # the request itself is wrong: retrying will not help
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                last = str(reason) or type(exc).__name__
        raise RuntimeError(f"POST {self.url} failed ({last}) after {self.retries + 1} tries")


# -- metrics ----------------------------------------------------------------------------
def _label(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(rows, active, totals, *, watched: int, frames: dict, dropped: int, suppressed: int,
                   last_reload: float) -> str:
    """The Prometheus text format (exposition format 0.0.4) for node_exporter's textfile collector.

    rows: (guest id, address) of every watched guest address; active: the
    ones with an open conflict; totals: (id, address) -> conflicts seen.
    Labels as prometheus-pve-exporter spells the guest (id="lxc/951").
    """
    out = ["# HELP phoenix_hook_conflict_active 1 while another device holds the guest's address.",
           "# TYPE phoenix_hook_conflict_active gauge"]
    for gid, ip in rows:
        out.append(f'phoenix_hook_conflict_active{{id="{_label(gid)}",ip="{_label(ip)}"}} '
                   f'{1 if (gid, ip) in active else 0}')
    out += ["# HELP phoenix_hook_conflicts_total Conflicts seen (a new device on the address) since the watch started.",
            "# TYPE phoenix_hook_conflicts_total counter"]
    for gid, ip in rows:
        out.append(f'phoenix_hook_conflicts_total{{id="{_label(gid)}",ip="{_label(ip)}"}} '
                   f'{totals.get((gid, ip), 0)}')
    out += ["# HELP phoenix_hook_watched_addresses Static guest addresses watched on this node.",
            "# TYPE phoenix_hook_watched_addresses gauge",
            f"phoenix_hook_watched_addresses {watched}",
            "# HELP phoenix_hook_frames_total ARP and ND frames that passed the kernel filter and were judged.",
            "# TYPE phoenix_hook_frames_total counter"]
    for fam in ("ipv4", "ipv6"):
        out.append(f'phoenix_hook_frames_total{{family="{fam}"}} {frames.get(fam, 0)}')
    out += ["# HELP phoenix_hook_frames_dropped_total Frames the kernel dropped before the watch read them.",
            "# TYPE phoenix_hook_frames_dropped_total counter",
            f"phoenix_hook_frames_dropped_total {dropped}",
            "# HELP phoenix_hook_alerts_suppressed_total Alerts held back by max_alerts_per_minute.",
            "# TYPE phoenix_hook_alerts_suppressed_total counter",
            f"phoenix_hook_alerts_suppressed_total {suppressed}",
            "# HELP phoenix_hook_last_reload_timestamp_seconds When the guest configs were last read.",
            "# TYPE phoenix_hook_last_reload_timestamp_seconds gauge",
            f"phoenix_hook_last_reload_timestamp_seconds {last_reload:.3f}"]
    return "\n".join(out) + "\n"


def write_atomically(path: str, text: str) -> None:
    """Write a temp file beside path and rename it into place: a reader never sees half a file.
    The temp name does not end in .prom, so the textfile collector never reads it."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
