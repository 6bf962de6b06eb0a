"""The provider registry: provider name → factory, and the deployment file that names chains.

One :class:`ProviderRegistry` builds the STT, TTS and LLM chains for
``voicerail serve``, ``voicerail simulate`` and the tests alike: each builds
exactly what the others build. The built-in providers are registered by
:func:`voicerail.providers.builtin.default_registry`; the simulator adds its
fakes to a copy; fault injection is a wrapper of the registry
(:meth:`ProviderRegistry.wrapped`), applied to every provider it builds.

Rules:

1. A chain is a list of entries, first preferred. An entry is a provider name
   (``deepgram``) or a one-key mapping of a name to its options
   (``{elevenlabs: {voice_id: …, timeout_s: 3}}``). The option ``name`` renames
   the provider in routing and events, so one provider can appear twice.
2. Options are validated by the factory's pydantic model: an unknown option or
   a value of the wrong type is refused.
3. Secrets never come from the file. An option that looks like one (``api_key``,
   ``key``, ``token``, ``secret``, ``password``) is refused. A provider that
   needs a key reads it from the credential named by its ``credential`` option
   (default: the provider's name) in the credentials registry
   (:mod:`voicerail.ops.credentials`), else from its well-known variable
   (``DEEPGRAM_API_KEY``…).
4. Every refusal is one :class:`~voicerail.errors.ConfigError` naming the file
   and the field (``providers.stt[0].deepgram.model``), raised before any
   provider is built, so ``serve`` stops before it loads a model.

The file (``voicerail serve --providers voicerail.yaml``)::

    providers:
      stt: [deepgram, faster-whisper]
      tts:
        - elevenlabs: {voice_id: 21m00Tcm4TlvDq8ikWAM, timeout_s: 3}
        - piper
      llm:
        - openai: {model: gpt-4o-mini}
    routing:                       # optional: per-chain routing policy
      tts: {ttfb_timeout_s: 0.8}
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from voicerail.errors import ConfigError
from voicerail.events.model import Stage

#: The stages a deployment file may name chains for.
CHAIN_STAGES = (Stage.STT, Stage.TTS, Stage.LLM)

# Rule 3: option names that would put a secret in the file.
_SECRET_OPTION = re.compile(r"(^|_)(api_?key|key|token|secret|password)$", re.IGNORECASE)

Build = Callable[[Any, "str | None"], Any]


@dataclass(frozen=True)
class ProviderFactory:
    """How to build one kind of provider.

    Attributes:
        provider: the name a deployment file uses (``deepgram``).
        stage: the chain it can be in.
        options: a pydantic model of its options (``extra="forbid"``); an
            optional ``name`` field renames the built provider (rule 1).
        build: ``(validated options, secret or None) -> provider``; may raise
            :class:`~voicerail.errors.ConfigError` (a model not on disk).
        env: variables that hold its key, first found wins; empty when it needs
            none (rule 3).
    """

    provider: str
    stage: Stage
    options: type[BaseModel]
    build: Build
    env: tuple[str, ...] = ()

    @property
    def needs_secret(self) -> bool:
        """True when the provider cannot start without a key."""
        return bool(self.env)


@dataclass(frozen=True)
class ProviderSpec:
    """One chain entry as the file gives it.

    Attributes:
        provider: registry name.
        options: the entry's options, unvalidated.
        field: where the entry is, for errors (``providers.stt[0]``).
    """

    provider: str
    options: Mapping[str, Any] = field(default_factory=dict)
    field: str = ""


@dataclass(frozen=True)
class ProvidersConfig:
    """A parsed deployment file: chains by stage, routing policy overrides by stage.

    Attributes:
        chains: stage → entries; a stage absent here keeps the default chain.
        routing: stage → :class:`~voicerail.routing.router.ChainConfig` field values.
        source: the file, for errors.
    """

    chains: Mapping[Stage, Sequence[ProviderSpec]] = field(default_factory=dict)
    routing: Mapping[Stage, Mapping[str, Any]] = field(default_factory=dict)
    source: str = "<providers>"


@dataclass(frozen=True)
class Resolved:
    """A spec checked against its factory (rules 2, 3), ready to build."""

    spec: ProviderSpec
    factory: ProviderFactory
    options: BaseModel
    secret: str | None
    source: str = "<providers>"

    @property
    def where(self) -> str:
        """The entry's field path (``providers.stt[0].deepgram``)."""
        return f"{self.spec.field}.{self.spec.provider}" if self.spec.field else self.spec.provider


SecretLookup = Callable[[ProviderFactory, ProviderSpec], "str | None"]


