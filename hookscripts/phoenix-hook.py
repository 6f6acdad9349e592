#!/usr/bin/env python3
# Proxmox VE hookscript: refuses a guest start when one of its static IPv4 or
# IPv6 addresses is already in use on the LAN. PVE calls it as `<vmid> <phase>`.
# install.sh copies this file to a snippets storage and points the first line
# at its own virtualenv; any Python that can import phoenix_hook runs it.
import os
import sys

from phoenix_hook.hook import main

code = main()
# Leave without tearing the interpreter down (freeing every module costs a
# start a few ms of CPU, for nothing); what the hook printed goes out first.
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
