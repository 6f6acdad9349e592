"""Guest configs through the Proxmox VE API (proxmoxer): for machines that are not PVE nodes.

The same small interface as pve.FileSource: locate(vmid), read(cf),
guest(vmid, with_pending=False), config_files(node, types), guests(node, types),
plus node_addresses() and status(vmid). The calls (REFERENCE section 5):

    GET /cluster/resources?type=vm             id, type, vmid, node, name, status, template
    GET /nodes/{node}/{lxc|qemu}/{vmid}/config  the config as a flat JSON object
                                                (current=1: without pending values)
    GET /cluster/status                         nodes and their addresses

The configs are fetched by a pool of threads, one proxmoxer client (one
requests session, one kept-alive connection) per thread, so 1000 guests
cost about 1000/WORKERS round trips in a row, not 1000.

Every failure becomes a pve.SourceError whose str() is one line that names
what failed and what to do: ApiSettingsError for what the local settings
or token file got wrong (the CLI exits 2), ApiError for what the API or the
network answered (exit 3). proxmoxer and requests are imported only here,
and only when an ApiSource is built.

Both proxmoxer 2.x (pip) and Debian 12's python3-proxmoxer 1.2 work: 1.2
keeps AuthenticationError in backends.https, has no local backend (backend
= local runs pvesh itself here, _Pvesh) and passes no timeout to requests
(_bounded gives every request the configured one).
"""
from __future__ import annotations

import errno
import os
import re
import stat
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from phoenix_hook.pve.guest import Guest, parse_config
from phoenix_hook.errors import ApiError, ApiSettingsError, NoSuchGuest, SourceError
from phoenix_hook.pve.files import ConfigFile

WORKERS = 16                 # concurrent config fetches (pveproxy serves many per worker)
API_TYPES = {"lxc": "lxc", "qemu": "qemu"}
SKIP_KEYS = {"description", "digest"}   # multi-line or meaningless as config lines




class GuestConfigGone(ApiError):
    """One guest's config could not be fetched though the API itself answered: 404, or 500
    "Configuration file ... does not exist" (deleted or migrated after /cluster/resources
    listed it). In guests() that guest gets this as its error and the run goes on."""


# pve-guest-common AbstractConfig::load_config: "Configuration file '...' does not exist";
# qemu-server/pve-container check_vm_exists-style helpers: "unable to find configuration file".
_GONE_RE = re.compile(r"configuration file .* does not exist|unable to find configuration file|"
                      r"no such (vm|ct|container|guest)", re.I)


API_KEYS = ("host", "port", "user", "token_name", "token_file", "backend", "verify_ssl", "timeout")
API_BACKENDS = ("https", "local")
# Never echoed in a message: a secret pasted into the wrong key would end up
# on a terminal or in a log (the token's secret belongs in token_file's file).
SECRET_KEYS = ("token_name", "token_file")
_TOKEN_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*$")          # pve-access-control: pve-tokenid
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def check_api(raw: dict, where: str = "the settings file") -> dict:
    """[api] as settings.parse keeps it (raw strings) -> typed values, or ApiSettingsError.

    Checked here, where the API is used, not when the settings are read: the
    hookscript reads the same file and must never stop over [api]. Values
    already typed (port 8006, timeout 2.0, verify_ssl False from Python
    callers) are accepted as well; an empty value means the default.
    Whether the set is complete for the backend is ApiSource's check.
    """
    out: dict = {}
    for key, value in raw.items():
        if key not in API_KEYS:
            raise ApiSettingsError(f"{where}: unknown key '{key}' in [api]; "
                                   f"known keys: {', '.join(sorted(API_KEYS))}")
        if value is None:
            continue
        if isinstance(value, bool):
            if key != "verify_ssl":
                raise _bad_api(where, key, value, "a value, not true/false")
            out[key] = value
            continue
        v = str(value).strip()
        if not v:
            continue

        def bad(allowed, _k=key, _v=v):
            return _bad_api(where, _k, _v, allowed)
        if key == "host":
            if "://" in v or "/" in v or any(c.isspace() for c in v):
                raise bad("the API host name or address only, e.g. pve1.example.com (no https://, no path)")
        elif key == "port":
            if not (v.isascii() and v.isdigit()) or not 1 <= int(v) <= 65535:
                raise bad("a TCP port from 1 to 65535 (PVE: 8006)")
            v = int(v)
        elif key == "user":
            name, at, realm = v.partition("@")
            if not name or not at or not realm or "!" in v or any(c.isspace() for c in v):
                raise bad("USER@REALM, e.g. root@pam (put the token ID in token_name)")
        elif key == "token_name":
            if _UUID_RE.match(v):
                raise bad("the token ID, e.g. phoenix; this looks like the token's secret, which "
                          "belongs in the file named by token_file")
            if not _TOKEN_ID_RE.match(v):
                raise bad("the token ID, e.g. phoenix (letters, digits, . _ -)")
        elif key == "token_file":
            if not v.startswith("/"):
                raise bad("an absolute path to a file holding the token secret (mode 600)")
        elif key == "backend":
            if v not in API_BACKENDS:
                raise bad(" | ".join(API_BACKENDS))
        elif key == "verify_ssl":
            low = v.lower()
            if low in ("1", "yes", "true", "on"):
                v = True
            elif low in ("0", "no", "false", "off"):
                v = False
            elif not v.startswith("/"):
                raise bad("true, false, or the absolute path of a CA file (e.g. /etc/pve/pve-root-ca.pem)")
        elif key == "timeout":
            try:
                f = float(v)
            except ValueError:
                f = -1.0
            if not 0.5 <= f <= 300:       # also NaN
                raise bad("seconds from 0.5 to 300")
            v = f
        out[key] = v
    return out


