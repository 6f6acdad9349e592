"""The Debian package: built by `./dev.sh deb`, checked with dpkg-deb and lintian, and run.

What it installs is extracted with `dpkg-deb -x` and run under Debian's own
/usr/bin/python3 with Debian's python3-netaddr, python3-proxmoxer and
python3-requests (apt; `CI=true ./dev.sh` installs them): the command, the
hookscript, install.sh against the fake node of test_install, and the
maintainer scripts. Nothing is installed on this machine. Commands that
could touch the network run under `unshare -n` (an empty network namespace
that disappears with the process) and only for guests with nothing to probe.
"""
from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEBIAN_PYTHON = "/usr/bin/python3"
DEBIAN_LIBS = ("python3-netaddr", "python3-proxmoxer", "python3-requests")
PKG_PY = "usr/lib/python3/dist-packages"
HOOK = "usr/share/phoenix-hook/hookscripts/phoenix-hook.py"
EPOCH = 1764100000


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not found (Debian: CI=true ./dev.sh setup installs it)")
    return path


def version() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg["metadata"]["version"]


def build(out: Path, src: Path = REPO, epoch: int | None = EPOCH, umask: int = 0o022,
          tz: str = "UTC") -> Path:
    """`./dev.sh deb --out OUT` in checkout `src`; returns the .deb."""
    need("dpkg-deb")
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["TZ"] = tz
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    p = subprocess.run([str(src / "dev.sh"), "deb", "--out", str(out)], cwd=src, env=env,
                       capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.umask(umask))
    assert p.returncode == 0, p.stderr
    deb = Path(p.stdout.strip().splitlines()[-1])
    assert deb == out / f"phoenix-hook_{version()}_all.deb" and deb.is_file()
    return deb


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("dist"), epoch=None)    # as `./dev.sh deb` does it


@pytest.fixture(scope="module")
def root(deb, tmp_path_factory) -> Path:
    """The package's files, extracted with dpkg-deb -x."""
    d = tmp_path_factory.mktemp("extracted")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(d)], check=True)
    return d


@pytest.fixture(scope="module")
def control(deb, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("control")
    subprocess.run(["dpkg-deb", "-e", str(deb), str(d)], check=True)
    return d


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True,
                          check=True).stdout.strip()


def contents(deb: Path) -> dict[str, tuple[str, str, str]]:
    """path -> (mode string, owner/group, date time) from dpkg-deb -c."""
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    entries = {}
    for line in out.splitlines():
        mode, owner, _size, date, time_, name = line.split(None, 5)
        entries[name.removeprefix("./").rstrip("/")] = (mode, owner, f"{date} {time_}")
    return entries


# --- building ------------------------------------------------------------------
def test_build_is_reproducible(tmp_path):
    """Same checkout and SOURCE_DATE_EPOCH: same bytes, whatever the umask, TZ, path and file times."""
    a = build(tmp_path / "a")
    copy = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(REPO, copy, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"))
    for p in copy.rglob("*"):
        os.utime(p, (1234567890, 1234567890), follow_symlinks=False)
    b = build(tmp_path / "b", src=copy, umask=0o077, tz="Pacific/Chatham")
    assert sha256(a) == sha256(b)
    c = build(tmp_path / "c", epoch=EPOCH + 86400)
    assert sha256(c) != sha256(a)        # the epoch really stamps the files


def test_a_changelog_behind_setup_cfg_is_refused(tmp_path):
    copy = tmp_path / "checkout"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis", "tests", "bench"))
    cfg = copy / "setup.cfg"
    cfg.write_text(cfg.read_text().replace(f"version = {version()}", "version = 99.0"))
    p = subprocess.run([str(copy / "dev.sh"), "deb", "--out", str(tmp_path / "out")], cwd=copy,
                       capture_output=True, text=True, env=dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH)))
    assert p.returncode == 2
    assert p.stderr == (f"build_deb: packaging/deb/changelog's newest entry is {version()} but setup.cfg "
                        "says 99.0: add a changelog entry for 99.0\n")
    assert not (tmp_path / "out").exists()


