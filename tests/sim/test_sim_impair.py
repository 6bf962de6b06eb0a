"""Network impairment: parsing, and the in-process link delays and drops as configured."""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets

from voicerail.errors import ConfigError
from voicerail.sim.impair import (
    ImpairedLink,
    Impairment,
    is_media,
    netem_command,
    parse_impairment,
)


def test_parse_impairment_reads_milliseconds_and_percent() -> None:
    """``delay=80,jitter=10,loss=2`` is 80 ms ± 10 ms and 2 % loss."""
    assert parse_impairment("delay=80,jitter=10ms,loss=2%") == Impairment(0.08, 0.01, 0.02)
    assert parse_impairment("") == Impairment()
    assert not parse_impairment("").active


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [("lag=5", "expected delay=MS"), ("delay=abc", "is not a number"), ("loss=150", "loss")],
)
def test_bad_impairment_specs_are_config_errors(spec: str, fragment: str) -> None:
    """Unknown keys, non-numbers and out-of-range values are rejected."""
    with pytest.raises(ConfigError, match=fragment):
        parse_impairment(spec)


def test_netem_command_puts_the_qdisc_on_a_private_loopback() -> None:
    """The command runs inside ``unshare --net`` with netem on lo only."""
    command = netem_command(Impairment(0.05, 0.01, 0.01), ["python", "-m", "x"])
    assert command[:3] == ["unshare", "--net", "sh"]
    assert "tc qdisc add dev lo root netem delay 50.000ms 10.000ms loss 1.000%" in command[-1]


def test_only_media_messages_can_be_lost() -> None:
    """With 100 % loss, media messages vanish but marks still go through."""
    link = ImpairedLink(Impairment(loss=1.0))
    link.send('{"event":"media","media":{}}')
    link.send('{"event":"mark","mark":{"name":"a"}}')
    assert link.dropped_up == 1
    assert is_media('{"event": "media"}') and not is_media('{"event":"mark"}')


async def test_link_adds_the_configured_delay_in_both_directions() -> None:
    """A round trip through an impaired link takes twice the one-way delay longer."""

    async def echo(ws: websockets.asyncio.server.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def round_trip_s(link: ImpairedLink | None) -> float:
        async with websockets.connect(url, compression=None) as ws:
            pump = asyncio.create_task(link.pump_uplink(ws.send)) if link else None
            incoming = link.downlink(aiter(ws)) if link else aiter(ws)
            started = time.monotonic()
            if link:
                link.send("ping")
            else:
                await ws.send("ping")
            await anext(incoming)
            elapsed = time.monotonic() - started
            if pump:
                pump.cancel()
            await incoming.aclose()  # type: ignore[attr-defined]
            return elapsed

    async with websockets.serve(echo, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        url = f"ws://127.0.0.1:{port}"
        direct = await round_trip_s(None)
        impaired = await round_trip_s(ImpairedLink(Impairment(delay_s=0.1)))
    assert 0.19 <= impaired - direct <= 0.3, (direct, impaired)


async def test_jitter_keeps_message_order() -> None:
    """Messages delayed by random jitter still arrive in the order sent (one TCP stream)."""
    sent = [f"m{k}" for k in range(30)]

    async def source():  # type: ignore[no-untyped-def]
        for message in sent:
            yield message
            await asyncio.sleep(0.001)

    link = ImpairedLink(Impairment(delay_s=0.01, jitter_s=0.01), seed=4)
    received = [m async for m in link.downlink(source())]
    assert received == sent
