"""Node-local claims (claims.py): who holds an address while its guest is starting."""
import os

from phoenix_hook.pve import claims


def test_fresh_holder_is_another_guest_within_the_ttl():
    assert claims.fresh_holder("952 1000.0\n", 951, now=1010.0) == (952, 10.0)
    assert claims.fresh_holder("951 1000.0\n", 951, now=1010.0) is None          # our own
    assert claims.fresh_holder("952 1000.0\n", 951, now=1000.0 + claims.CLAIM_TTL_S) is None
    assert claims.fresh_holder("952 2000.0\n", 951, now=1000.0) is None          # far in the future
    assert claims.fresh_holder("952 1000.5\n", 951, now=1000.0) == (952, -0.5)    # rounding: still fresh
    for junk in ("", "x y", "952", "952 abc", "-1 5", "952 1 2"):
        assert claims.fresh_holder(junk, 951, now=1.0) is None


def test_first_claim_wins_and_a_refused_guest_releases(tmp_path):
    run = str(tmp_path)
    assert claims.claim(run, 951, "10.0.0.151", "vmbr0", None, now=100.0) is None
    assert claims.claim(run, 960, "10.0.0.151", "vmbr0", None, now=105.0) == (951, 5.0)
    # same address on another bridge or VLAN is another claim
    assert claims.claim(run, 960, "10.0.0.151", "vmbr1", None, now=105.0) is None
    assert claims.claim(run, 960, "10.0.0.151", "vmbr0", 20, now=105.0) is None
    claims.release(run, 960, "10.0.0.151", "vmbr0", None)      # not 960's: kept
    assert claims.claim(run, 960, "10.0.0.151", "vmbr0", None, now=106.0) == (951, 6.0)
    claims.release(run, 951, "10.0.0.151", "vmbr0", None)
    assert claims.claim(run, 960, "10.0.0.151", "vmbr0", None, now=107.0) is None


def test_a_stale_claim_is_taken_over(tmp_path):
    run = str(tmp_path)
    claims.claim(run, 951, "10.0.0.151", "vmbr0", None, now=100.0)
    later = 100.0 + claims.CLAIM_TTL_S + 1
    assert claims.claim(run, 960, "10.0.0.151", "vmbr0", None, now=later) is None
    assert claims.claim(run, 951, "10.0.0.151", "vmbr0", None, now=later + 1) == (960, 1.0)


def test_odd_bridge_names_stay_inside_the_claims_directory(tmp_path):
    claims.claim(str(tmp_path), 951, "10.0.0.151", "../../etc", None, now=1.0)
    assert [p.parent.name for p in tmp_path.rglob("10.0.0.151*")] == ["claims"]


def test_a_claim_its_holder_no_longer_means_is_taken_over(tmp_path):
    run = str(tmp_path)
    claims.claim(run, 951, "10.0.0.151", "vmbr0", None, now=100.0)
    asked = []

    def still_holds(other, age):
        asked.append((other, age))
        return False
    assert claims.claim(run, 960, "10.0.0.151", "vmbr0", None, now=101.0, still_holds=still_holds) is None
    assert asked == [(951, 1.0)]
    assert claims.claim(run, 951, "10.0.0.151", "vmbr0", None, now=102.0,
                        still_holds=lambda o, a: True) == (960, 1.0)


def _race(run, ip, vmids, now=None):
    """[(vmid, claim result)] of one claim per vmid, all released at once from forked processes."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()

    def one(vmid):
        start.wait()
        out.put((vmid, claims.claim(run, vmid, ip, "vmbr0", None, now=now)))
    procs = [ctx.Process(target=one, args=(vmid,)) for vmid in vmids]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=20) for _ in procs]
    for p in procs:
        p.join(timeout=20)
    return results


def test_of_many_hooks_racing_over_an_old_claim_exactly_one_wins(tmp_path):
    """An old claim file is there (the usual case after the first start): the race must
    still have one winner; read-decide-replace without a lock let several win."""
    run = str(tmp_path)
    claims.claim(run, 900, "10.0.0.151", "vmbr0", None, now=1.0)        # stale by now
    results = _race(run, "10.0.0.151", range(951, 959), now=1000.0)
    winners = [vmid for vmid, held in results if held is None]
    assert len(winners) == 1, results
    assert all(held[0] == winners[0] for vmid, held in results if held is not None)


def test_release_all_drops_only_that_guests_claims(tmp_path):
    run = str(tmp_path)
    claims.claim(run, 951, "10.0.0.151", "vmbr0", None, now=1.0)
    claims.claim(run, 951, "fd00::151", "vmbr0", None, now=1.0)
    claims.claim(run, 952, "10.0.0.152", "vmbr0", None, now=1.0)
    claims.release_all(run, 951)
    assert sorted(p.name for p in (tmp_path / "claims").iterdir() if not p.name.startswith(".")) == \
        ["10.0.0.152@vmbr0"]


def test_racing_hooks_in_real_time_have_one_winner(tmp_path):
    """With the clock read by each claimant (no fixed now): the loser must not see the
    winner's claim as 'from the future' and take it over."""
    for attempt in range(5):
        results = _race(str(tmp_path), f"10.0.0.{attempt + 1}", range(951, 957))
        assert sum(held is None for _vmid, held in results) == 1, results


def test_the_claim_time_is_read_under_the_lock(tmp_path):
    """Read before the flock, a loser's clock could be older than the winner's claim, which
    it would then see 'from the future'; the 1 s tolerance would hide that, so look directly:
    at the moment the clock is read, nobody else can take the claims lock."""
    import fcntl
    import time as _time
    seen = []

    def clock():
        fd = os.open(str(tmp_path / "claims" / ".lock"), os.O_WRONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append("free")
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            seen.append("held")
        finally:
            os.close(fd)
        return _time.time()

    assert claims.claim(str(tmp_path), 951, "10.0.0.151", "vmbr0", None, clock=clock) is None
    assert seen == ["held"]


def test_symlinks_in_run_dir_are_never_followed(tmp_path):
    """Root writes claims: a link planted as a claim or as the next temporary file must
    not make it read or write the file the link points at."""
    import os
    run = str(tmp_path / "run")
    victim = tmp_path / "victim"
    victim.write_text("952 9999999999.0\n")          # would read as a fresh claim by 952
    os.makedirs(os.path.join(run, "claims"))
    link = os.path.join(run, "claims", "10.0.0.151@vmbr0")
    os.symlink(victim, link)
    os.symlink(victim, f"{link}.{os.getpid()}.tmp")
    assert claims.claim(run, 951, "10.0.0.151", "vmbr0", None, now=100.0) is None
    assert victim.read_text() == "952 9999999999.0\n"
    assert not os.path.islink(link) and open(link).read().split()[0] == "951"
    os.unlink(link)
    os.symlink(victim, link)
    claims.release(run, 952, "10.0.0.151", "vmbr0", None)       # would unlink... the link, never victim
    claims.release_all(run, 952)
    assert victim.exists()
