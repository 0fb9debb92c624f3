"""A small stand-in for ``dataclasses`` on the engine's start-up path.

``dataclasses`` imports ``inspect`` and generates code per class (about 10 ms
per ``berth run`` here); these plain records need only keyword/positional
construction, defaults, factories, equality and a repr.
"""

from __future__ import annotations

from typing import Any


class factory:
    """Default made per instance (``field(default_factory=...)``)."""

    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


def record(cls):
    """Give ``cls`` an ``__init__`` from its annotations (in order), ``__eq__`` and ``__repr__``."""
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        for n in klass.__dict__.get("__annotations__", {}):
            if n not in names:
                names.append(n)
    defaults: dict[str, Any] = {}
    for n in names:
        for klass in cls.__mro__:
            if n in klass.__dict__:
                defaults[n] = klass.__dict__[n]
                break

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
        return type(other) is type(self) and all(getattr(self, n) == getattr(other, n) for n in names)

    def __repr__(self):
        return f"{cls.__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"

    cls.__init__ = __init__
    cls.__eq__ = __eq__
    cls.__hash__ = None
    cls.__repr__ = __repr__
    cls.__record_fields__ = tuple(names)
    return cls
