"""Settings: where they come from, and errors that say which key, which value and which source.

Sources, highest priority first: arguments in code, environment variables (``CALLBACKS_`` prefix,
``__`` nesting), ``callbacks.toml`` (path from ``CALLBACKS_CONFIG``, else the current directory),
``[tool.callbacks]`` in ``pyproject.toml``, defaults. Host keys sit at the top level; every table
(``[wandb]``, ``CALLBACKS_WANDB__PROJECT``) is one plugin's section.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping
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

from ._errors import ConfigError

__all__ = ["Config", "ConfigError", "HostSettings", "Origin", "load_config"]

ENV_PREFIX = "CALLBACKS_"
CONFIG_PATH_ENV = "CALLBACKS_CONFIG"
MASK = "********"
_SECRET_HINTS = ("key", "token", "secret", "password", "header", "credential")


class HostSettings(BaseModel):
    """The host's own keys (top level of the configuration)."""

    model_config = ConfigDict(extra="forbid")

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
    strict: bool = Field(False, description="Re-raise plugin errors (for plugin authors' tests).")
    sample_rate: float = Field(1.0, ge=0, le=1, description="Fraction of traces recorded.")
    hide_inputs: bool = Field(False, description="Replace input payload values with '<hidden>'.")
    hide_outputs: bool = Field(False, description="Replace output payload values with '<hidden>'.")
    max_payload_chars: int | None = Field(
        None, ge=1, description="Truncate longer payload strings before plugins see them."
    )
    instrument: list[str] = Field(
        default_factory=list,
        description="SDKs instrumented when the process-wide manager is built: openai, anthropic.",
    )

    @field_validator("instrument", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        # CALLBACKS_INSTRUMENT=openai,anthropic
        return (
            [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        )

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


def _toml_key_path(path: Path, table: tuple[str, ...], key: tuple[str, ...]) -> str:
    parts = ".".join((*table, *key[:-1]))
    return f"{path} {'[' + parts + '] ' if parts else ''}{key[-1]}"


def _is_secret(name: str, model: type[BaseModel] | None) -> bool:
    if model is not None and name in model.model_fields:
        annotation = repr(model.model_fields[name].annotation)
        if "SecretStr" in annotation or "SecretBytes" in annotation:
            return True
    return any(hint in name.lower() for hint in _SECRET_HINTS)


def mask_value(name: str, value: Any, model: type[BaseModel] | None = None) -> Any:
    """``value`` with secrets replaced by a mask."""
    if isinstance(value, SecretStr) or _is_secret(name, model):
        return MASK if value not in (None, "", {}) else value
    return value


@dataclass
class Config:
    """The merged configuration, with the origin of every value."""

    host: HostSettings
    host_origins: dict[str, Origin] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    section_origins: dict[str, dict[str, Origin]] = field(default_factory=dict)

    def settings_for(self, plugin: str, model: type[BaseModel] | None) -> BaseModel | None:
        """Validate ``plugin``'s section against its model; raise :class:`ConfigError`.
        Section names are case-insensitive (environment variables are upper case)."""
        plugin = plugin.lower()
        raw = self.sections.get(plugin, {})
        origins = self.section_origins.get(plugin, {})
        if model is None:
            if raw:
                where = next(iter(origins.values())).describe()
                raise ConfigError(
                    f"plugin {plugin!r} takes no settings, but {where} sets {sorted(raw)}"
                )
            return None
        known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
        for key in raw:
            if key not in known:
                origin = origins.get(key, Origin("default"))
                raise ConfigError(
                    f"unknown key {key!r} for plugin {plugin!r} in {origin.describe()}; "
                    f"expected one of: {', '.join(sorted(model.model_fields))}"
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
        in ``models`` where given."""
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
                if validated is not None and hasattr(validated, key):
                    value = getattr(validated, key)
                    origin = origins.get(key, Origin("default")).describe()
                elif key in raw:
                    value, origin = raw[key], origins.get(key, Origin("default")).describe()
                else:
                    assert model is not None
                    default = model.model_fields[key].get_default(call_default_factory=True)
                    value, origin = default, "default"
                out.append((f"{plugin}.{key}", mask_value(key, value, model), origin))
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
        value = mask_value(key, item.get("input"), model)
        label = f"{section}.{key}" if section else key
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
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Origin]]]:
    sections: dict[str, dict[str, Any]] = {}
    origins: dict[str, dict[str, Origin]] = {}
    for var, value in environ.items():
        upper = var.upper()
        if not upper.startswith(ENV_PREFIX) or "__" not in upper[len(ENV_PREFIX) :]:
            continue
        plugin, _, key = var[len(ENV_PREFIX) :].partition("__")
        plugin, key = plugin.lower(), key.lower()
        *parents, leaf = key.split("__")
        target = sections.setdefault(plugin, {})
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = _decode_env_value(value)
        origins.setdefault(plugin, {})[key.split("__")[0]] = Origin("env", var)
    return sections, origins


def _toml_sources(
    environ: Mapping[str, str], cwd: Path
) -> list[tuple[str, Path, tuple[str, ...], dict[str, Any]]]:
    found: list[tuple[str, Path, tuple[str, ...], dict[str, Any]]] = []
    explicit = environ.get(CONFIG_PATH_ENV)
    toml_path = Path(explicit) if explicit else cwd / "callbacks.toml"
    if explicit and not toml_path.is_file():
        raise ConfigError(
            f"environment variable {CONFIG_PATH_ENV} names {explicit!r}, which is not a file"
        )
    if toml_path.is_file():
        try:
            data = TomlConfigSettingsSource(_TomlSchema, toml_file=toml_path)()
        except Exception as error:
            raise ConfigError(f"cannot read {toml_path}: {error}") from None
        found.append(("toml", toml_path, (), data))
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = PyprojectTomlConfigSettingsSource(_TomlSchema, toml_file=pyproject)()
        except Exception as error:
            raise ConfigError(f"cannot read {pyproject}: {error}") from None
        found.append(("pyproject", pyproject, ("tool", "callbacks"), data))
    return found


def load_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Read every source, merge by priority, and validate the host keys.

    Plugin sections are kept raw until :meth:`Config.settings_for` validates them against the
    model that the plugin declares. Raises :class:`ConfigError`.
    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    host_values: dict[str, Any] = {}
    host_origins: dict[str, Origin] = {}
    sections: dict[str, dict[str, Any]] = {}
    section_origins: dict[str, dict[str, Origin]] = {}

    def take_section(plugin: str, values: Mapping[str, Any], origin_of: Any) -> None:
        target = sections.setdefault(plugin, {})
        for key, value in values.items():
            if key not in target:
                target[key] = value
                section_origins.setdefault(plugin, {})[key] = origin_of(key)

    def take(values: Mapping[str, Any], origin_of: Any, section_origin_of: Any) -> None:
        for key, value in values.items():
            if key in HostSettings.model_fields:
                if key not in host_values:
                    host_values[key] = value
                    host_origins[key] = origin_of(key)
            elif isinstance(value, Mapping):
                plugin = key.lower()
                take_section(plugin, value, functools.partial(section_origin_of, plugin))
            else:
                raise ConfigError(
                    f"unknown key {key!r} in {origin_of(key).describe()}; host keys are: "
                    f"{', '.join(HostSettings.model_fields)}; plugin settings go in a table "
                    f"named after the plugin"
                )

    # 1. code
    code = dict(overrides or {})
    take(code, lambda k: Origin("code", k), lambda p, k: Origin("code", f"{p}.{k}"))
    # 2. environment
    for key, (var, value) in _env_host(environ).items():
        if key not in host_values:
            host_values[key] = value
            host_origins[key] = Origin("env", var)
    env_sections, env_origins = _plugin_sections_from_env(environ)
    for plugin, values in env_sections.items():
        take_section(plugin, values, lambda k, p=plugin: env_origins[p][k])
    # 3. callbacks.toml, 4. [tool.callbacks]
    for kind, path, table, data in _toml_sources(environ, cwd):
        take(
            data,
            lambda k, path=path, table=table, kind=kind: Origin(
                kind, _toml_key_path(path, table, (k,))
            ),
            lambda p, k, path=path, table=table, kind=kind: Origin(
                kind, _toml_key_path(path, table, (p, k))
            ),
        )
    try:
        host = HostSettings.model_validate(host_values)
    except ValidationError as error:
        raise _explain(error, host_origins, HostSettings, None) from None
    return Config(host, host_origins, sections, section_origins)


def _env_host(environ: Mapping[str, str]) -> dict[str, tuple[str, Any]]:
    """Host keys set in the environment: ``{key: (variable name, decoded value)}``."""
    out: dict[str, tuple[str, Any]] = {}
    for var, value in environ.items():
        upper = var.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        key = upper[len(ENV_PREFIX) :].lower()
        if key in HostSettings.model_fields:
            out[key] = (var, _decode_env_value(value))
    return out
