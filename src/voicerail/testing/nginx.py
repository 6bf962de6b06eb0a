"""A real nginx (Debian's ``nginx`` package) in front of a voicerail server, for tests.

:func:`nginx_process` writes a configuration under a directory of the caller's,
starts ``nginx`` in the foreground (``daemon off``, everything it writes under
that directory), waits for its port, and stops it after. The ``server`` block is
:func:`proxy_location`, the same one the README's "Behind a reverse proxy"
section shows: WebSocket upgrade for ``/twilio/media``, ``X-Forwarded-Proto``,
``-Host`` and ``-For``, and no buffering or idle cut of a call's stream
(https://nginx.org/en/docs/http/websocket.html, nginx 1.22).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def proxy_location(upstream: str) -> str:
    """The ``location /`` block that proxies everything to ``upstream`` (``host:port``)."""
    return f"""
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            # WebSocket upgrade (Twilio's media stream)
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            # The URL Twilio requested, and who asked (serve --forwarded-allow-ips)
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            # A call's stream is long and steady: no buffering, no 60 s idle cut
            proxy_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}"""


def nginx_config(
    directory: Path, *, listen_port: int, upstream: str, cert: Path | None, key: Path | None
) -> str:
    """A complete ``nginx.conf`` whose files all live under ``directory``.

    Args:
        directory: pid file, logs and temporary files go here.
        listen_port: the port nginx listens on (127.0.0.1).
        upstream: the voicerail server, ``host:port``.
        cert: PEM certificate for TLS (with ``key``); plain HTTP when None.
        key: its PEM private key.
    """
    tls = ""
    listen = f"127.0.0.1:{listen_port}"
    if cert is not None and key is not None:
        listen += " ssl"
        tls = f"ssl_certificate {cert};\n        ssl_certificate_key {key};"
    temp = "\n    ".join(
        f"{kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
daemon off;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
events {{ worker_connections 512; }}
http {{
    access_log {directory / "access.log"};
    {temp}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    server {{
        listen {listen};
        server_name localhost;
        {tls}
        {proxy_location(upstream)}
    }}
}}
"""


def self_signed_cert(directory: Path, host: str = "localhost") -> tuple[Path, Path]:
    """(certificate, key) PEM files for ``host`` and 127.0.0.1, made with ``openssl``.

    Raises:
        subprocess.CalledProcessError: openssl failed.
    """
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-keyout", str(key), "-out", str(cert), "-subj", f"/CN={host}"]
    command += ["-addext", f"subjectAltName=DNS:{host},IP:127.0.0.1"]
    subprocess.run(
        command,
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@contextlib.contextmanager
def nginx_process(
    directory: Path,
    *,
    listen_port: int,
    upstream: str,
    cert: Path | None = None,
    key: Path | None = None,
    startup_timeout_s: float = 10.0,
) -> Iterator[Path]:
    """Run nginx in front of ``upstream``; yield ``directory`` (its logs are there).

    Raises:
        FileNotFoundError: nginx is not installed (``make setup`` installs it).
        RuntimeError: nginx exited or did not listen in time (with its error log).
    """
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(
        nginx_config(directory, listen_port=listen_port, upstream=upstream, cert=cert, key=key)
    )
    error_log = directory / "error.log"
    command = [binary, "-p", str(directory), "-c", str(conf), "-e", str(error_log)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, listen_port, startup_timeout_s, error_log)
        yield directory
    finally:
        proc.terminate()  # SIGTERM: nginx's fast shutdown
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_listening(
    proc: subprocess.Popen[bytes], port: int, timeout_s: float, error_log: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = error_log.read_text(errors="replace") if error_log.exists() else ""
            raise RuntimeError(f"nginx exited with {proc.returncode}:\n{log[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nginx not listening on {port} after {timeout_s} s")
