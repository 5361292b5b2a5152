"""File names that are not UTF-8: shown escaped, kept as bytes, mapped back exactly."""

from __future__ import annotations

import os

from planfleet import names


def test_a_utf8_name_is_kept_as_it_is() -> None:
    assert names.display("задача ✓ a\\xe9.json") == "задача ✓ a\\xe9.json"
    assert names.raw("задача ✓.json") is None


def test_a_latin1_name_is_shown_escaped_and_kept_as_its_bytes() -> None:
    name = os.fsdecode(b"latin1-\xe9t\xe9.json")
    assert names.display(name) == "latin1-\\xe9t\\xe9.json"
    assert names.raw(name) == b"latin1-\xe9t\xe9.json"
    assert names.display(name).encode("utf-8")  # storable
    assert names.from_stored(names.display(name), names.raw(name)) == name
    assert names.from_stored("plain.yaml", None) == "plain.yaml"


def test_a_nul_character_is_escaped_too() -> None:
    assert names.display("a\u0000b.yaml") == "a\\x00b.yaml"