# --- fields and contents ---------------------------------------------------------
def test_control_fields(deb):
    assert field(deb, "Package") == "phoenix-hook"
    assert field(deb, "Version") == version()
    assert field(deb, "Architecture") == "all"
    depends = [d.strip() for d in field(deb, "Depends").split(",")]
    assert depends == ["python3 (>= 3.11)", "python3-netaddr", "python3-proxmoxer", "python3-requests",
                       "iproute2"]
    assert int(field(deb, "Installed-Size")) > 0
    assert field(deb, "Maintainer") and field(deb, "Description")


def test_contents(deb, control):
    files = contents(deb)
    must = {
        "usr/bin/phoenix-hook": "-rwxr-xr-x",
        HOOK: "-rwxr-xr-x",
        "usr/share/phoenix-hook/install.sh": "-rwxr-xr-x",
        "usr/share/phoenix-hook/conf/phoenix-hook.conf": "-rw-r--r--",
        "etc/phoenix-hook/phoenix-hook.conf": "-rw-r--r--",
        "usr/share/man/man1/phoenix-hook.1.gz": "-rw-r--r--",
        "usr/share/bash-completion/completions/phoenix-hook": "-rw-r--r--",
        "usr/share/doc/phoenix-hook/copyright": "-rw-r--r--",
        "usr/share/doc/phoenix-hook/changelog.gz": "-rw-r--r--",
        f"{PKG_PY}/phoenix_hook/__init__.py": "-rw-r--r--",
    }
    assert {p: files.get(p, ("missing",))[0] for p in must} == must
    assert {owner for _, owner, _ in files.values()} == {"root/root"}
    assert not [p for p in files if "__pycache__" in p or p.endswith((".pyc", ".pyo"))]
    # Every module of the checkout's package, and nothing else under dist-packages.
    src = {str(p.relative_to(REPO)) for p in (REPO / "phoenix_hook").rglob("*")
           if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")}
    packaged = {p.removeprefix(f"{PKG_PY}/") for p, (mode, _, _) in files.items()
                if p.startswith(f"{PKG_PY}/") and mode.startswith("-")}
    assert packaged == src
    # Optional parts follow the checkout.
    units = sorted(p.name for p in (REPO / "systemd").glob("*.service")) if (REPO / "systemd").is_dir() else []
    assert sorted(p.rsplit("/", 1)[1] for p in files if p.startswith("lib/systemd/system/")
                  and p.endswith(".service")) == units
    templates = sorted(p.name for p in (REPO / "phoenix_hook" / "watch" / "templates").glob("*.hbs"))
    assert sorted(p.rsplit("/", 1)[1] for p in files if p.startswith("usr/share/phoenix-hook/templates/")
                  and p.endswith(".hbs")) == templates
    conffiles = ["/etc/logrotate.d/phoenix-hook"] if (REPO / "contrib" / "logrotate" / "phoenix-hook").is_file() else []
    assert (control / "conffiles").read_text().splitlines() == conffiles + ["/etc/phoenix-hook/phoenix-hook.conf"]
    for script in ("postinst", "prerm", "postrm"):
        assert os.access(control / script, os.X_OK), script


def test_installed_files_match_the_checkout(root):
    assert (root / "etc/phoenix-hook/phoenix-hook.conf").read_bytes() == (REPO / "conf/phoenix-hook.conf").read_bytes()
    assert (root / "usr/share/phoenix-hook/install.sh").read_bytes() == (REPO / "install.sh").read_bytes()
    hook = (root / HOOK).read_text().splitlines(keepends=True)
    source = (REPO / "hookscripts/phoenix-hook.py").read_text().splitlines(keepends=True)
    assert hook[0] == "#!/usr/bin/python3 -I\n" and hook[1:] == source[1:]
    assert (root / "usr/bin/phoenix-hook").read_text().startswith("#!/usr/bin/python3 -I\n")
    for unit in (REPO / "systemd").glob("*.service"):
        packaged = (root / "lib/systemd/system" / unit.name).read_text().splitlines()
        assert "ExecStart=/usr/bin/phoenix-hook watch" in packaged
        assert [x for x in packaged if not x.startswith("ExecStart=")] == \
               [x for x in unit.read_text().splitlines() if not x.startswith("ExecStart=")]
    rule = REPO / "contrib" / "logrotate" / "phoenix-hook"
    if rule.is_file():
        assert (root / "etc/logrotate.d/phoenix-hook").read_bytes() == rule.read_bytes()


def test_md5sums_cover_every_file_but_the_conffile(root, control):
    listed = {}
    for line in (control / "md5sums").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    conffiles = {c.lstrip("/") for c in (control / "conffiles").read_text().splitlines()}
    assert "etc/phoenix-hook/phoenix-hook.conf" in conffiles
    assert set(listed) == files - conffiles
    assert all(hashlib.md5((root / n).read_bytes()).hexdigest() == d for n, d in listed.items())


def test_lintian_finds_no_errors_or_warnings(deb):
    need("lintian")
    p = subprocess.run(["lintian", "--pedantic", "--display-info", "--tag-display-limit", "0", str(deb)],
                       capture_output=True, text=True, timeout=300)
    tags = [line for line in p.stdout.splitlines() if line[:2] in ("E:", "W:", "I:", "P:", "X:")]
    print("\n".join(tags) or "lintian: no tags")
    assert [t for t in tags if t[:2] in ("E:", "W:")] == []
    assert p.returncode == 0, p.stdout + p.stderr


def test_man_page_renders_without_warnings_and_names_every_command(root):
    need("man")
    page = root / "usr/share/man/man1/phoenix-hook.1.gz"
    p = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", str(page)], capture_output=True, text=True,
                       env=dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80", MAN_KEEP_FORMATTING="0"))
    assert p.returncode == 0 and p.stderr == "", p.stderr
    text = re.sub(r".\x08", "", p.stdout)                 # bold and underline as overstrikes
    for word in ("phoenix-hook check", "phoenix-hook preflight", "phoenix-hook audit", "phoenix-hook scan",
                 "--no-probe", "EXIT STATUS", "/etc/phoenix-hook/phoenix-hook.conf"):
        assert word in text, word


def _complete(root: Path, *words: str) -> list[str]:
    script = (f'source "{root}/usr/share/bash-completion/completions/phoenix-hook"\n'
              f'COMP_WORDS=({" ".join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n'
              '_phoenix_hook; printf "%s\\n" "${COMPREPLY[@]}"\n')
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=root)
    assert p.returncode == 0, p.stderr
    return [w for w in p.stdout.splitlines() if w]


