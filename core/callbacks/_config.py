"""Settings: where they come from, and errors that say which key, which value and which source.

Sources, highest priority first: arguments in code, environment variables (``CALLBACKS_`` prefix,
``__`` nesting), ``callbacks.toml`` (path from ``CALLBACKS_CONFIG``, else the current directory),
``[tool.callbacks]`` in ``pyproject.toml``, defaults. Host keys sit at the top level; every table
(``[wandb]``, ``CALLBACKS_WANDB__PROJECT``) is one plugin's section.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ._env import DISABLED_ENV, env_true
from ._errors import ConfigError

__all__ = [
    "Config",
    "ConfigError",
    "HostSettings",
    "Origin",
    "disabled_by_env",
    "load_config",
    "suggest",
]

ENV_PREFIX = "CALLBACKS_"
CONFIG_PATH_ENV = "CALLBACKS_CONFIG"
MASK = "********"
_SECRET_HINTS = ("key", "token", "secret", "password", "header", "credential")


class HostSettings(BaseModel):
    """The host's own keys (top level of the configuration)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    disabled: bool = Field(
        False, description="Turn callbacks off: no plugin is loaded, every event is a no-op."
    )
    plugins: list[str] | None = Field(
        None, description="Active plugins; unset = every installed plugin, [] = none."
    )
    disable: list[str] = Field(
        default_factory=list, description="Plugins removed from the active set."
    )
    queue_size: int = Field(16384, ge=1, description="Bounded queue length per background plugin.")
    overflow: Literal["drop_newest", "drop_oldest"] = Field(
        "drop_newest", description="What a full queue drops (always counted)."
    )
    shutdown_timeout: float = Field(5.0, ge=0, description="Seconds shutdown waits for plugins.")
    trace_wait: float = Field(
        600.0,
        ge=0,
        description="Seconds an ended trace waits for its open events' late ends (streams, "
        "other threads) before abandoning them; 0 abandons them at once.",
    )
    strict: bool = Field(
        False, description="Raise configuration and plugin errors instead of logging them."
    )
    sample_rate: float = Field(1.0, ge=0, le=1, description="Fraction of traces recorded.")
    hide_inputs: bool = Field(
        False, description="Hide every start-payload value except non-content metadata."
    )
    hide_outputs: bool = Field(
        False, description="Hide every end-payload value except non-content metadata."
    )
    max_payload_chars: int | None = Field(
        None, ge=1, description="No payload string longer than this reaches a plugin."
    )
    delivery: dict[str, Literal["inline", "background", "process"]] = Field(
        default_factory=dict,
        description="Per plugin name, override the delivery it asks for; 'process' runs it in "
        "the sidecar process.",
    )
    sidecar_python: str | None = Field(
        None, description="The interpreter that runs the sidecar process (default: this one)."
    )
    instrument: list[str] = Field(
        default_factory=list,
        description="SDKs instrumented when the process-wide manager is built: openai, anthropic.",
    )

    @field_validator("plugins", "disable", "instrument", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # Users write lists as LLM_LOAD_PLUGINS and OTEL_TRACES_EXPORTER take them: "a,b".
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("shutdown_timeout")
    @classmethod
    def _finite_timeout(cls, value: float) -> float:
        # An infinite timeout overflows the thread waits at exit, and every queued event is lost.
        if not math.isfinite(value):
            raise ValueError("expected a finite number of seconds")
        return value


class _TomlSchema(BaseSettings):
    """Only tells pydantic-settings' TOML sources where ``[tool.callbacks]`` is; never built."""

    model_config = SettingsConfigDict(
        extra="allow", pyproject_toml_table_header=("tool", "callbacks")
    )


@dataclass(frozen=True)
class Origin:
    """Where one value came from, as the user wrote it."""

    kind: Literal["code", "env", "toml", "pyproject", "default"]
    where: str = ""

    def describe(self) -> str:
        """Human wording, e.g. ``environment variable CALLBACKS_QUEUE_SIZE``."""
        if self.kind == "env":
            return f"environment variable {self.where}"
        if self.kind in ("toml", "pyproject"):
            return self.where
        if self.kind == "code":
            return f"CallbackManager(config=...) key {self.where!r}"
        return "default"


def _closest(name: str, candidates: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name.lower(), [c.lower() for c in candidates], n=1)
    return close[0] if close else None


def suggest(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""`` when none is close."""
    close = _closest(name, candidates)
    return f"; did you mean {close!r}?" if close else ""


def disabled_by_env(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``CALLBACKS_DISABLED`` is set to a true value (1, true, yes, on)."""
    return env_true(DISABLED_ENV, environ)


def _toml_key_path(path: Path, table: tuple[str, ...], key: tuple[str, ...]) -> str:
    parts = ".".join((*table, *key[:-1]))
    return f"{path} {'[' + parts + '] ' if parts else ''}{key[-1]}"


def _toml_table_path(path: Path, table: tuple[str, ...], name: str) -> str:
    return f"{path} [{'.'.join((*table, name))}]"


def _is_secret(name: str, model: type[BaseModel] | None) -> bool:
    if model is not None and name in model.model_fields:
        annotation = repr(model.model_fields[name].annotation)
        if "SecretStr" in annotation or "SecretBytes" in annotation:
            return True
    return any(hint in name.lower() for hint in _SECRET_HINTS)


def mask_value(name: str, value: Any, model: type[BaseModel] | None = None) -> Any:
    """``value`` with secrets replaced by a mask (nested mappings are masked key by key)."""
    if isinstance(value, SecretStr) or _is_secret(name, model):
        return MASK if value not in (None, "", {}) else value
    if isinstance(value, Mapping):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    return value


def _env_default_source(model: type[BaseModel] | None, key: str) -> Origin | None:
    """A field whose default comes from standard variables (e.g. ``OTEL_SERVICE_NAME``) lists
    them in ``json_schema_extra={"env": [...]}``; the first one set is the value's source."""
    if model is None or key not in model.model_fields:
        return None
    extra = model.model_fields[key].json_schema_extra
    names = extra.get("env") if isinstance(extra, dict) else None
    for var in names if isinstance(names, (list, tuple)) else ():
        if os.environ.get(str(var)):
            return Origin("env", str(var))
    return None


@dataclass
class Config:
    """The merged configuration, with the origin of every value."""

    host: HostSettings
    host_origins: dict[str, Origin] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    section_origins: dict[str, dict[str, Origin]] = field(default_factory=dict)
    section_sources: dict[str, Origin] = field(default_factory=dict)
    """The first source that names each section (a table, a variable, a code key)."""
    files: list[tuple[Path, str]] = field(default_factory=list)
    """Every configuration file looked for, with what became of it (``read``, ``not found``,
    ``no [tool.callbacks] table``)."""

    def __repr__(self) -> str:
        sections = {
            name: {key: mask_value(key, value) for key, value in values.items()}
            for name, values in self.sections.items()
        }
        return f"Config(host={self.host!r}, sections={sections!r})"

    def section_origin(self, plugin: str) -> Origin:
        """Where the section of ``plugin`` was first named."""
        plugin = plugin.lower()
        if plugin in self.section_sources:
            return self.section_sources[plugin]
        origins = self.section_origins.get(plugin)
        return next(iter(origins.values())) if origins else Origin("default")

    def check_sections(self, known: Iterable[str]) -> None:
        """Raise :class:`ConfigError` for a section that names none of the ``known`` plugins
        (a misspelt table or variable must not be ignored)."""
        names = {name.lower() for name in known}
        for section in self.sections:
            if section not in names:
                raise ConfigError(
                    f"settings for plugin {section!r} in {self.section_origin(section).describe()},"
                    f" but no plugin of that name is installed{suggest(section, names)} "
                    f"(installed plugins: {', '.join(sorted(names)) or 'none'})"
                )

    def settings_for(self, plugin: str, model: type[BaseModel] | None) -> BaseModel | None:
        """Validate ``plugin``'s section against its model; raise :class:`ConfigError`.
        Section names are case-insensitive (environment variables are upper case)."""
        plugin = plugin.lower()
        raw = self.sections.get(plugin, {})
        origins = self.section_origins.get(plugin, {})
        if model is None:
            if raw:
                where = self.section_origin(plugin).describe()
                raise ConfigError(
                    f"plugin {plugin!r} takes no settings, but {where} sets {sorted(raw)}"
                )
            return None
        known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
        for key in raw:
            if key not in known:
                origin = origins.get(key, Origin("default"))
                raise ConfigError(
                    f"unknown key {key!r} for plugin {plugin!r} in {origin.describe()}"
                    f"{suggest(key, known)}; expected one of: "
                    f"{', '.join(sorted(model.model_fields))}"
                )
        try:
            return model.model_validate(raw)
        except ValidationError as error:
            raise _explain(error, origins, model, plugin) from None

    def rows(
        self,
        models: Mapping[str, type[BaseModel] | None] | None = None,
        values: Mapping[str, BaseModel | None] | None = None,
    ) -> list[tuple[str, Any, str]]:
        """(key, value, source) for every effective setting, secrets masked: host keys first,
        then each plugin section, with the validated ``values`` and the defaults of the plugins
        in ``models`` where given. A default taken from a standard variable (``OTEL_*``) names
        that variable as its source."""
        models = models or {}
        values = values or {}
        out: list[tuple[str, Any, str]] = []
        for name in HostSettings.model_fields:
            value = getattr(self.host, name)
            out.append((name, value, self.host_origins.get(name, Origin("default")).describe()))
        for plugin in sorted(set(self.sections) | set(models)):
            model = models.get(plugin)
            raw = self.sections.get(plugin, {})
            origins = self.section_origins.get(plugin, {})
            names = list(model.model_fields) if model is not None else list(raw)
            validated = values.get(plugin)
            for key in names:
                origin = origins.get(key) or _env_default_source(model, key) or Origin("default")
                if validated is not None and hasattr(validated, key):
                    value = getattr(validated, key)
                elif key in raw:
                    value = raw[key]
                else:
                    assert model is not None
                    value = model.model_fields[key].get_default(call_default_factory=True)
                out.append((f"{plugin}.{key}", mask_value(key, value, model), origin.describe()))
        return out


def _explain(
    error: ValidationError,
    origins: Mapping[str, Origin],
    model: type[BaseModel],
    section: str | None,
) -> ConfigError:
    problems = []
    for item in error.errors():
        loc = item.get("loc", ())
        key = str(loc[0]) if loc else "?"
        origin = origins.get(key, Origin("default"))
        value = item.get("input")
        value = MASK if any(_is_secret(str(part), model) for part in loc) else value
        value = mask_value(key, value, model)
        label = ".".join(str(part) for part in ((section,) if section else ()) + tuple(loc))
        problems.append(
            f"invalid value {value!r} for {label!r} from {origin.describe()}: {item.get('msg')}"
        )
    return ConfigError("; ".join(problems))


def _decode_env_value(value: str) -> Any:
    stripped = value.strip()
    if stripped[:1] in ("[", "{"):
        try:
            return json.loads(stripped)
        except ValueError:
            return value
    return value


def _plugin_sections_from_env(
    environ: Mapping[str, str],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Origin]], dict[str, Origin]]:
    sections: dict[str, dict[str, Any]] = {}
    origins: dict[str, dict[str, Origin]] = {}
    sources: dict[str, Origin] = {}
    for var in sorted(environ):
        value = environ[var]
        upper = var.upper()
        if not upper.startswith(ENV_PREFIX) or "__" not in upper[len(ENV_PREFIX) :]:
            continue
        plugin, _, key = var[len(ENV_PREFIX) :].partition("__")
        plugin, key = plugin.lower(), key.lower()
        if not plugin or not key:
            raise ConfigError(
                f"environment variable {var} names no {'plugin' if not plugin else 'key'}; "
                f"plugin settings are written CALLBACKS_<PLUGIN>__<KEY>"
            )
        *parents, leaf = key.split("__")
        target = sections.setdefault(plugin, {})
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = _decode_env_value(value)
        origins.setdefault(plugin, {})[key.split("__")[0]] = Origin("env", var)
        sources.setdefault(plugin, Origin("env", var))
    return sections, origins, sources


