"""Reading what the server heard and said for a call, from its REST API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from voicerail.sim.caller import CallResult


def http_base_from_media_url(url: str) -> str:
    """``ws://h:p/twilio/media`` → ``http://h:p`` (``wss`` → ``https``)."""
    scheme, rest = url.split("://", 1)
    host = rest.split("/", 1)[0]
    return f"{'https' if scheme == 'wss' else 'http'}://{host}"


async def fetch_call(
    base_url: str, call_sid: str, *, wait_s: float = 10.0, api_key: str | None = None
) -> dict[str, Any] | None:
    """The server's record and events of the call with ``call_sid``, once it has ended.

    Returns None when the server never recorded the call within ``wait_s``.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=5.0) as client:
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            response = await client.get("/api/calls", params={"call_sid": call_sid, "limit": 500})
            response.raise_for_status()
            calls = response.json()["calls"]
            if calls and calls[0]["ended_at"] is not None:
                detail = await client.get(f"/api/calls/{calls[0]['call_id']}")
                detail.raise_for_status()
                body: dict[str, Any] = detail.json()
                return body
            if asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(0.1)


def summarize(result: CallResult, server: dict[str, Any] | None) -> dict[str, Any]:
    """Join the caller's timings with the server's transcripts and replies.

    Each server event is attributed to the caller turn during or after which it
    happened (both clocks are this machine's wall clock).
    """
    events = server["events"] if server else []
    turns = []
    for index, timing in enumerate(result.turns):
        window_end = (
            result.turns[index + 1].started_at if index + 1 < len(result.turns) else float("inf")
        )

        def in_window(
            event: dict[str, Any], start: float = timing.started_at, end: float = window_end
        ) -> bool:
            return bool(start <= event["at_wall"] < end)

        transcripts = [
            e["pii"].get("text", "")
            for e in events
            if e["kind"] == "TranscriptFinal" and in_window(e)
        ]
        replies = [
            e["pii"].get("agent_text", "")
            for e in events
            if e["kind"] == "DialogDecided" and in_window(e)
        ]
        latency = timing.v2v_latency_s
        turns.append(
            {
                "caller_audio": timing.label,
                "transcript": " ".join(t for t in transcripts if t),
                "agent_text": " ".join(r for r in replies if r),
                "v2v_latency_ms": round(latency * 1000) if latency is not None else None,
            }
        )
    greeting = next(
        (e["pii"].get("agent_text", "") for e in events if e["kind"] == "DialogDecided"), ""
    )
    return {
        "call_id": server["call_id"] if server else None,
        "outcome": server["outcome"] if server else None,
        "greeting": greeting,
        "hung_up_by": result.hung_up_by,
        "clears_received": result.clears_received,
        "turns": turns,
    }
