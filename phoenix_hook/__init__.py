"""phoenix-hook: refuse a Proxmox VE guest start when its static IP is already in use.

Kept free of imports: the hookscript imports this package on every phase of
every guest start, and most phases must cost nothing.
"""
__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: `phoenix_hook.preflight(plan, ...)` imports the preflight module on
    # first use only, so `import phoenix_hook` (every hookscript phase) stays free.
    if name == "preflight":
        from importlib import import_module
        return import_module(".preflight", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