def _read_toml(kind: str, path: Path) -> dict[str, Any]:
    source = TomlConfigSettingsSource if kind == "toml" else PyprojectTomlConfigSettingsSource
    try:
        return dict(source(_TomlSchema, toml_file=path)())
    except Exception as error:
        raise ConfigError(f"cannot read {path}: {error}") from None


def _toml_sources(
    environ: Mapping[str, str], cwd: Path, files: list[tuple[Path, str]]
) -> list[tuple[str, Path, tuple[str, ...], dict[str, Any]]]:
    """The TOML sources in priority order; ``files`` receives every path looked for."""
    found: list[tuple[str, Path, tuple[str, ...], dict[str, Any]]] = []
    explicit = environ.get(CONFIG_PATH_ENV)
    toml_path = Path(explicit) if explicit else cwd / "callbacks.toml"
    if explicit and not toml_path.is_file():
        raise ConfigError(
            f"environment variable {CONFIG_PATH_ENV} names {explicit!r}, which is not a file"
        )
    pyproject = cwd / "pyproject.toml"
    candidates = [("toml", toml_path), ("pyproject", pyproject)]
    if toml_path.name == "pyproject.toml":
        # CALLBACKS_CONFIG may name a pyproject.toml: its [tool.callbacks] table is read instead.
        candidates = [("pyproject", toml_path)]
        if pyproject.resolve() != toml_path.resolve():
            candidates.append(("pyproject", pyproject))
    for kind, path in candidates:
        if not path.is_file():
            files.append((path, "not found"))
            continue
        data = _read_toml(kind, path)
        empty = kind == "pyproject" and not data
        files.append((path, "no [tool.callbacks] table" if empty else "read"))
        table = ("tool", "callbacks") if kind == "pyproject" else ()
        found.append((kind, path, table, data))
    return found


