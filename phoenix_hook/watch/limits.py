"""How often the watch speaks, and which conflicts are still open. Pure; time is a parameter.

- AlertLimiter: one alert per (address, MAC) per alert_interval_s, and at
  most max_alerts_per_minute in all; what is held back is counted and
  reported in one summary line when the minute is over. A flood of spoofed
  frames (every frame a new MAC) must flood nobody: the table of keys is
  bounded (least recently used first out), so memory is too.
- Conflicts: the devices seen holding a guest's address, each re-probed
  every verify_s; one that no longer answers a round of probes is
  resolved. Bounded per address and in all.
"""
from __future__ import annotations

from collections import OrderedDict
from phoenix_hook.records import dataclass, field

SEND, REPEAT, CAPPED = "send", "repeat", "capped"
WINDOW_S = 60.0
RANK = {"claim": 1, "conflict": 2}


class AlertLimiter:
    def __init__(self, interval_s: float, per_minute: int, max_keys: int = 4096):
        self.interval_s = interval_s
        self.per_minute = per_minute
        self.max_keys = max_keys
        self._keys: OrderedDict = OrderedDict()    # key -> (time, rank, state, window)
        self._window = 0
        self._start: float | None = None
        self._sent = 0
        self._held = 0
        self._closed = 0                            # held back in windows already over

    def __len__(self) -> int:
        return len(self._keys)

    def _roll(self, now: float) -> None:
        if self._start is not None and now - self._start >= WINDOW_S:
            self._closed += self._held
            self._start, self._sent, self._held = None, 0, 0
            self._window += 1

    def check(self, key, kind: str, now: float) -> str:
        """SEND (say it), REPEAT (said already, or held back already this minute) or CAPPED.

        A claim and then a conflict by the same MAC: the conflict is said too
        (it is worse); the other way round it is a repeat.
        """
        self._roll(now)
        rank = RANK.get(kind, 2)
        old = self._keys.get(key)
        if old is not None:
            t, r, state, window = old
            if rank <= r and ((state == SEND and now - t < self.interval_s) or
                              (state == CAPPED and window == self._window)):
                self._keys.move_to_end(key)
                return REPEAT
        if self._start is None:
            self._start = now
        if self._sent < self.per_minute:
            self._sent += 1
            state = SEND
        else:
            self._held += 1
            state = CAPPED
        self._keys[key] = (now, rank, state, self._window)
        self._keys.move_to_end(key)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return state

    def count_one(self, now: float) -> bool:
        """One alert without a key (resolved): True to say it, False when over the cap."""
        self._roll(now)
        if self._start is None:
            self._start = now
        if self._sent < self.per_minute:
            self._sent += 1
            return True
        self._held += 1
        return False

    def forget(self, key) -> None:
        """The conflict is over: a new one by the same MAC is news again."""
        self._keys.pop(key, None)

    def summary(self, now: float) -> int:
        """How many alerts were held back in minutes that are over (once; 0 when none)."""
        self._roll(now)
        n, self._closed = self._closed, 0
        return n

    def flush(self) -> int:
        """At exit: held back so far, the open minute included."""
        n = self._closed + self._held
        self._closed = self._held = 0
        return n


@dataclass
class Open:
    """One device seen holding one watched address (a conflict not yet resolved)."""
    key: tuple                  # (bridge, vlan, family, ip, mac)
    watched: list               # the Watched entries it affects (guests configured with the address)
    mac: str
    first_seen: float
    last_seen: float
    next_check: float
    alerted: bool = False
    round_start: float | None = None
    probes: int = 0

    @property
    def segment(self) -> tuple:
        return self.key[:2]

    @property
    def family(self) -> int:
        return self.key[2]

    @property
    def ip(self) -> str:
        return self.key[3]


@dataclass
class Conflicts:
    """Open conflicts and their verification rounds (RFC 5227 2.1.1 probe shape, repeated).

    A round sends probe_num probes probe_gap apart to the conflicting MAC;
    round_s after its start, a device that answered none of them (its
    last_seen is older than the round) no longer holds the address.
    """
    verify_s: float
    max_total: int = 1024
    max_per_address: int = 16
    probe_num: int = 3
    probe_gap: float = 0.5
    round_s: float = 2.0
    open: dict = field(default_factory=dict)     # key -> Open
    untracked: int = 0                            # new conflicts past the bounds
    _per_address: dict = field(default_factory=dict)   # key[:4] -> Opens on it

    def seen(self, key, watched, now: float) -> Open | None:
        """A conflicting frame: the Open it belongs to (new or refreshed), None past the bounds."""
        o = self.open.get(key)
        if o is not None:
            o.last_seen = now
            if watched not in o.watched:
                o.watched.append(watched)
            return o
        address = key[:4]
        if len(self.open) >= self.max_total or self._per_address.get(address, 0) >= self.max_per_address:
            self.untracked += 1
            return None
        o = Open(key=key, watched=[watched], mac=key[4], first_seen=now, last_seen=now,
                 next_check=now + self.verify_s)
        self.open[key] = o
        self._per_address[address] = self._per_address.get(address, 0) + 1
        return o

    def _remove(self, key) -> Open:
        o = self.open.pop(key)
        n = self._per_address.get(key[:4], 1) - 1
        if n > 0:
            self._per_address[key[:4]] = n
        else:
            self._per_address.pop(key[:4], None)
        return o

    def due(self, now: float, can_probe=lambda o: True) -> list[Open]:
        """The Opens that need a probe sent now (each at most once per call)."""
        out = []
        for o in self.open.values():
            if o.round_start is None:
                if now < o.next_check:
                    continue
                if not can_probe(o):
                    o.next_check = now + self.verify_s     # nowhere to send it: keep it open
                    continue
                o.round_start, o.probes = now, 0
            if o.probes < self.probe_num and now >= o.round_start + o.probes * self.probe_gap:
                o.probes += 1
                out.append(o)
        return out

    def resolved(self, now: float) -> list[Open]:
        """Opens whose round is over unanswered: removed and returned. Answered rounds end too."""
        gone = []
        for key, o in list(self.open.items()):
            if o.round_start is None or now < o.round_start + self.round_s:
                continue
            if o.last_seen >= o.round_start:
                o.round_start, o.next_check = None, now + self.verify_s
            else:
                gone.append(self._remove(key))
        return gone

    def wakeup(self) -> float | None:
        """The earliest time due() or resolved() has something to do."""
        times = []
        for o in self.open.values():
            if o.round_start is None:
                times.append(o.next_check)
            else:
                if o.probes < self.probe_num:
                    times.append(o.round_start + o.probes * self.probe_gap)
                times.append(o.round_start + self.round_s)
        return min(times) if times else None

    def active(self) -> set[tuple[str, str]]:
        """(guest id, address) of every guest address with an open conflict."""
        return {(w.id, w.ip) for o in self.open.values() for w in o.watched}

    def drop_unwatched(self, still) -> None:
        """After a reload: forget conflicts on addresses no longer watched (still(Open) -> bool)."""
        for key in [k for k, o in self.open.items() if not still(o)]:
            self._remove(key)
