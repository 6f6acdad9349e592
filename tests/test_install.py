"""install.sh, driven as a subprocess against a fake Proxmox VE node.

`pct`, `qm`, `pvesm`, `pvesh` and `mountpoint` are small wrappers around
tests/fake_pve/fake_pve.py: they log every call and answer, as strictly as
PVE's own tools, from an /etc/pve-shaped directory of guest configs that
`pct set` really changes (install.sh reads it as PHOENIX_PVE_ROOT).  The venv step uses
tests/fake_pve/fake_python.py unless a test says otherwise, so these tests
are fast and offline; test_real_venv_and_command_symlink builds a real venv.
"""
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAKES = Path(__file__).resolve().parent / "fake_pve"
VOLID = "local:snippets/phoenix-hook.py"
NODE = "fakenode"                                  # fake_pve.NODE: the node install.sh runs on
KIND_DIR = {"lxc": "lxc", "qemu": "qemu-server"}
ME = "phoenix-hook install: "
STAND_IN_HOOK = "#!/usr/bin/env python3\nimport sys\nfrom phoenix_hook.hook import main\nsys.exit(main())\n"
SETTING_KEYS = ("mode", "probe_timeout_ms", "deadline_s", "on_error", "pve_root",
                "node", "log_file", "ignore", "dhcp_ranges", "dhcp_leases", "run_dir", "announce")
WATCH_KEYS = ("log_file", "reload_s", "verify_s", "alert_interval_s", "max_alerts_per_minute", "notify",
              "webhook_url", "webhook_timeout_s", "metrics_file", "ignore_macs")
UNIT = "phoenix-hook-watch.service"
TEMPLATES = ("phoenix-hook-conflict-subject.txt.hbs", "phoenix-hook-conflict-body.txt.hbs")


def _wrapper(path, *argv):
    words = " ".join(f"'{a}'" for a in argv)
    path.write_text(f'#!/bin/sh\nexec {words} "$@"\n')
    path.chmod(0o755)


class Node:
    """A fake PVE node under tmp_path, and install.sh copied next to a hookscript."""

    def __init__(self, tmp, content="iso,vztmpl,backup,snippets", cluster=None, name=NODE):
        """cluster: another Node whose /etc/pve tree (pmxcfs: configs of every node, storage
        config, chain records) this node shares, as node `name`."""
        self.tmp = tmp
        self.name = name
        self.pve = cluster.pve if cluster else tmp / "pve"
        for d in KIND_DIR.values():
            (self.pve / "nodes" / name / d).mkdir(parents=True, exist_ok=True)
        self.storage = tmp / "storage" / "local"        # 'local' is this node's own directory
        (self.storage / "snippets").mkdir(parents=True)
        if cluster:
            data = json.loads((self.pve / "storage.json").read_text())
            data["local"].setdefault("node_paths", {})[name] = str(self.storage)
            self._write_storage(data)
        else:
            self._write_storage({"local": {"type": "dir", "content": content, "path": str(self.storage)}})
        self.bin = tmp / "bin"
        self.bin.mkdir()
        for tool in ("pct", "qm", "pvesm", "pvesh", "mountpoint", "systemctl"):
            _wrapper(self.bin / tool, sys.executable, FAKES / "fake_pve.py", self.pve, tool)
        self.python = tmp / "python-for-venv"
        # "$0" lets the fake know where it lives (the venv's bin after `-m venv`).
        self.python.write_text(
            f'#!/bin/sh\nexec \'{sys.executable}\' \'{FAKES / "fake_python.py"}\' \'{self.pve}\' "$0" "$@"\n')
        self.python.chmod(0o755)
        self.repo = tmp / "repo"
        (self.repo / "hookscripts").mkdir(parents=True)
        shutil.copy2(REPO / "install.sh", self.repo / "install.sh")
        (self.repo / "conf").mkdir()
        shutil.copy2(REPO / "conf" / "phoenix-hook.conf", self.repo / "conf" / "phoenix-hook.conf")
        src = REPO / "hookscripts" / "phoenix-hook.py"
        (self.repo / "hookscripts" / "phoenix-hook.py").write_text(
            src.read_text() if src.exists() else STAND_IN_HOOK)
        shutil.copytree(REPO / "systemd", self.repo / "systemd")
        shutil.copytree(REPO / "phoenix_hook" / "watch" / "templates",
                        self.repo / "phoenix_hook" / "watch" / "templates")
        self.systemd = tmp / "etc" / "systemd" / "system"
        self.templates = tmp / "usr-share-pve-manager-templates-default"
        self.prefix = tmp / "opt" / "phoenix-hook"
        self.bindir = tmp / "usr-local-bin"
        self.etc = tmp / "etc" / "phoenix-hook"
        self.etc_pve = self.pve                         # pmxcfs: configs and the cluster-wide chain records
        self.chain = self.etc_pve / "phoenix-hook" / "chain"
        self.snippet = self.storage / "snippets" / "phoenix-hook.py"
        self.logrotate = tmp / "logrotate.d"           # never the machine's /etc/logrotate.d
        self.pkg_unit = tmp / "lib-systemd-system" / "phoenix-hook-watch.service"   # the package's
        self.logrotate.mkdir()
        rule = REPO / "contrib" / "logrotate" / "phoenix-hook"
        if rule.exists():
            (self.repo / "contrib" / "logrotate").mkdir(parents=True)
            shutil.copy2(rule, self.repo / "contrib" / "logrotate" / "phoenix-hook")

    # --- the fake node's state -------------------------------------------
    def _write_storage(self, data):
        (self.pve / "storage.json").write_text(json.dumps(data))

    def storage_content(self):
        return json.loads((self.pve / "storage.json").read_text())["local"]["content"]

    def conf_path(self, vmid, kind="lxc", node=None):
        return self.pve / "nodes" / (node or self.name) / KIND_DIR[kind] / f"{vmid}.conf"

    def add_guest(self, vmid, hookscript=None, kind="lxc", mac=None, vmgenid=None, node=None, extra=(),
                  snapshot_hook=None):
        mac = mac or mac_of(vmid)
        net = (f"net0: name=eth0,bridge=vmbr0,hwaddr={mac},ip=10.0.0.{vmid % 250}/24,type=veth" if kind == "lxc"
               else f"net0: virtio={mac},bridge=vmbr0,firewall=1")
        lines = [f"hostname: guest{vmid}", "memory: 512", net, *extra]
        if vmgenid:
            lines.append(f"vmgenid: {vmgenid}")
        if hookscript:
            lines.append(f"hookscript: {hookscript}")
        # A snapshot section: what it says must never count as the current config.
        lines += ["", "[before-upgrade]", f"hookscript: {snapshot_hook or 'local:snippets/from-snapshot.sh'}"]
        path = self.conf_path(vmid, kind, node)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")

    def add_snippet(self, name):
        path = self.storage / "snippets" / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
        return path

    def hookscript(self, vmid, kind="lxc"):
        for line in self.conf_path(vmid, kind).read_text().splitlines():
            if line.startswith("["):
                return None
            if line.startswith("hookscript: "):
                return line.split(": ", 1)[1]
        return None

    def lock(self, vmid, reason="backup", kind="lxc"):
        """A `lock: REASON` line in the current config, as vzdump writes while it runs."""
        path = self.conf_path(vmid, kind)
        lines = path.read_text().splitlines()
        path.write_text("\n".join([f"lock: {reason}"] + lines) + "\n")

    def add_storage(self, name, type_, content="snippets", active=True, mounted=True, **extra):
        """Another storage; a file-based one gets its directory, mounted unless told otherwise."""
        data = json.loads((self.pve / "storage.json").read_text())
        cfg = {"type": type_, "content": content, "active": active, **extra}
        if type_ in ("dir", "nfs", "cifs", "cephfs", "glusterfs", "btrfs"):
            path = self.tmp / "storage" / name
            (path / "snippets").mkdir(parents=True)
            cfg["path"] = str(path)
            if mounted:
                mounts = self.pve / "mounts.json"
                known = json.loads(mounts.read_text()) if mounts.exists() else []
                mounts.write_text(json.dumps(known + [str(path)]))
        data[name] = cfg
        self._write_storage(data)
        return Path(cfg["path"]) if "path" in cfg else None

    def fail(self, *prefixes):
        (self.pve / "fail.json").write_text(json.dumps([list(p) for p in prefixes]))

    def calls(self):
        log = self.pve / "calls.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def changes(self):
        """The calls that change the node: pct/qm set, pvesm set."""
        return [c for c in self.calls() if c[0] in ("pct", "qm", "pvesm") and c[1] == "set"]

    def forget_calls(self):
        (self.pve / "calls.log").unlink(missing_ok=True)

    # --- running install.sh ------------------------------------------------
    def env(self, **extra):
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.tmp),
            "LC_ALL": "C",
            "PHOENIX_PREFIX": str(self.prefix),
            "PHOENIX_BINDIR": str(self.bindir),
            "PHOENIX_ETC": str(self.etc),
            "PHOENIX_LOGROTATE_DIR": str(self.logrotate),
            "PHOENIX_PYTHON": str(self.python),
            "PHOENIX_PVE_ROOT": str(self.pve),
            "PHOENIX_NODE": self.name,
            "PHOENIX_SYSTEMD_DIR": str(self.systemd),
            "PHOENIX_PKG_UNIT": str(self.pkg_unit),
            "PHOENIX_PVE_TEMPLATES": str(self.templates),
        }
        env.update(extra)
        return env

    def run(self, *args, **env):
        return subprocess.run([str(self.repo / "install.sh"), *args], env=self.env(**env),
                              capture_output=True, text=True, timeout=60)


