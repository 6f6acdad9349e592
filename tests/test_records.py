"""phoenix_hook.records behaves as dataclasses does for every option phoenix-hook uses.

Each case defines the same class twice, once with dataclasses and once with
records, and compares what a caller can observe.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoenix_hook import records

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def twins(frozen=False, slots=False):
    """(dataclasses version, records version) of one record class with every kind of field."""
    out = []
    for mod in (dataclasses, records):
        @mod.dataclass(frozen=frozen, slots=slots)
        class Nic:
            nic: str
            ip: str | None
            tag: int | None = None
            notes: list = mod.field(default_factory=list)
            flags: tuple = mod.field(default=())

            def label(self) -> str:
                return f"{self.nic}={self.ip}"
        out.append(Nic)
    return out


values = st.tuples(st.text(max_size=5), st.one_of(st.none(), st.text(max_size=8)),
                   st.one_of(st.none(), st.integers(1, 4094)), st.lists(st.integers(), max_size=3),
                   st.tuples(st.integers()))


@pytest.mark.parametrize("frozen,slots", [(False, False), (True, False), (True, True)])
@given(a=values, b=values)
def test_init_repr_eq_hash_as_dataclasses(frozen, slots, a, b):
    D, R = twins(frozen, slots)
    da, ra, db, rb = D(*a), R(*a), D(*b), R(*b)
    assert repr(ra) == repr(da)
    assert (ra == rb) == (da == db) and (ra != rb) == (da != db)
    assert ra == R(*a) and ra != da                  # another class is never equal
    assert ra.label() == da.label()
    if frozen:
        # With hashable values (a tuple for notes): equal records hash alike, and like the fields' tuple.
        ra2, rb2 = R(*a[:3], tuple(a[3]), a[4]), R(*b[:3], tuple(b[3]), b[4])
        assert hash(ra2) == hash(R(*a[:3], tuple(a[3]), a[4]))
        assert hash(ra2) == hash(D(*a[:3], tuple(a[3]), a[4]))
        assert (ra2 == rb2) <= (hash(ra2) == hash(rb2))
        with pytest.raises(TypeError):
            hash(R(*a[:3], [1], a[4]))                # a list field: unhashable, as dataclasses
    else:
        with pytest.raises(TypeError):
            hash(ra)
        with pytest.raises(TypeError):
            hash(da)


def test_defaults_factories_and_keywords():
    D, R = twins()
    for cls in (D, R):
        x, y = cls("net0", "10.0.0.1"), cls(ip="10.0.0.2", nic="net1", tag=20)
        assert (x.tag, x.notes, x.flags, y.tag, y.nic) == (None, [], (), 20, "net1")
        x.notes.append(1)
        assert cls("net0", None).notes == []          # every instance its own list
        assert cls.__match_args__ == ("nic", "ip", "tag", "notes", "flags")
        with pytest.raises(TypeError):
            cls("net0")                               # ip is required
        with pytest.raises(TypeError):
            cls("net0", "ip", bogus=1)
        assert cls.tag is None                        # a plain default stays a class attribute
        assert not hasattr(cls, "notes")              # a factory's does not


@pytest.mark.parametrize("slots", [False, True])
def test_frozen_refuses_assignment_and_deletion(slots):
    D, R = twins(frozen=True, slots=slots)
    for cls, err in ((D, dataclasses.FrozenInstanceError), (R, records.FrozenInstanceError)):
        x = cls("net0", "10.0.0.1")
        with pytest.raises(err):
            x.ip = "10.0.0.2"
        with pytest.raises(err):
            del x.ip
        with pytest.raises(AttributeError):           # both are AttributeErrors
            x.nic = "net9"
        assert x.ip == "10.0.0.1"


def test_slots_mean_no_dict():
    D, R = twins(frozen=True, slots=True)
    for cls in (D, R):
        x = cls("net0", "a")
        assert not hasattr(x, "__dict__") and set(cls.__slots__) == {"nic", "ip", "tag", "notes", "flags"}
        assert cls.__qualname__.endswith("Nic")


def test_replace_and_fields():
    _, R = twins(frozen=True)
    x = R("net0", "10.0.0.1", 20)
    y = records.replace(x, ip="10.0.0.9")
    assert (y.nic, y.ip, y.tag) == ("net0", "10.0.0.9", 20) and x.ip == "10.0.0.1"
    assert y.notes is x.notes                         # as dataclasses: fields are passed on as they are
    with pytest.raises(TypeError):
        records.replace(x, bogus=1)
    with pytest.raises(TypeError):
        records.replace(object())
    assert [f.name for f in records.fields(x)] == ["nic", "ip", "tag", "notes", "flags"]
    assert records.is_record(x) and not records.is_record(object())


def test_inheritance_adds_fields_after_the_bases():
    out = []
    for mod in (dataclasses, records):
        @mod.dataclass
        class Finding:
            source: str
            detail: str
            mac: str | None = None

            def as_conflict(self):
                return {"source": self.source, "mac": self.mac}

        @mod.dataclass
        class PlanFinding(Finding):
            kind: str = ""
            vmids: list = mod.field(default_factory=list)

            def as_conflict(self):
                return dict(super().as_conflict(), kind=self.kind)
        out.append(PlanFinding(source="plan", detail="d", kind="plan-dup", vmids=[1]))
    d, r = out
    assert repr(r) == repr(d) and r.as_conflict() == d.as_conflict()


def test_methods_the_class_writes_itself_win():
    for mod in (dataclasses, records):
        @mod.dataclass(frozen=True)
        class Link:
            name: str
            index: int

            def __eq__(self, other):
                return isinstance(other, Link) and other.name == self.name

            def __hash__(self):
                return hash(self.name)

            def __repr__(self):
                return f"<{self.name}>"
        a, b = Link("vmbr0", 1), Link("vmbr0", 2)
        assert a == b and hash(a) == hash(b) and repr(a) == "<vmbr0>", mod.__name__


def test_a_field_can_stay_out_of_repr():
    out = []
    for mod in (dataclasses, records):
        @mod.dataclass(frozen=True)
        class Lease:
            ip: str
            expires: int | None = mod.field(default=None, repr=False)
        out.append(Lease("10.0.0.5", 1700000000))
    assert repr(out[1]) == repr(out[0]) == "test_a_field_can_stay_out_of_repr.<locals>.Lease(ip='10.0.0.5')"
    assert out[1] != type(out[1])("10.0.0.5", 1)          # still compared


def test_a_default_before_a_required_field_is_refused():
    for mod in (dataclasses, records):
        with pytest.raises(TypeError):
            @mod.dataclass
            class Bad:
                a: int = 1
                b: int


def test_the_hook_path_does_not_import_dataclasses():
    """The point of records: the modules a pre-start imports pull in no dataclasses/inspect."""
    code = ("import sys, phoenix_hook.hook, phoenix_hook.settings, phoenix_hook.checks.check, "
            "phoenix_hook.pve.files, phoenix_hook.pve.claims, phoenix_hook.net.wire, phoenix_hook.net.probe; "
            "print(sorted(m for m in ('dataclasses', 'inspect', 'ast', 'dis') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); {code}"],
                       capture_output=True, text=True, cwd="/")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
