"""Check a plan before anything is created: config-level rules (plan.py) plus wire probes.

The Python API for orchestrators:

    import phoenix_hook
    report = phoenix_hook.preflight("phoenix_lxc_configs.json", [951, 952])
    report = phoenix_hook.preflight(["lxc_configs.json", "vm_configs.json"])
    if report.exit_code:            # 0 clear, 1 conflict, 3 could not check
        raise SystemExit(report.table())

`preflight()` raises plan.PlanError (bad plan, unknown CTID), settings.SettingsError
and pve.SourceError (guest configs unreadable); everything it found is in the
report. The wire part reuses check.py: the planned NICs become Guest/Nic
objects, check.plan_nic turns them into acd.Candidates, and run_check probes
them from the host bridge, as the hookscript would at pre-start.
"""
from __future__ import annotations

import os
from phoenix_hook.records import dataclass, field

from phoenix_hook.checks.report import Finding, GuestResult, NicResult, Report, table


@dataclass
class PlanFinding(Finding):
    """A Finding that knows its kind and every CTID involved (JSON: "kind", "vmids")."""
    kind: str = ""
    vmids: list = field(default_factory=list)

    def as_conflict(self) -> dict:
        return dict(super().as_conflict(), kind=self.kind, vmids=list(self.vmids))

    def as_warning(self) -> dict:
        return dict(super().as_warning(), kind=self.kind, vmids=list(self.vmids))


@dataclass
class PreflightReport(Report):
    """check's report, with the planned guests under "plan" instead of "guests"."""
    probed: bool = True

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "plan": [g.to_json() for g in self.guests]}

    def table(self, color: bool = False, width: int | None = None) -> str:
        return table(self, color=color, width=width)

    @property
    def findings(self) -> list[PlanFinding]:
        return [c for g in self.guests for n in g.nics for c in n.conflicts]


def _is_paths(plan) -> bool:
    return isinstance(plan, (list, tuple)) and bool(plan) and all(isinstance(p, (str, os.PathLike)) for p in plan)


def _as_plan(plan, origin):
    """(entries, notes, origin) from a path, several paths, parsed JSON or PlanEntry objects."""
    from phoenix_hook.checks import plan as planmod
    if isinstance(plan, (str, os.PathLike)):
        entries, notes = planmod.read_plan_file(os.fspath(plan))
        return entries, notes, os.fspath(plan)
    if _is_paths(plan):
        paths = [os.fspath(p) for p in plan]
        entries, notes = planmod.combine(planmod.read_plan_file(p) for p in paths)
        return entries, notes, ", ".join(paths)
    if isinstance(plan, (list, tuple)) and plan and all(isinstance(e, planmod.PlanEntry) for e in plan):
        return list(plan), [], origin
    entries, notes = planmod.read_plan(plan, origin)
    return entries, notes, origin


def _from_issue(i) -> PlanFinding:
    return PlanFinding(source="plan" if i.kind.startswith("plan-") else "config", detail=i.detail,
                       mac=i.mac, vmid=i.vmids[1] if len(i.vmids) > 1 else None, node=i.node,
                       line=i.detail.split(": ", 1)[-1], kind=i.kind, vmids=list(i.vmids))


