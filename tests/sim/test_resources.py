"""The server's CPU and memory as the simulator samples them: a supervisor and its
workers count together (``bench/capacity.py --workers``)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time

import psutil

from voicerail.sim.resources import ProcessMonitor
from voicerail.wire import twilio

# A parent that starts one child and waits on it: the shape of `serve --workers 1`.
PARENT = (
    "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import sys; sys.stdin.read()'])"
)


async def test_the_monitor_counts_the_process_and_its_children():
    """The baseline memory is the parent's plus its child's, and stop totals CPU."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE)
    try:
        proc = psutil.Process(parent.pid)
        for _ in range(500):  # the child appears within moments of the parent
            if proc.children():
                break
            await asyncio.sleep(0.01)
        [child] = proc.children()
        monitor = ProcessMonitor(parent.pid, lambda: 0, interval_s=3600)
        await monitor.start()
        both = proc.memory_info().rss + child.memory_info().rss
        assert monitor.baseline_rss_bytes >= 0.9 * both > proc.memory_info().rss
        await monitor.stop()
        assert monitor.cpu_seconds >= 0.0
    finally:
        parent.kill()
        parent.wait()
        assert parent.stdin is not None
        parent.stdin.close()


def test_the_fake_server_with_two_workers_answers_from_both_and_stops_them(tmp_path):
    """``bench/capacity.py --workers 2``'s server: two pids on one port, none left after,
    even with media streams still open when it is stopped."""
    import httpx
    from websockets.sync.client import connect

    from voicerail.sim.fake_server import FakeServerConfig, fake_server_process

    config = FakeServerConfig(data_dir=tmp_path, vad="energy", workers=2)
    with contextlib.ExitStack() as streams, fake_server_process(config) as (base_url, pid):
        supervisor = psutil.Process(pid)
        workers = supervisor.children()
        assert len(workers) == 2
        seen = set()
        deadline = time.monotonic() + 60  # the second worker may still be starting
        while len(seen) < 2 and time.monotonic() < deadline:
            seen.add(httpx.get(f"{base_url}/sim/stats", timeout=5.0).json()["pid"])
            time.sleep(0.02)
        assert seen == {w.pid for w in workers}
        media_url = base_url.replace("http://", "ws://") + "/twilio/media"
        for index in range(4):  # calls in progress when the server is stopped
            stream = streams.enter_context(connect(media_url, open_timeout=10, close_timeout=0.5))
            stream.send(twilio.serialize_inbound(twilio.Connected("Call", "1.0.0")))
            start = twilio.Start(
                sequence_number=1,
                stream_sid=f"MZ{index}",
                account_sid="AC" + "0" * 32,
                call_sid=f"CA{index}",
                tracks=("inbound",),
                custom_parameters={},
                media_format=twilio.MediaFormat("audio/x-mulaw", 8000, 1),
            )
            stream.send(twilio.serialize_inbound(start))
            stream.recv(timeout=10)  # the greeting's first media: the call is under way
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []
