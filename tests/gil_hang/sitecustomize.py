"""Test-only, never installed: put this directory on PYTHONPATH and the hook's reading
of the other guests' configs (a thread, checks/check.py run_check) hangs inside the
regex engine, in C, holding the GIL (exponential backtracking: 2**40 steps), as a
pathological config line once made it hang. The regex engine checks for signals only
in the main thread, and never lets go of the GIL: no SIGALRM handler and no other
thread of the hook's process runs meanwhile. Only a deadline kept outside that
process can end it (hook.py, the watchdog parent).
"""
import re
import threading

from phoenix_hook.pve import guest

_parse_config = guest.parse_config


def parse_config(*args, **kwargs):
    if threading.current_thread() is not threading.main_thread():
        re.match(r"(a*)*b", "a" * 40)
    return _parse_config(*args, **kwargs)


guest.parse_config = parse_config
