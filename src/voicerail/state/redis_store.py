"""Call state in Redis (redis-py asyncio), shared by every worker and host.

Layout, one hash per call (``session.py`` rule 1)::

    {prefix}call:{call_id}   hash  v = version, s = state JSON      TTL ttl_s
    {prefix}sid:{call_sid}   string  call_id                        TTL ttl_s

A write is one Lua script, so the version check and the write are atomic on the
server (https://redis.io/docs/latest/develop/interact/programmability/eval-intro/,
Redis 7): no other worker's write can fall between them (``session.py`` rule 2).
"""

from __future__ import annotations

from typing import Any

from voicerail.errors import StateConflict, StoreError
from voicerail.state.session import DEFAULT_TTL_S, SessionState

# KEYS[1] call hash, KEYS[2] sid key (or ""); ARGV: new version, JSON, ttl ms, call id.
# Returns {1, new version} when written, {0, stored version} when refused.
_SAVE = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
local new = tonumber(ARGV[1])
if new ~= stored + 1 then return {0, stored} end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 's', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if KEYS[2] ~= '' then redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[3]) end
return {1, new}
"""


class RedisStateStore:
    """:class:`~voicerail.state.session.StateStore` on a Redis server.

    Args:
        url: ``redis://HOST:PORT/DB`` (``--redis-url``, ``$VOICERAIL_REDIS_URL``).
        ttl_s: time to live of a call's keys, seconds (renewed on every write).
        prefix: key prefix, so several deployments can share one server.
        timeout_s: socket timeout of each command, and longest wait for a free
            connection, seconds.
        max_connections: connections to the server; writes beyond wait their turn
            (a connection per concurrent write costs a connect per write, and
            hundreds of calls would open hundreds of connections).

    Raises:
        ConfigError: redis-py is not installed (the ``redis`` extra).
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        prefix: str = "voicerail:",
        timeout_s: float = 1.0,
        max_connections: int = 8,
    ) -> None:
        from voicerail.extras import require_extra

        require_extra("redis", "call state in Redis (--redis-url)")
        import redis.asyncio as aioredis

        self.ttl_s = ttl_s
        self.prefix = prefix
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
        self._redis: Any = aioredis.Redis(connection_pool=pool)
        self._save = self._redis.register_script(_SAVE)

    @staticmethod
    def check(url: str, timeout_s: float = 2.0) -> None:
        """At start-up: the server at ``url`` answers ``PING`` (a blocking client,
        so no connection is left bound to a loop that will not run the server).

        Raises:
            ConfigError: redis-py is missing, or the server does not answer.
        """
        from voicerail.errors import ConfigError
        from voicerail.extras import require_extra

        require_extra("redis", "call state in Redis (--redis-url)")
        import redis
        from redis.exceptions import RedisError

        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        try:
            client.ping()
        except (RedisError, ValueError) as exc:
            raise ConfigError(
                f"redis at {url} does not answer: {exc}", source="--redis-url"
            ) from None
        finally:
            client.close()

    def _call_key(self, call_id: str) -> str:
        return f"{self.prefix}call:{call_id}"

    async def load(self, call_id: str) -> SessionState | None:
        from redis.exceptions import RedisError

        try:
            text = await self._redis.hget(self._call_key(call_id), "s")
        except RedisError as exc:
            raise StoreError(f"call {call_id}: state read failed: {exc}") from None
        return None if text is None else SessionState.from_json(text, call_id=call_id)

    async def load_by_call_sid(self, call_sid: str) -> SessionState | None:
        from redis.exceptions import RedisError

        try:
            call_id = await self._redis.get(f"{self.prefix}sid:{call_sid}")
        except RedisError as exc:
            raise StoreError(f"state read by call sid failed: {exc}") from None
        return None if call_id is None else await self.load(call_id.decode())

    async def save(self, state: SessionState) -> None:
        from redis.exceptions import RedisError

        sid_key = f"{self.prefix}sid:{state.call_sid}" if state.call_sid else ""
        try:
            written, stored = await self._save(
                keys=[self._call_key(state.call_id), sid_key],
                args=[state.version, state.to_json(), int(self.ttl_s * 1000), state.call_id],
            )
        except RedisError as exc:
            raise StoreError(f"call {state.call_id}: state write failed: {exc}") from None
        if not written:
            raise StateConflict(state.call_id, state.version - 1, int(stored))

    async def ttl_s_left(self, call_id: str) -> float | None:
        """Seconds until the call's state expires; None when it has none."""
        ms = await self._redis.pttl(self._call_key(call_id))
        return None if ms < 0 else ms / 1000

    async def aclose(self) -> None:
        await self._redis.aclose(close_connection_pool=True)