def test_bash_completion(root):
    assert {"check", "preflight", "audit", "reservations", "scan", "neigh"} <= set(_complete(root, "phoenix-hook", ""))
    assert _complete(root, "phoenix-hook", "reservations", "--format", "") == ["dnsmasq", "isc", "kea", "csv"]
    assert _complete(root, "phoenix-hook", "preflight", "--no") == ["--no-probe"]
    assert _complete(root, "phoenix-hook", "check", "--source", "a") == ["api"]
    assert _complete(root, "phoenix-hook", "--config", "us") == ["usr"]


# --- running it under Debian's python3 and libraries ---------------------------------
def debian_python() -> str:
    if not os.access(DEBIAN_PYTHON, os.X_OK):
        pytest.skip(f"{DEBIAN_PYTHON} not found: not a Debian system")
    status = {}
    for pkg in DEBIAN_LIBS:
        p = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", pkg], capture_output=True, text=True)
        status[pkg] = p.stdout
    missing = [pkg for pkg, s in status.items() if s != "installed"]
    if missing:
        pytest.skip(f"Debian's {' '.join(missing)} not installed (apt install {' '.join(missing)}; "
                    "CI=true ./dev.sh setup does it)")
    return DEBIAN_PYTHON


# Runs a script as its `#!/usr/bin/python3 -I` line would, with one extra path
# entry: the extracted dist-packages (the real one is on sys.path already).
_RUN = ("import sys, runpy; sys.path.insert(0, sys.argv.pop(1)); sys.argv.pop(0); "
        "runpy.run_path(sys.argv[0], run_name='__main__')")


