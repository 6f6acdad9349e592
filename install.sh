#!/usr/bin/env bash
# install.sh: install phoenix-hook on a Proxmox VE node, attach it to guests,
# or take it all away again (--uninstall).  Run it as root on every node whose
# guests should be guarded.  `./install.sh --help` says everything.
#
# PVE facts this script follows (pve-guest-common GuestHelpers.pm,
# pve-container LXC/Config.pm, qemu-server API2/Qemu.pm):
# - a guest has ONE hookscript, a volid on a storage with `snippets` content;
# - `pct set`/`qm set --hookscript` refuses a script that does not exist or is
#   not executable (check_hookscript), so the snippet is written first;
# - a pre-start whose hookscript is missing fails the start, so --uninstall
#   detaches every guest before it removes the snippet and the venv;
# - /etc/pve (pmxcfs) is the same on every node of the cluster, and takes
#   mode 0640 only (pve-cluster cfs_fuse_chmod): chain records live there.
# With the Debian package phoenix-hook installed (dpkg-query says so), the
# hookscript is the package's (/usr/share/phoenix-hook, #!/usr/bin/python3 -I)
# and there is no venv: this script then only writes the snippet and attaches.
set -euo pipefail

readonly ME="phoenix-hook install"
readonly EXIT_FAILED=1 EXIT_USAGE=2 EXIT_NOT_ROOT=3 EXIT_NOT_PVE=4 EXIT_SKIPPED=5
readonly SNIPPET_NAME=phoenix-hook.py
readonly UNIT=phoenix-hook-watch.service
readonly TEMPLATE_FILES=(phoenix-hook-conflict-subject.txt.hbs phoenix-hook-conflict-body.txt.hbs)

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
PREFIX=${PHOENIX_PREFIX:-/opt/phoenix-hook}
BINDIR=${PHOENIX_BINDIR:-/usr/local/bin}
ETC=${PHOENIX_ETC:-/etc/phoenix-hook}
LOGROTATE_DIR=${PHOENIX_LOGROTATE_DIR:-/etc/logrotate.d}
SYSTEMD_DIR=${PHOENIX_SYSTEMD_DIR:-/etc/systemd/system}
PVE_TEMPLATES=${PHOENIX_PVE_TEMPLATES:-/usr/share/pve-manager/templates/default}
PYTHON=${PHOENIX_PYTHON:-python3}
PKG_SHARE=${PHOENIX_PKG_SHARE:-/usr/share/phoenix-hook}
PKG_UNIT=${PHOENIX_PKG_UNIT:-/lib/systemd/system/phoenix-hook-watch.service}
PVE_ROOT=${PHOENIX_PVE_ROOT:-/etc/pve}
NODE=${PHOENIX_NODE:-$(uname -n | cut -d. -f1)}     # PVE's nodename: the short host name
# pve-storage plugins whose content types include snippets.
readonly SNIPPET_TYPES=" dir nfs cifs cephfs glusterfs btrfs "
VENV_ARGS=() PIP_ARGS=()
read -r -a VENV_ARGS <<<"${PHOENIX_VENV_ARGS:-}"
read -r -a PIP_ARGS <<<"${PHOENIX_PIP_ARGS:-}"

