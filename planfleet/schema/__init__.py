"""Postgres: migrations, the named SQL queries, the connector and the repositories."""

from __future__ import annotations
