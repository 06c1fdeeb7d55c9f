"""Find plugins through the ``callbacks`` entry-point group and decide which are active.

Each entry point is loaded on its own (unlike pluggy's ``load_setuptools_entrypoints``, where one
failing import stops the rest), so a broken plugin is reported while the others load.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._errors import ConfigError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from ._config import HostSettings

__all__ = ["ENTRY_POINT_GROUP", "InstalledPlugin", "discover", "instantiate", "select"]

ENTRY_POINT_GROUP = "callbacks"


@dataclass
class InstalledPlugin:
    """One entry point of the ``callbacks`` group and what became of it."""

    name: str
    value: str
    distribution: str | None
    version: str | None
    entry_point: EntryPoint | None = field(default=None, repr=False)
    active: bool = False
    reason: str = ""
    error: str | None = None

    def load(self) -> object:
        """Import the entry point; a class is instantiated with no arguments."""
        assert self.entry_point is not None
        return instantiate(self.entry_point.load())


def instantiate(obj: object) -> object:
    """A plugin class becomes an instance; modules and instances are used as they are."""
    return obj() if inspect.isclass(obj) else obj


def discover(group: str = ENTRY_POINT_GROUP) -> list[InstalledPlugin]:
    """Every entry point in ``group``, in name order, without importing any of them."""
    import importlib.metadata  # only discovery needs it; keeps `import callbacks` cheap

    found: dict[str, InstalledPlugin] = {}
    for ep in importlib.metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        name = getattr(dist, "name", None) if dist is not None else None
        version = getattr(dist, "version", None) if dist is not None else None
        if ep.name in found:
            # The same distribution can be seen twice on sys.path (e.g. editable + build dir).
            continue
        found[ep.name] = InstalledPlugin(ep.name, ep.value, name, version, ep)
    return [found[name] for name in sorted(found)]


def select(
    installed: Iterable[InstalledPlugin],
    host: HostSettings,
    origin: str = "",
    *,
    disable_origin: str = "",
) -> None:
    """Mark each plugin active or not, with the reason. Raises :class:`ConfigError` for a name
    in ``plugins`` (set in ``origin``) or ``disable`` (set in ``disable_origin``) that is not
    installed, with the closest installed name."""
    from ._config import suggest

    plugins = list(installed)
    names = {p.name for p in plugins}
    sources = {"plugins": origin, "disable": disable_origin}
    for key, wanted in (("plugins", host.plugins or []), ("disable", host.disable)):
        unknown = sorted(set(wanted) - names)
        if unknown:
            where = f" (from {sources[key]})" if sources[key] else ""
            raise ConfigError(
                f"{key} names {', '.join(map(repr, unknown))}{where}, which is not installed"
                f"{suggest(unknown[0], names)}; installed plugins: "
                f"{', '.join(sorted(names)) or 'none'}"
            )
    for plugin in plugins:
        if plugin.name in host.disable:
            plugin.active, plugin.reason = False, "disabled"
        elif host.plugins is None:
            plugin.active, plugin.reason = True, "installed (all plugins active)"
        elif plugin.name in host.plugins:
            plugin.active, plugin.reason = True, "selected"
        else:
            plugin.active, plugin.reason = False, "not selected"
