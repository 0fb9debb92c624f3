"""libnftables (the library behind the ``nft`` command) through ctypes.

This is what Debian's python3-nftables module wraps, without needing that
module inside the virtual environment. Running a command in-process costs a
fraction of a millisecond, where exec'ing ``nft`` costs several.
A command batch given to one ``run`` call is one netlink transaction: it
applies completely or not at all.
"""

from __future__ import annotations

import ctypes
import json

NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_HANDLE = 1 << 3
NFT_CTX_OUTPUT_JSON = 1 << 4

_lib: ctypes.CDLL | None = None


def _load() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL("libnftables.so.1", use_errno=True)
        except OSError:
            # slow (it may run ldconfig): only when the soname differs
            from ctypes.util import find_library

            name = find_library("nftables")
            if name is None:
                raise NftError(2, "nft: libnftables not found (apt-get install "
                                  "libnftables1)") from None
            lib = ctypes.CDLL(name, use_errno=True)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        _lib = lib
    return _lib


class NftError(OSError):
    """An nft command batch the kernel or the parser refused."""


def run(commands: str, json_output: bool = False) -> str:
    """Run an nft command batch (nft syntax, one command per line).

    Returns nft's output (JSON text when ``json_output``); raises
    ``NftError`` with nft's own error message when the batch fails.
    """
    lib = _load()
    ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
    if not ctx:
        raise NftError(12, "nft: cannot allocate a context")
    try:
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        flags = NFT_CTX_OUTPUT_HANDLE | (NFT_CTX_OUTPUT_JSON if json_output else 0)
        lib.nft_ctx_output_set_flags(ctx, flags)
        rc = lib.nft_run_cmd_from_buffer(ctx, commands.encode())
        out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
        err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
    finally:
        lib.nft_ctx_free(ctx)
    if rc != 0:
        first = next((ln for ln in err.splitlines() if ln.strip()), "failed")
        raise NftError(1, f"nft: {first}")
    return out


def run_json(commands: str) -> list[dict]:
    """Run a listing command and return its ``nftables`` array."""
    out = run(commands, json_output=True)
    return json.loads(out).get("nftables", []) if out.strip() else []
