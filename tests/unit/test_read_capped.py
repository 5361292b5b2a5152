"""The API reads a request body as it arrives and stops at its limit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from planfleet.api.routes import read_capped

CHUNK = 64 * 1024


def request(headers: list[tuple[bytes, bytes]], chunks: int) -> tuple[Request, list[int]]:
    sent = [0]

    async def receive() -> dict[str, Any]:
        sent[0] += 1
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": sent[0] < chunks}

    scope = {"type": "http", "method": "POST", "path": "/api/plan", "headers": headers,
             "query_string": b""}
    return Request(scope, receive), sent


def test_a_body_past_the_limit_is_refused_without_reading_the_rest() -> None:
    # Given a 1 GiB body coming in 64 KiB chunks
    req, sent = request([], chunks=16384)
    # When it is read with a 1 MiB limit, Then 413 after 17 chunks, not 16,384
    with pytest.raises(HTTPException) as err:
        asyncio.run(read_capped(req, 1024 * 1024))
    assert err.value.status_code == 413 and sent[0] == 17


def test_a_declared_length_past_the_limit_is_refused_before_reading() -> None:
    req, sent = request([(b"content-length", str(2**30).encode())], chunks=16384)
    with pytest.raises(HTTPException):
        asyncio.run(read_capped(req, 1024 * 1024))
    assert sent[0] == 0


def test_a_body_within_the_limit_is_read_whole() -> None:
    req, _ = request([], chunks=3)
    assert asyncio.run(read_capped(req, 1024 * 1024)) == b"x" * (3 * CHUNK)
