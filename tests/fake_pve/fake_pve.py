"""Fake Proxmox VE commands (pct, qm, pvesm, pvesh, mountpoint, and systemctl) for tests of install.sh.

Called as `fake_pve.py STATE_DIR TOOL ARGS...` by small wrappers named after
the tools.  Every call is appended to STATE_DIR/calls.log as a JSON list
(tool first).  STATE_DIR is shaped like /etc/pve, so install.sh can read
every node's configs there as it reads /etc/pve on a node:

    STATE_DIR/nodes/<node>/lxc/<vmid>.conf          container configs
    STATE_DIR/nodes/<node>/qemu-server/<vmid>.conf  VM configs
    STATE_DIR/storage.json   {"local": {"type": "dir", "content": "...", "path": "/abs/dir",
                                        "active": true, "node_paths": {"pve-b": "/b/dir"}}}
                             (storage.cfg is cluster-wide; node_paths gives another
                             node its own directory behind the same 'local')
    STATE_DIR/mounts.json    optional: paths `mountpoint -q` calls mount points
    STATE_DIR/fail.json      optional: argv prefixes that must fail,
                             e.g. [["pct", "set", "103"]]

This node is NODE ($PHOENIX_NODE, else "fakenode"); pct/qm see only its guests.  The answers are as strict
as PVE's own (pve-container, qemu-server, pve-storage, pve-guest-common):

- `set` refuses a guest whose config has a `lock:` line, with PVE's text
  ("CT is locked (backup)", AbstractConfig::check_lock), exit 255 like any
  failed PVE command;
- `set --hookscript` runs PVE::GuestHelpers::check_hookscript's checks
  (snippets volume, file exists, is executable);
- `config` prints the current config with pending values merged over it
  (and pending deletions applied), sorted `key: value` lines, no sections,
  no digest, as `pct config`/`qm config` without --current;
- `qm set` prints "update VM N: -hookscript ..." on stdout, as qm does;
- `list` prints nothing at all when there are no guests;
- `pvesh get /storage/X` adds shared=1 for the types pve-storage's
  parse_config marks shared; `pvesm set --content` with a content type the
  storage's plugin cannot hold only warns and exits 0, as pvesm does;
- `pvesm status --storage X` prints PVE's table, with X inactive when
  storage.json says "active": false (an unreachable NFS server).
"""
import json
import os
import sys

STATE = sys.argv[1]
TOOL = sys.argv[2]
ARGS = sys.argv[3:]
NODE = os.environ.get("PHOENIX_NODE") or "fakenode"   # as install.sh is told it
KIND_DIR = {"pct": "lxc", "qm": "qemu-server"}
LABEL = {"pct": "CT", "qm": "VM"}
# pve-storage: @SHARED_STORAGE in Plugin.pm, and the plugins that list "snippets" content.
SHARED_TYPES = {"iscsi", "nfs", "cifs", "rbd", "cephfs", "iscsidirect", "glusterfs", "zfs", "drbd", "pbs"}
SNIPPET_TYPES = {"dir", "nfs", "cifs", "cephfs", "glusterfs", "btrfs"}


def fail(msg, code=255):
    sys.stderr.write(msg + "\n")
    sys.exit(code)


def storages():
    with open(os.path.join(STATE, "storage.json")) as f:
        return json.load(f)


def save_storages(data):
    with open(os.path.join(STATE, "storage.json"), "w") as f:
        json.dump(data, f, indent=1)


def node_path(cfg):
    return cfg.get("node_paths", {}).get(NODE, cfg.get("path"))


def volume_path(volid):
    store, sep, rest = volid.partition(":")
    if not sep:
        fail(f"unable to parse volume ID '{volid}'")
    cfg = storages().get(store)
    if cfg is None:
        fail(f"storage '{store}' does not exist")
    vtype, _, name = rest.partition("/")
    if vtype not in ("snippets", "iso", "vztmpl", "backup", "images", "rootdir") or not name:
        fail(f"unable to parse directory volume name '{rest}'")
    if cfg["type"] not in SNIPPET_TYPES:
        fail(f"unable to parse {cfg['type']} volume name '{rest}'")
    return vtype, os.path.join(node_path(cfg), vtype, name)


