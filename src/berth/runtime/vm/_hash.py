"""sha256 without importing hashlib (which loads OpenSSL: ~6 ms per process start)."""

try:
    from _sha256 import sha256  # CPython's builtin module (3.11)
except ImportError:  # pragma: no cover - Python 3.12+ moved it
    from hashlib import sha256

__all__ = ["sha256"]
