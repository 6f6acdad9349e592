"""pve/files.guest_running for containers: the monitor socket's path, exactly as PVE matches it."""
from __future__ import annotations

from hypothesis import given, strategies as st

from phoenix_hook.pve.files import unix_socket_paths

HEAD = "Num       RefCount Protocol Flags    Type St Inode Path\n"


def line(path, inode=23456):
    return f"0000000000000000: 00000002 00000000 00010000 0001 01 {inode} {path}\n"


def test_the_monitor_socket_of_a_running_container():
    text = HEAD + line("@/var/lib/lxc/951/command") + line("/run/systemd/notify")
    assert "@/var/lib/lxc/951/command" in unix_socket_paths(text)


def test_lookalikes_a_local_user_can_bind_do_not_count():
    """endswith() matched these: any user can bind an abstract socket of any name."""
    text = HEAD + "".join(line(p) for p in ["@x/var/lib/lxc/951/command", "@/tmp/var/lib/lxc/951/command",
                                             "/home/u/var/lib/lxc/951/command", "@/var/lib/lxc/9510/command"])
    paths = unix_socket_paths(text)
    assert "@/var/lib/lxc/951/command" not in paths


def test_a_name_with_spaces_is_not_split_into_a_fake_path():
    text = HEAD + line("@x @/var/lib/lxc/951/command")       # 9 columns: not a path we take
    assert "@/var/lib/lxc/951/command" not in unix_socket_paths(text)


def test_sockets_without_a_path_and_the_header_are_skipped():
    text = HEAD + "0000000000000000: 00000002 00000000 00000000 0001 03 777\n"
    assert unix_socket_paths(text) == set()


@given(st.text(max_size=400))
def test_never_raises(text):
    assert isinstance(unix_socket_paths(text), set)