def conf_file(tool, vmid):
    return os.path.join(STATE, "nodes", NODE, KIND_DIR[tool], f"{vmid}.conf")


def read_conf(tool, vmid):
    path = conf_file(tool, vmid)
    if not os.path.exists(path):
        fail(f"Configuration file 'nodes/{NODE}/{KIND_DIR[tool]}/{vmid}.conf' does not exist")
    with open(path) as f:
        return f.read().splitlines()


def sections(lines):
    """{"": current lines, "PENDING": ..., snapshot name: ...} in file order."""
    out, name = {"": []}, ""
    for line in lines:
        if line.startswith("[") and line.rstrip().endswith("]"):
            name = line.strip()[1:-1]
            out[name] = []
        elif line.strip():
            out[name].append(line)
    return out


def as_dict(lines):
    d = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            d[key.strip()] = value.strip()
    return d


def guest(tool):
    if ARGS[0] == "list":
        d = os.path.dirname(conf_file(tool, 0))
        ids = sorted(int(n[:-5]) for n in os.listdir(d) if n.endswith(".conf")) if os.path.isdir(d) else []
        if not ids:
            return                      # PVE prints no header for an empty list
        if tool == "pct":
            print(f"{'VMID':<10} {'Status':<10} {'Lock':<12} {'Name':<20}")
            for i in ids:
                print(f"{i:<10} {'stopped':<10} {'':<12} ct{i:<18}")
        else:
            print(f"{'VMID':>10} {'NAME':<20} {'STATUS':<10} {'MEM(MB)':<10} {'BOOTDISK(GB)':<12} PID")
            for i in ids:
                print(f"{i:>10} vm{i:<18} {'stopped':<10} {2048:<10} {32.0:>12.2f} 0")
        return
    if ARGS[0] == "config":
        secs = sections(read_conf(tool, ARGS[1]))
        conf = as_dict(secs[""])
        pending = as_dict(secs.get("PENDING", []))
        for key in pending.pop("delete", "").split(","):
            conf.pop(key.strip(), None)
        conf.update(pending)
        conf.pop("digest", None)
        for key in sorted(conf):
            print(f"{key}: {conf[key]}")
        return
    if ARGS[0] == "set":
        vmid = ARGS[1]
        lines = read_conf(tool, vmid)
        cut = next((i for i, l in enumerate(lines) if l.startswith("[")), len(lines))
        current, rest = lines[:cut], lines[cut:]
        current = [l for l in current if l.strip()]
        lock = as_dict(current).get("lock")
        if lock:
            fail(f"{LABEL[tool]} is locked ({lock})")
        if ARGS[2:] == ["--delete", "hookscript"]:
            current = [l for l in current if not l.startswith("hookscript:")]
            change = "-delete hookscript"
        elif len(ARGS) == 4 and ARGS[2] == "--hookscript":
            volid = ARGS[3]
            vtype, path = volume_path(volid)
            if vtype != "snippets":
                fail(f"hookscript: '{volid}' is not in the snippets directory")
            if not os.path.isfile(path):
                fail(f"hookscript: script '{volid}' does not exist")
            if not os.access(path, os.X_OK):
                fail(f"hookscript: script '{volid}' is not executable")
            current = [l for l in current if not l.startswith("hookscript:")]
            current.append(f"hookscript: {volid}")
            current.sort()
            change = f"-hookscript {volid}"
        else:
            fail(f"fake {tool}: unsupported set arguments {ARGS[2:]}", 2)
        with open(conf_file(tool, vmid), "w") as f:
            f.write("\n".join(current + ([""] + rest if rest else [])) + "\n")
        if tool == "qm":
            print(f"update VM {vmid}: {change}")
        return
    fail(f"fake {tool}: unsupported command {ARGS}", 2)


