"""A fix for nostr-sdk 0.45's Python bindings: strings and bytes cross into Rust at C speed, not byte by byte.

The bindings uniffi generated for nostr-sdk 0.45 copy every argument into Rust's buffer one byte at a time in
interpreted Python (about 0.4 us a byte here): a 900-byte peer envelope cost 0.4 ms to hand to nostr-sdk and a
60 KB one 25 ms, more than all the cryptography. uniffi fixed its template upstream (mozilla/uniffi-rs#2824:
one ``ctypes.memmove``); ``install()`` applies that same fix to the loaded bindings. It is byte-for-byte the
same copy, so nothing else changes. It patches only the exact shape it knows and leaves any other version alone;
calling it again does nothing.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

from nostr_sdk import nostr_sdk as _bindings

_MARK = "_dvm_sidecar_memmove"


def _write(self: Any, value: bytes) -> None:
    length = len(value)
    with self._reserve(length):
        if length:
            ctypes.memmove(ctypes.addressof(self.rbuf.data.contents) + self.rbuf.len, value, length)


def _pack_into(self: Any, size: int, fmt: str, value: Any) -> None:
    with self._reserve(size):
        ctypes.memmove(ctypes.addressof(self.rbuf.data.contents) + self.rbuf.len, struct.pack(fmt, value), size)


def install() -> bool:
    """Speed up the loaded bindings; True if they are (now or already) patched, False if left as they are."""
    builder = getattr(_bindings, "_UniffiRustBufferBuilder", None)
    if builder is None:
        return False
    if getattr(builder, _MARK, False):
        return True
    if not all(callable(getattr(builder, name, None)) for name in ("_reserve", "write", "_pack_into")):
        return False
    builder.write = _write
    builder._pack_into = _pack_into
    setattr(builder, _MARK, True)
    return True
