"""Stress-test fixtures: the gateway's database fixtures (SQLite file / real PostgreSQL)."""

from tests.gateway.conftest import database_url, postgres_server

__all__ = ["database_url", "postgres_server"]
