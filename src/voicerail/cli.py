"""The ``voicerail`` command line.

(Over 800 lines: one argument parser per command and their start-up checks,
each a few lines, grew with every issue; the next split, due now, is ``serve``
and its worker supervision into ``server/serve_cli.py``.)

Commands:
    serve   run the server (Twilio webhook, media WebSocket, REST API)
    call    place one simulated Twilio call against a running server
    calls   list calls and show a call's timeline from the event store
    ops     failure rate by provider, cost per converted call, last failed calls,
            what would halve the failure rate, and credential expiry
    simulate  scripted concurrent callers against a server, checked and reported
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voicerail.config import ServeOptions, default_data_dir
from voicerail.errors import VoicerailError
from voicerail.session.runtime import AudioConfig
from voicerail.turns.policy import TurnConfig

#: Commands of ``compliance/cli.py`` (imported only when one of them runs).
COMPLIANCE_COMMANDS = ("erase", "audit", "gates", "review")

if TYPE_CHECKING:
    from voicerail.server.proxy import TrustedProxies


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicerail", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the voice agent server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--agent", type=Path, default=Path("examples/clinic.yaml"))
    serve.add_argument("--data-dir", type=Path, default=None)
    serve.add_argument("--tts", choices=["piper", "espeak-ng"], default="piper")
    serve.add_argument("--vad", choices=["silero", "energy"], default="silero")
    serve.add_argument(
        "--vad-batch-ms",
        type=float,
        default=4.0,
        help="batch Silero windows across calls, waiting at most this long (0: off)",
    )
    serve.add_argument("--whisper-model", default="tiny.en")
    serve.add_argument(
        "--no-fallback", action="store_true", help="one STT and one TTS, no failover chains"
    )
    serve.add_argument(
        "--providers",
        type=Path,
        default=None,
        help="deployment file naming the STT, TTS and LLM chains ($VOICERAIL_PROVIDERS)",
    )
    serve.add_argument("--faults", type=Path, default=None, help="fault injection file")
    serve.add_argument("--prices", type=Path, default=None, help="provider price table (YAML)")
    serve.add_argument(
        "--validate-tts", action="store_true", help="pacing and ASR round-trip checks of TTS"
    )
    serve.add_argument("--lexicon", type=Path, default=None, help="pronunciation lexicon (YAML)")
    serve.add_argument("--endpoint-silence", type=float, default=0.5, help="seconds")
    serve.add_argument(
        "--turn-model",
        default="smart-turn",
        help="end-of-turn model: smart-turn (Smart Turn v3 from the pipecat-ai package), "
        "an ONNX file path, or none (the endpointing window alone)",
    )
    serve.add_argument(
        "--first-clause-words",
        type=int,
        default=3,
        help="speak a reply's first clause alone when both sides have this many words (0: off)",
    )
    serve.add_argument(
        "--speculate-after",
        type=float,
        default=0.3,
        help="seconds of pause before speculative STT starts, never after the turn model "
        "check (0: at the pause start, costing one decode per pause that does not end "
        "the turn; negative: off)",
    )
    serve.add_argument(
        "--turn-check-after",
        type=float,
        default=0.3,
        help="seconds of pause before the end-of-turn model is asked",
    )
    serve.add_argument(
        "--frames-per-media", type=int, default=1, help="20 ms frames per outbound media message"
    )
    serve.add_argument("--barge-in", type=float, default=0.6, help="seconds of caller speech")
    serve.add_argument("--reprompt-after", type=float, default=7.0, help="seconds of silence")
    serve.add_argument("--hangup-after", type=float, default=20.0, help="seconds of silence")
    serve.add_argument("--twilio-auth-token", default=None, help="or $TWILIO_AUTH_TOKEN")
    serve.add_argument(
        "--telnyx-public-key",
        default=None,
        help="base64 Ed25519 key that verifies Telnyx webhooks (or $TELNYX_PUBLIC_KEY)",
    )
    serve.add_argument(
        "--public-url",
        default=None,
        help="the URL Twilio calls, e.g. https://voice.example.com (signatures, stream URL)",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="reverse proxies whose X-Forwarded-Proto/Host/For are believed, "
        "e.g. 127.0.0.1,10.0.0.0/8 ($VOICERAIL_FORWARDED_ALLOW_IPS; default: none)",
    )
    serve.add_argument(
        "--browser-calls",
        action="store_true",
        help="serve the browser call page at /call (behind the dashboard login when "
        "an API key or password is set; loopback only otherwise)",
    )
    serve.add_argument("--handoff-number", default=None)
    serve.add_argument(
        "--handoff-mode",
        default="cold",
        choices=["cold", "warm"],
        help="warm: conference, summary whispered to the human (needs $TWILIO_ACCOUNT_SID)",
    )
    serve.add_argument("--handoff-from", default=None, help="caller ID of the human's leg")
    serve.add_argument("--hold-music-url", default="", help="the conference's waitUrl")
    serve.add_argument(
        "--handoff-fallbacks", default="", help="e.g. busy=callback,no_answer=voicemail"
    )
    serve.add_argument(
        "--database-url", default=None, help="PostgreSQL event store (or $VOICERAIL_DATABASE_URL)"
    )
    serve.add_argument(
        "--api-key", default=None, help="needed for /dashboard, /api, /metrics ($VOICERAIL_API_KEY)"
    )
    serve.add_argument(
        "--otlp-endpoint", default=None, help="OTLP/HTTP traces ($VOICERAIL_OTLP_ENDPOINT)"
    )
    serve.add_argument(
        "--credentials", type=Path, default=None, help="credentials file ($VOICERAIL_CREDENTIALS)"
    )
    serve.add_argument(
        "--alert-webhook", default=None, help="Slack-compatible URL ($VOICERAIL_ALERT_WEBHOOK)"
    )
    serve.add_argument(
        "--skip-credential-check", action="store_true", help="start without checking credentials"
    )
    serve.add_argument(
        "--no-phrase-cache", action="store_true", help="synthesize fixed sentences per call"
    )
    serve.add_argument(
        "--holding-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="say the cached holding phrase when a reply is this late (default: never)",
    )
    serve.add_argument(
        "--cache-dir", type=Path, default=None, help="phrase cache ($VOICERAIL_CACHE_DIR)"
    )
    serve.add_argument(
        "--workers", type=_positive_int, default=1, help="server processes on the one port"
    )
    serve.add_argument(
        "--sip",
        default=None,
        metavar="HOST:PORT",
        help="also answer SIP calls over UDP at HOST:PORT (one worker only)",
    )
    serve.add_argument(
        "--redis-url",
        default=None,
        help="call state in Redis, redis://HOST:PORT/DB ($VOICERAIL_REDIS_URL)",
    )
    serve.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds calls in progress may go on after SIGTERM",
    )
    serve.add_argument(
        "--max-calls",
        type=int,
        default=None,
        help="calls in progress beyond which new calls are refused (default: from the cores)",
    )

    call = sub.add_parser("call", help="place a simulated call (Twilio, Telnyx, Plivo or Vonage)")
    call.add_argument(
        "--url",
        default="ws://127.0.0.1:8080/twilio/media",
        help="a Twilio media socket to stream to directly (no webhook)",
    )
    call.add_argument(
        "--server",
        default=None,
        metavar="URL",
        help="http://HOST:PORT: start the call at the provider's webhook, then stream",
    )
    call.add_argument(
        "--transport",
        choices=["twilio", "telnyx", "plivo", "vonage"],
        default="twilio",
        help="the provider the call comes through (with --server)",
    )
    call.add_argument("--say", action="append", type=Path, default=[], metavar="WAV")
    call.add_argument("--record-dir", type=Path, default=None)
    call.add_argument("--turn-gap", type=float, default=1.2, help="agent silence that ends a reply")
    call.add_argument("--json", action="store_true")

    from voicerail.ops.cli import add_parser as add_ops_parser

    add_ops_parser(sub)

    from voicerail.sim.cli import add_parser as add_simulate_parser

    add_simulate_parser(sub)

    from voicerail.compliance.cli import add_parser as add_compliance_parser

    add_compliance_parser(sub)

    calls = sub.add_parser("calls", help="inspect recorded calls")
    calls_sub = calls.add_subparsers(dest="calls_command", required=True)
    lst = calls_sub.add_parser("list")
    lst.add_argument("--data-dir", type=Path, default=None)
    lst.add_argument("--database-url", default=None, help="or $VOICERAIL_DATABASE_URL")
    lst.add_argument("--limit", type=_calls_limit, default=20, help="1 to 1000")
    lst.add_argument("--json", action="store_true")
    show = calls_sub.add_parser("show")
    show.add_argument("call_id")
    show.add_argument("--data-dir", type=Path, default=None)
    show.add_argument("--database-url", default=None, help="or $VOICERAIL_DATABASE_URL")
    show.add_argument("--json", action="store_true")
    return parser


def _calls_limit(text: str) -> int:
    """``--limit`` of ``calls list``: an integer the store accepts.

    Raises:
        argparse.ArgumentTypeError: not an integer from 1 to ``MAX_CALLS_LIMIT``.
    """
    from voicerail.events.store import MAX_CALLS_LIMIT

    if not text.isdigit() or not 1 <= int(text) <= MAX_CALLS_LIMIT:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to {MAX_CALLS_LIMIT}")
    return int(text)


def _positive_int(text: str) -> int:
    """An integer of at least 1.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be an integer of at least 1")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args, argv)
        if args.command == "call":
            return asyncio.run(_call(args))
        if args.command == "ops":
            from voicerail.ops.cli import run as run_ops

            return run_ops(args, default_data_dir())
        if args.command in COMPLIANCE_COMMANDS:
            from voicerail.compliance.cli import run as run_compliance

            return run_compliance(args)
        if args.command == "simulate":
            from voicerail.sim.cli import run as run_simulate

            return run_simulate(args)
        return _calls(args)
    except VoicerailError as exc:
        print(f"voicerail: {exc}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace, argv: list[str]) -> int:
    """Check the data directory, bind the port, then load models and serve.

    The port is bound before anything slow or noisy happens, so a port in use is
    one line and a non-zero exit, and "serving" is printed only once it is true.
    With ``--workers N`` this process supervises N workers that inherit the
    socket (``server/workers.py``); a worker is told so by its environment.
    """
    import os
    import socket

    from voicerail.server.workers import WORKER_FD_VARIABLE

    data_dir = _data_dir_for_serving(args.data_dir or default_data_dir())
    _trusted_proxies(args)  # a bad entry is one line now, not after the models load
    inherited = os.environ.get(WORKER_FD_VARIABLE)
    if inherited:  # a worker: the supervisor did the once-per-host work
        with socket.socket(fileno=int(inherited)) as sock:
            return _serve_on(args, data_dir, sock, supervised=True)
    sock = _listen(args.host, args.port)
    try:
        _check_redis(args)
        if args.sip and args.workers > 1:
            # Datagrams of one dialog must reach one process; SO_REUSEPORT would not.
            raise SystemExit("voicerail: --sip serves from one worker; drop --workers")
        if args.workers == 1:
            return _serve_on(args, data_dir, sock)
        from voicerail.compliance.pay_http import check_workers
        from voicerail.compliance.policy import policy_of_agent_file

        capture = policy_of_agent_file(args.agent).pci.capture
        check_workers(capture, workers=args.workers, shared_state=bool(_redis_url(args)))
        return _supervise(args, argv, data_dir, sock)
    finally:
        sock.close()


def _sip_settings(bind: str | None, handoff_number: str | None) -> Any:
    """``--sip HOST:PORT`` as :class:`SipSettings`, or None without the flag."""
    if not bind:
        return None
    from voicerail.server.sip_server import SipSettings

    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SystemExit(f"voicerail: --sip expects HOST:PORT, got {bind!r}")
    return SipSettings(host=host, port=int(port), handoff_number=handoff_number)


def _database_url(args: argparse.Namespace) -> str | None:
    import os

    return args.database_url or os.environ.get("VOICERAIL_DATABASE_URL") or None


#: How long a dead worker's calls may take to resume elsewhere before the
#: supervisor closes them as worker_lost, seconds (server/workers.py rule 4).
RESUME_GRACE_S = 10.0


def _redis_url(args: argparse.Namespace) -> str | None:
    """``--redis-url`` or ``$VOICERAIL_REDIS_URL``."""
    import os

    return args.redis_url or os.environ.get("VOICERAIL_REDIS_URL") or None


def _check_redis(args: argparse.Namespace) -> None:
    """A configured Redis answers, before anything slow happens.

    Raises:
        ConfigError: it does not, or redis-py is missing.
    """
    import os

    url = args.redis_url or os.environ.get("VOICERAIL_REDIS_URL")
    if url:
        from voicerail.state.redis_store import RedisStateStore

        RedisStateStore.check(url)


def _close_lost_calls(args: argparse.Namespace, data_dir: Path) -> None:
    """Close the calls of dead workers as ``worker_lost`` (``state/lost_calls.py``),
    with a store opened now, after they died."""
    from voicerail.events.store import open_event_store
    from voicerail.state.lost_calls import close_lost_calls

    url = _database_url(args)
    if url is None and not (data_dir / "events.sqlite3").exists():
        return  # no store yet, so no call was left in it; none is created here
    store = open_event_store(data_dir, url)
    try:
        closed = close_lost_calls(store)
    finally:
        store.close()
    if closed:
        print(f"voicerail: closed {len(closed)} calls of dead workers as failed", flush=True)


def _supervise(args: argparse.Namespace, argv: list[str], data_dir: Path, sock: Any) -> int:
    """Check credentials once, then run ``args.workers`` workers on ``sock``."""
    import time

    from voicerail.ops.credentials import check_at_startup, load_registry
    from voicerail.server.operations import OperationsSettings
    from voicerail.server.workers import Supervisor

    overrides = {"credentials_path": args.credentials} if args.credentials else {}
    operations = OperationsSettings.from_env(data_dir=data_dir, **overrides)
    registry = load_registry(operations.credentials_path)
    if registry and not args.skip_credential_check:
        check_at_startup(registry, now_s=time.time(), source=str(operations.credentials_path))
    _close_lost_calls(args, data_dir)
    supervisor = Supervisor(
        argv=argv,
        listen_fd=sock.fileno(),
        num_workers=args.workers,
        sweep=lambda: _close_lost_calls(args, data_dir),
        stop_timeout_s=args.drain_timeout + 30.0,
        # Calls can resume on another worker only with a shared state store.
        sweep_delay_s=RESUME_GRACE_S if _redis_url(args) else 0.0,
    )
    print(f"voicerail: {args.workers} workers on http://{args.host}:{args.port}", flush=True)
    return supervisor.run()


def _data_dir_for_serving(path: Path) -> Path:
    """Create the data directory if needed.

    Raises:
        ConfigError: ``path`` is a file, or cannot be created.
    """
    from voicerail.errors import ConfigError

    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} is not a directory", source="--data-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {_reason(exc)}", source="--data-dir") from None
    return path