def mac_of(vmid):
    return f"BC:24:11:00:{vmid // 256 % 256:02X}:{vmid % 256:02X}"


def record(node, vmid):
    return json.loads((node.chain / f"{vmid}.json").read_text())


def set_hook(vmid, volid=VOLID, tool="pct"):
    return [tool, "set", str(vmid), "--hookscript", volid]


def delete_hook(vmid, tool="pct"):
    return [tool, "set", str(vmid), "--delete", "hookscript"]


def kv(path):
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


@pytest.fixture
def node(tmp_path):
    return Node(tmp_path)


def ok(result, code=0):
    assert result.returncode == code, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


# --- install and attach ------------------------------------------------------
def test_fresh_install_attaches_the_named_containers(node):
    node.add_guest(101)
    node.add_guest(102)
    node.add_guest(103)
    r = ok(node.run("--attach", "102", "101"))

    assert node.changes() == [set_hook(101), set_hook(102)]
    assert (node.hookscript(101), node.hookscript(102), node.hookscript(103)) == (VOLID, VOLID, None)
    venv = node.prefix / "venv"
    pythons = [c[1:] for c in node.calls() if c[0] == "python"]
    assert [str(node.python), "-m", "venv", str(venv)] in pythons
    assert pythons[-2] == [str(venv / "bin" / "python3"), "-m", "pip", "install",
                           "--disable-pip-version-check", "--quiet", str(node.repo)]
    # then the hookscript's own test: its interpreter, isolated, imports the hook
    assert pythons[-1] == [str(venv / "bin" / "python3"), "-I", "-c", "import phoenix_hook.hook"]
    link = node.bindir / "phoenix-hook"
    assert link.is_symlink() and os.readlink(link) == str(venv / "bin" / "phoenix-hook")
    # The snippet: the source with its shebang pointing into the venv, 0755.
    source = (node.repo / "hookscripts" / "phoenix-hook.py").read_text().splitlines(keepends=True)
    assert node.snippet.read_text() == f"#!{venv}/bin/python3 -I\n" + "".join(source[1:])
    assert stat.S_IMODE(node.snippet.stat().st_mode) == 0o755
    assert kv(node.etc / "state" / "guests" / "101") == {"type": "ct", "attached": VOLID, "previous": ""}
    assert kv(node.etc / "state" / "install")["snippet"] == str(node.snippet)
    assert not node.chain.exists() and not (node.etc / "chain").exists()
    assert ME + f"CT 101: attached {VOLID}" in r.stdout.splitlines()
    assert all(line.startswith(ME) for line in (r.stdout + r.stderr).splitlines())


def test_default_settings_file_has_every_key_commented_out(node):
    ok(node.run())
    text = (node.etc / "phoenix-hook.conf").read_text()
    lines = text.splitlines()
    assert "[phoenix-hook]" in lines
    active = [l for l in lines if l.strip() and not l.startswith("#") and not l.startswith("[")]
    assert active == []
    for key in SETTING_KEYS:
        assert any(l.startswith(f"#{key} =") for l in lines), key
    assert "#mode = enforce" in lines and "#probe_timeout_ms = 1000" in lines
    assert "#[guest:951]" in lines
    watch = lines[lines.index("#[watch]"):]
    for key in WATCH_KEYS:
        assert any(l.startswith(f"#{key} =") for l in watch), key
    # Uncommented, the file is valid settings with the documented defaults.
    from phoenix_hook.settings import Settings, parse
    head = lines[:lines.index("#[api]")]           # [phoenix-hook] and [watch]
    s = parse("\n".join(l[1:] if l.startswith("#") and (" = " in l or l.startswith("#[")) else l
                         for l in head), "default.conf")
    assert s.watch == Settings().watch and s.announce is True
    assert node.changes() == []


def test_settings_file_is_never_overwritten(node):
    node.etc.mkdir(parents=True)
    conf = node.etc / "phoenix-hook.conf"
    conf.write_text("[phoenix-hook]\nmode = warn\n")
    r = ok(node.run())
    assert conf.read_text() == "[phoenix-hook]\nmode = warn\n"
    assert ME + f"kept the existing settings file {conf}" in r.stdout.splitlines()


def test_foreign_hookscript_is_listed_and_not_touched(node):
    node.add_snippet("backup.sh")
    node.add_guest(101)
    node.add_guest(105, hookscript="local:snippets/backup.sh")
    r = ok(node.run("--attach", "101", "105"), code=5)

    assert node.changes() == [set_hook(101)]
    assert node.hookscript(105) == "local:snippets/backup.sh"
    assert (ME + "CT 105 already has hookscript local:snippets/backup.sh; not attached "
            "(use --chain to run it after phoenix-hook)") in r.stdout.splitlines()
    assert not (node.chain / "105.json").exists()
    assert not (node.etc / "state" / "guests" / "105").exists()


