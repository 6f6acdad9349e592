"""`phoenix-hook watch` and the post-start announcements: after a guest has started.

A start-time check cannot see a device that takes a guest's address an hour
later. The watch listens on this node's bridges for frames that speak for a
guest's static address from a MAC that is not the guest's (RFC 5227 section
2.4, and its IPv6 counterpart), and alerts the way Proxmox admins are
alerted. Pure parts: targets.py (what is watched, where it is heard),
rules.py (what a frame means), limits.py (rate limits, open conflicts),
events.py (the words). Edges: configs.py (the config tree), channels.py
(journal, JSON log, PVE notifications, webhook, metrics), monitor.py (the
loop), announce.py (post-start announcements).
"""