def _listen(host: str, port: int) -> Any:
    """A listening socket on ``host:port``.

    Raises:
        ConfigError: the address cannot be bound (in use, not local, no permission).
    """
    import socket

    from voicerail.errors import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {_reason(exc)}", source="--port"
        ) from None


def _reason(exc: OSError) -> str:
    """The OS's short reason ("Address already in use"), without Python's additions."""
    import os

    return os.strerror(exc.errno) if exc.errno else str(exc)


def _deployment_fallbacks(path: Path | None) -> str:
    """The deployment file's ``compliance.handoff_fallbacks`` (the flag's format)."""
    from voicerail.compliance.policy import deployment_compliance

    return deployment_compliance(path).handoff_fallbacks or ""


def _schedule_retention(app: Any, options: ServeOptions, *, first_worker: bool) -> None:
    """The deployment file's retention, run hourly by one worker (``compliance/scheduler.py``);
    reads of call data and configuration changes go to the audit log (``audit_http.py``)."""
    import time

    from voicerail.compliance.audit import AuditLog
    from voicerail.compliance.audit_http import AuditAccessMiddleware, record_config
    from voicerail.compliance.policy import deployment_compliance
    from voicerail.compliance.scheduler import RetentionJob, chain_lifespan

    audit_path = options.data_dir / "audit.sqlite3"
    app.add_middleware(AuditAccessMiddleware, path=audit_path, wall=time.time)
    if first_worker:
        audit = AuditLog(audit_path)
        try:
            files = [p for p in (options.agent_path, options.providers_path) if p is not None]
            record_config(audit, files, actor="system", at_wall=time.time())
        finally:
            audit.close()
    policy = deployment_compliance(options.providers_path)
    days = policy.retention.days()
    if days and first_worker:
        job = RetentionJob(days, options.data_dir, every_s=policy.retention_every_s,
                           wall=time.time, database_url=options.database_url)  # fmt: skip
        chain_lifespan(app, job)