def test_chain_attaches_and_records_the_previous_hookscript(node):
    backup = node.add_snippet("backup.sh")
    node.add_guest(105, hookscript="local:snippets/backup.sh")
    ok(node.run("--attach", "105", "--chain"))

    assert node.changes() == [set_hook(105)]
    assert node.hookscript(105) == VOLID
    assert record(node, 105) == {"vmid": 105, "type": "ct", "volid": "local:snippets/backup.sh",
                                 "path": str(backup), "macs": [mac_of(105).lower()], "vmgenid": None}
    assert stat.S_IMODE((node.chain / "105.json").stat().st_mode) == 0o640     # what pmxcfs allows
    assert kv(node.etc / "state" / "guests" / "105")["previous"] == "local:snippets/backup.sh"
    # The chain file exists before the guest is switched over.
    calls = node.calls()
    assert ["pvesm", "path", "local:snippets/backup.sh"] in calls[:calls.index(set_hook(105))]


def test_attach_all_takes_every_container_and_vms_only_with_vms(node):
    node.add_snippet("backup.sh")
    for vmid in (101, 102):
        node.add_guest(vmid)
    node.add_guest(103, hookscript="local:snippets/backup.sh")
    node.add_guest(200, kind="qemu")
    ok(node.run("--attach", "all"), code=5)
    assert ["pct", "list"] in node.calls()
    assert node.changes() == [set_hook(101), set_hook(102)]
    assert node.hookscript(200, "qemu") is None

    node.forget_calls()
    ok(node.run("--attach", "all", "--vms"), code=5)
    assert node.changes() == [set_hook(200, tool="qm")]
    assert kv(node.etc / "state" / "guests" / "200")["type"] == "vm"


def test_a_vm_named_by_id_needs_vms(node):
    node.add_guest(200, kind="qemu")
    r = ok(node.run("--attach", "200"), code=1)
    assert "CT 200 does not exist on this node; not attached (a VM needs --vms)" in r.stderr
    assert node.changes() == []
    ok(node.run("--attach", "200", "--vms"))
    assert node.changes() == [set_hook(200, tool="qm")]


def test_running_install_twice_changes_nothing_the_second_time(node):
    node.add_guest(101)
    ok(node.run("--attach", "101"))
    before = {p: p.read_bytes() for p in node.tmp.rglob("*")
              if p.is_file() and p.parent != node.pve and "venv" not in p.parts}
    node.forget_calls()

    r = ok(node.run("--attach", "101", "101"))
    assert node.changes() == []
    assert ME + f"CT 101 already uses {VOLID}" in r.stdout.splitlines()
    assert not any(c[0] == "python" and c[2:4] == ["-m", "venv"] for c in node.calls())
    after = {p: p.read_bytes() for p in before}
    assert after == before


def test_missing_snippets_content_is_enabled_keeping_the_list(tmp_path):
    node = Node(tmp_path, content="vztmpl,iso,backup")
    node.add_guest(101)
    r = ok(node.run("--attach", "101"))
    assert node.changes() == [["pvesm", "set", "local", "--content", "vztmpl,iso,backup,snippets"],
                              set_hook(101)]
    assert node.storage_content() == "vztmpl,iso,backup,snippets"
    assert sum("has no 'snippets' content" in line for line in r.stdout.splitlines()) == 1

    node.forget_calls()
    ok(node.run())
    assert node.changes() == []


def test_unknown_storage_is_a_clear_error(node):
    r = ok(node.run("--storage", "nfs1"), code=1)
    assert r.stderr.splitlines()[-1].startswith(ME + "cannot read storage 'nfs1'")
    assert node.changes() == []


def test_a_missing_guest_fails_but_the_others_are_attached(node):
    node.add_guest(101)
    r = ok(node.run("--attach", "101", "999"), code=1)
    assert node.changes() == [set_hook(101)]
    assert ME + "CT 999 does not exist on this node; not attached (a VM needs --vms)" in r.stderr


def test_a_failed_pct_set_leaves_no_record(node):
    node.add_snippet("backup.sh")
    node.add_guest(105, hookscript="local:snippets/backup.sh")
    node.fail(["pct", "set", "105"])
    ok(node.run("--attach", "105", "--chain"), code=1)
    assert node.hookscript(105) == "local:snippets/backup.sh"
    assert not (node.chain / "105.json").exists()
    assert not (node.etc / "state" / "guests" / "105").exists()


# --- uninstall -----------------------------------------------------------------
def test_uninstall_restores_every_guest_and_removes_what_it_installed(node):
    node.add_snippet("backup.sh")
    for vmid in (101, 107, 108):
        node.add_guest(vmid)
    node.add_guest(105, hookscript="local:snippets/backup.sh")
    node.add_guest(110, hookscript="local:snippets/backup.sh")
    ok(node.run("--attach", "101", "105", "107", "108", "--chain"))
    node.add_guest(106, hookscript=VOLID)          # a clone of an attached guest
    node.conf_path(107).unlink()                   # destroyed since
    node.add_guest(108, hookscript="local:snippets/backup.sh")  # changed by the admin
    conf = node.etc / "phoenix-hook.conf"
    conf.write_text(conf.read_text() + "mode = warn\n")
    edited = conf.read_text()
    node.forget_calls()

    r = ok(node.run("--uninstall"))
    assert node.changes() == [delete_hook(101), set_hook(105, "local:snippets/backup.sh"),
                              delete_hook(106)]
    assert node.hookscript(101) is None
    assert node.hookscript(105) == "local:snippets/backup.sh"
    assert node.hookscript(106) is None
    assert node.hookscript(110) == "local:snippets/backup.sh"
    out = r.stdout.splitlines()
    assert ME + "CT 107 no longer exists on this node; nothing to restore" in out
    assert ME + f"CT 108 no longer uses {VOLID} (hookscript: local:snippets/backup.sh); left as it is" in out
    assert not node.snippet.exists()
    assert (node.storage / "snippets" / "backup.sh").exists()
    assert not (node.bindir / "phoenix-hook").is_symlink()
    assert not node.prefix.exists()
    assert sorted(p.name for p in node.etc.iterdir()) == ["phoenix-hook.conf"]
    assert conf.read_text() == edited
    assert any(line.startswith(ME + f"kept {conf}") for line in out)

    node.forget_calls()                            # and again: nothing left to do
    ok(node.run("--uninstall"))
    assert node.changes() == []


def test_uninstall_works_without_the_venv(node):
    node.add_guest(101)
    ok(node.run("--attach", "101"))
    shutil.rmtree(node.prefix / "venv")
    node.forget_calls()
    ok(node.run("--uninstall", PHOENIX_PYTHON="/nonexistent/python3"))
    assert node.changes() == [delete_hook(101)]
    assert not node.snippet.exists() and not node.prefix.exists()
    assert not (node.bindir / "phoenix-hook").is_symlink()


def test_uninstall_keeps_everything_while_a_guest_still_uses_the_hook(node):
    node.add_guest(101)
    node.add_guest(102)
    ok(node.run("--attach", "101", "102"))
    node.lock(101)                                 # a backup of CT 101 is running
    node.forget_calls()
    r = ok(node.run("--uninstall"), code=1)
    assert node.hookscript(101) == VOLID and node.hookscript(102) is None
    assert (ME + "CT 101: could not remove its hookscript (CT is locked (backup)); it keeps phoenix-hook"
            in r.stderr.splitlines())
    assert node.snippet.exists() and (node.prefix / "venv").exists()
    assert (node.bindir / "phoenix-hook").is_symlink()
    assert sorted(p.name for p in (node.etc / "state" / "guests").iterdir()) == ["101"]
    assert "rerun --uninstall" in r.stderr.splitlines()[-1]


