"""Record classes for the hook's path: the part of `dataclasses` phoenix-hook uses, cheaply.

Every guest start imports the modules that read the settings and the
guest's config and probe the wire. `import dataclasses` pulls in inspect,
ast, dis and tokenize (about 11 ms of CPU on a 2-CPU node, as much as
Python's whole start-up) and each decorated class costs a generated-code
exec and an inspect.signature call besides; the hook needs none of that.
This module gives a class the same methods dataclasses would for the
options used here, with nothing but builtins (only __init__ is generated
source, so that making an instance costs what a hand-written one does):

    @dataclass                      __init__, __repr__, __eq__, unhashable
    @dataclass(frozen=True)         the same, immutable, hashed by its fields
    @dataclass(frozen=True, slots=True)   and __slots__ instead of __dict__
    field(default=..., default_factory=..., repr=False)
    replace(obj, **changes), fields(obj), is_record(obj)

Fields come from the class's own annotations in order, after those of a
record base class; a field with a default cannot precede one without, as in
dataclasses. Nothing else of dataclasses (ordering, kw_only, InitVar,
__post_init__, asdict) is offered: a class that needs it uses dataclasses.
"""
from __future__ import annotations

__all__ = ["FrozenInstanceError", "dataclass", "field", "fields", "is_record", "replace"]

_MISSING = type("_Missing", (), {"__repr__": lambda self: "MISSING"})()
_FIELDS = "__record_fields__"


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen record (dataclasses raises its own of the same name)."""


class Field:
    __slots__ = ("name", "default", "default_factory", "repr")

    def __init__(self, default=_MISSING, default_factory=_MISSING, repr=True):  # noqa: A002 (dataclasses' name)
        if default is not _MISSING and default_factory is not _MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r}, default_factory={self.default_factory!r})"


def field(*, default=_MISSING, default_factory=_MISSING, repr=True) -> Field:  # noqa: A002
    return Field(default, default_factory, repr)


def dataclass(cls=None, /, *, frozen: bool = False, slots: bool = False):
    def wrap(c):
        return _process(c, frozen, slots)
    return wrap if cls is None else wrap(cls)


def fields(obj) -> tuple:
    try:
        return tuple(getattr(obj, _FIELDS).values())
    except AttributeError:
        raise TypeError("fields() needs a record class or instance") from None


def is_record(obj) -> bool:
    return hasattr(obj, _FIELDS)


def replace(obj, /, **changes):
    """A copy of record `obj` with some fields changed (dataclasses.replace)."""
    flds = getattr(type(obj), _FIELDS, None)
    if flds is None:
        raise TypeError("replace() should be called on record instances")
    for name in changes:
        if name not in flds:
            raise TypeError(f"{type(obj).__name__}.__init__() got an unexpected keyword argument {name!r}")
    args = {name: changes[name] if name in changes else getattr(obj, name) for name in flds}
    return type(obj)(**args)


def _is_classvar(annotation) -> bool:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _process(cls, frozen: bool, slots: bool):
    flds: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        flds.update(getattr(base, _FIELDS, {}))
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, _MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        flds[name] = f
        if isinstance(value, Field):
            if f.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
    seen_default = False
    for f in flds.values():
        has_default = f.default is not _MISSING or f.default_factory is not _MISSING
        if seen_default and not has_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")
        seen_default = seen_default or has_default

    if slots:
        if "__slots__" in cls.__dict__:
            raise TypeError(f"{cls.__name__} already specifies __slots__")
        body = {k: v for k, v in cls.__dict__.items()
                if k not in flds and k not in ("__dict__", "__weakref__")}
        body["__slots__"] = tuple(flds)
        qualname = cls.__qualname__
        cls = type(cls)(cls.__name__, cls.__bases__, body)
        cls.__qualname__ = qualname

    setattr(cls, _FIELDS, flds)
    names = tuple(flds)
    own = dict(cls.__dict__)
    methods = {"__init__": _make_init(flds, frozen or slots)}
    if "__repr__" not in own:
        methods["__repr__"] = _make_repr(tuple(n for n, f in flds.items() if f.repr))
    if "__eq__" not in own:
        methods["__eq__"] = _make_eq(names)
    if frozen:
        if own.get("__hash__") is None:         # absent, or None because the class wrote __eq__
            methods["__hash__"] = _make_hash(names)
        methods["__setattr__"], methods["__delattr__"] = _make_frozen(cls)
    elif "__hash__" not in own:
        methods["__hash__"] = None              # eq without frozen: unhashable, as dataclasses
    for meth, fn in methods.items():
        if fn is not None:
            fn.__qualname__ = f"{cls.__qualname__}.{meth}"
        setattr(cls, meth, fn)
    cls.__match_args__ = names
    return cls


def _make_init(flds: dict, via_object: bool):
    """__init__ as source, compiled once per class: instances are made often (2000 guests
    in an audit), so it does exactly what a hand-written one would."""
    env = {"_MISSING": _MISSING, "_set": object.__setattr__}
    params, body = [], []
    for name, f in flds.items():
        if f.default_factory is not _MISSING:
            env[f"_factory_{name}"] = f.default_factory
            params.append(f"{name}=_MISSING")
            value = f"_factory_{name}() if {name} is _MISSING else {name}"
        elif f.default is not _MISSING:
            env[f"_default_{name}"] = f.default
            params.append(f"{name}=_default_{name}")
            value = name
        else:
            params.append(name)
            value = name
        body.append(f" _set(self, {name!r}, {value})" if via_object else f" self.{name} = {value}")
    src = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body or [" pass"])
    ns: dict = {}
    exec(src, env, ns)                          # noqa: S102  (built above from the class's field names)
    return ns["__init__"]


def _make_repr(names: tuple):
    def __repr__(self):
        return f"{type(self).__qualname__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in names) + ")"
    return __repr__


def _make_eq(names: tuple):
    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)
        return NotImplemented
    return __eq__


def _make_hash(names: tuple):
    def __hash__(self):
        return hash(tuple(getattr(self, n) for n in names))
    return __hash__


def _make_frozen(cls):
    def __setattr__(self, name, value):
        if type(self) is cls or name in cls.__record_fields__:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self, name):
        if type(self) is cls or name in cls.__record_fields__:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)
    return __setattr__, __delattr__