def preflight(plan, ctids=None, *, settings=None, source=None, probe: bool = True,
              timeout_ms: int | None = None, facts=None, wire_factory=None, describe=None,
              origin: str = "plan") -> PreflightReport:
    """Check a plan (a path, a list of paths, parsed JSON in any shape, or PlanEntry objects).

    Several plan files are one plan: an address planned in two of them is a
    finding naming both. ctids: check only these guests (against the whole
    plan and the cluster).
    settings: a settings.Settings (default: the settings file); source: a
    FileSource/ApiSource (default: sources.open_source). probe=False keeps to
    the config-level rules. facts/wire_factory/describe: check.run_check's seams.
    """
    from phoenix_hook.checks import plan as planmod
    from phoenix_hook.checks.check import Options, interfaces_needed, read_host_facts, run_check

    entries, notes, origin = _as_plan(plan, origin)
    wanted = [int(c) for c in (ctids or [])]
    selected = planmod.select(entries, wanted, origin, notes)
    notes = [n for n in notes if not wanted or n.vmid in wanted]
    if settings is None:
        raise TypeError("preflight needs settings; phoenix_hook.preflight() reads the settings file")
    if source is None:
        from phoenix_hook.pve.sources import open_source
        source = open_source(settings)
    from phoenix_hook.pve.sources import node_addresses, running_checker
    cluster = source.guests()
    node_ips = node_addresses(source)
    guests = planmod.to_guests(selected)
    if facts is None:
        facts = read_host_facts(interfaces_needed(guests)) if probe else _local_only()
    ignored = settings.ignored if settings.ignore else None
    issues = planmod.check_plan(entries, selected, cluster, dhcp_ranges=settings.dhcp_ranges,
                                host_ips=facts.local_ips, node_ips=node_ips, ignored=ignored)

    if probe:
        existing = {(g.vmid, g.type): g for g in cluster}
        is_running = running_checker(source)

        def running(vmid, gtype):
            # The guest answering from its own planned MAC is itself, not a
            # conflict (acd.judge): true when it exists with that MAC and runs.
            g = existing.get((vmid, gtype))
            if g is None:
                return False
            planned = {e.mac for e in selected if e.vmid == vmid and e.mac}
            return bool(planned & {n.hwaddr for n in g.nics}) and is_running(vmid, gtype)
        opts = Options(timeout=timeout_ms, stop_on_first=False, running=running)
        base = run_check(guests, settings, opts, load_cluster=lambda: cluster, facts=facts,
                         wire_factory=wire_factory, describe=describe)
        results = base.guests
    else:
        results = [_unprobed(g) for g in guests]

    defaulted = {(e.vmid, e.nic) for e in selected if e.bridge_default}
    owners: dict = {}
    for g in cluster:
        for n in g.nics:
            if n.hwaddr:
                owners.setdefault(n.hwaddr, []).append(g.vmid)
    for gr in results:
        for nr in gr.nics:
            # Config-level findings are plan.py's, more precise than check's
            # config warnings and host check; keep the wire's own findings.
            wire = [c for c in nr.conflicts if c.source == "arp"]
            nr.warnings = []
            nr.conflicts = [_from_issue(i) for i in issues.get((gr.vmid, nr.nic), [])]
            for c in wire:
                nr.conflicts.append(PlanFinding(
                    source="arp", detail=c.detail, mac=c.mac, vendor=c.vendor, line=c.line,
                    kind="in-use-on-wire", vmids=[gr.vmid] + [v for v in owners.get(c.mac, []) if v != gr.vmid]))
            if nr.conflicts:
                nr.verdict = "conflict"
            if (gr.vmid, nr.nic) in defaulted:
                gr.notes.append(f"{nr.nic}: " + (planmod.DEFAULT_BRIDGE_NOTE if probe
                                                 else planmod.DEFAULT_BRIDGE_NOTE_NO_PROBE))
    # What the plan leaves out is said: a note on its guest, which may have no NIC at all.
    by_vmid = {gr.vmid: gr for gr in results}
    for n in notes:
        gr = by_vmid.get(n.vmid)
        if gr is None:
            gr = by_vmid[n.vmid] = GuestResult(vmid=n.vmid, type=n.type, name=n.name)
            results.append(gr)
        gr.notes.append(n.text)
    results.sort(key=lambda gr: gr.vmid)
    return PreflightReport(guests=results, probed=probe)


def _local_only():
    from phoenix_hook.checks.check import HostFacts
    from phoenix_hook.net.hostnet import local_ipv4
    return HostFacts(local_ips=local_ipv4())


def _unprobed(g) -> GuestResult:
    gr = GuestResult(vmid=g.vmid, type=g.type, name=g.name)
    for n in g.nics:
        if n.address:
            verdict, note = "clear", "config-level checks only (not probed)"
        else:
            mode = n.ip or "none"
            verdict, note = "skipped", f"ip={mode}, no static IPv4 address" if n.ip else "no IPv4 address planned"
        gr.nics.append(NicResult(nic=n.key, ip=n.address, bridge=n.bridge, vlan=n.tag,
                                 verdict=verdict, note=note))
    return gr