# --- refusals --------------------------------------------------------------
def test_not_a_proxmox_node(node):
    for tool in ("pvesm", "pct"):
        (node.bin / tool).unlink()
        r = node.run("--attach", "101")
        assert r.returncode == 4, r.stderr
        assert r.stderr == ME + f"this is not a Proxmox VE node ('{tool}' not found)\n"
    assert not node.prefix.exists() and not node.etc.exists()


def test_not_root(node):
    _wrapper(node.bin / "id", "/bin/echo", "1000")
    r = node.run()
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith(ME + "must run as root") and r.stderr.count("\n") == 1
    assert node.calls() == [] and not node.prefix.exists()


@pytest.mark.parametrize("args", [
    ["--attach"], ["--attach", "abc"], ["--attach", "all", "101"], ["--bogus"],
    ["--chain"], ["--uninstall", "--attach", "101"], ["--storage"], ["--storage", "a b"],
    ["--uninstall", "--watch"],
])
def test_bad_usage(node, args):
    r = node.run(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(ME) and r.stderr.count("\n") == 1
    assert node.calls() == []


def test_help_documents_options_and_exit_codes(node):
    r = ok(node.run("--help"))
    for word in ("--storage", "--attach", "--vms", "--chain", "--watch", "--uninstall", "Exit codes"):
        assert word in r.stdout
    for code in range(6):
        assert any(line.strip().startswith(f"{code}  ") for line in r.stdout.splitlines()), code


# --- a real venv ---------------------------------------------------------------
def _offline_build_possible():
    if importlib.util.find_spec("wheel") is not None:
        return True
    import setuptools
    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1)               # bdist_wheel moved into setuptools


