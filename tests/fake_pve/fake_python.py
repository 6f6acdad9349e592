"""A stand-in for the interpreter install.sh creates its venv with.

Called as `fake_python.py STATE_DIR WRAPPER_PATH ARGS...` by a wrapper.
`-m venv [opts] DIR` makes DIR/bin/python3 (another such wrapper) and
DIR/pyvenv.cfg naming the version; `-m pip install ... SRC` puts an
executable `phoenix-hook` next to the interpreter, as pip would for the
console script; `-c CODE` succeeds, printing the version ($FAKE_PY_VERSION,
default 3.11) when CODE asks for sys.version_info. An import of phoenix_hook
fails (ModuleNotFoundError, exit 1) when the venv holds a file BROKEN_IMPORT
(a venv left by another Python) or $FAKE_IMPORT_FAILS is set. A leading -I is
accepted. Every call is logged to STATE_DIR/calls.log as ["python", WRAPPER, ARGS...].
Lets the tests check what install.sh asks of Python without a real venv.
"""
import json
import os
import sys

STATE, WRAPPER, ARGS = sys.argv[1], sys.argv[2], sys.argv[3:]
VERSION = os.environ.get("FAKE_PY_VERSION", "3.11")

with open(os.path.join(STATE, "calls.log"), "a") as f:
    f.write(json.dumps(["python", WRAPPER] + ARGS) + "\n")

args = ARGS[1:] if ARGS[:1] == ["-I"] else ARGS
if args[:2] == ["-m", "venv"]:
    venv = args[-1]
    os.makedirs(os.path.join(venv, "bin"), exist_ok=True)
    with open(WRAPPER) as f:
        text = f.read()
    dst = os.path.join(venv, "bin", "python3")
    with open(dst, "w") as f:
        f.write(text)
    os.chmod(dst, 0o755)
    with open(os.path.join(venv, "pyvenv.cfg"), "w") as f:
        f.write(f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {VERSION}.2\n")
elif args[:3] == ["-m", "pip", "install"]:
    exe = os.path.join(os.path.dirname(WRAPPER), "phoenix-hook")
    with open(exe, "w") as f:
        f.write("#!/bin/sh\necho phoenix-hook stand-in\n")
    os.chmod(exe, 0o755)
elif args[:1] == ["-c"]:
    code = args[1] if len(args) > 1 else ""
    venv = os.path.dirname(os.path.dirname(WRAPPER))
    if "phoenix_hook" in code and (os.environ.get("FAKE_IMPORT_FAILS")
                                   or os.path.exists(os.path.join(venv, "BROKEN_IMPORT"))):
        sys.stderr.write("ModuleNotFoundError: No module named 'phoenix_hook'\n")
        sys.exit(1)
    if "version_info" in code:
        print(VERSION)
else:
    sys.stderr.write(f"fake python: unsupported arguments {ARGS}\n")
    sys.exit(2)