def run_installed(root: Path, script: str, *args: str, env: dict | None = None, netns: bool = False,
                  cwd: str = "/") -> subprocess.CompletedProcess:
    argv = [debian_python(), "-I", "-c", _RUN, str(root / PKG_PY), str(root / script), *args]
    if netns:
        argv = ["unshare", "-n", "--", *argv]
    base = {"PATH": "/sbin:/bin:/usr/sbin:/usr/bin", "LC_ALL": "C"}
    return subprocess.run(argv, env=dict(base, **(env or {})), capture_output=True, text=True, cwd=cwd,
                          stdin=subprocess.DEVNULL, timeout=60)


def test_the_libraries_are_debians(root):
    code = ("import json, netaddr, proxmoxer, requests, phoenix_hook; print(json.dumps({m.__name__: "
            "[getattr(m, '__version__', ''), m.__file__] for m in (netaddr, proxmoxer, requests, phoenix_hook)}))")
    p = subprocess.run([debian_python(), "-I", "-c", f"import sys; sys.path.insert(0, {str(root / PKG_PY)!r}); {code}"],
                       capture_output=True, text=True, cwd="/")
    assert p.returncode == 0, p.stderr
    mods = json.loads(p.stdout)
    assert mods["phoenix_hook"][1] == str(root / PKG_PY / "phoenix_hook" / "__init__.py")
    for name in ("netaddr", "proxmoxer", "requests"):
        assert mods[name][1].startswith("/usr/lib/python3/dist-packages/"), mods[name]
    print({name: v for name, (v, _) in mods.items()})


def test_command_help_and_version(root):
    p = run_installed(root, "usr/bin/phoenix-hook", "--help")
    assert p.returncode == 0, p.stderr
    for cmd in ("check", "preflight", "audit", "reservations", "scan", "neigh", "demo"):
        assert cmd in p.stdout
    p = run_installed(root, "usr/bin/phoenix-hook", "--version")
    assert (p.returncode, p.stdout) == (0, f"phoenix-hook {version()}\n")


@pytest.fixture
def tree(tmp_path):
    """A cluster tree: CTs 101 and 102 share 10.0.0.5; CT 103 has DHCP only."""
    nodes = tmp_path / "pve" / "nodes" / "pve1" / "lxc"
    nodes.mkdir(parents=True)

    def ct(vmid, net0, mac):
        (nodes / f"{vmid}.conf").write_text(
            f"arch: amd64\nhostname: ct{vmid}\nmemory: 512\n"
            f"net0: name=eth0,bridge=vmbr0,hwaddr={mac},{net0},type=veth\nostype: debian\n")
    ct(101, "gw=10.0.0.1,ip=10.0.0.5/24", "BC:24:11:00:01:01")
    ct(102, "gw=10.0.0.1,ip=10.0.0.5/24", "BC:24:11:00:01:02")
    ct(103, "ip=dhcp", "BC:24:11:00:01:03")
    conf = tmp_path / "phoenix-hook.conf"
    conf.write_text(f"[phoenix-hook]\npve_root = {tmp_path / 'pve'}\nnode = pve1\n"
                    f"log_file = {tmp_path / 'log' / 'decisions.jsonl'}\nrun_dir = {tmp_path / 'run'}\n")
    return tmp_path, {"PHOENIX_HOOK_CONF": str(conf)}