def _serve_on(
    args: argparse.Namespace, data_dir: Path, sock: Any, *, supervised: bool = False
) -> int:
    import logging
    import os
    import time
    from dataclasses import replace

    import uvicorn

    from voicerail.config import build_runtime, warm_up
    from voicerail.ops.credentials import check_at_startup, load_registry
    from voicerail.server.admission import load_overflow
    from voicerail.server.app import ServerSettings, create_app
    from voicerail.server.auth import exposure_warning, is_loopback
    from voicerail.server.drain import DrainingServer, drain_calls
    from voicerail.server.http_limits import header_timeout_protocol
    from voicerail.server.operations import OperationsSettings
    from voicerail.server.workers import watch_supervisor, worker_index

    # One line per failed call and per refused stream reaches stderr (issue 11).
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    overrides: dict[str, Any] = {}
    if args.otlp_endpoint:
        overrides["otlp_endpoint"] = args.otlp_endpoint
    if args.credentials:
        overrides["credentials_path"] = args.credentials
    if args.alert_webhook:
        overrides["alert_webhook_url"] = args.alert_webhook
    operations = OperationsSettings.from_env(data_dir=data_dir, **overrides)
    if args.api_key:
        operations = replace(operations, access=replace(operations.access, api_key=args.api_key))
    if operations.otlp_endpoint:  # before the models load, not after
        from voicerail.extras import require_extra

        require_extra("otel", "trace export (--otlp-endpoint)")
    # Fail fast, before the models load, naming the credential that does not work.
    registry = load_registry(operations.credentials_path)
    if registry and not args.skip_credential_check and not supervised:
        check_at_startup(registry, now_s=time.time(), source=str(operations.credentials_path))
    if supervised and worker_index() != 0:
        operations = replace(operations, credential_monitor=False)  # one checker per host
    if args.browser_calls and not operations.access.enabled and not is_loopback(args.host):
        # Anyone who reaches the page could place calls (STT, LLM, TTS spend).
        print(
            f"voicerail: --browser-calls on {args.host} needs an API key or a dashboard "
            "password (VOICERAIL_API_KEY, VOICERAIL_DASHBOARD_PASSWORD), or bind to 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    warning = exposure_warning(args.host, operations.access)
    if warning:
        print(f"voicerail: warning: {warning}", file=sys.stderr)

    options = ServeOptions(
        agent_path=args.agent,
        data_dir=data_dir,
        database_url=_database_url(args),
        whisper_model=args.whisper_model,
        tts=args.tts,
        vad=args.vad,
        vad_batch_ms=args.vad_batch_ms,
        fallback=not args.no_fallback,
        providers_path=args.providers or _env_path("VOICERAIL_PROVIDERS"),
        credentials=registry,
        faults_path=args.faults,
        prices_path=args.prices,
        validate_tts=args.validate_tts,
        lexicon_path=args.lexicon,
        max_calls=args.max_calls,
        phrase_cache=not args.no_phrase_cache,
        cache_dir=args.cache_dir,
        turns=TurnConfig(
            barge_in_s=args.barge_in,
            reprompt_after_s=args.reprompt_after,
            hangup_after_s=args.hangup_after,
        ),
        audio=AudioConfig(
            endpoint_silence_s=args.endpoint_silence,
            frames_per_media=args.frames_per_media,
            turn_check_after_s=args.turn_check_after,
            speculative_stt_after_s=None if args.speculate_after < 0 else args.speculate_after,
            first_clause_min_words=args.first_clause_words or None,
            holding_after_s=args.holding_after,
        ),
        turn_model=None if args.turn_model == "none" else args.turn_model,
    )
    if supervised:
        _check_redis(args)  # the supervisor checked; a worker may start much later
    else:  # once per host: a supervisor did it for its workers
        _close_lost_calls(args, data_dir)
    runtime = build_runtime(options)
    redis_url = args.redis_url or os.environ.get("VOICERAIL_REDIS_URL")
    if redis_url:
        from voicerail.state.redis_store import RedisStateStore

        runtime.state = RedisStateStore(redis_url)
    from voicerail.compliance.pay_http import provide_state

    provide_state(runtime)
    asyncio.run(warm_up(runtime))
    from voicerail.server.handoff_settings import fallbacks_from_agent_file, settings_from

    auth_token = args.twilio_auth_token or os.environ.get("TWILIO_AUTH_TOKEN")
    settings = ServerSettings(
        twilio_auth_token=auth_token,
        telnyx_public_key=args.telnyx_public_key or os.environ.get("TELNYX_PUBLIC_KEY"),
        public_url=args.public_url,
        forwarded_allow_ips=_trusted_proxies(args),
        handoff_number=args.handoff_number,
        operations=operations,
        overflow=load_overflow(args.agent),
        handoff=settings_from(
            number=args.handoff_number if args.handoff_mode == "warm" else None,
            mode=args.handoff_mode,
            from_number=args.handoff_from,
            account_sid=os.environ.get("TWILIO_ACCOUNT_SID"),
            auth_token=auth_token,
            hold_music_url=args.hold_music_url,
            # The flag, else the deployment file's; either overrides the agent file's.
            fallbacks=args.handoff_fallbacks or _deployment_fallbacks(options.providers_path),
            # Twilio's REST API; another URL only for a rehearsal against a fake.
            api_base_url=os.environ.get("VOICERAIL_TWILIO_API_URL", "https://api.twilio.com"),
            agent_fallbacks=fallbacks_from_agent_file(args.agent),
        ),
        other_workers=supervised,
        browser_calls=args.browser_calls,
        sip=_sip_settings(args.sip, args.handoff_number),
    )
    app = create_app(runtime, settings)
    _schedule_retention(app, options, first_worker=not supervised or worker_index() == 0)
    if operations.dashboard:
        from voicerail.compliance.review_http import add_review_page

        add_review_page(app, runtime, options)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        http=header_timeout_protocol(settings.limits.header_timeout_s),
        # X-Forwarded-* are believed only per --forwarded-allow-ips (server/proxy.py),
        # not from 127.0.0.1 as uvicorn does by default.
        proxy_headers=False,
        # A backstop after the drain: a handler that does not return within
        # this long is cancelled, so no stuck call keeps the process alive.
        timeout_graceful_shutdown=10,
    )

    def drain() -> Any:
        return drain_calls(
            runtime.load, lambda: list(app.state.calls.values()), deadline_s=args.drain_timeout
        )

    parent_pid = os.getppid()
    watch = (lambda: watch_supervisor(parent_pid)) if supervised else None
    server = DrainingServer(config, drain, background=watch, stop_listening=supervised)
    print(f"voicerail: serving {runtime.agent.name} on http://{args.host}:{args.port}", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        runtime.events.close()
    if server.drain_result is not None:
        print(f"voicerail: drained: {server.drain_result}", flush=True)
    return 0


def _trusted_proxies(args: argparse.Namespace) -> TrustedProxies:
    """``--forwarded-allow-ips`` or ``$VOICERAIL_FORWARDED_ALLOW_IPS``; none when unset.

    Raises:
        ConfigError: an entry is not an IP address or network.
    """
    import os

    from voicerail.server.proxy import TrustedProxies

    text = args.forwarded_allow_ips or os.environ.get("VOICERAIL_FORWARDED_ALLOW_IPS") or ""
    return TrustedProxies.parse(text)


def _env_path(variable: str) -> Path | None:
    """The path in environment variable ``variable``, None when unset or empty."""
    import os

    value = os.environ.get(variable)
    return Path(value) if value else None


async def _call(args: argparse.Namespace) -> int:
    from voicerail.sim.api_client import fetch_call, http_base_from_media_url, summarize
    from voicerail.sim.caller import CallerTurn, SimulatedTwilioCall, save_agent_audio

    turns = [CallerTurn.from_wav(path) for path in args.say]
    keep = args.record_dir is not None
    if args.server is not None or args.transport != "twilio":
        from voicerail.sim.provider_calls import answer_call

        base = args.server or http_base_from_media_url(args.url)
        caller = await answer_call(
            args.transport, base, turn_gap_s=args.turn_gap, keep_agent_audio=keep
        )
    else:
        # Rung as Twilio rings it: the voice webhook, its TwiML, and the <Connect action>
        # URL after a stream the server ended (a worker died: the call resumes).
        base = http_base_from_media_url(args.url)
        caller = SimulatedTwilioCall(
            args.url,
            turn_gap_s=args.turn_gap,
            keep_agent_audio=keep,
            voice_url=base + "/twilio/voice",
        )
    result = await caller.run(turns)
    server = await fetch_call(base, result.call_sid)
    summary = summarize(result, server)
    if args.record_dir is not None:
        summary["agent_audio"] = str(save_agent_audio(result, args.record_dir))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_call_summary(summary)
    return 0 if server is not None else 1


def _print_call_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]call[/bold] {summary['call_id']}  outcome: {summary['outcome']}")
    console.print(f"[cyan]agent:[/cyan] {summary['greeting']}")
    table = Table("caller audio", "heard", "agent said", "v2v ms")
    for turn in summary["turns"]:
        table.add_row(
            Path(turn["caller_audio"]).name,
            turn["transcript"],
            turn["agent_text"],
            str(turn["v2v_latency_ms"]),
        )
    console.print(table)


