"""JSON for the runtime's hot path, straight on the C accelerator ``_json``.

``import json`` pulls in ``re`` and ``enum`` (about 10 ms of a ~25 ms budget per
container start), because json.decoder compiles regexes at import time. The
C scanner and encoder need neither; only error paths import ``json``.
"""

import _json

_WS = " \t\n\r"


def _bad_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class _Ctx:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_bad_constant)
    memo: dict = {}


_scan = _json.make_scanner(_Ctx())
_encode = _json.make_encoder(None, None, _json.encode_basestring, None, ": ", ", ",
                             False, False, False)
_encode_sorted = _json.make_encoder(None, None, _json.encode_basestring_ascii, None, ":", ",",
                                    True, False, False)


def loads(s: str):
    """Parse one JSON document; raises ``ValueError`` (line and column) on bad input."""
    n = len(s)
    i = 0
    while i < n and s[i] in _WS:
        i += 1
    try:
        obj, end = _scan(s, i)
    except StopIteration as e:
        raise ValueError(f"expecting value at {_where(s, e.value)}") from None
    except (SystemError, ValueError):
        # The scanner reports syntax errors through json.decoder, which it only
        # finds if already imported: let the full module produce the message.
        import json

        json.loads(s)
        raise
    while end < n and s[end] in _WS:
        end += 1
    if end != n:
        raise ValueError(f"extra data at {_where(s, end)}")
    return obj


def dumps(obj) -> str:
    """Compact JSON text (``default`` hooks unsupported: plain data only)."""
    return "".join(_encode(obj, 0))


def dumps_canonical(obj) -> str:
    """Sorted keys, no spaces, ASCII: the same text for equal data (cache keys)."""
    return "".join(_encode_sorted(obj, 0))


def _where(s: str, pos: int) -> str:
    line = s.count("\n", 0, pos) + 1
    col = pos - (s.rfind("\n", 0, pos) + 1) + 1
    return f"line {line} column {col}"