def test_audit_reservations_and_preflight_from_the_package(root, tree):
    tmp, env = tree
    p = run_installed(root, "usr/bin/phoenix-hook", "audit", "--json", env=env)
    assert p.returncode == 1, p.stderr
    found = json.loads(p.stdout)["findings"]
    assert sorted((f["kind"], sorted(f["vmids"])) for f in found) == [
        ("duplicate-ip", [101, 102]), ("unprotected", [101]), ("unprotected", [102])]

    p = run_installed(root, "usr/bin/phoenix-hook", "reservations", "--format", "dnsmasq", env=env)
    assert p.returncode == 1                     # 10.0.0.5 is shared: left out and named
    assert "10.0.0.5" in p.stderr and "dhcp-host=" not in p.stdout

    plan = tmp / "plan.json"
    plan.write_text(json.dumps([{"vmid": 201, "ip": "10.0.0.5/24", "bridge": "vmbr0", "mac": "BC:24:11:00:02:01"}]))
    p = run_installed(root, "usr/bin/phoenix-hook", "preflight", str(plan), "--no-probe", "--json", env=env)
    assert p.returncode == 1, p.stderr
    assert json.loads(p.stdout)["verdict"] == "conflict"


def test_check_of_a_dhcp_guest_from_the_package(root, tree):
    need("unshare")
    _, env = tree
    p = run_installed(root, "usr/bin/phoenix-hook", "check", "103", "--json", env=env, netns=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["guests"][0]["verdict"] == "skipped"


def test_hookscript_phases_from_the_package(root, tree):
    need("unshare")
    tmp, env = tree
    p = run_installed(root, HOOK, "103", "post-stop", env=env, netns=True)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    p = run_installed(root, HOOK, "103", "pre-start", env=env, netns=True)
    assert p.returncode == 0, p.stdout + p.stderr
    records = [json.loads(line) for line in (tmp / "log" / "decisions.jsonl").read_text().splitlines()]
    assert [(r["vmid"], r["action"]) for r in records] == [(103, "allowed")]
    p = run_installed(root, HOOK, "nonsense", env=env)
    assert p.returncode == 2 and "usage" in p.stdout


def test_packaged_install_sh_uses_the_package_on_a_fake_node(root, tmp_path):
    from test_install import Node, VOLID, kv, package_share  # noqa: F401  (the fake node of test_install)
    node = Node(tmp_path)
    share = root / "usr/share/phoenix-hook"
    package_share(node)                          # only for its dpkg-query stand-in: "installed"
    node.add_guest(101)
    p = subprocess.run([str(share / "install.sh"), "--attach", "101"],
                       env=node.env(PHOENIX_PKG_SHARE=str(share)), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert node.hookscript(101) == VOLID
    assert node.snippet.read_bytes() == (root / HOOK).read_bytes()
    assert [c for c in node.calls() if c[0] == "python"] == []
    assert kv(node.etc / "state" / "install")["mode"] == "package"
    assert (node.etc / "phoenix-hook.conf").read_bytes() == (share / "conf/phoenix-hook.conf").read_bytes()


# --- maintainer scripts ---------------------------------------------------------------
def _stub(bin_dir: Path, name: str, log: Path) -> None:
    (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >>"{log}"\n')
    (bin_dir / name).chmod(0o755)


def maintainer(control: Path, tmp: Path, script: str, *args: str, **env) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run a maintainer script with py3compile/py3clean/systemctl stand-ins that log their calls."""
    bin_dir = tmp / "stub-bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp / "stub.log"
    log.unlink(missing_ok=True)
    for name in ("py3compile", "py3clean", "systemctl"):
        _stub(bin_dir, name, log)
    base = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "PHOENIX_ETC": str(tmp / "etc"),
            "PHOENIX_PVE_ROOT": str(tmp / "pve"), "PHOENIX_NODE": "pve1"}
    p = subprocess.run(["sh", str(control / script), *args], env=dict(base, **env), capture_output=True, text=True)
    return p, log.read_text().splitlines() if log.exists() else []


def _guest(tmp: Path, kind: str, vmid: int, text: str) -> None:
    d = tmp / "pve" / "nodes" / "pve1" / kind
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{vmid}.conf").write_text(text)


def test_prerm_refuses_removal_while_guests_of_this_node_use_the_hook(control, tmp_path):
    _guest(tmp_path, "lxc", 101, "hostname: a\nhookscript: local:snippets/phoenix-hook.py\n")
    _guest(tmp_path, "qemu-server", 200, "name: b\nhookscript: nfs1:snippets/phoenix-hook.py\n")
    # Only in a snapshot, or another script: no reference.
    _guest(tmp_path, "lxc", 102, "hostname: c\n\n[snap]\nhookscript: local:snippets/phoenix-hook.py\n")
    _guest(tmp_path, "lxc", 103, "hostname: d\nhookscript: local:snippets/phoenix-hook.py.bak\n")
    p, calls = maintainer(control, tmp_path, "prerm", "remove")
    assert p.returncode == 1
    lines = p.stderr.splitlines()
    assert lines[0] == ("phoenix-hook: not removed: CT 101, VM 200 on node pve1 run the phoenix-hook hookscript, "
                        "which needs this package; they could not start without it.")
    assert "/usr/share/phoenix-hook/install.sh --uninstall" in lines[1]
    assert calls == []                                # nothing cleaned up before the refusal

    p, calls = maintainer(control, tmp_path, "prerm", "upgrade", "9.9")
    assert p.returncode == 0 and calls == ["py3clean -p phoenix-hook"]
    p, _ = maintainer(control, tmp_path, "prerm", "remove", PHOENIX_HOOK_REMOVE_ANYWAY="1")
    assert p.returncode == 0


def test_prerm_allows_removal_when_no_guest_needs_the_package(control, tmp_path):
    _guest(tmp_path, "lxc", 102, "hostname: c\n\n[snap]\nhookscript: local:snippets/phoenix-hook.py\n")
    p, calls = maintainer(control, tmp_path, "prerm", "remove")
    assert (p.returncode, p.stderr) == (0, "")
    assert calls == ["py3clean -p phoenix-hook"]
    # A venv install (install.sh without the package) does not need the package either.
    _guest(tmp_path, "lxc", 101, "hostname: a\nhookscript: local:snippets/phoenix-hook.py\n")
    (tmp_path / "etc" / "state").mkdir(parents=True)
    (tmp_path / "etc" / "state" / "install").write_text("mode=venv\nstorage=local\n")
    assert maintainer(control, tmp_path, "prerm", "remove")[0].returncode == 0
    (tmp_path / "etc" / "state" / "install").write_text("mode=package\nstorage=local\n")
    assert maintainer(control, tmp_path, "prerm", "remove")[0].returncode == 1


def test_postinst_compiles_and_refreshes_the_snippet_install_sh_wrote(control, root, tmp_path):
    share = root / "usr/share/phoenix-hook"
    snippet = tmp_path / "snippets" / "phoenix-hook.py"
    snippet.parent.mkdir()
    snippet.write_text("#!/usr/bin/python3 -I\n# an older version\n")
    (tmp_path / "etc" / "state").mkdir(parents=True)
    (tmp_path / "etc" / "state" / "install").write_text(f"mode=package\nstorage=local\nsnippet={snippet}\n")
    p, calls = maintainer(control, tmp_path, "postinst", "configure", PHOENIX_PKG_SHARE=str(share))
    assert p.returncode == 0, p.stderr
    assert calls[0] == "py3compile -p phoenix-hook"
    assert snippet.read_bytes() == (share / "hookscripts/phoenix-hook.py").read_bytes()
    assert os.access(snippet, os.X_OK)
    assert f"phoenix-hook: hookscript {snippet} updated" in p.stdout

    # A venv snippet is not the package's to touch.
    snippet.write_text("#!/opt/phoenix-hook/venv/bin/python3\n")
    (tmp_path / "etc" / "state" / "install").write_text(f"mode=venv\nsnippet={snippet}\n")
    p, _ = maintainer(control, tmp_path, "postinst", "configure", PHOENIX_PKG_SHARE=str(share))
    assert p.returncode == 0 and snippet.read_text() == "#!/opt/phoenix-hook/venv/bin/python3\n"
    assert f"run {share}/install.sh to switch them to this package" in p.stdout