class ProviderRegistry:
    """Provider name → factory (see module rules).

    Args:
        factories: the factories to register.
        wrappers: applied in order to every provider built (fault injection).
    """

    def __init__(
        self,
        factories: Iterable[ProviderFactory] = (),
        wrappers: Sequence[Callable[[Any], Any]] = (),
    ) -> None:
        self._factories: dict[str, ProviderFactory] = {}
        self._wrappers = tuple(wrappers)
        for factory in factories:
            self.register(factory)

    def register(self, factory: ProviderFactory) -> None:
        """Add ``factory``, replacing one of the same provider name."""
        self._factories[factory.provider] = factory

    def names(self, stage: Stage) -> list[str]:
        """The provider names registered for ``stage``, sorted."""
        return sorted(n for n, f in self._factories.items() if f.stage is stage)

    def factory(self, provider: str) -> ProviderFactory | None:
        """The factory registered as ``provider``, if any."""
        return self._factories.get(provider)

    def copy(self) -> ProviderRegistry:
        """An independent registry with the same factories and wrappers."""
        return ProviderRegistry(self._factories.values(), self._wrappers)

    def wrapped(self, wrap: Callable[[Any], Any]) -> ProviderRegistry:
        """A registry that builds what this one builds, each provider passed through
        ``wrap`` (for example ``lambda p: with_faults(p, profiles)``)."""
        return ProviderRegistry(self._factories.values(), (*self._wrappers, wrap))

    def resolve(
        self, stage: Stage, specs: Sequence[ProviderSpec], secrets: SecretLookup, source: str
    ) -> list[Resolved]:
        """Check ``specs`` for ``stage`` without building anything (rules 2-4).

        Raises:
            ConfigError: unknown provider, a provider of another stage, a secret
                in the file, a bad option, a missing key, or a name used twice.
        """
        resolved = [self._resolve_one(stage, spec, secrets, source) for spec in specs]
        seen: set[str] = set()
        for item in resolved:
            name = built_name(item)
            if name in seen:
                raise ConfigError(
                    f"provider name {name!r} used twice; give one a 'name'",
                    source=source,
                    field=f"{item.spec.field}.{item.spec.provider}",
                )
            seen.add(name)
        return resolved

    def build(self, resolved: Sequence[Resolved]) -> list[Any]:
        """Build checked specs, in order, through the wrappers.

        Raises:
            ConfigError: a factory refused (for example a model not on disk);
                names the entry.
        """
        chain = []
        for item in resolved:
            try:
                provider = item.factory.build(item.options, item.secret)
            except ConfigError as exc:
                raise ConfigError(
                    f"cannot build: {_own_message(exc)}", source=item.source, field=item.where
                ) from exc
            except ValueError as exc:
                raise ConfigError(str(exc), source=item.source, field=item.where) from exc
            for wrap in self._wrappers:
                provider = wrap(provider)
            chain.append(provider)
        return chain

    def _resolve_one(
        self, stage: Stage, spec: ProviderSpec, secrets: SecretLookup, source: str
    ) -> Resolved:
        where = f"{spec.field}.{spec.provider}" if spec.field else spec.provider
        factory = self._factories.get(spec.provider)
        if factory is None or factory.stage is not stage:
            known = ", ".join(self.names(stage)) or "none"
            raise ConfigError(
                f"unknown {stage} provider {spec.provider!r} (known: {known})",
                source=source,
                field=spec.field or None,
            )
        for option in spec.options:
            if _SECRET_OPTION.search(str(option)):
                hint = f"set {factory.env[0]}" if factory.env else "use the environment"
                raise ConfigError(
                    f"secrets are not read from this file; {hint} or name a 'credential'",
                    source=source,
                    field=f"{where}.{option}",
                )
        try:
            options = factory.options.model_validate(dict(spec.options))
        except ValidationError as exc:
            first = exc.errors()[0]
            path = ".".join(str(p) for p in first["loc"])
            message = "unknown option" if first["type"] == "extra_forbidden" else first["msg"]
            raise ConfigError(
                message[:1].lower() + message[1:], source=source, field=f"{where}.{path}"
            ) from None
        secret = secrets(factory, spec) if factory.needs_secret else None
        if factory.needs_secret and not secret:
            credential = getattr(options, "credential", None) or factory.provider
            raise ConfigError(
                f"no key: set {factory.env[0]} or add a {credential!r} credential",
                source=source,
                field=f"{where}.credential",
            )
        return Resolved(spec, factory, options, secret, source)


def _own_message(error: ConfigError) -> str:
    """``error``'s message without the ``source: field:`` prefix it was given."""
    prefix = f"{error.source}: " + (f"{error.field}: " if error.field else "")
    message = str(error)
    return message.removeprefix(prefix)


