"""Optional parts of voicerail and the extras that install them.

The core install runs ``voicerail serve`` on SQLite. Each optional concern is an
extra of the package (``pyproject.toml``), as Pipecat and LiveKit Agents split
theirs: ``speech`` (the embedded models), ``postgres`` (the PostgreSQL event
store), ``sim`` (``voicerail simulate``'s charts and resource sampling),
``otel`` (OpenTelemetry trace export) and ``dev``. Code that needs an extra
checks for it where the feature starts, and a missing one is one
:class:`~voicerail.errors.ConfigError` line that says what to install, not a
traceback.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from voicerail.errors import ConfigError

#: extra name -> the top-level modules it provides.
EXTRAS: dict[str, tuple[str, ...]] = {
    "otel": ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"),
    "postgres": ("psycopg",),
    "redis": ("redis",),
    "sim": ("matplotlib", "psutil"),
}


def missing_modules(modules: Sequence[str]) -> list[str]:
    """The modules of ``modules`` that cannot be imported here (none are imported)."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package of a dotted name is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def extra_missing(extra: str, what: str, missing: Sequence[str]) -> ConfigError:
    """The error for ``what`` needing ``extra``, whose ``missing`` modules are absent."""
    return ConfigError(
        f"{what} needs the {extra!r} extra (missing {', '.join(missing)}): "
        f"pip install 'voicerail[{extra}]'",
        source="voicerail",
        field=f"extras.{extra}",
    )


def require_extra(extra: str, what: str) -> None:
    """Check that ``extra`` (a key of :data:`EXTRAS`) is installed, for ``what``.

    Raises:
        ConfigError: one of its modules is missing; names the extra to install.
    """
    missing = missing_modules(EXTRAS[extra])
    if missing:
        raise extra_missing(extra, what, missing)
