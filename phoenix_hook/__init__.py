"""phoenix-hook: refuse a Proxmox VE guest start when its static IP is already in use.

Kept free of imports: the hookscript imports this package on every phase of
every guest start, and most phases must cost nothing.
"""
__version__ = "0.1.0"
