"""A stand-in for the interpreter install.sh creates its venv with.

Called as `fake_python.py STATE_DIR WRAPPER_PATH ARGS...` by a wrapper.
`-m venv [opts] DIR` makes DIR/bin/python3 (another such wrapper);
`-m pip install ... SRC` puts an executable `phoenix-hook` next to the
interpreter, as pip would for the console script; `-c CODE` succeeds.
Every call is logged to STATE_DIR/calls.log as ["python", WRAPPER, ARGS...].
Lets the tests check what install.sh asks of Python without a real venv.
"""
import json
import os
import sys

STATE, WRAPPER, ARGS = sys.argv[1], sys.argv[2], sys.argv[3:]

with open(os.path.join(STATE, "calls.log"), "a") as f:
    f.write(json.dumps(["python", WRAPPER] + ARGS) + "\n")

if ARGS[:2] == ["-m", "venv"]:
    venv = ARGS[-1]
    os.makedirs(os.path.join(venv, "bin"), exist_ok=True)
    with open(WRAPPER) as f:
        text = f.read()
    dst = os.path.join(venv, "bin", "python3")
    with open(dst, "w") as f:
        f.write(text)
    os.chmod(dst, 0o755)
elif ARGS[:3] == ["-m", "pip", "install"]:
    exe = os.path.join(os.path.dirname(WRAPPER), "phoenix-hook")
    with open(exe, "w") as f:
        f.write("#!/bin/sh\necho phoenix-hook stand-in\n")
    os.chmod(exe, 0o755)
elif ARGS[:1] == ["-c"]:
    pass
else:
    sys.stderr.write(f"fake python: unsupported arguments {ARGS}\n")
    sys.exit(2)