def pvesm():
    if ARGS[0] == "path":
        print(volume_path(ARGS[1])[1])
        return
    if ARGS[0] == "set" and len(ARGS) == 4 and ARGS[2] == "--content":
        data = storages()
        if ARGS[1] not in data:
            fail(f"storage '{ARGS[1]}' does not exist")
        cfg = data[ARGS[1]]
        wanted = ARGS[3].split(",")
        if "snippets" in wanted and cfg["type"] not in SNIPPET_TYPES:
            # pvesm only warns about a content type the plugin cannot hold.
            sys.stderr.write(f"WARNING: storage '{ARGS[1]}' does not support content type 'snippets'\n")
            return
        cfg["content"] = ARGS[3]
        save_storages(data)
        return
    if ARGS[:2] == ["status", "--storage"] and len(ARGS) == 3:
        cfg = storages().get(ARGS[2])
        if cfg is None:
            fail(f"storage '{ARGS[2]}' does not exist")
        status = "active" if cfg.get("active", True) else "inactive"
        if status == "inactive":
            sys.stderr.write(f"mount error: mount.nfs: Connection timed out\n")
        print(f"{'Name':<16} {'Type':>8} {'Status':>8} {'Total':>15} {'Used':>15} {'Available':>15} {'%':>8}")
        print(f"{ARGS[2]:<16} {cfg['type']:>8} {status:>8} {98497780:>15} {12345678:>15} {81234567:>15} {'12.53%':>8}")
        return
    fail(f"fake pvesm: unsupported command {ARGS}", 2)


def storage_out(name, cfg):
    out = {k: v for k, v in cfg.items() if k not in ("active", "node_paths")}
    if "path" in cfg:
        out["path"] = node_path(cfg)
    out.update(storage=name, digest="0" * 40)
    if cfg["type"] in SHARED_TYPES:
        out["shared"] = 1
    return out


def pvesh():
    if ARGS[:1] == ["get"] and ARGS[1].startswith("/storage/") and ARGS[2:] == ["--output-format", "json"]:
        name = ARGS[1][len("/storage/"):]
        cfg = storages().get(name)
        if cfg is None:
            fail(f"storage '{name}' does not exist")
        print(json.dumps(storage_out(name, cfg), separators=(",", ":"), sort_keys=True))
        return
    if ARGS == ["get", "/storage", "--output-format", "json"]:
        print(json.dumps([storage_out(n, c) for n, c in sorted(storages().items())], separators=(",", ":")))
        return
    fail(f"fake pvesh: unsupported command {ARGS}", 2)


def mountpoint():
    if len(ARGS) != 2 or ARGS[0] != "-q":
        fail(f"fake mountpoint: unsupported arguments {ARGS}", 2)
    path = os.path.join(STATE, "mounts.json")
    mounts = json.load(open(path)) if os.path.exists(path) else []
    sys.exit(0 if os.path.normpath(ARGS[1]) in mounts else 32)


def main():
    with open(os.path.join(STATE, "calls.log"), "a") as f:
        f.write(json.dumps([TOOL] + ARGS) + "\n")
    fail_path = os.path.join(STATE, "fail.json")
    if os.path.exists(fail_path):
        with open(fail_path) as f:
            for prefix in json.load(f):
                if [TOOL] + ARGS[: len(prefix) - 1] == prefix:
                    fail(f"fake {TOOL}: failing as the test asked")
    {"pct": lambda: guest("pct"), "qm": lambda: guest("qm"), "pvesm": pvesm, "pvesh": pvesh,
     "mountpoint": mountpoint, "systemctl": lambda: None}[TOOL]()      # systemctl: logged, always succeeds


if __name__ == "__main__":
    main()