def built_name(item: Resolved) -> str:
    """The name the provider of ``item`` will have in routing and events."""
    return getattr(item.options, "name", None) or item.factory.provider


# -- secrets (rule 3) ------------------------------------------------------------------


def secret_lookup(
    credentials: Sequence[Any] = (), environ: Mapping[str, str] | None = None
) -> SecretLookup:
    """Find a provider's key: the credential its ``credential`` option names (default
    its provider name) in ``credentials`` (``ops.credentials.Credential`` objects with
    ``name`` and ``env``), else its own well-known variables, in ``environ``."""
    env = os.environ if environ is None else environ
    by_name = {c.name: c for c in credentials}

    def lookup(factory: ProviderFactory, spec: ProviderSpec) -> str | None:
        wanted = str(spec.options.get("credential") or factory.provider)
        credential = by_name.get(wanted)
        if credential is not None:
            return env.get(credential.env) or None
        if "credential" in spec.options:
            return None  # a named credential that is not registered: no fallback
        return next((env[v] for v in factory.env if env.get(v)), None)

    return lookup


# -- the deployment file (rule 1) ----------------------------------------------------------


def parse_providers(raw: Any, source: str = "<providers>") -> ProvidersConfig:
    """Parse a deployment file's mapping (``providers:`` and ``routing:``).

    Raises:
        ConfigError: not the documented shape; names the field.
    """
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping with 'providers'", source=source)
    # compliance: retention and QA sampling, read by compliance/policy.py
    unknown = sorted(set(raw) - {"providers", "routing", "compliance"})
    if unknown:
        raise ConfigError("unknown section", source=source, field=str(unknown[0]))
    chains = _stage_mapping(raw.get("providers") or {}, "providers", source)
    routing = _stage_mapping(raw.get("routing") or {}, "routing", source)
    parsed: dict[Stage, list[ProviderSpec]] = {}
    for stage, entries in chains.items():
        if not isinstance(entries, list) or not entries:
            raise ConfigError(
                "expected a non-empty list", source=source, field=f"providers.{stage}"
            )
        parsed[stage] = [
            _entry(e, f"providers.{stage}[{i}]", source) for i, e in enumerate(entries)
        ]
    checked_routing = {
        stage: _routing_fields(values, f"routing.{stage}", source)
        for stage, values in routing.items()
    }
    return ProvidersConfig(parsed, checked_routing, source)


def load_providers(path: str | Path) -> ProvidersConfig:
    """Read and parse a deployment file (YAML).

    Raises:
        ConfigError: unreadable, not YAML, or not the documented shape.
    """
    import yaml

    source = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not valid YAML"
        raise ConfigError(f"cannot read providers file: {reason}", source=source) from None
    return parse_providers(raw, source)


def _stage_mapping(raw: Any, section: str, source: str) -> dict[Stage, Any]:
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping of stt, tts, llm", source=source, field=section)
    stages: dict[Stage, Any] = {}
    for key, value in raw.items():
        if key not in {str(s) for s in CHAIN_STAGES}:
            raise ConfigError(
                "unknown stage (expected stt, tts or llm)", source=source, field=f"{section}.{key}"
            )
        stages[Stage(key)] = value
    return stages


def _entry(raw: Any, where: str, source: str) -> ProviderSpec:
    if isinstance(raw, str) and raw:
        return ProviderSpec(raw, {}, where)
    if isinstance(raw, dict) and len(raw) == 1:
        [(name, options)] = raw.items()
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise ConfigError(
                "expected a mapping of options", source=source, field=f"{where}.{name}"
            )
        return ProviderSpec(str(name), {str(k): v for k, v in options.items()}, where)
    raise ConfigError("expected a provider name or {name: {options}}", source=source, field=where)


def _routing_fields(raw: Any, where: str, source: str) -> dict[str, Any]:
    from voicerail.routing.router import ChainConfig

    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping", source=source, field=where)
    allowed = {f.name for f in fields(ChainConfig)} - {"providers"}
    checked: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in allowed:
            raise ConfigError("unknown routing option", source=source, field=f"{where}.{key}")
        default = getattr(ChainConfig(), key)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int | float) or default is None:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        else:
            ok = False
        if not ok:
            raise ConfigError(
                f"expected {'true or false' if isinstance(default, bool) else 'a number >= 0'}, "
                f"got {value!r}",
                source=source,
                field=f"{where}.{key}",
            )
        checked[key] = value
    return checked


def with_routing(base: Any, overrides: Mapping[str, Any]) -> Any:
    """``base`` (a ``ChainConfig``) with the checked ``overrides`` applied."""
    return replace(base, **dict(overrides))