def _calls(args: argparse.Namespace) -> int:
    import os

    from rich.console import Console
    from rich.table import Table

    from voicerail.events.store import EventStore, SQLiteEventStore

    url = args.database_url or os.environ.get("VOICERAIL_DATABASE_URL")
    store: EventStore
    if url:
        from voicerail.events.postgres import PostgresEventStore

        store = PostgresEventStore(url)
    else:
        path = (args.data_dir or default_data_dir()) / "events.sqlite3"
        if not path.exists():
            print(f"voicerail: no event store at {path}", file=sys.stderr)
            return 2
        store = SQLiteEventStore(path)
    console = Console()
    try:
        if args.calls_command == "list":
            calls = store.calls(limit=args.limit)
            if args.json:
                print(json.dumps([c.to_dict() for c in calls], indent=2))
                return 0
            table = Table("call id", "agent", "started", "seconds", "outcome", "error")
            for c in calls:
                seconds = f"{c.ended_at - c.started_at:.1f}" if c.ended_at else "…"
                table.add_row(
                    c.call_id, c.agent, _fmt_time(c.started_at), seconds, c.outcome, c.error
                )
            console.print(table)
            return 0
        call = store.call(args.call_id)
        if call is None:
            print(f"voicerail: no call {args.call_id!r}", file=sys.stderr)
            return 1
        events = store.events(args.call_id)
        if not url:  # compliance/audit.py: every read of call data is an entry
            from voicerail.compliance.cli import audit_read

            audit_read(path.parent, args.call_id)
        if args.json:
            body = call.to_dict()
            body["events"] = [e.to_dict() for e in events]
            print(json.dumps(body, indent=2))
            return 0
        console.print(f"[bold]{call.call_id}[/bold] {call.agent} outcome={call.outcome}")
        console.print(timeline_table(events))
        return 0
    finally:
        store.close()


def timeline_table(events: list[Any]) -> Any:
    """A rich table of a call's events, times relative to the first event."""
    from rich.table import Table

    table = Table("t (s)", "event", "stage", "provider", "latency ms", "details")
    t0 = events[0].at_mono if events else 0.0
    for e in events:
        details = {k: v for k, v in e.data.items() if v is not None}
        details.update({k: v for k, v in e.pii.items() if v})
        latency = f"{e.latency_s * 1000:.0f}" if e.latency_s is not None else ""
        table.add_row(
            f"{e.at_mono - t0:7.2f}",
            str(e.kind),
            str(e.stage or ""),
            e.provider or "",
            latency,
            json.dumps(details, default=str)[:120],
        )
    return table


def _fmt_time(at_wall: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(at_wall, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


if __name__ == "__main__":
    raise SystemExit(main())
