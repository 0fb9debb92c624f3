"""A small stand-in for ``dataclasses`` on the engine's start-up path.

``dataclasses`` imports ``inspect`` and generates code per class (about 10 ms
per ``berth run`` here); these plain records need only keyword/positional
construction, defaults, factories, fields left out of equality and repr,
frozen (hashable) records, ``replace``, equality and a repr.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    from typing import Any


class factory:
    """Default made per instance (``field(default_factory=...)``)."""

    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


class hidden:
    """A field left out of equality, hashing and repr
    (``field(default=..., compare=False, repr=False)``)."""

    __slots__ = ("default",)

    def __init__(self, default=None):
        self.default = default


def record(cls=None, *, frozen: bool = False):
    """Give ``cls`` an ``__init__`` from its annotations (in order), ``__eq__``
    and ``__repr__``; with ``frozen``, assignment raises and records hash."""
    if cls is None:
        return lambda c: record(c, frozen=frozen)
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        for n in klass.__dict__.get("__annotations__", {}):
            if n not in names:
                names.append(n)
    defaults: dict[str, Any] = {}
    shown: list[str] = []
    for n in names:
        for klass in cls.__mro__:
            if n in klass.__dict__:
                d = klass.__dict__[n]
                defaults[n] = d.default if isinstance(d, hidden) else d
                if isinstance(d, hidden):
                    break
                shown.append(n)
                break
        else:
            shown.append(n)
    for n, d in defaults.items():
        if isinstance(cls.__dict__.get(n), hidden):
            setattr(cls, n, d)  # the class attribute reads as the plain default

    def __init__(self, *args, **kw):
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}: too many arguments")
        for n, v in zip(names, args, strict=False):
            kw[n] = v
        for n in names:
            if n in kw:
                v = kw.pop(n)
            elif n in defaults:
                d = defaults[n]
                v = d.make() if isinstance(d, factory) else d
            else:
                raise TypeError(f"{cls.__name__}: missing argument {n!r}")
            object.__setattr__(self, n, v)
        if kw:
            raise TypeError(f"{cls.__name__}: unknown argument {next(iter(kw))!r}")

    def __eq__(self, other):
        return type(other) is type(self) and all(getattr(self, n) == getattr(other, n) for n in shown)

    def __repr__(self):
        return f"{cls.__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in shown)})"

    cls.__init__ = __init__
    cls.__eq__ = __eq__
    cls.__repr__ = __repr__
    cls.__record_fields__ = tuple(names)
    if frozen:
        def __setattr__(self, name, value):
            raise AttributeError(f"cannot assign to field {name!r} of frozen {cls.__name__}")

        def __hash__(self):
            return hash(tuple(getattr(self, n) for n in shown))

        def __delattr__(self, name):
            raise AttributeError(f"cannot delete field {name!r} of frozen {cls.__name__}")

        cls.__setattr__ = __setattr__
        cls.__delattr__ = __delattr__
        cls.__hash__ = __hash__
    else:
        cls.__hash__ = None
    return cls


def replace(obj, **changes):
    """A copy of the record ``obj`` with ``changes`` (``dataclasses.replace``)."""
    values = {n: getattr(obj, n) for n in type(obj).__record_fields__}
    values.update(changes)
    return type(obj)(**values)


def fields(obj_or_cls) -> tuple[str, ...]:
    """The field names of a record (class or instance), in order."""
    return obj_or_cls.__record_fields__