def _bad_api(where, key, value, allowed) -> ApiSettingsError:
    if key in SECRET_KEYS:
        return ApiSettingsError(f"{where}: [api] {key} is not valid (its value is not shown: it may "
                                f"be a secret); use {allowed}")
    return ApiSettingsError(f"{where}: [api] {key} = {_one_line(repr(value), 80)} is not valid; use {allowed}")


def read_token(path: str) -> str:
    """The token secret from token_file. Refuses a file that group or others can read.

    Open first, then check the opened file (fstat): a stat of the path
    followed by an open could check one file and read another swapped in
    between. O_NOFOLLOW: a symlink is refused, not followed; O_NONBLOCK: a
    FIFO put there cannot hang the open (it fails the regular-file check).
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ApiSettingsError(f"token_file {path} is a symbolic link; point token_file at the "
                                   f"file holding the API token secret itself (chmod 600)") from None
        raise ApiSettingsError(f"cannot read token_file {path}: {exc.strerror}; put the API token "
                               f"secret in it (chmod 600) or fix token_file in [api]") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ApiSettingsError(f"token_file {path} is not a regular file; point token_file at the "
                                   f"file holding the API token secret")
        if st.st_mode & 0o077:
            raise ApiSettingsError(f"token_file {path} is readable by group or others (mode "
                                   f"{stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}")
        with os.fdopen(fd, encoding="utf-8") as f:
            fd = -1                               # closed by the file object from here on
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ApiSettingsError(f"cannot read token_file {path}: {why}; put the API token secret "
                               f"in it (chmod 600)") from None
    finally:
        if fd >= 0:
            os.close(fd)
    secret = text.strip()
    # The secret alone is the documented form; a whole "USER@REALM!ID=SECRET"
    # (the Authorization header's value, as some guides store it) works too.
    if "=" in secret and "!" in secret.split("=", 1)[0]:
        secret = secret.split("=", 1)[1].strip()
    if not secret or any(c.isspace() for c in secret):
        raise ApiSettingsError(f"token_file {path} must hold the API token secret alone, on one line "
                               f"(the 'value' shown by pveum user token add)")
    return secret


def config_text(config: dict) -> str:
    """A config from the API (flat JSON) as the text of a .conf file, for guest.parse_config.

    The API gives the same strings as the file (netN, ipconfigN, hostname...);
    numbers come as numbers and raw `lxc.*` keys as a list of [key, value] pairs
    (written back as lines, so raw lxc.net.N NICs are read); keep only single-line values.
    """
    lines = []
    for key, value in config.items():
        if key == "lxc" and isinstance(value, list):
            # raw keys as [[key, value], ...]: the lines parse_pct_config read them from
            lines += [f"{k}: {v}" for k, v in (p for p in value if isinstance(p, list) and len(p) == 2)
                      if isinstance(k, str) and isinstance(v, str) and k.startswith("lxc.")
                      and "\n" not in k + v and "\r" not in k + v]
            continue
        if key in SKIP_KEYS or isinstance(value, (dict, list)) or value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        text = str(value)
        if "\n" in text or "\r" in text or not isinstance(key, str):
            continue
        lines.append(f"{key}: {text}")
    return "\n".join(lines) + "\n"


def _one_line(text, limit: int = 160) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


class ApiSource:
    """Guest configs from the Proxmox VE API."""

    def __init__(self, api: dict, node: str | None = None, settings_path: str | None = None,
                 workers: int = WORKERS, warn=None):
        self.where = settings_path or "the settings file"
        self.api = check_api(api, self.where)
        self.node = node
        self.workers = max(1, workers)
        self.backend = self.api.get("backend", "https")
        self.timeout = self.api.get("timeout", 10.0)
        self._local = threading.local()
        self._resources: list | None = None
        warn = warn or (lambda line: sys.stderr.write(line + "\n"))
        if self.backend == "https":
            missing = [k for k in ("host", "user", "token_name", "token_file") if not self.api.get(k)]
            if missing:
                raise ApiSettingsError(f"[api] in {self.where} lacks {', '.join(missing)}; the API "
                                       f"needs host, user, token_name and token_file (or backend = local on a node)")
            self.port = self.api.get("port", 8006)
            self.target = f"https://{self.api['host']}:{self.port}"
            self.verify = self.api.get("verify_ssl", True)
            self._secret = read_token(self.api["token_file"])
            if self.verify is False:
                warn(f"phoenix-hook: warning: verify_ssl = false in [api] of {self.where}: the API's TLS "
                     f"certificate is not checked and the token can be intercepted; set verify_ssl to "
                     f"the PVE CA file (/etc/pve/pve-root-ca.pem, copied here) instead")
            elif isinstance(self.verify, str) and not os.path.isfile(self.verify):
                raise ApiSettingsError(f"verify_ssl = {self.verify} in [api] of {self.where}: no such "
                                       f"CA file; copy /etc/pve/pve-root-ca.pem there or fix the path")
        else:
            self.target = "pvesh on this node"
        try:
            import proxmoxer  # noqa: F401  (fail here, once, with a clear line)
            if self.backend == "https":
                import requests  # noqa: F401
        except ImportError as exc:
            raise ApiSettingsError(f"the API source needs the Python package {exc.name}; install "
                                   f"phoenix-hook with its dependencies (pip install proxmoxer requests)") from None

    # -- the connection ---------------------------------------------------------
    def _client(self):
        """One proxmoxer client per thread: a requests.Session is not meant to be shared."""
        c = getattr(self._local, "client", None)
        if c is None:
            if self.backend == "local":
                c = _Pvesh(self.timeout)
            else:
                from proxmoxer import ProxmoxAPI
                try:
                    c = ProxmoxAPI(self.api["host"], port=self.port, user=self.api["user"],
                                   token_name=self.api["token_name"], token_value=self._secret,
                                   verify_ssl=self.verify, timeout=self.timeout, service="PVE")
                except NotImplementedError as exc:     # proxmoxer's config_failure
                    raise ApiSettingsError(f"[api] in {self.where}: {exc}") from None
                _bounded(c, self.timeout)
            self._local.client = c
        return c

    def _get(self, path: str, gone_ok: bool = False, **params):
        """GET one API path; every failure as one ApiError line. gone_ok: a 404 or a
        "does not exist" 500 is a GuestConfigGone (one guest's config, not the API, failed)."""
        what = f"GET {path}"
        try:
            data = self._client()(path).get(**params)
        except SourceError:
            raise
        except Exception as exc:                 # translated below; nothing escapes as a traceback
            err = self._translate(exc, what)
            if gone_ok and _is_gone(exc):
                err = GuestConfigGone(f"{err}; the guest was probably deleted or migrated while "
                                      f"this ran (check it with pct/qm config)")
            raise err from None
        if isinstance(data, dict) and set(data) == {"errors"}:
            raise ApiError(f"{self.target}: {what} did not answer JSON ({_one_line(data['errors'], 80)}); "
                           f"is host/port the Proxmox VE API (port 8006)?")
        return data

    def _translate(self, exc: Exception, what: str) -> SourceError:
        from proxmoxer.core import ResourceException
        AuthenticationError = _authentication_error()
        who = f"{self.api.get('user')}!{self.api.get('token_name')}" if self.backend == "https" else "root"
        if isinstance(exc, ResourceException):
            code = exc.status_code
            detail = _resource_detail(exc)
            if code == 401:
                return ApiError(f"{self.target} refused the API token {who} ({what}: 401 {detail}); "
                                f"check token_file and that the token exists (pveum user token list)")
            if code == 403:
                return ApiError(f"API token {who} may not {what} (403 {detail}); grant it read access, "
                                f"e.g. pveum acl modify / --tokens '{who}' --roles PVEAuditor")
            if code == 595 or code == 596:
                return ApiError(f"{self.target}: {what} failed in the proxy or TLS ({code} {detail})")
            return ApiError(f"{self.target}: {what} failed: {code} {detail}")
        if isinstance(exc, AuthenticationError):
            return ApiError(f"{self.target} refused the login of {who}: {_one_line(exc, 100)}; check [api]")
        if self.backend == "local":
            import subprocess
            if isinstance(exc, FileNotFoundError):
                return ApiSettingsError("backend = local runs pvesh, which is not here: use it on a "
                                        "Proxmox VE node, or set host and a token in [api]")
            if isinstance(exc, subprocess.TimeoutExpired):
                return ApiError(f"pvesh did not answer {what} within timeout = {self.timeout:g} s")
            return ApiError(f"pvesh {what} failed: {_one_line(exc, 120)}")
        import requests.exceptions as rx
        if isinstance(exc, rx.SSLError):
            return ApiError(f"TLS to {self.target} failed ({_tls_reason(exc)}); set verify_ssl in [api] "
                            f"to the cluster's CA file (/etc/pve/pve-root-ca.pem)")
        if isinstance(exc, rx.Timeout):
            return ApiError(f"{self.target} did not answer {what} within timeout = {self.timeout:g} s; "
                            f"check host/port in [api] or raise timeout")
        if isinstance(exc, rx.ConnectionError):
            return ApiError(f"cannot connect to {self.target} ({_conn_reason(exc)}); check host and "
                            f"port in [api] and that pveproxy runs")
        if isinstance(exc, rx.RequestException):
            return ApiError(f"{self.target}: {what} failed: {_one_line(exc, 120)}")
        if isinstance(exc, (ValueError, KeyError, TypeError)):
            return ApiError(f"{self.target}: {what} gave an answer phoenix-hook cannot read "
                            f"({type(exc).__name__}: {_one_line(exc, 80)})")
        return ApiError(f"{self.target}: {what} failed: {type(exc).__name__}: {_one_line(exc, 120)}")

    # -- the FileSource interface --------------------------------------------
    def resources(self, refresh: bool = False) -> list[dict]:
        """/cluster/resources?type=vm, cached for this source's life (one command)."""
        if self._resources is None or refresh:
            data = self._get("cluster/resources", type="vm")
            if not isinstance(data, list):
                raise ApiError(f"{self.target}: GET cluster/resources gave {type(data).__name__}, "
                               f"not a list; is this the Proxmox VE API?")
            out = []
            for r in data:
                if not isinstance(r, dict) or r.get("type") not in API_TYPES:
                    continue
                try:
                    vmid = int(r.get("vmid", str(r.get("id", "")).rpartition("/")[2]))
                except (TypeError, ValueError):
                    continue
                if not r.get("node"):
                    continue
                out.append(dict(r, vmid=vmid))
            self._resources = out
        return self._resources

    def config_files(self, node: str | None = None, types=("lxc", "qemu")) -> list[ConfigFile]:
        out = [ConfigFile(r["vmid"], r["type"], str(r["node"]),
                          f"nodes/{r['node']}/{API_TYPES[r['type']]}/{r['vmid']}/config")
               for r in self.resources()
               if r["type"] in types and (node is None or r["node"] == node)]
        return sorted(out, key=lambda c: (c.vmid, c.node))

    def locate(self, vmid: int) -> ConfigFile:
        for cf in self.config_files():
            if cf.vmid == vmid:
                return cf
        raise NoSuchGuest(f"guest {vmid} is not in /cluster/resources of {self.target}; check the "
                          f"VMID, and that the token may see it (VM.Audit)")

    def _name(self, vmid: int) -> str | None:
        for r in self.resources():
            if r["vmid"] == vmid and isinstance(r.get("name"), str):
                return r["name"]
        return None

    def status(self, vmid: int) -> str | None:
        """'running', 'stopped', ... from /cluster/resources (None: unknown guest)."""
        for r in self.resources():
            if r["vmid"] == vmid:
                return r.get("status")
        return None

    def fetch(self, cf: ConfigFile, with_pending: bool = False) -> dict:
        # Without current=1 the API merges pending values over the current
        # ones (pve-container API2/LXC/Config.pm, qemu-server API2/Qemu.pm).
        params = {} if with_pending else {"current": 1}
        data = self._get(cf.path, gone_ok=True, **params)
        if not isinstance(data, dict):
            raise ApiError(f"{self.target}: GET {cf.path} gave {type(data).__name__}, not a config object")
        return data

    def read(self, cf: ConfigFile, with_pending: bool = False) -> str:
        return config_text(self.fetch(cf, with_pending))

    def guest(self, vmid: int, with_pending: bool = False) -> Guest:
        cf = self.locate(vmid)
        return parse_config(self.read(cf, with_pending), vmid, cf.type, cf.node)

    def guests(self, node: str | None = None, types=("lxc", "qemu")) -> list[Guest]:
        """Every guest, current values; configs fetched concurrently.

        A guest whose config alone is gone (GuestConfigGone: deleted or
        migrated since /cluster/resources) becomes a Guest with that error,
        as FileSource does for an unreadable file. Any other failure (auth,
        TLS, timeout, 5xx of the API) ends the run: the rest is cancelled and
        it is raised as its one line.
        """
        files = self.config_files(node, types)
        if not files:
            return []

        def one(cf):
            try:
                text = self.read(cf)
            except GuestConfigGone as exc:
                return Guest(vmid=cf.vmid, type=cf.type, node=cf.node, name=self._name(cf.vmid),
                             errors=(str(exc),))
            return parse_config(text, cf.vmid, cf.type, cf.node)
        workers = min(self.workers, len(files))
        if workers == 1:
            return [one(cf) for cf in files]
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="phx-api")
        try:
            return list(pool.map(one, files))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def live_interfaces(self, node: str, gtype: str, vmid: int):
        """A running guest's interfaces as pve/live.py reads them; None when it is not running.

        GET nodes/{node}/lxc/{vmid}/interfaces (PVE::LXC::get_interfaces, PVE 8.1+) or
        nodes/{node}/qemu/{vmid}/agent/network-get-interfaces ({"result": [...]}).
        A VM without a (running) agent is live.NoAgent; any other failure live.LiveError.
        """
        from phoenix_hook.pve import live
        path = (f"nodes/{node}/lxc/{vmid}/interfaces" if gtype == "lxc"
                else f"nodes/{node}/qemu/{vmid}/agent/network-get-interfaces")
        try:
            data = self._get(path)
        except ApiError as exc:
            why = str(exc)
            if live.NOT_RUNNING.search(why):
                return None
            if gtype == "qemu" and live.NO_AGENT.search(why):
                raise live.NoAgent(f"no QEMU guest agent answers, so its addresses cannot be read "
                                   f"(qm set {vmid} --agent enabled=1, and qemu-guest-agent in "
                                   f"the VM)") from None
            if " 501 " in why or "not implemented" in why:
                raise live.LiveError(f"{self.target} has no GET {path} (Proxmox VE 8.1 or later "
                                     f"has it)") from None
            raise live.LiveError(why) from None
        if data is None:
            return None                      # get_interfaces: the CT is not running
        return live.parse_interfaces(data)

    def node_addresses(self) -> dict[str, str]:
        """{address: node name} from /cluster/status (a standalone node lists itself)."""
        data = self._get("cluster/status")
        out = {}
        if isinstance(data, list):
            for item in data:
                if isinstance(item, dict) and item.get("type") == "node" and item.get("ip"):
                    out[str(item["ip"])] = str(item.get("name", "?"))
        return out


    # -- cluster coverage (audit) --------------------------------------------
    def nodes(self) -> list[str]:
        """Names of the cluster's online nodes (GET /nodes); an offline node cannot say
        what it has and is not judged."""
        data = self._get("nodes")
        return sorted(str(n["node"]) for n in (data if isinstance(data, list) else [])
                      if isinstance(n, dict) and n.get("node") and n.get("status", "online") == "online")

    def snippets(self, node: str, storage: str) -> set[str] | None:
        """The snippet volids on storage as node sees it
        (GET nodes/{node}/storage/{storage}/content?content=snippets). An empty set when the
        storage does not exist or is not enabled on that node (PVE answers 500 "storage ...
        does not exist" / "is not available"); None when the node could not be asked."""
        try:
            data = self._get(f"nodes/{node}/storage/{storage}/content", content="snippets")
        except ApiError as exc:
            words = str(exc)
            if "does not exist" in words or "not available" in words or "not enabled" in words:
                return set()
            return None
        return {str(v["volid"]) for v in (data if isinstance(data, list) else [])
                if isinstance(v, dict) and v.get("volid")}


