"""A voicerail server with cloud-like fake providers, instrumented for simulations.

(Just over 500 lines: each provider's start message is read here for the
caller's script; the next split moves those readers into ``sim/fake_starts.py``.)

It is the real server (:func:`voicerail.server.app.create_app` around a
:class:`~voicerail.session.runtime.Runtime`, real VAD, codecs and call driver)
with the providers of :mod:`voicerail.sim.fakes`, wrapped in an ASGI layer that:

* gives each media connection its :class:`~voicerail.sim.fakes.ConnectionScript`
  (read from the ``start`` message's ``sim_script`` custom parameter) and counts
  the caller's utterances as their audio arrives;
* measures the inbound frames' arrival jitter (|inter-arrival - 20 ms|) and the
  server's event-loop lag, served as JSON at ``GET /sim/stats``
  (``?reset=1`` starts a new measurement window).

Run it as ``python -m voicerail.sim.fake_server --port 8765 --agent echo``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from voicerail.sim.fakes import (
    FAKE_DEFAULTS,
    CloudLatency,
    ConnectionScript,
    EchoAgent,
    LeakyAgent,
    current_script,
    fake_registry,
)
from voicerail.sim.stats import Histogram

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A simulated caller's silence: 160 bytes of μ-law 0xff, base64, exactly.
_SILENCE_PAYLOAD = '"payload":"' + base64.b64encode(b"\xff" * 160).decode("ascii") + '"'
# Pure silence longer than this separates two caller utterances (the callers wait
# for the agent between turns; pauses inside synthesized speech are shorter).
UTTERANCE_GAP_FRAMES = 50


@dataclass(frozen=True)
class FakeServerConfig:
    """How to build the fake-provider server.

    Attributes:
        agent: ``echo`` (LLM-like, no local model), ``leaky`` (broken on purpose),
            or the path of an agent YAML (the flow engine, with its MiniLM NLU).
        data_dir: event store and bookings.
        faults: a fault file for ``fake-stt``, ``fake-llm``, ``fake-tts`` (and any
            other provider the chains name).
        providers: a deployment file naming the chains
            (:mod:`voicerail.providers.registry`), e.g. two fake TTS to fail over
            between; without one, one fake per stage.
        vad: ``silero`` or ``energy``.
        vad_batch_ms: Silero batching window across calls (0: off).
        latency: default provider latencies.
        endpoint_silence_s: the endpointing window.
        reprompt_after_s: silence before a reprompt.
        hangup_after_s: silence before the agent hangs up.
        frames_per_media: 20 ms frames per outbound media message (``AudioConfig``).
        max_calls: the admission ceiling (cloud-like providers carry hundreds).
        workers: server processes on the one port, as ``voicerail serve --workers``
            (:class:`~voicerail.server.workers.Supervisor`); ``/sim/stats`` then
            answers for whichever worker takes the request.
    """

    agent: str = "echo"
    data_dir: Path = Path("var/sim-server")
    faults: Path | None = None
    providers: Path | None = None
    vad: str = "silero"
    vad_batch_ms: float = 4.0
    latency: CloudLatency = field(default_factory=CloudLatency)
    endpoint_silence_s: float = 0.5
    reprompt_after_s: float = 7.0
    hangup_after_s: float = 20.0
    frames_per_media: int = 1
    max_calls: int = 1000
    workers: int = 1

    def to_args(self) -> list[str]:
        """The command-line arguments that rebuild this config in ``main``."""
        args = ["--agent", self.agent, "--data-dir", str(self.data_dir), "--vad", self.vad]
        args += ["--vad-batch-ms", str(self.vad_batch_ms)]
        if self.faults is not None:
            args += ["--faults", str(self.faults)]
        if self.providers is not None:
            args += ["--providers", str(self.providers)]
        args += ["--stt-latency", str(self.latency.stt_s), "--llm-latency", str(self.latency.llm_s)]
        args += ["--tts-latency", str(self.latency.tts_s), "--sigma", str(self.latency.sigma)]
        args += ["--seconds-per-word", str(self.latency.seconds_per_word)]
        args += ["--endpoint-silence", str(self.endpoint_silence_s)]
        args += ["--reprompt-after", str(self.reprompt_after_s)]
        args += ["--hangup-after", str(self.hangup_after_s)]
        args += ["--frames-per-media", str(self.frames_per_media)]
        args += ["--max-calls", str(self.max_calls)]
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        return args


def build_runtime(config: FakeServerConfig) -> tuple[Any, Any]:
    """The :class:`Runtime` for ``config`` and its :class:`~voicerail.routing.router.Router`.

    The chains come from the provider registry with the fakes added
    (:func:`~voicerail.sim.fakes.fake_registry`) and go through a Router, as in
    ``voicerail serve``: a simulated call fails over as a production call does.

    Raises:
        ConfigError: the agent, fault or deployment file is invalid (naming the field).
    """
    from voicerail.audio.vad_batch import shared_vad
    from voicerail.events.store import SQLiteEventStore
    from voicerail.providers.chains import build_chains
    from voicerail.providers.registry import load_providers, secret_lookup
    from voicerail.routing.call_llm import CurrentCallLLM
    from voicerail.routing.router import ChainConfig, Router
    from voicerail.session.load import AdmissionConfig, LoadMonitor
    from voicerail.session.runtime import AudioConfig, Runtime, current_call_id
    from voicerail.turns.policy import TurnConfig

    profiles: dict[str, Any] = {}
    if config.faults is not None:
        from voicerail.routing.faults import load_faults

        profiles = load_faults(config.faults)
    registry = fake_registry(profiles, config.latency)
    deployment = load_providers(config.providers) if config.providers is not None else None
    chains = build_chains(registry, deployment, FAKE_DEFAULTS, secret_lookup())
    # Cloud-like deadlines: generous enough that the fakes' slow tails (a 1.5 s
    # first token in examples/scenarios/faults/flaky_cloud.yaml) are slow, not failed.
    base = ChainConfig(ttfb_timeout_s=3.0, idle_timeout_s=2.0)
    router = Router(
        stt=chains.stt,
        tts=chains.tts,
        llm=chains.llm,
        config=base,
        stage_configs={
            stage: replace(base, **overrides) for stage, overrides in chains.routing.items()
        },
    )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    events = SQLiteEventStore(config.data_dir / "events.sqlite3")
    llm = CurrentCallLLM(router, current_call_id.get, events.append)
    agent: Any
    if config.agent == "echo":
        agent = EchoAgent(llm)
    elif config.agent == "leaky":
        agent = LeakyAgent(llm)
    else:
        from voicerail.dialog.bookings import BookingStore
        from voicerail.dialog.flows import load_agent

        bookings = BookingStore(config.data_dir / "bookings.sqlite3")
        agent = load_agent(Path(config.agent), bookings=bookings)
    runtime = Runtime(
        agent=agent,
        stt=chains.stt[0],
        tts=chains.tts[0],
        events=events,
        vad_model=shared_vad(config.vad, config.vad_batch_ms),
        turns=TurnConfig(
            reprompt_after_s=config.reprompt_after_s, hangup_after_s=config.hangup_after_s
        ),
        audio=AudioConfig(
            endpoint_silence_s=config.endpoint_silence_s,
            frames_per_media=config.frames_per_media,
        ),
        load=LoadMonitor(AdmissionConfig(max_calls=config.max_calls)),
        router=router,
    )
    return runtime, router


class SimInstrumentation:
    """ASGI middleware: per-connection scripts, inbound jitter, loop lag (see module).

    Args:
        app: the voicerail ASGI app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.inbound_jitter_ms = Histogram()
        self.loop_lag_ms = Histogram()
        self.frames = 0
        self.connections = 0
        self.window_started = time.monotonic()
        self._lag_task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        """Start a new measurement window."""
        self.inbound_jitter_ms = Histogram()
        self.loop_lag_ms = Histogram()
        self.frames = 0
        self.connections = 0
        self.window_started = time.monotonic()

    def stats(self) -> dict[str, Any]:
        """The window's figures, JSON-ready."""
        return {
            "window_s": time.monotonic() - self.window_started,
            "frames": self.frames,
            "connections": self.connections,
            "inbound_jitter_ms": self.inbound_jitter_ms.summary(),
            "loop_lag_ms": self.loop_lag_ms.summary(),
            "pid": os.getpid(),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._lag_task is None:
            self._lag_task = asyncio.get_running_loop().create_task(self._watch_loop())
        if scope["type"] == "http" and scope["path"] == "/sim/stats":
            await self._serve_stats(scope, send)
            return
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        self.connections += 1
        script = ConnectionScript()
        current_script.set(script)
        await self.app(scope, self._instrumented(receive, script), send)

    def _instrumented(self, receive: Receive, script: ConnectionScript) -> Receive:
        last_arrival: list[float] = []
        silent_run = [UTTERANCE_GAP_FRAMES]

        def on_frame(silent: bool) -> None:
            now = time.monotonic()
            if last_arrival:
                self.inbound_jitter_ms.add(abs(now - last_arrival[0] - 0.02) * 1000)
                last_arrival[0] = now
            else:
                last_arrival.append(now)
            self.frames += 1
            if silent:
                silent_run[0] += 1
            else:
                if silent_run[0] >= UTTERANCE_GAP_FRAMES:
                    script.utterance_index += 1
                silent_run[0] = 0

        async def wrapped() -> Message:
            message = await receive()
            if message["type"] != "websocket.receive":
                return message
            text = message.get("text")
            if not isinstance(text, str):
                data = message.get("bytes") or b""
                on_frame(not any(data))  # Vonage: L16 frames, silence is all zeros
                return message
            head = text[:40]
            if '"event":"media"' in head:
                on_frame(_SILENCE_PAYLOAD in text)
            elif '"event":"start"' in head or '"event":"websocket:connected"' in head:
                script.texts = _script_texts(text)
            return message

        return wrapped

    async def _watch_loop(self) -> None:
        interval_s = 0.01
        while True:
            started = time.monotonic()
            await asyncio.sleep(interval_s)
            self.loop_lag_ms.add((time.monotonic() - started - interval_s) * 1000)

    async def _serve_stats(self, scope: Scope, send: Send) -> None:
        body = json.dumps(self.stats()).encode()
        if b"reset=1" in scope.get("query_string", b""):
            self.reset()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _script_texts(start_text: str) -> list[str]:
    """The caller's script from a stream's first message: Twilio's and Telnyx's
    ``start`` custom parameters, Plivo's ``extra_headers`` (hex-encoded values) or
    Vonage's ``websocket:connected`` headers."""
    try:
        message = json.loads(start_text)
        start = message.get("start") or {}
        if "customParameters" in start or "custom_parameters" in start:
            params = start.get("customParameters") or start.get("custom_parameters") or {}
            script = params.get("sim_script", "[]")
        elif "extra_headers" in message:
            headers = dict(
                item.split("=", 1) for item in message["extra_headers"].split(";") if "=" in item
            )
            script = bytes.fromhex(headers.get("sim_script", "")).decode() or "[]"
        else:
            script = message.get("sim_script", "[]")
        texts = json.loads(script)
    except (ValueError, KeyError, TypeError, AttributeError):
        return []
    return [str(t) for t in texts] if isinstance(texts, list) else []


def create_sim_app(config: FakeServerConfig) -> tuple[SimInstrumentation, Any]:
    """The instrumented ASGI app and its runtime."""
    from voicerail.server.app import create_app

    runtime, _ = build_runtime(config)
    return SimInstrumentation(create_app(runtime)), runtime


@contextlib.asynccontextmanager
async def serve_in_process(
    config: FakeServerConfig, *, port: int | None = None
) -> AsyncIterator[str]:
    """Run the fake-provider server in this event loop; yield its base URL.

    For tests with a few callers; load runs use :func:`fake_server_process` so
    that the server's CPU is its own.
    """
    import uvicorn

    from voicerail.testing.server import free_port

    app, runtime = create_sim_app(config)
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("fake server exited during start-up")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        if app._lag_task is not None:
            app._lag_task.cancel()
            await asyncio.gather(app._lag_task, return_exceptions=True)
        runtime.events.close()


@contextlib.contextmanager
def fake_server_process(
    config: FakeServerConfig,
    *,
    port: int | None = None,
    startup_timeout_s: float = 120.0,
    python: str = sys.executable,
) -> Iterator[tuple[str, int]]:
    """Run the fake-provider server in a subprocess; yield (base URL, pid).

    Raises:
        RuntimeError: it exited or did not answer ``/healthz`` in time (with its log).
    """
    from voicerail.testing.server import free_port

    port = port or free_port()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.data_dir / "server.log"
    command = [python, "-m", "voicerail.sim.fake_server", "--port", str(port), *config.to_args()]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_healthy(proc, base_url, startup_timeout_s, log_path)
            yield base_url, proc.pid
        finally:
            stop_process(proc)


def wait_healthy(
    proc: subprocess.Popen[bytes], base_url: str, timeout_s: float, log_path: Path
) -> None:
    """Wait until ``base_url/healthz`` answers 200.

    Raises:
        RuntimeError: the process exited or the time ran out (with its log's end).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"server not healthy after {timeout_s} s:\n{tail}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc``, killing it after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m voicerail.sim.fake_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--agent", default="echo", help="echo, leaky or an agent YAML")
    parser.add_argument("--data-dir", type=Path, default=Path("var/sim-server"))
    parser.add_argument("--faults", type=Path, default=None)
    parser.add_argument("--providers", type=Path, default=None, help="deployment file (chains)")
    parser.add_argument("--vad", choices=["silero", "energy"], default="silero")
    parser.add_argument("--vad-batch-ms", type=float, default=4.0)
    parser.add_argument("--stt-latency", type=float, default=CloudLatency.stt_s, help="seconds")
    parser.add_argument("--llm-latency", type=float, default=CloudLatency.llm_s, help="seconds")
    parser.add_argument("--tts-latency", type=float, default=CloudLatency.tts_s, help="seconds")
    parser.add_argument("--sigma", type=float, default=CloudLatency.sigma, help="lognormal")
    parser.add_argument("--seconds-per-word", type=float, default=CloudLatency.seconds_per_word)
    parser.add_argument("--endpoint-silence", type=float, default=0.5, help="seconds")
    parser.add_argument("--reprompt-after", type=float, default=7.0, help="seconds")
    parser.add_argument("--hangup-after", type=float, default=20.0, help="seconds")
    parser.add_argument("--frames-per-media", type=int, default=1, help="20 ms frames")
    parser.add_argument("--max-calls", type=int, default=1000, help="admission ceiling")
    parser.add_argument("--workers", type=int, default=1, help="processes on the one port")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve until terminated."""
    import uvicorn

    args = _parser().parse_args(argv)
    config = FakeServerConfig(
        agent=args.agent,
        data_dir=args.data_dir,
        faults=args.faults,
        providers=args.providers,
        vad=args.vad,
        vad_batch_ms=args.vad_batch_ms,
        latency=CloudLatency(
            args.stt_latency, args.llm_latency, args.tts_latency, args.sigma, args.seconds_per_word
        ),
        endpoint_silence_s=args.endpoint_silence,
        reprompt_after_s=args.reprompt_after,
        hangup_after_s=args.hangup_after,
        frames_per_media=args.frames_per_media,
        max_calls=args.max_calls,
    )
    from voicerail.server.workers import WORKER_FD_VARIABLE

    inherited = os.environ.get(WORKER_FD_VARIABLE)
    if args.workers > 1 and not inherited:
        return _supervise(args, argv if argv is not None else sys.argv[1:])
    app, runtime = create_sim_app(config)
    print(f"fake server: agent {config.agent} on http://{args.host}:{args.port}", flush=True)
    uvicorn_config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        lifespan="off",
        # SIGTERM ends a load run's server within seconds, whatever is still open.
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(uvicorn_config)
    try:
        if inherited:  # a worker: serve on the supervisor's socket
            import socket

            with socket.socket(fileno=int(inherited)) as sock:
                server.run(sockets=[sock])
        else:
            server.run()
    finally:
        runtime.events.close()
    return 0


def _supervise(args: argparse.Namespace, argv: list[str]) -> int:
    """Bind the port once and run ``args.workers`` fake-server workers on it."""
    import socket

    from voicerail.server.workers import Supervisor

    with socket.create_server((args.host, args.port), backlog=2048) as sock:
        supervisor = Supervisor(
            argv=argv,
            listen_fd=sock.fileno(),
            num_workers=args.workers,
            module="voicerail.sim.fake_server",
            # Under fake_server_process's 10 s before it kills this supervisor, so
            # a lingering worker is killed here rather than left running.
            stop_timeout_s=5.0,
        )
        print(f"fake server: {args.workers} workers on http://{args.host}:{args.port}", flush=True)
        return supervisor.run()


if __name__ == "__main__":
    raise SystemExit(main())