def test_real_venv_and_command_symlink(tmp_path):
    if not ((REPO / "setup.cfg").exists() or (REPO / "pyproject.toml").exists()):
        pytest.skip("no setup.cfg/pyproject.toml in the repo yet: nothing to pip install")
    node = Node(tmp_path)
    # pip builds in the source tree: give it a copy, not the checkout.
    shutil.rmtree(node.repo)
    shutil.copytree(REPO, node.repo, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", "bench"))
    hook = node.repo / "hookscripts" / "phoenix-hook.py"
    if not hook.exists():
        hook.parent.mkdir(exist_ok=True)
        hook.write_text(STAND_IN_HOOK)
    # Dependencies come from the host (--system-site-packages, --no-deps); with
    # `wheel` (or setuptools >= 70.1) at hand, the build needs no index either.
    pip_args = "--no-deps --no-build-isolation --no-index" if _offline_build_possible() else "--no-deps"
    r = node.run(PHOENIX_PYTHON=sys.executable, PHOENIX_VENV_ARGS="--system-site-packages",
                 PHOENIX_PIP_ARGS=pip_args)
    if r.returncode != 0 and "No matching distribution found for setuptools" in r.stderr:
        pytest.skip("pip could not fetch setuptools for the build (no index reachable, "
                    "and neither wheel nor setuptools>=70.1 on this Python)")
    ok(r)
    venv = node.prefix / "venv"
    link = node.bindir / "phoenix-hook"
    assert link.is_symlink()
    assert os.readlink(link) == str(venv / "bin" / "phoenix-hook")
    assert os.access(link.resolve(), os.X_OK)
    check = subprocess.run([str(venv / "bin" / "python3"), "-c",
                            "import phoenix_hook, sys; print(phoenix_hook.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(str(venv)), check.stdout
    assert node.snippet.read_text().startswith(f"#!{venv}/bin/python3 -I\n")
    # -I: a module planted in the snippets directory cannot stand in for phoenix_hook
    # (or the standard library), as it would with the script's directory on sys.path.
    planted = node.snippet.parent / "phoenix_hook"
    planted.mkdir()
    (planted / "__init__.py").write_text("raise SystemExit('planted module ran')\n")
    (planted / "hook.py").write_text("raise SystemExit('planted module ran')\n")
    run = subprocess.run([str(node.snippet), "951", "post-stop"], capture_output=True, text=True,
                         cwd=node.snippet.parent, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(planted.parent),
                                                       "PHOENIX_HOOK_CONF": str(tmp_path / "none.conf")})
    assert "planted module ran" not in run.stdout + run.stderr
    assert run.returncode == 0, run.stderr


# --- with the Debian package installed ------------------------------------------
PKG_SHEBANG = "#!/usr/bin/python3 -I\n"


def package_share(node, status="installed"):
    """A stand-in for /usr/share/phoenix-hook (and the package's watch unit, PHOENIX_PKG_UNIT in
    node.env), and dpkg-query answering `status` for phoenix-hook."""
    share = node.tmp / "usr-share-phoenix-hook"
    (share / "hookscripts").mkdir(parents=True, exist_ok=True)
    (share / "conf").mkdir(exist_ok=True)
    shutil.copytree(REPO / "phoenix_hook" / "watch" / "templates", share / "templates", dirs_exist_ok=True)
    node.pkg_unit.parent.mkdir(parents=True, exist_ok=True)
    node.pkg_unit.write_text((REPO / "systemd" / UNIT).read_text().replace(
        "ExecStart=/usr/local/bin/phoenix-hook", "ExecStart=/usr/bin/phoenix-hook"))
    body = (REPO / "hookscripts" / "phoenix-hook.py").read_text().split("\n", 1)[1]
    hook = share / "hookscripts" / "phoenix-hook.py"
    hook.write_text(PKG_SHEBANG + body)
    hook.chmod(0o755)
    shutil.copy2(REPO / "conf" / "phoenix-hook.conf", share / "conf" / "phoenix-hook.conf")
    # dpkg-query -W -f='${db:Status-Status}' phoenix-hook
    (node.bin / "dpkg-query").write_text(
        "#!/bin/sh\n[ \"$3\" = phoenix-hook ] && [ \"$2\" = '-f=${db:Status-Status}' ] || exit 64\n"
        f"printf '%s' '{status}'\n")
    (node.bin / "dpkg-query").chmod(0o755)
    return share


def test_with_the_package_there_is_no_venv_and_the_snippet_is_the_packages(node):
    share = package_share(node)
    node.add_guest(101)
    r = ok(node.run("--attach", "101", PHOENIX_PKG_SHARE=str(share)))
    assert [c for c in node.calls() if c[0] == "python"] == []
    assert not node.prefix.exists() and not (node.bindir / "phoenix-hook").exists()
    assert node.snippet.read_bytes() == (share / "hookscripts" / "phoenix-hook.py").read_bytes()
    assert node.snippet.read_text().startswith(PKG_SHEBANG)
    assert stat.S_IMODE(node.snippet.stat().st_mode) == 0o755
    assert node.changes() == [set_hook(101)]
    assert kv(node.etc / "state" / "install")["mode"] == "package"
    assert "prefix" not in kv(node.etc / "state" / "install")
    assert (node.etc / "phoenix-hook.conf").read_text() == (REPO / "conf" / "phoenix-hook.conf").read_text()
    assert any("the phoenix-hook package is installed" in line for line in r.stdout.splitlines())


@pytest.mark.parametrize("status", ["config-files", "not-installed", "half-configured"])
def test_a_package_that_is_not_installed_means_the_venv_route(node, status):
    share = package_share(node, status)
    ok(node.run(PHOENIX_PKG_SHARE=str(share)))
    assert (node.prefix / "venv").is_dir()
    assert node.snippet.read_text().startswith(f"#!{node.prefix}/venv/bin/python3 -I\n")
    assert kv(node.etc / "state" / "install")["mode"] == "venv"


def test_the_package_replaces_an_earlier_venv_install(node):
    node.add_snippet("backup.sh")
    node.add_guest(101)
    node.add_guest(105, hookscript="local:snippets/backup.sh")
    ok(node.run("--attach", "101", "105", "--chain"))
    assert (node.prefix / "venv").is_dir() and (node.bindir / "phoenix-hook").is_symlink()
    chain = (node.chain / "105.json").read_text()
    node.forget_calls()

    share = package_share(node)
    r = ok(node.run(PHOENIX_PKG_SHARE=str(share)))
    assert node.changes() == []                       # same volid: the guests need no change
    assert node.snippet.read_text().startswith(PKG_SHEBANG)
    assert not node.prefix.exists() and not (node.bindir / "phoenix-hook").is_symlink()
    assert (node.chain / "105.json").read_text() == chain
    assert sorted(p.name for p in (node.etc / "state" / "guests").iterdir()) == ["101", "105"]
    assert kv(node.etc / "state" / "install")["mode"] == "package"
    assert any(line.startswith(ME + f"removed the venv {node.prefix / 'venv'}") for line in r.stdout.splitlines())


def test_uninstall_with_the_package_detaches_and_leaves_the_package(node):
    share = package_share(node)
    node.add_guest(101)
    ok(node.run("--attach", "101", PHOENIX_PKG_SHARE=str(share)))
    (node.prefix / "venv").mkdir(parents=True)         # not ours: a package install has no venv
    node.forget_calls()
    r = ok(node.run("--uninstall", PHOENIX_PKG_SHARE=str(share)))
    assert node.changes() == [delete_hook(101)]
    assert not node.snippet.exists()
    assert (node.prefix / "venv").is_dir()
    assert (share / "hookscripts" / "phoenix-hook.py").exists()
    assert ME + "the phoenix-hook package stays installed; remove it with: apt remove phoenix-hook" in r.stdout.splitlines()


# --- install.sh on real clusters: storages, spaces, snapshots, locks ----------------
def test_a_locked_guest_is_named_with_pves_reason_and_the_others_are_attached(node):
    node.add_guest(101)
    node.add_guest(102)
    node.lock(101)
    r = ok(node.run("--attach", "101", "102"), code=1)
    assert node.hookscript(101) is None and node.hookscript(102) == VOLID
    assert (ME + f"CT 101: pct set --hookscript {VOLID} failed (CT is locked (backup)); CT 101 unchanged"
            in r.stderr.splitlines())
    assert not (node.etc / "state" / "guests" / "101").exists()


def test_qm_output_stays_out_of_ours(node):
    node.add_guest(200, kind="qemu")
    r = ok(node.run("--attach", "200", "--vms"))
    assert node.hookscript(200, "qemu") == VOLID
    assert all(line.startswith(ME) for line in (r.stdout + r.stderr).splitlines()), r.stdout


def test_attach_all_on_a_node_without_guests(node):
    r = ok(node.run("--attach", "all", "--vms"))
    assert node.changes() == [] and "pct list failed" not in r.stderr


def test_a_pending_hookscript_counts_as_the_guests(node):
    """`pct config` merges pending values: a hookscript set while the CT ran is its hookscript."""
    node.add_snippet("backup.sh")
    node.add_guest(101)
    path = node.conf_path(101)
    path.write_text(path.read_text() + "\n[PENDING]\nhookscript: local:snippets/backup.sh\n")
    r = ok(node.run("--attach", "101"), code=5)
    assert node.changes() == []
    assert "CT 101 already has hookscript local:snippets/backup.sh" in r.stdout


def test_a_previous_hookscript_with_spaces_is_kept_whole(node):
    spaced = "local:snippets/my hook.sh"
    script = node.add_snippet("my hook.sh")
    node.add_guest(105, hookscript=spaced)
    ok(node.run("--attach", "105", "--chain"))
    assert (record(node, 105)["volid"], record(node, 105)["path"]) == (spaced, str(script))
    assert kv(node.etc / "state" / "guests" / "105")["previous"] == spaced
    node.forget_calls()
    ok(node.run("--uninstall"))
    assert node.changes() == [set_hook(105, spaced)]
    assert node.hookscript(105) == spaced


def test_a_storage_that_cannot_hold_snippets_is_named_with_the_ones_that_can(node):
    node.add_storage("local-lvm", "lvmthin", content="images,rootdir")
    node.add_storage("nfs1", "nfs", content="backup")
    node.add_storage("disabled1", "dir", disable=1)
    node.add_guest(101)
    r = ok(node.run("--storage", "local-lvm", "--attach", "101"), code=1)
    assert r.stderr.splitlines()[-1] == (ME + "storage 'local-lvm' (lvmthin) cannot hold snippets; choose one "
                                         "with --storage: local (dir), nfs1 (nfs)")
    assert node.changes() == [] and node.hookscript(101) is None


def test_an_inactive_storage_is_refused_before_anything_is_written(node):
    share = node.add_storage("nfs1", "nfs", active=False)
    node.add_guest(101)
    r = ok(node.run("--storage", "nfs1", "--attach", "101"), code=1)
    assert r.stderr.splitlines()[-1].startswith(ME + "storage 'nfs1' is not active on this node (pvesm status: inactive")
    assert ["pvesm", "status", "--storage", "nfs1"] in node.calls()
    assert not (share / "snippets" / "phoenix-hook.py").exists() and node.hookscript(101) is None


def test_an_unmounted_share_is_refused(node):
    share = node.add_storage("nfs1", "nfs", mounted=False)
    node.add_guest(101)
    r = ok(node.run("--storage", "nfs1", "--attach", "101"), code=1)
    assert r.stderr.splitlines()[-1] == (ME + f"storage 'nfs1' (nfs) is not mounted at {share}: the hookscript "
                                         "would land on this node's own disk and vanish under the mount; mount "
                                         "it (pvesm status) and rerun")
    assert not (share / "snippets" / "phoenix-hook.py").exists() and node.hookscript(101) is None


def test_a_dir_storage_on_a_mount_point_must_be_mounted(node):
    node.add_storage("usb", "dir", is_mountpoint="yes", mounted=False)
    r = ok(node.run("--storage", "usb"), code=1)
    assert "storage 'usb' (dir) is not mounted at" in r.stderr
    ok(node.run())                                  # plain 'local' needs no mount


def test_uninstall_keeps_a_shared_snippet_that_other_nodes_use(node):
    share = node.add_storage("nfs1", "nfs")
    volid = "nfs1:snippets/phoenix-hook.py"
    node.add_guest(101)
    ok(node.run("--storage", "nfs1", "--attach", "101"))
    snippet = share / "snippets" / "phoenix-hook.py"
    assert snippet.exists() and node.hookscript(101) == volid
    node.add_guest(201, hookscript=volid, node="pve2")     # attached on node pve2, same file
    node.add_guest(300, hookscript=volid, node="pve3", kind="qemu")
    node.add_guest(202, node="pve2", snapshot_hook=volid)  # only a snapshot: not a user
    r = ok(node.run("--uninstall"))
    assert node.hookscript(101) is None
    assert snippet.exists()
    assert (ME + f"kept the hookscript {snippet}: storage 'nfs1' is shared and guests of other nodes still use "
            "it: CT 201 (pve2), VM 300 (pve3) (run install.sh --uninstall on those nodes; the last one removes it)"
            in r.stdout.splitlines())


def test_uninstall_removes_a_shared_snippet_nobody_uses_and_names_snapshots(node):
    share = node.add_storage("nfs1", "nfs")
    volid = "nfs1:snippets/phoenix-hook.py"
    node.add_guest(101)
    ok(node.run("--storage", "nfs1", "--attach", "101"))
    node.add_guest(202, node="pve2", snapshot_hook=volid)
    r = ok(node.run("--uninstall"))
    assert not (share / "snippets" / "phoenix-hook.py").exists()
    assert (ME + f"CT 202 (node pve2): snapshot(s) before-upgrade still name {volid}; after a rollback it cannot "
            "start until you run: pct set 202 --delete hookscript") in r.stderr.splitlines()


def test_uninstall_names_this_nodes_snapshots_that_keep_the_hookscript(node):
    node.add_guest(101, snapshot_hook=VOLID)
    node.add_guest(102)
    node.add_guest(201, node="pve2", snapshot_hook=VOLID)  # its node's own local: file, not ours
    ok(node.run("--attach", "101", "102"))
    r = ok(node.run("--uninstall"))
    assert not node.snippet.exists()
    assert r.stderr.splitlines() == [ME + f"CT 101 (node {NODE}): snapshot(s) before-upgrade still name {VOLID}; "
                                     "after a rollback it cannot start until you run: pct set 101 --delete hookscript"]
    assert any("backups made while a guest had" in line and "--delete hookscript" in line
               for line in r.stdout.splitlines())


# --- chain records: tied to the guest, cluster-wide -------------------------------
def test_the_hook_reads_the_record_install_sh_writes(node):
    from phoenix_hook.pve import chain
    node.add_snippet("backup.sh")
    node.add_guest(9100, hookscript="local:snippets/backup.sh", kind="qemu",
                   vmgenid="1F3C2A9E-7B4D-4C1E-9A0F-5D6E7F8A9B0C")
    ok(node.run("--attach", "9100", "--vms", "--chain"))
    rec = chain.load(str(node.etc_pve), 9100)
    assert (rec.volid, rec.path) == ("local:snippets/backup.sh", str(node.storage / "snippets" / "backup.sh"))
    assert rec.macs == {mac_of(9100).lower()} and rec.vmgenid == "1f3c2a9e-7b4d-4c1e-9a0f-5d6e7f8a9b0c"
    assert record(node, 9100)["type"] == "vm"


def test_a_guest_without_a_mac_or_vmgenid_is_not_chained(node):
    node.add_snippet("backup.sh")
    node.conf_path(105).write_text("hostname: bare\nhookscript: local:snippets/backup.sh\n")
    r = ok(node.run("--attach", "105", "--chain"), code=1)
    assert "no NIC with a MAC and no vmgenid to tie the chain record to; not attached" in r.stderr
    assert node.changes() == [] and not (node.chain / "105.json").exists()


def test_attaching_a_new_guest_removes_the_record_an_old_guest_left(node):
    """pct destroy 105 left its record; a new CT 105 (new MAC) is attached without --chain."""
    node.add_snippet("backup.sh")
    node.add_guest(105, hookscript="local:snippets/backup.sh")
    ok(node.run("--attach", "105", "--chain"))
    node.add_guest(105, mac="BC:24:11:99:99:99")          # destroyed and created again, no hookscript
    r = ok(node.run("--attach", "105"))
    assert not (node.chain / "105.json").exists()
    assert ME + "CT 105: removed a chain record another guest with this ID left behind" in r.stdout.splitlines()
    assert node.hookscript(105) == VOLID


def test_chain_again_ties_the_record_to_the_guest_as_it_is_now(node):
    node.add_snippet("backup.sh")
    node.add_guest(105, hookscript="local:snippets/backup.sh")
    ok(node.run("--attach", "105", "--chain"))
    conf = node.conf_path(105)
    conf.write_text(conf.read_text().replace(mac_of(105), "BC:24:11:AB:CD:EF"))   # the admin's new MAC
    r = ok(node.run("--attach", "105", "--chain"))
    assert record(node, 105)["macs"] == ["bc:24:11:ab:cd:ef"]
    assert record(node, 105)["volid"] == "local:snippets/backup.sh"
    assert any("its chain record now names it as it is now" in x for x in r.stdout.splitlines())
    assert node.changes() == [set_hook(105)]                 # from the first run only


def test_old_node_local_records_are_converted(node):
    backup = node.add_snippet("backup.sh")
    node.add_guest(105, hookscript=VOLID)
    node.add_guest(106)
    old = node.etc / "chain"
    old.mkdir(parents=True)
    (old / "105").write_text(f"volid=local:snippets/backup.sh\npath={backup}\n")
    (old / "106").write_text(f"volid=local:snippets/backup.sh\npath={backup}\n")   # 106 does not use us
    r = ok(node.run())
    assert record(node, 105)["macs"] == [mac_of(105).lower()] and record(node, 105)["path"] == str(backup)
    assert not (old / "105").exists() and (old / "106").exists()
    assert not (node.chain / "106.json").exists()
    assert any(x.startswith(ME + "guest 105: chain record converted to ") for x in r.stdout.splitlines())


def test_uninstall_after_a_migration_gives_the_guest_back_its_hookscript_on_its_new_node(tmp_path):
    """CT 105 was chained on node A and migrated to node B: A's --uninstall leaves the
    cluster-wide record; B's --uninstall restores the previous hookscript from it."""
    a = Node(tmp_path / "a")
    b = Node(tmp_path / "b", cluster=a, name="pve-b")           # one pmxcfs for the cluster
    for n in (a, b):
        n.add_snippet("backup.sh")
    a.add_guest(105, hookscript="local:snippets/backup.sh")
    ok(a.run("--attach", "105", "--chain"))
    ok(b.run())                                               # phoenix-hook installed on B too
    a.conf_path(105).rename(b.conf_path(105))                  # pct migrate 105 B
    r = ok(a.run("--uninstall"))
    assert ME + "CT 105 no longer exists on this node; nothing to restore" in r.stdout.splitlines()
    assert (a.chain / "105.json").exists()
    b.forget_calls()
    r = ok(b.run("--uninstall"))
    assert b.changes() == [set_hook(105, "local:snippets/backup.sh")]
    assert b.hookscript(105) == "local:snippets/backup.sh"
    assert not (a.chain / "105.json").exists()
    assert any("hookscript local:snippets/backup.sh restored (chained on another node)" in x
               for x in r.stdout.splitlines())


def test_uninstall_does_not_restore_a_record_of_another_guest(node):
    node.add_snippet("backup.sh")
    node.add_guest(105, hookscript="local:snippets/backup.sh")
    ok(node.run("--attach", "105", "--chain"))
    (node.etc / "state" / "guests" / "105").unlink()          # as on a node that did not attach it
    node.add_guest(105, hookscript=VOLID, mac="BC:24:11:99:99:99")   # a clone got ID 105 meanwhile
    node.forget_calls()
    ok(node.run("--uninstall"))
    assert node.changes() == [delete_hook(105)]


# --- upgrades: the venv follows the interpreter -----------------------------------------
def venv_made(node):
    return [c for c in node.calls() if c[0] == "python" and c[2:4] == ["-m", "venv"]]


def test_a_venv_made_by_another_python_is_made_again(node):
    ok(node.run(FAKE_PY_VERSION="3.11"))
    node.forget_calls()
    r = ok(node.run(FAKE_PY_VERSION="3.13"))                  # PVE 8 -> 9: Debian 12 -> 13
    assert len(venv_made(node)) == 1
    assert (ME + f"the venv at {node.prefix / 'venv'} was made with Python 3.11 and {node.python} is "
            f"Python 3.13 now; creating it again") in r.stdout.splitlines()
    assert "version = 3.13" in (node.prefix / "venv" / "pyvenv.cfg").read_text()
    node.forget_calls()
    ok(node.run(FAKE_PY_VERSION="3.13"))
    assert venv_made(node) == []                              # same Python: kept


def test_a_venv_that_cannot_import_phoenix_hook_is_made_again(node):
    ok(node.run())
    (node.prefix / "venv" / "BROKEN_IMPORT").write_text("")
    node.forget_calls()
    r = ok(node.run())
    assert len(venv_made(node)) == 1
    assert any("cannot import phoenix_hook (ModuleNotFoundError: No module named 'phoenix_hook'); "
               "creating the venv again" in x for x in r.stdout.splitlines()), r.stdout


def test_a_venv_that_stays_broken_fails_with_one_line(node):
    r = ok(node.run(FAKE_IMPORT_FAILS="1"), code=1)
    assert r.stderr.splitlines()[-1] == (ME + f"{node.prefix / 'venv'}/bin/python3 -I cannot import phoenix_hook "
                                         f"even in a new venv: ModuleNotFoundError: No module named 'phoenix_hook'")


def test_attach_on_storage_that_is_not_shared_names_the_other_nodes(node):
    node.add_guest(101)
    node.add_guest(201, node="pve2")
    node.add_guest(301, node="pve3")
    r = ok(node.run("--attach", "101"))
    assert (ME + f"storage 'local' is not shared: {VOLID} exists on this node only, so the guests attached "
            "here cannot start on or migrate to pve2, pve3 until install.sh runs there too (with --storage "
            "local), or use a shared storage") in r.stderr.splitlines()
    ok_alone = ok(Node(node.tmp / "single").run("--attach", "all"))
    assert "is not shared" not in ok_alone.stderr              # a node without others says nothing


def test_attach_on_shared_storage_does_not_warn(node):
    node.add_storage("nfs1", "nfs")
    node.add_guest(101)
    node.add_guest(201, node="pve2")
    r = ok(node.run("--storage", "nfs1", "--attach", "101"))
    assert "is not shared" not in r.stderr


# --- the logrotate rule ----------------------------------------------------------
def test_logrotate_rule_installed_kept_and_removed(node):
    rule = node.logrotate / "phoenix-hook"
    r = ok(node.run())
    assert rule.read_text() == (REPO / "contrib" / "logrotate" / "phoenix-hook").read_text()
    assert ME + f"wrote the logrotate rule {rule}" in r.stdout.splitlines()
    ok(node.run("--uninstall"))
    assert not rule.exists()
    rule.write_text("/srv/log/decisions.jsonl { daily }\n")      # the admin's own: kept, never removed
    r = ok(node.run())
    assert rule.read_text() == "/srv/log/decisions.jsonl { daily }\n"
    assert ME + f"kept the existing logrotate rule {rule}" in r.stdout.splitlines()
    ok(node.run("--uninstall"))
    assert rule.exists()


# --- --dry-run -------------------------------------------------------------------
def _tree(root):
    """Every file, link and directory under root with what it holds: the node's state."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.name == "calls.log":
            continue
        if p.is_symlink():
            out[p] = ("link", os.readlink(p))
        elif p.is_file():
            out[p] = ("file", p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        else:
            out[p] = ("dir",)
    return out


def _changing_calls(node):
    """Calls that would change the node: pct/qm/pvesm set, and creating a venv or pip-installing."""
    return node.changes() + [c for c in node.calls() if c[0] == "python" and
                             (c[2:4] == ["-m", "venv"] or c[2:5] == ["-m", "pip", "install"])]


def test_dry_run_of_a_fresh_install_prints_every_action_and_changes_nothing(tmp_path):
    node = Node(tmp_path, content="vztmpl,iso")         # snippets must be enabled: a storage change
    node.add_snippet("backup.sh")
    node.add_guest(101)
    node.add_guest(105, hookscript="local:snippets/backup.sh")
    node.add_guest(200, kind="qemu")
    before = _tree(tmp_path)
    r = ok(node.run("--attach", "all", "--vms", "--chain", "--dry-run"))
    assert _changing_calls(node) == []
    assert _tree(tmp_path) == before                   # no file written, moved or removed
    out = r.stdout.splitlines()
    venv = node.prefix / "venv"
    for action in [f"would run: {node.python} -m venv {venv}",
                   f"would run: {venv}/bin/python3 -m pip install --disable-pip-version-check --quiet {node.repo}",
                   f"would run: ln -sfn {venv}/bin/phoenix-hook {node.bindir}/phoenix-hook",
                   "would run: pvesm set local --content vztmpl,iso,snippets",
                   f"would write the hookscript {node.snippet}",
                   f"would write the default settings file {node.etc}/phoenix-hook.conf",
                   f"would write the logrotate rule {node.logrotate}/phoenix-hook",
                   f"would write {node.etc}/state/install",
                   f"would write {node.chain}/105.json: volid local:snippets/backup.sh, path ",
                   f"would write {node.etc}/state/guests/101: type=ct; attached={VOLID}; previous=",
                   f"would run: pct set 101 --hookscript {VOLID}",
                   f"would run: pct set 105 --hookscript {VOLID}",
                   f"would run: qm set 200 --hookscript {VOLID}"]:
        assert sum(action in line for line in out) == 1, (action, r.stdout)
    assert out[-1] == ME + "dry run: nothing was changed"
    assert not any("attached" in line and "would" not in line for line in out), r.stdout
    # the real run does what the dry run said
    ok(node.run("--attach", "all", "--vms", "--chain"))
    assert node.changes() == [["pvesm", "set", "local", "--content", "vztmpl,iso,snippets"],
                              set_hook(101), set_hook(105), set_hook(200, tool="qm")]


def test_dry_run_of_uninstall_changes_nothing(node):
    node.add_snippet("backup.sh")
    node.add_guest(101)
    node.add_guest(105, hookscript="local:snippets/backup.sh")
    ok(node.run("--attach", "101", "105", "--chain"))
    node.add_guest(106, hookscript=VOLID)              # a clone without a record
    node.forget_calls()
    before = _tree(node.tmp)
    r = ok(node.run("--uninstall", "--dry-run"))
    assert _changing_calls(node) == []
    assert _tree(node.tmp) == before
    out = r.stdout
    for action in ["would run: pct set 101 --delete hookscript",
                   "would run: pct set 105 --hookscript local:snippets/backup.sh",
                   "would run: pct set 106 --delete hookscript",
                   f"would run: rm -f {node.snippet}", f"would run: rm -rf {node.prefix / 'venv'}",
                   f"would run: rm -f {node.logrotate / 'phoenix-hook'}"]:
        assert action in out, (action, out)
    assert "hookscript removed" not in out and "removed the hookscript" not in out


def test_dry_run_keeps_the_exit_code_of_the_real_run(node):
    node.add_snippet("backup.sh")
    node.add_guest(105, hookscript="local:snippets/backup.sh")
    r = ok(node.run("--attach", "105", "--dry-run"), code=5)
    assert _changing_calls(node) == [] and not node.prefix.exists() and not node.etc.exists()
    assert r.stdout.splitlines()[-1] == ME + "dry run: nothing was changed"


# --- the watch service (--watch) ---------------------------------------------------------
def systemctl_calls(node):
    return [c[1:] for c in node.calls() if c[0] == "systemctl"]


def test_without_watch_systemd_is_never_touched(node):
    node.add_guest(101)
    ok(node.run("--attach", "101"))
    ok(node.run("--uninstall"))
    assert systemctl_calls(node) == []
    assert not node.systemd.exists()


def test_watch_installs_enables_and_uninstall_removes_it(node):
    node.templates.mkdir(parents=True)             # PVE 8.2+: the template directory exists
    r = ok(node.run("--watch"))
    unit = node.systemd / UNIT
    source = (REPO / "systemd" / UNIT).read_text().splitlines()
    written = unit.read_text().splitlines()
    # The unit as shipped, with ExecStart pointing at the command this install made.
    assert [l for l in written if not l.startswith("ExecStart=")] == \
           [l for l in source if not l.startswith("ExecStart=")]
    assert f"ExecStart={node.bindir}/phoenix-hook watch" in written
    for name in TEMPLATES:
        assert (node.templates / name).read_text() == \
            (REPO / "phoenix_hook" / "watch" / "templates" / name).read_text()
    assert systemctl_calls(node) == [["daemon-reload"], ["enable", UNIT], ["restart", UNIT]]
    assert kv(node.etc / "state" / "install")["watch"] == "1"
    assert ME + f"watch service {UNIT} enabled and started (journalctl -u {UNIT})" in r.stdout.splitlines()

    node.forget_calls()                            # a rerun without --watch keeps and updates it
    ok(node.run())
    assert systemctl_calls(node) == [["daemon-reload"], ["enable", UNIT], ["restart", UNIT]]

    node.forget_calls()
    r = ok(node.run("--uninstall"))
    assert systemctl_calls(node) == [["disable", "--now", UNIT], ["daemon-reload"]]
    assert not unit.exists()
    assert sorted(p.name for p in node.templates.iterdir()) == []
    assert ME + f"removed the watch service {unit}" in r.stdout.splitlines()


def test_watch_on_pve_81_leaves_the_missing_template_directory_alone(node):
    r = ok(node.run("--watch"))
    assert not node.templates.exists()
    assert any("PVE before 8.2" in line for line in r.stdout.splitlines())
    assert (node.systemd / UNIT).exists()


def test_watch_without_systemd_is_a_clear_failure(node):
    (node.bin / "systemctl").unlink()
    tools = node.tmp / "usr-bin-without-systemctl"        # this machine's own systemctl hidden too
    tools.mkdir()
    for exe in Path("/usr/bin").iterdir():
        if exe.name != "systemctl":
            (tools / exe.name).symlink_to(exe)
    r = node.run("--watch", PATH=f"{node.bin}:{tools}")
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == ME + "--watch needs systemd ('systemctl' not found)"


def test_the_shipped_unit_file():
    """Type=notify with a watchdog, restarted on failure, after the cluster filesystem and
    before the onboot guests; journal lines under the phoenix-hook identifier."""
    import configparser
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read_string((REPO / "systemd" / UNIT).read_text())
    unit, service = cp["Unit"], cp["Service"]
    assert set(unit["Wants"].split()) >= {"network-online.target", "pve-cluster.service"}
    assert set(unit["After"].split()) >= {"network-online.target", "pve-cluster.service"}
    assert unit["Before"] == "pve-guests.service"
    assert (service["Type"], service["Restart"], service["SyslogIdentifier"]) == \
           ("notify", "on-failure", "phoenix-hook")
    assert int(service["WatchdogSec"]) > 0
    assert service["ExecStart"].endswith("phoenix-hook watch")
    assert cp["Install"]["WantedBy"] == "multi-user.target"


def test_watch_dry_run_says_it_and_changes_nothing(node):
    node.templates.mkdir(parents=True)
    r = ok(node.run("--watch", "--dry-run"))
    assert systemctl_calls(node) == []
    assert not node.systemd.exists() and list(node.templates.iterdir()) == []
    for action in [f"would write the watch service {node.systemd / UNIT}",
                   f"would write {node.templates / TEMPLATES[0]}",
                   "would run: systemctl daemon-reload", f"would run: systemctl enable {UNIT}",
                   f"would run: systemctl restart {UNIT}"]:
        assert sum(action in line for line in r.stdout.splitlines()) == 1, (action, r.stdout)
    ok(node.run("--watch"))
    node.forget_calls()
    r = ok(node.run("--uninstall", "--dry-run"))
    assert systemctl_calls(node) == [] and (node.systemd / UNIT).exists()
    assert f"would run: systemctl disable --now {UNIT}" in r.stdout


def test_watch_with_the_package_enables_its_unit_and_keeps_the_file(node):
    share = package_share(node)
    node.templates.mkdir(parents=True)
    ok(node.run("--watch", PHOENIX_PKG_SHARE=str(share)))
    assert not (node.systemd / UNIT).exists()                 # the package's unit, not a copy
    assert systemctl_calls(node) == [["daemon-reload"], ["enable", UNIT], ["restart", UNIT]]
    for name in TEMPLATES:
        assert (node.templates / name).read_bytes() == (share / "templates" / name).read_bytes()
    assert "unit" not in kv(node.etc / "state" / "install")
    assert (node.logrotate / "phoenix-hook").exists() is False  # the package ships the rule
    node.forget_calls()
    r = ok(node.run("--uninstall", PHOENIX_PKG_SHARE=str(share)))
    assert systemctl_calls(node) == [["disable", "--now", UNIT]]
    assert node.pkg_unit.exists()
    assert ME + f"stopped and disabled the watch service {UNIT} (the package keeps its unit file)" in r.stdout.splitlines()


def test_the_package_replaces_a_venv_installs_watch_unit(node):
    node.templates.mkdir(parents=True)
    ok(node.run("--watch"))
    assert (node.systemd / UNIT).exists()
    share = package_share(node)
    node.forget_calls()
    r = ok(node.run(PHOENIX_PKG_SHARE=str(share)))          # watch=1 kept from the state
    assert not (node.systemd / UNIT).exists()                 # it would hide the package's unit
    assert systemctl_calls(node) == [["daemon-reload"], ["enable", UNIT], ["restart", UNIT]]
    assert kv(node.etc / "state" / "install")["mode"] == "package"
    assert any(f"removed {node.systemd / UNIT}" in line for line in r.stdout.splitlines())


def test_dry_run_with_the_package_changes_nothing(node):
    share = package_share(node)
    node.add_guest(101)
    before = _tree(node.tmp)
    r = ok(node.run("--attach", "101", "--dry-run", PHOENIX_PKG_SHARE=str(share)))
    assert _tree(node.tmp) == before and node.changes() == []
    assert f"would write the hookscript {node.snippet} (local:snippets/phoenix-hook.py): " \
           f"{share / 'hookscripts' / 'phoenix-hook.py'} as it is" in r.stdout
