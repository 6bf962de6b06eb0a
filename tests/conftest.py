"""Fixtures shared across test directories."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from voicerail.testing.postgres import PostgresUnavailable, temporary_database, temporary_postgres
from voicerail.testing.redis import RedisUnavailable, temporary_redis


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a real PostgreSQL server for the session (Debian's binaries, temp dir)."""
    try:
        with temporary_postgres() as url:
            yield url
    except PostgresUnavailable as exc:
        # CI installs PostgreSQL (`make setup`): there a missing server is a failure.
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL server binaries unavailable: {exc}")
        pytest.skip(f"PostgreSQL server binaries unavailable: {exc}")


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's server, for one test."""
    with temporary_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis server for the session (Debian's redis-server, temp dir)."""
    try:
        with temporary_redis() as url:
            yield url
    except RedisUnavailable as exc:
        # CI installs redis-server (`make setup`): there a missing server is a failure.
        if os.environ.get("CI"):
            pytest.fail(f"redis-server unavailable: {exc}")
        pytest.skip(f"redis-server unavailable: {exc}")