def load_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Read every source, merge by priority, and validate the host keys.

    Plugin sections are kept raw until :meth:`Config.settings_for` validates them against the
    model that the plugin declares. Raises :class:`ConfigError`, naming the key, the value,
    its source and what was expected (or the closest valid name, for a typo).
    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    host_values: dict[str, Any] = {}
    host_origins: dict[str, Origin] = {}
    sections: dict[str, dict[str, Any]] = {}
    section_origins: dict[str, dict[str, Origin]] = {}
    section_sources: dict[str, Origin] = {}
    files: list[tuple[Path, str]] = []

    def take_section(
        plugin: str, values: Mapping[str, Any], origin_of: Any, source: Origin
    ) -> None:
        target = sections.setdefault(plugin, {})
        section_sources.setdefault(plugin, source)
        for key, value in values.items():
            if key not in target:
                target[key] = value
                section_origins.setdefault(plugin, {})[key] = origin_of(key)

    def take(
        values: Mapping[str, Any], origin_of: Any, section_origin_of: Any, table_origin: Any
    ) -> None:
        for key, value in values.items():
            if key in HostSettings.model_fields:
                if key not in host_values:
                    host_values[key] = value
                    host_origins[key] = origin_of(key)
            elif isinstance(value, Mapping):
                plugin = key.lower()
                take_section(
                    plugin, value, functools.partial(section_origin_of, plugin), table_origin(key)
                )
            else:
                raise ConfigError(
                    f"unknown key {key!r} in {origin_of(key).describe()}"
                    f"{suggest(key, HostSettings.model_fields)}; host keys are: "
                    f"{', '.join(HostSettings.model_fields)}; plugin settings go in a table "
                    f"named after the plugin"
                )

    # 1. code
    code = dict(overrides or {})
    take(
        code,
        lambda k: Origin("code", k),
        lambda p, k: Origin("code", f"{p}.{k}"),
        lambda p: Origin("code", p),
    )
    # 2. environment
    for key, (var, value) in _env_host(environ).items():
        if key not in host_values:
            host_values[key] = value
            host_origins[key] = Origin("env", var)
    env_sections, env_origins, env_sources = _plugin_sections_from_env(environ)
    for plugin, values in env_sections.items():
        take_section(plugin, values, lambda k, p=plugin: env_origins[p][k], env_sources[plugin])
    # 3. callbacks.toml, 4. [tool.callbacks]
    for kind, path, table, data in _toml_sources(environ, cwd, files):
        take(
            data,
            lambda k, path=path, table=table, kind=kind: Origin(
                kind, _toml_key_path(path, table, (k,))
            ),
            lambda p, k, path=path, table=table, kind=kind: Origin(
                kind, _toml_key_path(path, table, (p, k))
            ),
            lambda p, path=path, table=table, kind=kind: Origin(
                kind, _toml_table_path(path, table, p)
            ),
        )
    try:
        host = HostSettings.model_validate(host_values)
    except ValidationError as error:
        raise _explain(error, host_origins, HostSettings, None) from None
    return Config(host, host_origins, sections, section_origins, section_sources, files)


def _env_host(environ: Mapping[str, str]) -> dict[str, tuple[str, Any]]:
    """Host keys set in the environment: ``{key: (variable name, decoded value)}``. Any other
    ``CALLBACKS_<KEY>`` (no ``__``) is a misspelt host key: an error, never ignored."""
    out: dict[str, tuple[str, Any]] = {}
    for var in sorted(environ):
        upper = var.upper()
        if not upper.startswith(ENV_PREFIX) or "__" in upper[len(ENV_PREFIX) :]:
            continue
        key = upper[len(ENV_PREFIX) :].lower()
        if key in HostSettings.model_fields:
            out[key] = (var, _decode_env_value(environ[var]))
        elif upper != CONFIG_PATH_ENV:
            close = _closest(key, HostSettings.model_fields)
            hint = f"; did you mean {close!r} ({ENV_PREFIX}{close.upper()})?" if close else ""
            raise ConfigError(
                f"unknown setting in environment variable {var}{hint}; host keys are: "
                f"{', '.join(HostSettings.model_fields)}; plugin settings are written "
                f"CALLBACKS_<PLUGIN>__<KEY>"
            )
    return out
