"""Fake Proxmox VE commands (pct, qm, pvesm, pvesh, and systemctl) for tests of install.sh.

Called as `fake_pve.py STATE_DIR TOOL ARGS...` by small wrappers named after
the tools.  Every call is appended to STATE_DIR/calls.log as a JSON list
(tool first).  The fake node is a directory:

    STATE_DIR/lxc/<vmid>.conf     container configs ("key: value" lines)
    STATE_DIR/qemu/<vmid>.conf    VM configs
    STATE_DIR/storage.json        {"local": {"type": "dir", "content": "...",
                                             "path": "/abs/dir"}}
    STATE_DIR/fail.json           optional: argv prefixes that must fail,
                                  e.g. [["pct", "set", "103"]]

The answers imitate PVE's: `pct set --hookscript` runs the same checks as
PVE::GuestHelpers::check_hookscript (snippets volume, file exists, is
executable), `pvesh get /storage/X` returns the content list as one
comma-separated string like PVE::API2::Storage::Config.
"""
import json
import os
import sys

STATE = sys.argv[1]
TOOL = sys.argv[2]
ARGS = sys.argv[3:]
KIND_DIR = {"pct": "lxc", "qm": "qemu"}


def fail(msg, code=255):
    sys.stderr.write(msg + "\n")
    sys.exit(code)


def storages():
    with open(os.path.join(STATE, "storage.json")) as f:
        return json.load(f)


def save_storages(data):
    with open(os.path.join(STATE, "storage.json"), "w") as f:
        json.dump(data, f, indent=1)


def volume_path(volid):
    store, sep, rest = volid.partition(":")
    if not sep:
        fail(f"unable to parse volume ID '{volid}'")
    cfg = storages().get(store)
    if cfg is None:
        fail(f"storage '{store}' does not exist")
    vtype, _, name = rest.partition("/")
    return vtype, os.path.join(cfg["path"], vtype, name)


def conf_file(tool, vmid):
    return os.path.join(STATE, KIND_DIR[tool], f"{vmid}.conf")


def read_conf(tool, vmid):
    path = conf_file(tool, vmid)
    if not os.path.exists(path):
        kind = KIND_DIR[tool] if tool == "pct" else "qemu-server"
        fail(f"Configuration file 'nodes/fakenode/{kind}/{vmid}.conf' does not exist", 2)
    with open(path) as f:
        return f.read().splitlines()


def guest(tool):
    if ARGS[0] == "list":
        d = os.path.join(STATE, KIND_DIR[tool])
        ids = sorted(int(n[:-5]) for n in os.listdir(d) if n.endswith(".conf")) if os.path.isdir(d) else []
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
        lines = read_conf(tool, ARGS[1])
        current = []
        for line in lines:  # like PVE: the current config only, no snapshots
            if line.startswith("["):
                break
            current.append(line)
        print("\n".join(current))
        return
    if ARGS[0] == "set":
        vmid = ARGS[1]
        lines = read_conf(tool, vmid)
        cut = next((i for i, l in enumerate(lines) if l.startswith("[")), len(lines))
        current, rest = lines[:cut], lines[cut:]
        current = [l for l in current if l.strip()]
        if ARGS[2:] == ["--delete", "hookscript"]:
            current = [l for l in current if not l.startswith("hookscript:")]
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
        else:
            fail(f"fake {tool}: unsupported set arguments {ARGS[2:]}", 2)
        with open(conf_file(tool, vmid), "w") as f:
            f.write("\n".join(current + ([""] + rest if rest else [])) + "\n")
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
        data[ARGS[1]]["content"] = ARGS[3]
        save_storages(data)
        return
    fail(f"fake pvesm: unsupported command {ARGS}", 2)


def pvesh():
    if ARGS[:1] == ["get"] and ARGS[1].startswith("/storage/") and ARGS[2:] == ["--output-format", "json"]:
        name = ARGS[1][len("/storage/"):]
        cfg = storages().get(name)
        if cfg is None:
            fail(f"storage '{name}' does not exist")
        out = dict(cfg, storage=name, digest="0" * 40)
        print(json.dumps(out, separators=(",", ":"), sort_keys=True))
        return
    fail(f"fake pvesh: unsupported command {ARGS}", 2)


def main():
    with open(os.path.join(STATE, "calls.log"), "a") as f:
        f.write(json.dumps([TOOL] + ARGS) + "\n")
    fail_path = os.path.join(STATE, "fail.json")
    if os.path.exists(fail_path):
        with open(fail_path) as f:
            for prefix in json.load(f):
                if [TOOL] + ARGS[: len(prefix) - 1] == prefix:
                    fail(f"CT {ARGS[1] if len(ARGS) > 1 else ''} is locked (backup)")
    {"pct": lambda: guest("pct"), "qm": lambda: guest("qm"), "pvesm": pvesm, "pvesh": pvesh,
     "systemctl": lambda: None}[TOOL]()      # systemctl: logged, always succeeds


if __name__ == "__main__":
    main()
