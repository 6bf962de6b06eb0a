"""A throwaway PostgreSQL server for tests and benchmarks.

Runs Debian's (or any) PostgreSQL binaries: ``initdb`` a cluster in a temporary
directory, start it with ``pg_ctl`` on a free loopback port, yield its URL and
remove everything afterwards. PostgreSQL refuses to run as root, so as root the
server runs as the ``postgres`` user (else ``nobody``) through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

_INITDB_FLAGS = ("-A", "trust", "-U", "voicerail", "-E", "UTF8", "--no-sync", "--no-instructions")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries were found on this machine."""


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``.

    Looks at ``$VOICERAIL_PG_BINDIR``, Debian's ``/usr/lib/postgresql/<version>/bin``
    (newest first), then ``PATH``.

    Raises:
        PostgresUnavailable: none has both programs.
    """
    candidates = [os.environ.get("VOICERAIL_PG_BINDIR", "")]
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(debian, key=lambda p: int(Path(p).parent.name), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for candidate in filter(None, candidates):
        bindir = Path(candidate)
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql package"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> list[str]:
    """The command prefix that drops root (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            subprocess.run(["id", user], check=True, capture_output=True)
        except subprocess.CalledProcessError:
            continue
        return ["runuser", "-u", user, "--"]
    raise PostgresUnavailable("running as root and neither 'postgres' nor 'nobody' exists")


@contextmanager
def temporary_postgres(settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """Start a PostgreSQL server for the duration of the block; yields its URL.

    Args:
        settings: extra server settings (``{"shared_buffers": "256MB"}``).

    Raises:
        PostgresUnavailable: no binaries, or the server did not start (with its log).
    """
    bindir = find_bindir()
    prefix = _run_as()
    root = Path(tempfile.mkdtemp(prefix="voicerail-pg-"))
    if prefix:
        user = prefix[2]
        shutil.chown(root, user=user)
    data = root / "data"
    port = _free_port()
    options = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(root),
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        **(settings or {}),
    }
    server_options = f"-p {port} " + " ".join(f"-c {k}={v}" for k, v in options.items())
    log_path = root / "server.log"
    start = ["-l", str(log_path), "-w", "-t", "30", "start"]
    try:
        subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), *_INITDB_FLAGS],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", server_options, *start],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        server_log = log_path.read_text(errors="replace") if log_path.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        detail = (exc.stderr or b"").decode(errors="replace")
        raise PostgresUnavailable(
            f"postgresql did not start: {detail.strip()} {server_log[-2000:]}"
        ) from exc
    try:
        yield f"postgresql://voicerail@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def temporary_database(server_url: str) -> Iterator[str]:
    """A new, empty database on ``server_url``'s server for the block; yields its URL."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