usage() {
  cat <<EOF
Usage: ./install.sh [--storage NAME] [--attach VMID... | --attach all [--vms]] [--chain] [--watch] [--dry-run]
       ./install.sh --uninstall [--dry-run]
       ./install.sh --help

Installs phoenix-hook on this Proxmox VE node (run as root, on every node of
a cluster: each node runs the hookscripts of its own guests):
  - a venv at $PREFIX/venv with this checkout pip-installed into it,
    and the command $BINDIR/phoenix-hook (a symlink into the venv);
    with the Debian package phoenix-hook installed, neither: the package
    has the command and the code, and the hookscript comes from
    $PKG_SHARE (a venv of an earlier install is removed);
  - the hookscript STORAGE:snippets/$SNIPPET_NAME (the storage gets
    'snippets' content enabled if it lacks it; its other content is kept);
  - $ETC/phoenix-hook.conf with every setting commented out, only if
    no such file exists yet (your edits are never overwritten);
  - $LOGROTATE_DIR/phoenix-hook, the logrotate rule for the decision log
    (only if none exists).
Running it again updates the installation and changes nothing else.

Options:
  --storage NAME  snippets storage for the hookscript (default: local); a dir,
                  nfs, cifs, cephfs, glusterfs or btrfs storage, active and
                  mounted on this node (pvesm status activates it first)
  --attach VMID...
                  attach the hookscript to these containers (after installing)
                  with pct set VMID --hookscript STORAGE:snippets/$SNIPPET_NAME
  --attach all    attach it to every container on this node (pct list)
  --vms           also accept VMs: 'all' includes every VM (qm list), and a
                  VMID that is not a container is looked up with qm
  --chain         a guest that already has another hookscript gets ours too;
                  ours runs the previous one after itself in every phase.
                  The record names the guest by its MACs (and a VM's vmgenid),
                  so a new guest or a clone with the same ID never runs it.
                  Without --chain such a guest is never touched: it is listed
                  and the exit code is 5. --chain on a guest that already
                  uses phoenix-hook ties its record to the guest as it is now
                  (after you changed its MACs).
  --watch         also install and start the service $UNIT
                  ('phoenix-hook watch': ongoing conflict detection, alerts through the
                  journal, PVE notifications, a webhook, metrics; settings in [watch]) in
                  $SYSTEMD_DIR, and its notification templates in
                  $PVE_TEMPLATES (where PVE 8.2+ looks).
                  Once installed, later runs keep it and update it.
  --uninstall     give every guest back the hookscript it had before (or none),
                  also guests that migrated here from another node (the chain
                  records are cluster-wide), detach phoenix-hook from guests
                  that carry it without a record (e.g. clones), then remove
                  the snippet, the command, the venv, the watch service and
                  its templates, and the state. Keeps $ETC/phoenix-hook.conf and the
                  decision log. If a guest cannot be restored, nothing is
                  removed (its start still needs the venv); fix and rerun.
                  On shared storage the snippet stays while guests of other
                  nodes name it (the last node's --uninstall removes it).
                  Snapshots and backups keep the hookscript line: guests
                  with such snapshots are listed, with the command that
                  detaches them after a rollback or restore.
  --dry-run       print every action (commands that change the node, files
                  written or removed, storage changes) and change nothing;
                  it still reads the node (pct config, pvesm path) to tell
                  what it would do, and exits as the real run would
  -h, --help      this text

Exit codes:
  0  done
  1  a step failed (the message names it); other guests were still handled
  2  bad usage
  3  not run as root
  4  this is not a Proxmox VE node (pct or pvesm missing)
  5  done, but some guests have another hookscript and were not attached
     (they are listed; rerun with --chain to attach them anyway)

Files: $ETC/state/install (where things were installed),
       $ETC/state/guests/VMID (what each attached guest had before),
       $PVE_ROOT/phoenix-hook/chain/VMID.json (a chained previous hookscript:
       volid, path, and the guest's MACs and vmgenid; on every node).

Environment (for tests and unusual layouts): PHOENIX_PREFIX, PHOENIX_BINDIR,
PHOENIX_ETC, PHOENIX_PKG_SHARE (the package's files, default
/usr/share/phoenix-hook; PHOENIX_PKG_UNIT its watch unit), PHOENIX_PVE_ROOT
(default /etc/pve), PHOENIX_NODE
(this node's name), PHOENIX_LOGROTATE_DIR (default /etc/logrotate.d),
PHOENIX_SYSTEMD_DIR, PHOENIX_PVE_TEMPLATES, PHOENIX_PYTHON (creates the venv,
default python3; when its version differs from the venv's, the venv is made
again, e.g. after a Debian release upgrade),
PHOENIX_VENV_ARGS (extra 'python3 -m venv' arguments, e.g.
--system-site-packages), PHOENIX_PIP_ARGS (extra 'pip install' arguments,
e.g. --no-deps --no-index). The hook itself reads
/etc/phoenix-hook/phoenix-hook.conf unless PHOENIX_HOOK_CONF is set, so a
non-default PHOENIX_ETC is for tests only.
EOF
}

say() { printf '%s: %s\n' "$ME" "$*"; }
warn() { printf '%s: %s\n' "$ME" "$*" >&2; }
die() { local code=$1; shift; warn "$*"; exit "$code"; }
usage_error() { die "$EXIT_USAGE" "$* (see --help)"; }

# --- arguments -------------------------------------------------------------
STORAGE=local
ATTACH=()
CHAIN=0 VMS=0 UNINSTALL=0 DRY_RUN=0 WATCH=0
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --storage)
      (($# >= 2)) || usage_error "--storage needs a storage name"
      STORAGE=$2; shift 2; continue ;;
    --storage=*) STORAGE=${1#*=} ;;
    --attach)
      shift
      [[ $# -gt 0 && $1 != -* ]] || usage_error "--attach needs VMIDs or 'all'"
      while (($#)) && [[ $1 != -* ]]; do ATTACH+=("$1"); shift; done
      continue ;;
    --chain) CHAIN=1 ;;
    --vms) VMS=1 ;;
    --uninstall) UNINSTALL=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --watch) WATCH=1 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
  shift
done

[[ $STORAGE =~ ^[A-Za-z][A-Za-z0-9._-]*[A-Za-z0-9]$ ]] ||
  usage_error "'$STORAGE' is not a storage name"
ATTACH_ALL=0
for id in ${ATTACH[@]+"${ATTACH[@]}"}; do
  if [[ $id == all ]]; then
    ATTACH_ALL=1
  elif ! [[ $id =~ ^[1-9][0-9]{2,8}$ ]]; then
    usage_error "'$id' is not a guest ID (100..999999999) or 'all'"
  fi
done
((ATTACH_ALL == 0 || ${#ATTACH[@]} == 1)) || usage_error "use either '--attach all' or VMIDs, not both"
if ((UNINSTALL)); then
  ((${#ATTACH[@]} == 0 && CHAIN == 0 && VMS == 0 && WATCH == 0)) ||
    usage_error "--uninstall takes no --attach, --chain, --vms or --watch (it removes the watch too)"
else
  ((${#ATTACH[@]} > 0 || (CHAIN == 0 && VMS == 0))) ||
    usage_error "--chain and --vms only make sense with --attach"
fi

# --- preconditions ---------------------------------------------------------
[[ $(id -u) == 0 ]] || die "$EXIT_NOT_ROOT" "must run as root (try: sudo $0)"
for tool in pct pvesm; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$EXIT_NOT_PVE" "this is not a Proxmox VE node ('$tool' not found)"
done

VENV=$PREFIX/venv
VOLID=$STORAGE:snippets/$SNIPPET_NAME
STATE=$ETC/state
GUEST_STATE=$STATE/guests
OLD_CHAIN_DIR=$ETC/chain                  # node-local records of phoenix-hook before 2026-12
CHAIN_DIR=$PVE_ROOT/phoenix-hook/chain
CONF=$ETC/phoenix-hook.conf
CONF_SRC=$REPO_DIR/conf/phoenix-hook.conf
HOOK_SRC=$REPO_DIR/hookscripts/phoenix-hook.py
TMPD=$(mktemp -d)
trap 'rm -rf "$TMPD"; if ((DRY_RUN)); then say "dry run: nothing was changed"; fi' EXIT
FAILED=0
SKIPPED=()

# --- small helpers ---------------------------------------------------------
# The Debian package is installed (not only unpacked, not removed).
package_installed() {
  command -v dpkg-query >/dev/null 2>&1 &&
    [[ $(dpkg-query -W -f='${db:Status-Status}' phoenix-hook 2>/dev/null) == installed ]]
}

# Every step that changes the node goes through change() (a command),
# write_lines() or write_chain() (a file): with --dry-run they say what they
# would do instead, and done_say() stays silent about what was not done.
change() {
  if ((DRY_RUN)); then say "dry run: would run: $(shell_words "$@")"; return 0; fi
  "$@"
}
done_say() { if ((!DRY_RUN)); then say "$@"; fi; }
# Arguments as a shell would need them typed: plain words as they are, others quoted.
shell_words() {
  local a out=()
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,@+%-]+$ ]]; then out+=("$a"); else out+=("$(printf '%q' "$a")"); fi
  done
  printf '%s' "${out[*]}"
}

# The value of KEY in a key=value file (empty if absent).  No eval, no source.
read_kv() {
  local file=$1 key=$2 line
  [[ -f $file ]] || return 0
  while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line == "$key="* ]]; then printf '%s\n' "${line#*=}"; return 0; fi
  done <"$file"
}

# Write lines to FILE atomically (a reader never sees half a file).
write_lines() {
  local file=$1 tmp; shift
  if ((DRY_RUN)); then say "dry run: would write $file: $(printf '%s; ' "$@" | sed 's/; $//')"; return 0; fi
  mkdir -p "$(dirname "$file")"
  tmp=$(mktemp "$file.XXXXXX")
  printf '%s\n' "$@" >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$file"
}

# A JSON string for a value install.sh wrote or read from PVE (no control characters).
json_str() {
  local v=$1
  [[ $v != *[[:cntrl:]]* ]] || return 1
  v=${v//\\/\\\\}
  printf '"%s"' "${v//\"/\\\"}"
}

# Write the chain record of VMID (pve/chain.py reads it): the previous hookscript
# VOLID at PATH, tied to the guest read last (G_KIND, G_MACS, G_GENID). One key a
# line, so chain_value can read it back without a JSON parser. On pmxcfs, 0640.
write_chain() {
  local vmid=$1 volid=$2 path=$3 file=$CHAIN_DIR/$1.json tmp macs='' m genid=null
  for m in $G_MACS; do macs+="${macs:+, }\"$m\""; done
  [[ -z $G_GENID ]] || genid="\"$G_GENID\""
  if ((DRY_RUN)); then
    say "dry run: would write $file: volid $volid, path $path, macs [$macs], vmgenid $genid"
    return 0
  fi
  mkdir -p "$CHAIN_DIR"
  tmp=$(mktemp "$CHAIN_DIR/$vmid.json.tmp.XXXXXX")
  if ! {
    printf '{\n'
    printf '  "vmid": %s,\n' "$vmid"
    printf '  "type": "%s",\n' "$G_KIND"
    printf '  "volid": %s,\n' "$(json_str "$volid")"
    printf '  "path": %s,\n' "$(json_str "$path")"
    printf '  "macs": [%s],\n' "$macs"
    printf '  "vmgenid": %s\n' "$genid"
    printf '}\n'
  } >"$tmp"; then
    rm -f "$tmp"
    return 1
  fi
  chmod 0640 "$tmp" 2>/dev/null || true
  mv -f "$tmp" "$file"
}

# A string value of a chain record ("key": "value" on its own line), or empty.
chain_value() {
  local file=$1 key=$2 line
  [[ -f $file ]] || return 0
  while IFS= read -r line; do
    if [[ $line =~ ^[[:space:]]*\"$key\":[[:space:]]*\"(.*)\",?$ ]]; then
      printf '%s\n' "${BASH_REMATCH[1]}"
      return 0
    fi
  done <"$file"
}

# Is the chain record of VMID the guest read last? The rule of pve/chain.py:
# vmgenid decides when both have one, else one MAC in common.
chain_matches() {
  local file=$CHAIN_DIR/$1.json genid macs m
  [[ -f $file ]] || return 1
  genid=$(chain_value "$file" vmgenid)
  if [[ -n $genid && -n $G_GENID ]]; then [[ $genid == "$G_GENID" ]]; return; fi
  macs=$(grep -E '^[[:space:]]*"macs":' "$file" | grep -oiE '([0-9a-f]{2}:){5}[0-9a-f]{2}' | tr 'A-F' 'a-f')
  for m in $G_MACS; do
    if grep -qxF "$m" <<<"$macs"; then return 0; fi
  done
  return 1
}

# Records of phoenix-hook before they were tied to the guest ($OLD_CHAIN_DIR/VMID,
# node-local): the hook no longer runs them. A guest of this node that still
# carries our hookscript gets a record in the new format (tied to it as it is now).
convert_old_records() {
  local f vmid volid path
  [[ -d $OLD_CHAIN_DIR ]] || return 0
  for f in "$OLD_CHAIN_DIR"/*; do
    [[ -f $f ]] || continue
    vmid=${f##*/}
    [[ $vmid =~ ^[0-9]+$ ]] || continue
    volid=$(read_kv "$f" volid)
    path=$(read_kv "$f" path)
    if read_guest "$vmid" "$(read_kv "$GUEST_STATE/$vmid" type)" && [[ $G_HOOK == "$VOLID" && -n $path ]]; then
      if write_chain "$vmid" "$volid" "$path"; then
        change rm -f "$f"
        done_say "guest $vmid: chain record converted to $CHAIN_DIR/$vmid.json (tied to its MACs${G_GENID:+ and vmgenid})"
      else
        warn "guest $vmid: could not write $CHAIN_DIR/$vmid.json; its previous hookscript $volid does not run"
        FAILED=1
      fi
    else
      say "guest $vmid: old chain record $f kept (the guest is not here or no longer uses $VOLID)"
    fi
  done
  if ((!DRY_RUN)); then rmdir "$OLD_CHAIN_DIR" 2>/dev/null || true; fi
}

# The VMIDs in the output of `pct list` / `qm list` (header line skipped).
list_vmids() { awk 'NR > 1 && $1 ~ /^[0-9]+$/ { print $1 }' "$1"; }

tool_for() { if [[ $1 == vm ]]; then echo qm; else echo pct; fi; }

# `pct|qm set VMID ARGS...` with its output kept out of ours (qm prints
# "update VM N: ..."); on failure SET_ERR holds PVE's own reason, e.g.
# "CT is locked (backup)".
SET_ERR=''
guest_set() {
  local tool=$1; shift
  if ((DRY_RUN)); then change "$tool" set "$@"; return 0; fi
  if "$tool" set "$@" >"$TMPD/set.out" 2>"$TMPD/set.err"; then return 0; fi
  SET_ERR=$(grep -v '^[[:space:]]*$' "$TMPD/set.err" | tail -n 1 || true)
  [[ -n $SET_ERR ]] || SET_ERR="$tool set failed"
  return 1
}

# The storage's configuration (pvesh get /storage/NAME): sets ST_TYPE,
# ST_CONTENT, ST_SHARED (1 when pve-storage marks it shared: nfs, cifs,
# cephfs... or 'shared 1'), ST_PATH and ST_MOUNT (is_mountpoint).
ST_TYPE='' ST_CONTENT='' ST_SHARED=0 ST_PATH='' ST_MOUNT=''
read_storage() {
  local line
  pvesh get "/storage/$1" --output-format json >"$TMPD/storage.json" 2>"$TMPD/err" || return 1
  ST_TYPE='' ST_CONTENT='' ST_SHARED=0 ST_PATH='' ST_MOUNT=''
  while IFS= read -r line; do
    case $line in
      type=*) ST_TYPE=${line#type=} ;;
      content=*) ST_CONTENT=${line#content=} ;;
      shared=*) [[ ${line#shared=} == 1 || ${line#shared=} == True ]] && ST_SHARED=1 ;;
      path=*) ST_PATH=${line#path=} ;;
      is_mountpoint=*) ST_MOUNT=${line#is_mountpoint=} ;;
    esac
  done < <(python3 -I -c 'import json, sys
d = json.load(open(sys.argv[1]))
for k in ("type", "content", "shared", "path", "is_mountpoint"):
    v = d.get(k) if isinstance(d, dict) else None
    if v is not None and "\n" not in str(v):
        print(f"{k}={v}")' "$TMPD/storage.json" 2>>"$TMPD/err")
  [[ -n $ST_TYPE ]]
}

# "local (dir), nfs1 (nfs)": the storages that can hold snippets.
snippet_storages() {
  local list
  list=$(pvesh get /storage --output-format json 2>/dev/null | python3 -I -c 'import json, sys
ok = set(sys.argv[1].split())
try:
    stores = json.load(sys.stdin)
except ValueError:
    stores = []
print(", ".join("%s (%s)" % (s.get("storage"), s.get("type")) for s in stores
                if isinstance(s, dict) and s.get("type") in ok and not s.get("disable")))' "$SNIPPET_TYPES" 2>/dev/null) || list=''
  if [[ -n $list ]]; then printf '%s\n' "$list"; else
    printf '%s\n' "none is defined; add one, e.g. pvesm add dir snippets --path /var/lib/snippets --content snippets"
  fi
}

# Every hookscript line naming VOLID in the cluster's configs ($PVE_ROOT/nodes/*):
# "NODE ct|vm VMID SECTION", SECTION "-" for the current config, PENDING, or
# a snapshot's name.  Read from the files: pct/qm see only this node.
volid_refs() {
  local want=$1 files=()
  shopt -s nullglob
  files=("$PVE_ROOT"/nodes/*/lxc/*.conf "$PVE_ROOT"/nodes/*/qemu-server/*.conf)
  shopt -u nullglob
  ((${#files[@]})) || return 0
  awk -v want="$want" '
    FNR == 1 {
      sec = "-"; n = split(FILENAME, p, "/"); vmid = p[n]; sub(/\.conf$/, "", vmid)
      kind = (p[n - 1] == "lxc") ? "ct" : "vm"; node = p[n - 2]
    }
    /^\[/ { sec = $0; gsub(/^\[|\][ \t]*$/, "", sec); next }
    /^hookscript:/ {
      v = $0; sub(/^hookscript:[ \t]*/, "", v); sub(/[ \t\r]+$/, "", v)
      if (v == want) print node, kind, vmid, sec
    }' "${files[@]}"
}
label_for() { if [[ $1 == vm ]]; then echo VM; else echo CT; fi; }

# Look a guest up: sets G_KIND (ct|vm), G_HOOK (its hookscript volid, or
# empty), G_MACS (its NICs' MACs, lower case, space-separated) and G_GENID
# (a VM's vmgenid, or empty).  KIND_HINT may be ct, vm or empty (try pct,
# then qm with --vms).  Returns 1 when the guest is not on this node.
G_KIND='' G_HOOK='' G_MACS='' G_GENID=''
read_guest() {
  local vmid=$1 hint=${2:-} kinds=() kind out
  if [[ -n $hint ]]; then
    kinds=("$hint")
  else
    kinds=(ct)
    if ((VMS)) && command -v qm >/dev/null 2>&1; then kinds+=(vm); fi
  fi
  for kind in "${kinds[@]}"; do
    if out=$("$(tool_for "$kind")" config "$vmid" 2>"$TMPD/err"); then
      G_KIND=$kind
      # `pct/qm config` prints the config with pending values merged, no
      # sections; stop at one anyway.  The whole rest of the line: a volid may
      # hold spaces (local:snippets/my hook.sh).
      G_HOOK=$(printf '%s\n' "$out" | sed -n '/^\[/q; s/^hookscript:[[:space:]]*//p' | head -n 1)
      G_HOOK=${G_HOOK%"${G_HOOK##*[![:space:]]}"}
      # netN: hwaddr=MAC (LXC) or MODEL=MAC (QEMU); vmgenid: UUID (0/1: none yet)
      # (the models of qemu-server's nic_model_list, as pve/guest.py knows them)
      G_MACS=$(printf '%s\n' "$out" | awk '/^\[/ { exit } /^net[0-9]+: / { sub(/^net[0-9]+: /, ","); print }' |
        grep -oiE ",(hwaddr|virtio|e1000|e1000-82540em|e1000-82544gc|e1000-82545em|e1000e|i82551|i82557b|i82559er|ne2k_isa|ne2k_pci|pcnet|rtl8139|vmxnet3)=([0-9a-f]{2}:){5}[0-9a-f]{2}(,|$)" |
        sed 's/^[^=]*=//; s/,$//' | tr 'A-F' 'a-f' | sort -u | tr '\n' ' ' | sed 's/ $//') || G_MACS=''
      G_GENID=$(printf '%s\n' "$out" | awk '/^\[/ { exit } /^vmgenid: / { print tolower($2); exit }')
      [[ $G_GENID =~ ^[0-9a-f-]{36}$ ]] || G_GENID=''
      return 0
    fi
  done
  return 1
}

# --- install steps ---------------------------------------------------------
# major.minor of an interpreter, or of the one a venv was made with (pyvenv.cfg,
# "version = 3.11.2"; newer releases may write "version_info = 3.13.0.final.0").
python_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
venv_version() {
  sed -n 's/^version\(_info\)\{0,1\}[[:space:]]*=[[:space:]]*\([0-9][0-9]*\.[0-9][0-9]*\).*/\2/p' \
    "$VENV/pyvenv.cfg" 2>/dev/null | head -n1
}

make_venv() {
  mkdir -p "$PREFIX"
  if ! "$PYTHON" -m venv ${VENV_ARGS[@]+"${VENV_ARGS[@]}"} "$VENV" >"$TMPD/venv.log" 2>&1; then
    cat "$TMPD/venv.log" >&2
    rm -rf "$VENV"
    die "$EXIT_FAILED" "could not create a venv at $VENV (on Debian: apt install python3-venv)"
  fi
}

pip_install() {
  say "installing $REPO_DIR into $VENV (pip)"
  if ! "$VENV/bin/python3" -m pip install --disable-pip-version-check --quiet \
    ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} "$REPO_DIR" >"$TMPD/pip.log" 2>&1; then
    tail -n 20 "$TMPD/pip.log" >&2
    die "$EXIT_FAILED" "pip install of $REPO_DIR into $VENV failed (output above)"
  fi
}

# The hookscript's own test: its interpreter, isolated (-I) as in the snippet's
# first line, imports the hook. Anything less lets every attached guest's start
# fail with ModuleNotFoundError.
venv_healthy() {
  "$VENV/bin/python3" -I -c 'import phoenix_hook.hook' >"$TMPD/health.log" 2>&1
}

install_venv() {
  local want have
  command -v "$PYTHON" >/dev/null 2>&1 ||
    die "$EXIT_FAILED" "'$PYTHON' not found; install it: apt install python3-venv"
  want=$(python_version "$PYTHON") ||
    die "$EXIT_FAILED" "'$PYTHON' does not run; install it: apt install python3-venv"
  # Reuse a working venv; make it again when its interpreter is gone or is
  # another Python now: a Debian release upgrade (PVE 8 to 9: Python 3.11 to
  # 3.13) leaves a venv that no longer finds its own packages.
  local create=0
  if [[ -d $VENV ]]; then
    have=$(venv_version)
    if ! "$VENV/bin/python3" -c 'import sys' >/dev/null 2>&1; then
      say "the venv at $VENV is broken; creating it again"
      change rm -rf "$VENV"
      create=1
    elif [[ -n $have && $have != "$want" ]]; then
      say "the venv at $VENV was made with Python $have and $PYTHON is Python $want now; creating it again"
      change rm -rf "$VENV"
      create=1
    fi
  fi
  [[ -d $VENV ]] || create=1
  if ((DRY_RUN)); then
    if ((create)); then change "$PYTHON" -m venv ${VENV_ARGS[@]+"${VENV_ARGS[@]}"} "$VENV"; fi
    change "$VENV/bin/python3" -m pip install --disable-pip-version-check --quiet \
      ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} "$REPO_DIR"
    return 0
  fi
  if ((create)); then make_venv; fi
  pip_install
  if ! venv_healthy; then
    say "$VENV/bin/python3 cannot import phoenix_hook ($(tail -n1 "$TMPD/health.log")); creating the venv again"
    rm -rf "$VENV"
    make_venv
    pip_install
    venv_healthy || die "$EXIT_FAILED" "$VENV/bin/python3 -I cannot import phoenix_hook even in a new venv: $(tail -n1 "$TMPD/health.log")"
  fi
  [[ -x $VENV/bin/phoenix-hook ]] ||
    die "$EXIT_FAILED" "pip did not install the 'phoenix-hook' command into $VENV/bin"
}

install_command() {
  local link=$BINDIR/phoenix-hook
  if [[ -e $link && ! -L $link ]]; then
    die "$EXIT_FAILED" "$link exists and is not our symlink; move it away and rerun"
  fi
  change mkdir -p "$BINDIR"
  change ln -sfn "$VENV/bin/phoenix-hook" "$link"
}

# Make sure STORAGE may hold snippets; keep every content type it has.
ensure_snippets_content() {
  local content
  read_storage "$STORAGE" ||
    die "$EXIT_FAILED" "cannot read storage '$STORAGE': $(head -n1 "$TMPD/err") (choose one with --storage)"
  [[ $SNIPPET_TYPES == *" $ST_TYPE "* ]] ||
    die "$EXIT_FAILED" "storage '$STORAGE' ($ST_TYPE) cannot hold snippets; choose one with --storage: $(snippet_storages)"
  # "content" is a comma-separated list (API2/Storage/Config.pm).
  content=$ST_CONTENT
  case ,$content, in *,snippets,*) return 0 ;; esac
  say "storage '$STORAGE' has no 'snippets' content (it has ${content:-none}); enabling it"
  # 'none' cannot be combined with other content types.
  if [[ -z $content || $content == none ]]; then content=snippets; else content=$content,snippets; fi
  if ((DRY_RUN)); then change pvesm set "$STORAGE" --content "$content"; return 0; fi
  guest_set pvesm "$STORAGE" --content "$content" ||
    die "$EXIT_FAILED" "could not enable snippets on storage '$STORAGE' ($SET_ERR); choose another with --storage"
  # pvesm only warns about a content type the storage's plugin rejects.
  read_storage "$STORAGE" && [[ ,$ST_CONTENT, == *,snippets,* ]] ||
    die "$EXIT_FAILED" "storage '$STORAGE' ($ST_TYPE) cannot hold snippets; choose one with --storage: $(snippet_storages)"
}

# `pvesm path` mounts nothing: on an NFS/CIFS store that is not mounted the
# snippet would land on this node's own disk under /mnt/pve/NAME and be hidden
# once the share mounts.  `pvesm status --storage` activates it (mounts it);
# then the mount must really be there.
activate_storage() {
  local status mp=''
  if ((DRY_RUN)); then
    say "dry run: would activate storage '$STORAGE' (pvesm status --storage $STORAGE) and check it is mounted"
    return 0
  fi
  status=$(pvesm status --storage "$STORAGE" 2>"$TMPD/err" | awk -v s="$STORAGE" '$1 == s { print $3; exit }') || true
  [[ $status == active ]] ||
    die "$EXIT_FAILED" "storage '$STORAGE' is not active on this node (pvesm status: ${status:-no answer}; $(grep -m1 . "$TMPD/err" || echo 'no error text')); fix its mount or connection and rerun"
  case $ST_TYPE in
    nfs | cifs | cephfs | glusterfs) mp=${ST_PATH:-/mnt/pve/$STORAGE} ;;
    dir)
      case ${ST_MOUNT,,} in
        '' | 0 | no | off | false) ;;
        1 | yes | on | true) mp=$ST_PATH ;;
        *) mp=$ST_MOUNT ;;
      esac ;;
  esac
  if [[ -n $mp ]] && ! mountpoint -q "$mp"; then
    die "$EXIT_FAILED" "storage '$STORAGE' ($ST_TYPE) is not mounted at $mp: the hookscript would land on this node's own disk and vanish under the mount; mount it (pvesm status) and rerun"
  fi
}

SNIPPET_PATH=''
install_snippet() {
  local src=$HOOK_SRC tmp first
  [[ -f $src ]] || die "$EXIT_FAILED" "$src is missing; run install.sh from a complete checkout"
  SNIPPET_PATH=$(pvesm path "$VOLID" 2>"$TMPD/err") ||
    die "$EXIT_FAILED" "cannot resolve $VOLID: $(head -n1 "$TMPD/err")"
  [[ $SNIPPET_PATH == /* ]] || die "$EXIT_FAILED" "pvesm path $VOLID gave '$SNIPPET_PATH', not a path"
  if [[ -n $ST_PATH && $SNIPPET_PATH != "${ST_PATH%/}/"* ]]; then
    die "$EXIT_FAILED" "pvesm path $VOLID gave $SNIPPET_PATH, which is not on storage '$STORAGE' ($ST_PATH)"
  fi
  if ((DRY_RUN)); then
    if ((PACKAGE)); then
      say "dry run: would write the hookscript $SNIPPET_PATH ($VOLID): $src as it is (#!/usr/bin/python3 -I), mode 0755"
    else
      say "dry run: would write the hookscript $SNIPPET_PATH ($VOLID): $src with its first line #!$VENV/bin/python3 -I, mode 0755"
    fi
    return 0
  fi
  mkdir -p "$(dirname "$SNIPPET_PATH")"
  tmp=$(mktemp "$(dirname "$SNIPPET_PATH")/.$SNIPPET_NAME.XXXXXX")
  IFS= read -r first <"$src" || true
  if ((PACKAGE)); then
    cat "$src" >"$tmp"          # the package's own: #!/usr/bin/python3 -I
  else
    {
      # -I: isolated, so modules in the snippets directory (or PYTHON* variables)
      # can never stand in for the standard library or phoenix_hook.
      printf '#!%s -I\n' "$VENV/bin/python3"
      # Replace the source's shebang; a source without one keeps line 1.
      if [[ $first == '#!'* ]]; then tail -n +2 "$src"; else cat "$src"; fi
    } >"$tmp"
  fi
  chmod 0755 "$tmp"
  mv -f "$tmp" "$SNIPPET_PATH"
  say "hookscript $VOLID written to $SNIPPET_PATH"
}

install_settings() {
  if [[ -e $CONF ]]; then
    say "kept the existing settings file $CONF"
    return 0
  fi
  if ((DRY_RUN)); then
    say "dry run: would write the default settings file $CONF (every setting commented out)"
    return 0
  fi
  mkdir -p "$ETC"
  [[ -f $CONF_SRC ]] || die "$EXIT_FAILED" "$CONF_SRC is missing; run install.sh from a complete checkout"
  cp "$CONF_SRC" "$TMPD/conf"
  chmod 0644 "$TMPD/conf"
  mv -f "$TMPD/conf" "$CONF"
  say "wrote the default settings file $CONF"
}

# The logrotate rule for the decision log, like the settings: written only
# when none exists (an admin who moved log_file edits it), removed by
# --uninstall only when it is ours.
LOGROTATE_RULE=''
install_logrotate() {
  local src=$REPO_DIR/contrib/logrotate/phoenix-hook dst=$LOGROTATE_DIR/phoenix-hook
  [[ -f $src ]] || return 0
  if [[ ! -d $LOGROTATE_DIR ]]; then
    say "no $LOGROTATE_DIR (logrotate is not installed): the decision log will not be rotated"
    return 0
  fi
  if [[ -e $dst ]]; then
    if cmp -s "$src" "$dst"; then LOGROTATE_RULE=$dst; fi
    [[ -n $LOGROTATE_RULE ]] || say "kept the existing logrotate rule $dst"
    return 0
  fi
  LOGROTATE_RULE=$dst
  if ((DRY_RUN)); then say "dry run: would write the logrotate rule $dst (from $src)"; return 0; fi
  cp "$src" "$TMPD/logrotate"
  chmod 0644 "$TMPD/logrotate"
  mv -f "$TMPD/logrotate" "$dst"
  say "wrote the logrotate rule $dst"
}

# The watch service and the PVE notification templates (--watch).
install_watch() {
  local src=$REPO_DIR/systemd/$UNIT tdir=$REPO_DIR/phoenix_hook/watch/templates f unit=$SYSTEMD_DIR/$UNIT
  # The package ships the unit (ExecStart=/usr/bin/phoenix-hook watch) and the templates.
  if ((PACKAGE)); then src=$PKG_UNIT tdir=$PKG_SHARE/templates; fi
  [[ -f $src ]] || die "$EXIT_FAILED" "$src is missing; run install.sh from a complete checkout (or reinstall the package)"
  command -v systemctl >/dev/null 2>&1 ||
    die "$EXIT_FAILED" "--watch needs systemd ('systemctl' not found)"
  if ((PACKAGE)); then
    :
  elif ((DRY_RUN)); then
    say "dry run: would write the watch service $unit (from $src, ExecStart=$BINDIR/phoenix-hook watch)"
  else
    mkdir -p "$SYSTEMD_DIR"
    # The command lives where this install put it.
    sed "s|^ExecStart=.*|ExecStart=$BINDIR/phoenix-hook watch|" "$src" >"$TMPD/unit"
    chmod 0644 "$TMPD/unit"
    mv -f "$TMPD/unit" "$unit"
    say "watch service written to $unit"
  fi
  # PVE 8.2+ reads notification templates from this directory; PVE 8.1 has none (the
  # watch then passes its templates in the call), and creating it would hide that.
  if [[ -d $PVE_TEMPLATES ]]; then
    for f in "${TEMPLATE_FILES[@]}"; do
      [[ -f $tdir/$f ]] || die "$EXIT_FAILED" "$tdir/$f is missing; run install.sh from a complete checkout"
      if ((DRY_RUN)); then say "dry run: would write $PVE_TEMPLATES/$f (from $tdir)"; continue; fi
      cp "$tdir/$f" "$TMPD/$f"
      chmod 0644 "$TMPD/$f"
      mv -f "$TMPD/$f" "$PVE_TEMPLATES/$f"
    done
    done_say "notification templates written to $PVE_TEMPLATES"
  else
    say "no $PVE_TEMPLATES (PVE before 8.2): the watch passes its notification templates itself"
  fi
  change systemctl daemon-reload || die "$EXIT_FAILED" "systemctl daemon-reload failed"
  change systemctl enable "$UNIT" || die "$EXIT_FAILED" "systemctl enable $UNIT failed"
  # restart: a rerun after an update runs the new code
  change systemctl restart "$UNIT" ||
    die "$EXIT_FAILED" "systemctl restart $UNIT failed; see: journalctl -u $UNIT"
  done_say "watch service $UNIT enabled and started (journalctl -u $UNIT)"
}

remove_watch() {
  local unit templates f
  unit=$(read_kv "$STATE/install" unit)
  templates=$(read_kv "$STATE/install" templates)
  if [[ -z $unit && $(read_kv "$STATE/install" watch) == 1 ]]; then
    # The package's unit: stopped and disabled; the file is the package's to remove.
    if command -v systemctl >/dev/null 2>&1; then
      change systemctl disable --now "$UNIT" || warn "systemctl disable --now $UNIT failed"
      done_say "stopped and disabled the watch service $UNIT (the package keeps its unit file)"
    fi
  fi
  [[ -n $unit ]] || unit=/nonexistent
  if [[ -f $unit ]]; then
    if command -v systemctl >/dev/null 2>&1; then
      change systemctl disable --now "$UNIT" || warn "systemctl disable --now $UNIT failed; removing it anyway"
    fi
    change rm -f "$unit"
    if command -v systemctl >/dev/null 2>&1; then change systemctl daemon-reload || true; fi
    done_say "removed the watch service $unit"
  fi
  if [[ -n $templates ]]; then
    for f in "${TEMPLATE_FILES[@]}"; do
      if [[ -f $templates/$f ]]; then change rm -f "$templates/$f"; done_say "removed $templates/$f"; fi
    done
  fi
}

# Attach our hookscript to one guest, following the rules in --help.
attach_guest() {
  local vmid=$1 hint=${2:-} label tool prev_path state_file=$GUEST_STATE/$1
  if ! read_guest "$vmid" "$hint"; then
    if ((VMS)); then
      warn "guest $vmid does not exist on this node; not attached"
    else
      warn "CT $vmid does not exist on this node; not attached (a VM needs --vms)"
    fi
    FAILED=1
    return 0
  fi
  label=$(label_for "$G_KIND")
  tool=$(tool_for "$G_KIND")

  if [[ $G_HOOK == "$VOLID" ]]; then
    if [[ ! -f $state_file ]]; then
      # Attached by hand, cloned from an attached guest, or migrated here:
      # record it so that --uninstall detaches it (or restores its chain).
      local prev=''
      if chain_matches "$vmid"; then prev=$(chain_value "$CHAIN_DIR/$vmid.json" volid); fi
      write_lines "$state_file" "type=$G_KIND" "attached=$VOLID" "previous=$prev"
    fi
    if ((CHAIN)) && [[ -f $CHAIN_DIR/$vmid.json ]] && ! chain_matches "$vmid"; then
      # The admin says this record is this guest's (e.g. after changing its MACs).
      if write_chain "$vmid" "$(chain_value "$CHAIN_DIR/$vmid.json" volid)" \
        "$(chain_value "$CHAIN_DIR/$vmid.json" path)"; then
        done_say "$label $vmid: its chain record now names it as it is now (MACs ${G_MACS:-none}${G_GENID:+, vmgenid $G_GENID})"
      else
        warn "$label $vmid: could not rewrite $CHAIN_DIR/$vmid.json"
        FAILED=1
      fi
    fi
    say "$label $vmid already uses $VOLID"
    return 0
  fi
  if [[ -f $CHAIN_DIR/$vmid.json ]] && ! chain_matches "$vmid"; then
    # Left by a destroyed guest with this ID: never this guest's to run.
    change rm -f "$CHAIN_DIR/$vmid.json"
    done_say "$label $vmid: removed a chain record another guest with this ID left behind"
  fi

  if [[ -n $G_HOOK ]]; then
    if ((!CHAIN)); then
      say "$label $vmid already has hookscript $G_HOOK; not attached (use --chain to run it after phoenix-hook)"
      SKIPPED+=("$vmid")
      return 0
    fi
    if [[ $G_HOOK == *:snippets/"$SNIPPET_NAME" ]]; then
      warn "$label $vmid uses phoenix-hook from another storage ($G_HOOK); not chained to itself (run --uninstall first)"
      FAILED=1
      return 0
    fi
    if ! prev_path=$(pvesm path "$G_HOOK" 2>"$TMPD/err"); then
      warn "$label $vmid: cannot resolve its hookscript $G_HOOK: $(head -n1 "$TMPD/err"); not attached"
      FAILED=1
      return 0
    fi
    if [[ -z $G_MACS && -z $G_GENID ]]; then
      warn "$label $vmid has no NIC with a MAC and no vmgenid to tie the chain record to; not attached"
      FAILED=1
      return 0
    fi
    # The chain record exists before the guest carries our hook, so the hook
    # never runs without knowing what it must run next.
    if ! write_chain "$vmid" "$G_HOOK" "$prev_path"; then
      warn "$label $vmid: cannot write $CHAIN_DIR/$vmid.json; not attached"
      FAILED=1
      return 0
    fi
  fi
  write_lines "$state_file" "type=$G_KIND" "attached=$VOLID" "previous=$G_HOOK"
  if ! guest_set "$tool" "$vmid" --hookscript "$VOLID"; then
    rm -f "$state_file"
    [[ -z $G_HOOK ]] || rm -f "$CHAIN_DIR/$vmid.json"
    warn "$label $vmid: $tool set --hookscript $VOLID failed ($SET_ERR); $label $vmid unchanged"
    FAILED=1
    return 0
  fi
  if [[ -n $G_HOOK ]]; then
    done_say "$label $vmid: attached $VOLID; it runs the previous hookscript $G_HOOK after itself"
  else
    done_say "$label $vmid: attached $VOLID"
  fi
}

attach_requested() {
  local vmid ids=()
  if ((ATTACH_ALL)); then
    pct list >"$TMPD/list" || die "$EXIT_FAILED" "pct list failed"
    mapfile -t ids < <(list_vmids "$TMPD/list")
    for vmid in ${ids[@]+"${ids[@]}"}; do attach_guest "$vmid" ct; done
    if ((VMS)); then
      command -v qm >/dev/null 2>&1 || die "$EXIT_NOT_PVE" "this is not a Proxmox VE node ('qm' not found)"
      qm list >"$TMPD/list" || die "$EXIT_FAILED" "qm list failed"
      mapfile -t ids < <(list_vmids "$TMPD/list")
      for vmid in ${ids[@]+"${ids[@]}"}; do attach_guest "$vmid" vm; done
    fi
  else
    # Sorted and de-duplicated: attaching twice is attaching once.
    mapfile -t ids < <(printf '%s\n' "${ATTACH[@]}" | sort -n -u)
    for vmid in "${ids[@]}"; do attach_guest "$vmid"; done
  fi
}

# The package replaces a venv install: once the snippet runs Debian's
# python3, the venv and its command link (as recorded) are not needed.
remove_old_venv() {
  local prefix bindir venv link unit
  [[ $(read_kv "$STATE/install" mode) != package ]] || return 0
  prefix=$(read_kv "$STATE/install" prefix)
  bindir=$(read_kv "$STATE/install" bindir)
  unit=$(read_kv "$STATE/install" unit)
  # The venv's watch unit would hide the package's (/etc/systemd/system comes first).
  if [[ -n $unit && -f $unit ]]; then
    change rm -f "$unit"
    done_say "removed $unit (the package's $PKG_UNIT replaces it)"
  fi
  [[ -n $prefix ]] || return 0
  venv=$prefix/venv link=${bindir:-$BINDIR}/phoenix-hook
  if [[ -L $link && $(readlink "$link") == "$venv/"* ]]; then
    change rm -f "$link"
    done_say "removed $link (the package's /usr/bin/phoenix-hook replaces it)"
  fi
  if [[ -d $venv ]]; then
    change rm -rf "$venv"
    if ((!DRY_RUN)); then rmdir "$prefix" 2>/dev/null || true; fi
    done_say "removed the venv $venv: the hookscript now runs the phoenix-hook package"
  fi
}

# A snippet on storage that is not shared exists on this node only: a guest
# attached here cannot start on, nor migrate to, a node without the same file
# ("hookscript ... does not exist").  The cluster's nodes are the directories
# of $PVE_ROOT/nodes (pmxcfs keeps one per node).
warn_other_nodes() {
  local others=() d
  [[ $ST_SHARED == 1 || " nfs cifs cephfs glusterfs " == *" $ST_TYPE "* ]] && return 0
  for d in "$PVE_ROOT"/nodes/*/; do
    d=${d%/}; d=${d##*/}
    [[ -d $PVE_ROOT/nodes/$d && $d != "$NODE" && $d != '*' ]] && others+=("$d")
  done
  ((${#others[@]})) || return 0
  warn "storage '$STORAGE' is not shared: $VOLID exists on this node only, so the guests attached here cannot start on or migrate to $(printf '%s, ' "${others[@]}" | sed 's/, $//') until install.sh runs there too (with --storage $STORAGE), or use a shared storage"
}

do_install() {
  local watch_lines=()
  if ((!WATCH)) && [[ $(read_kv "$STATE/install" watch) == 1 ]]; then
    WATCH=1   # installed before: kept, and updated with the rest
  fi
  if ((PACKAGE)); then
    say "the phoenix-hook package is installed: using its hookscript and Debian's python3 (no venv)"
  else
    install_venv
    install_command
  fi
  ensure_snippets_content
  activate_storage
  install_snippet
  install_settings
  if ((PACKAGE)); then
    remove_old_venv                              # the snippet above no longer runs it
  else
    install_logrotate                            # the package ships its own (a conffile)
  fi
  if ((WATCH)); then
    install_watch
    if ((PACKAGE)); then
      watch_lines=("watch=1" "templates=$PVE_TEMPLATES")   # the unit is the package's
    else
      watch_lines=("watch=1" "unit=$SYSTEMD_DIR/$UNIT" "templates=$PVE_TEMPLATES")
    fi
  fi
  if ((PACKAGE)); then
    write_lines "$STATE/install" "mode=package" "storage=$STORAGE" "volid=$VOLID" "snippet=$SNIPPET_PATH" \
      ${watch_lines[@]+"${watch_lines[@]}"}
    convert_old_records
    done_say "installed: hookscript $VOLID from the phoenix-hook package"
  else
    write_lines "$STATE/install" "mode=venv" "storage=$STORAGE" "volid=$VOLID" \
      "snippet=$SNIPPET_PATH" "prefix=$PREFIX" "bindir=$BINDIR" "logrotate=$LOGROTATE_RULE" \
      ${watch_lines[@]+"${watch_lines[@]}"}
    convert_old_records
    done_say "installed: $BINDIR/phoenix-hook -> $VENV/bin/phoenix-hook"
  fi
  if ((${#ATTACH[@]})); then
    attach_requested
    warn_other_nodes
  fi
  if ((FAILED)); then exit "$EXIT_FAILED"; fi
  if ((${#SKIPPED[@]})); then
    say "not attached because they have another hookscript: ${SKIPPED[*]} (rerun with --chain to attach them anyway)"
    exit "$EXIT_SKIPPED"
  fi
}

# --- uninstall -------------------------------------------------------------
# Give one recorded guest back what it had before.  Returns 1 if the guest
# still carries our hookscript afterwards.
restore_guest() {
  local vmid=$1 kind prev label tool file=$GUEST_STATE/$1
  kind=$(read_kv "$file" type)
  prev=$(read_kv "$file" previous)
  [[ $kind == vm ]] || kind=ct
  label=$(label_for "$kind")
  tool=$(tool_for "$kind")
  if ! command -v "$tool" >/dev/null 2>&1 || ! read_guest "$vmid" "$kind"; then
    # Destroyed, or migrated: its chain record (cluster-wide) stays for the node
    # it lives on now, whose --uninstall gives it back.
    say "$label $vmid no longer exists on this node; nothing to restore"
    change rm -f "$file"
    return 0
  elif [[ $G_HOOK != "$VOLID" ]]; then
    say "$label $vmid no longer uses $VOLID (hookscript: ${G_HOOK:-none}); left as it is"
  elif [[ -n $prev ]]; then
    if ! guest_set "$tool" "$vmid" --hookscript "$prev"; then
      warn "$label $vmid: could not restore its hookscript $prev ($SET_ERR); it keeps phoenix-hook"
      return 1
    fi
    done_say "$label $vmid: hookscript $prev restored"
  else
    if ! guest_set "$tool" "$vmid" --delete hookscript; then
      warn "$label $vmid: could not remove its hookscript ($SET_ERR); it keeps phoenix-hook"
      return 1
    fi
    done_say "$label $vmid: hookscript removed (it had none before)"
  fi
  change rm -f "$file"
  [[ $G_HOOK != "$VOLID" || -z $prev ]] || change rm -f "$CHAIN_DIR/$vmid.json"
}

# Guests that carry our volid without a record (attached by hand, cloned from
# an attached guest): their next start would fail once the snippet is gone.
detach_unrecorded() {
  local kind vmid tool label ids=()
  for kind in ct vm; do
    tool=$(tool_for "$kind")
    command -v "$tool" >/dev/null 2>&1 || continue
    "$tool" list >"$TMPD/list" 2>/dev/null || continue
    mapfile -t ids < <(list_vmids "$TMPD/list")
    for vmid in ${ids[@]+"${ids[@]}"}; do
      [[ -f $GUEST_STATE/$vmid ]] && continue
      read_guest "$vmid" "$kind" || continue
      [[ $G_HOOK == "$VOLID" ]] || continue
      label=$(label_for "$kind")
      local prev=''
      if chain_matches "$vmid"; then prev=$(chain_value "$CHAIN_DIR/$vmid.json" volid); fi
      if [[ -n $prev ]]; then
        # Migrated here from the node that chained it: give it back its hookscript.
        if guest_set "$tool" "$vmid" --hookscript "$prev"; then
          change rm -f "$CHAIN_DIR/$vmid.json"
          done_say "$label $vmid: hookscript $prev restored (chained on another node)"
        else
          warn "$label $vmid: could not restore its hookscript $prev ($SET_ERR); it keeps phoenix-hook"
          FAILED=1
        fi
      elif guest_set "$tool" "$vmid" --delete hookscript; then
        done_say "$label $vmid used $VOLID without a record (a clone?); hookscript removed"
      else
        warn "$label $vmid: could not remove its hookscript $VOLID ($SET_ERR); it keeps phoenix-hook"
        FAILED=1
      fi
    done
  done
}

# "CT 201 (pve2), VM 300 (pve3)" from volid_refs lines on stdin.
guest_list() {
  awk '{ printf "%s%s %s (%s)", (NR > 1 ? ", " : ""), ($2 == "vm" ? "VM" : "CT"), $3, $1 } END { if (NR) print "" }'
}

# The snippet goes only when no guest that can reach this copy still names
# it: on shared storage (NFS, CephFS, CIFS: one file for the whole cluster)
# guests of other nodes may, and their next start would fail with
# "hookscript ... does not exist".  Snapshots keep their hookscript line:
# after a rollback the guest names the file again, so they are listed.
remove_snippet() {
  local snippet=$1 shared=0 refs users snaps restore_hint
  if read_storage "$STORAGE"; then
    [[ $ST_SHARED == 1 || " nfs cifs cephfs glusterfs " == *" $ST_TYPE "* ]] && shared=1
  fi
  refs=$(volid_refs "$VOLID")
  ((shared)) || refs=$(printf '%s\n' "$refs" | awk -v n="$NODE" 'NF && $1 == n')
  # This node's guests were all detached above (or nothing gets here); those of
  # other nodes use this very file only when the storage is shared.
  users=$(printf '%s\n' "$refs" | awk -v n="$NODE" 'NF && $1 != n && ($4 == "-" || $4 == "PENDING")' |
    sort -u -k1,1 -k3,3n | guest_list)
  if [[ -n $users ]]; then
    say "kept the hookscript $snippet: storage '$STORAGE' is shared and guests of other nodes still use it: $users (run install.sh --uninstall on those nodes; the last one removes it)"
    return 0
  fi
  change rm -f "$snippet"
  done_say "removed the hookscript $snippet"
  snaps=$(printf '%s\n' "$refs" | awk 'NF && $4 != "-" && $4 != "PENDING"' | sort -u -k1,1 -k3,3n -k4,4 |
    awk '{ key = $1 " " $2 " " $3; if (key != last) { if (NR > 1) print line; line = key " " $4; last = key } else line = line "," $4 }
         END { if (NR) print line }')
  while read -r node kind vmid names; do
    [[ -n $vmid ]] || continue
    warn "$(label_for "$kind") $vmid (node $node): snapshot(s) $names still name $VOLID; after a rollback it cannot start until you run: $(tool_for "$kind") set $vmid --delete hookscript"
  done <<<"$snaps"
  restore_hint="pct set VMID --delete hookscript (qm set for a VM)"
  say "backups made while a guest had $VOLID keep it too: after restoring one, run $restore_hint before starting it"
}

do_uninstall() {
  local f vmid snippet link recorded rule
  recorded=$(read_kv "$STATE/install" storage)
  if [[ -n $recorded ]]; then STORAGE=$recorded; VOLID=$STORAGE:snippets/$SNIPPET_NAME; fi
  recorded=$(read_kv "$STATE/install" prefix); [[ -z $recorded ]] || PREFIX=$recorded
  recorded=$(read_kv "$STATE/install" bindir); [[ -z $recorded ]] || BINDIR=$recorded
  VENV=$PREFIX/venv

  if [[ -d $GUEST_STATE ]]; then
    for f in "$GUEST_STATE"/*; do
      [[ -f $f ]] || continue
      vmid=${f##*/}
      [[ $vmid =~ ^[0-9]+$ ]] || continue
      restore_guest "$vmid" || FAILED=1
    done
  fi
  detach_unrecorded
  if ((FAILED)); then
    die "$EXIT_FAILED" "some guests still use $VOLID; kept the snippet, the venv and the state (fix the cause, e.g. a lock, and rerun --uninstall)"
  fi

  remove_watch
  snippet=$(read_kv "$STATE/install" snippet)
  [[ -n $snippet ]] || snippet=$(pvesm path "$VOLID" 2>/dev/null) || snippet=''
  if [[ -n $snippet && -f $snippet ]]; then
    remove_snippet "$snippet"
  fi
  # A package install has no venv of its own: one at the default prefix is not ours.
  if [[ $(read_kv "$STATE/install" mode) != package ]]; then
    link=$BINDIR/phoenix-hook
    if [[ -L $link && $(readlink "$link") == "$VENV/"* ]]; then
      change rm -f "$link"
      done_say "removed $link"
    fi
    if [[ -d $VENV ]]; then
      change rm -rf "$VENV"
      done_say "removed $VENV"
    fi
  fi
  rule=$(read_kv "$STATE/install" logrotate)
  if [[ -n $rule && -f $rule ]]; then
    change rm -f "$rule"
    done_say "removed the logrotate rule $rule"
  fi
  change rm -rf "$STATE" "$OLD_CHAIN_DIR"
  if ((DRY_RUN)); then
    say "dry run: would remove $PREFIX and $CHAIN_DIR if they are empty"
  else
    rmdir "$PREFIX" 2>/dev/null || true
    rmdir "$CHAIN_DIR" "$(dirname "$CHAIN_DIR")" 2>/dev/null || true   # records of other nodes' guests stay
  fi
  if package_installed; then
    say "the phoenix-hook package stays installed; remove it with: apt remove phoenix-hook"
  fi
  say "kept $CONF (your settings) and the decision log (log_file, default /var/log/phoenix-hook/); remove them by hand if you want"
}

PACKAGE=0
if package_installed && [[ -f $PKG_SHARE/hookscripts/phoenix-hook.py ]]; then
  PACKAGE=1
  HOOK_SRC=$PKG_SHARE/hookscripts/phoenix-hook.py
  [[ -f $CONF_SRC ]] || CONF_SRC=$PKG_SHARE/conf/phoenix-hook.conf
fi
if ((UNINSTALL)); then do_uninstall; else do_install; fi
exit 0
