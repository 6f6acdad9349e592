"""phoenix-hook: refuse a Proxmox VE guest start when its static IP is already in use.

Kept free of imports: the hookscript imports this package on every phase of
every guest start, and most phases must cost nothing.

Layers, bottom to top (DESIGN.md "Shape"): errors.py and paths.py; net/ (frames,
the wire, RFC 5227 / 4862 engines, host facts); pve/ (guest configs, their
sources, claims); checks/ (what we decide); cli/, hook.py and settings.py on top.
"""
__version__ = "0.1.0"


def preflight(plan, ctids=None, *, settings=None, **kwargs):
    """Check a plan before anything is created; the Python API for orchestrators.

        import phoenix_hook
        report = phoenix_hook.preflight("phoenix_lxc_configs.json", [951, 952])
        if report.exit_code:            # 0 clear, 1 conflict, 3 could not check
            raise SystemExit(report.table())

    settings: default the settings file ($PHOENIX_HOOK_CONF or
    /etc/phoenix-hook/phoenix-hook.conf). Other keywords: checks/preflight.py.
    """
    from phoenix_hook.checks.preflight import preflight as run
    if settings is None:
        from phoenix_hook.settings import load
        settings = load()
    return run(plan, ctids, settings=settings, **kwargs)
