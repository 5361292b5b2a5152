"""File names as the operating system gives them, and as planfleet stores and shows them.

A POSIX file name is bytes. Python decodes it with ``surrogateescape``: bytes that are not
UTF-8 (``latin1-\\xe9t\\xe9.json`` from a zip archive or an old share) become lone surrogates,
which Postgres, JSON and a terminal cannot take. Such a name is stored twice: readably, with each
undecodable byte escaped as ``\\xNN`` (:func:`display`), and losslessly, as its bytes
(:func:`raw`), from which :func:`from_stored` gives the operating system's name back.
"""

from __future__ import annotations

import os


def display(name: str) -> str:
    """``name`` with every byte that is not UTF-8 written as ``\\xNN`` (text any store accepts).

    A name that is valid UTF-8 is returned unchanged, but for a NUL character (``\\x00``: no
    file name holds one, but a name given through the API might, and Postgres refuses it).
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        name = os.fsencode(name).decode("utf-8", "backslashreplace")
    return name.replace("\x00", "\\x00")


def raw(name: str) -> bytes | None:
    """The bytes of a name that is not valid UTF-8; None for a name :func:`display` keeps."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name)
    return None


def from_stored(shown: str, raw_bytes: bytes | None) -> str:
    """The operating system's name of a stored name (its bytes when it has them)."""
    return os.fsdecode(raw_bytes) if raw_bytes is not None else shown

