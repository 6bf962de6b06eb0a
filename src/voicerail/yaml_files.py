"""Reading a configuration file's YAML, with the one error shape every loader uses.

Agent files, deployment files and their sections are read here; each loader
then validates its own part. Errors are :class:`~voicerail.errors.ConfigError`
naming the file (``source``): "cannot read <kind>: <reason>" for a file that
cannot be read, "not valid YAML: <parser message>" for one that does not parse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from voicerail.errors import ConfigError


def read_yaml(path: str | Path, kind: str = "agent file") -> Any:
    """The parsed document of ``path`` (None for an empty file).

    Args:
        path: the YAML file.
        kind: what the file is, for the error ("agent file", "deployment file").

    Raises:
        ConfigError: the file cannot be read, or is not valid YAML.
    """
    source = str(path)
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {kind}: {exc.strerror}", source=source) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=source) from exc