def _authentication_error() -> type:
    """proxmoxer's AuthenticationError: in core since 2.0, in backends.https in 1.x."""
    try:
        from proxmoxer.core import AuthenticationError
    except ImportError:
        try:
            from proxmoxer.backends.https import AuthenticationError
        except ImportError:
            class AuthenticationError(Exception):  # noqa: N818  (matches nothing)
                pass
    return AuthenticationError


def _bounded(client, timeout: float) -> None:
    """Give every request of this client the timeout: proxmoxer 1.x passes none to requests
    (2.x takes it from the auth), and a silent API would then hold the command forever."""
    session = getattr(client, "_store", {}).get("session")
    if session is None or not hasattr(session, "request"):
        return
    request = session.request

    def bounded(method, url, *args, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = timeout
        return request(method, url, *args, **kwargs)
    session.request = bounded


class _Pvesh:
    """backend = local: `pvesh get PATH -key value --output-format json` on this node.

    What proxmoxer 2's local backend does (1.2 has none), with the child
    killed when the timeout passes. A failure is proxmoxer's ResourceException
    with the status pvesh printed ("500 ..."; 500 when it printed none), so
    _translate and _is_gone treat both backends alike.
    """

    def __init__(self, timeout: float):
        self.timeout = timeout

    def __call__(self, path: str):
        return _PveshPath(self, "/" + path.lstrip("/"))


class _PveshPath:
    def __init__(self, pvesh: _Pvesh, path: str):
        self.pvesh, self.path = pvesh, path

    def get(self, **params):
        import json
        import subprocess
        from proxmoxer.core import ResourceException
        argv = ["pvesh", "get", self.path]
        for key, value in params.items():
            argv += [f"-{key}", str(value)]
        argv += ["--output-format", "json"]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=self.pvesh.timeout,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            from http.client import responses as reasons
            m = re.match(r"(\d{3}) +", p.stderr)
            status = int(m.group(1)) if m else 500
            reason = reasons.get(status, "Error")
            message = _one_line(p.stderr[m.end():] if m else p.stderr, 120) or f"pvesh exited {p.returncode}"
            if message.startswith(reason):
                message = message[len(reason):].lstrip(": ") or reason
            raise ResourceException(status, reason, message)
        try:
            return json.loads(p.stdout)
        except ValueError:
            return {"errors": p.stdout}


def _is_gone(exc) -> bool:
    """A ResourceException saying that this one config is not there (see GuestConfigGone)."""
    from proxmoxer.core import ResourceException
    if not isinstance(exc, ResourceException):
        return False
    if exc.status_code == 404:
        return True
    return exc.status_code == 500 and bool(_GONE_RE.search(_resource_detail(exc)))


def _resource_detail(exc) -> str:
    """PVE puts its message in the HTTP reason phrase ("403 Permission check failed
    (/vms/951, VM.Audit)"), which proxmoxer passes on as content; parameter
    errors come as {"errors": {...}}."""
    parts = [str(exc.status_message or "")]
    content = str(exc.content or "").strip()
    if content and content != parts[0]:
        parts.append(content)
    if exc.errors:
        parts.append(str(exc.errors))
    return _one_line(": ".join(p for p in parts if p), 120)


def _tls_reason(exc) -> str:
    text = re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(exc))
    for needle in ("certificate verify failed", "self-signed certificate", "hostname mismatch",
                   "wrong version number", "unknown ca", "certificate has expired"):
        if needle in text:
            i = text.index(needle)
            return _one_line(text[i:].split("'")[0].split(")")[0].split('"')[0], 100)
    return _one_line(text, 100)


def _conn_reason(exc) -> str:
    text = str(exc)
    for needle in ("Connection refused", "Name or service not known", "No route to host",
                   "Network is unreachable", "Temporary failure in name resolution",
                   "Connection reset", "RemoteDisconnected", "nodename nor servname"):
        if needle in text:
            return needle
    return _one_line(text, 100)
