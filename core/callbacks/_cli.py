"""The ``callbacks`` command: list plugins, show and check the configuration; installed plugins
add their own subcommands (the built-in demo plugin adds ``callbacks demo``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, TextIO

from ._errors import ConfigError

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _plugin_rows() -> list[dict[str, Any]]:
    """One row per installed plugin. A plugin whose section is bad is listed as turned off by a
    configuration error (then :class:`ConfigError` is raised after the listing is printed)."""
    from ._manager import CallbackManager

    manager = CallbackManager(load_entrypoints=True, config_errors="log")
    if manager.config_error is not None:
        raise ConfigError(manager.config_error)
    try:
        rows = []
        registered = manager.list_plugins()
        stats = manager.stats()
        for entry in manager.installed:
            loaded = entry.name in registered
            rows.append(
                {
                    "name": entry.name,
                    "distribution": entry.distribution,
                    "version": entry.version,
                    "entry_point": entry.value,
                    "hooks": manager.hooks_of(entry.name) if loaded else [],
                    "delivery": manager.delivery_mode(entry.name) if loaded else None,
                    "active": entry.active and loaded,
                    # False: its settings leave it nothing to do, so it gets no events.
                    "listening": stats[entry.name].get("listening", True) if loaded else None,
                    "reason": entry.reason,
                    "error": entry.error,
                }
            )
        return rows
    finally:
        manager.shutdown(1.0)


def _print_table(rows: list[list[str]], headers: list[str], out: TextIO) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip() + "\n")
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _cmd_plugins(args: argparse.Namespace, out: TextIO) -> int:
    rows = _plugin_rows()
    exit_status = _report_config_errors(rows)
    if args.json:
        out.write(json.dumps(rows, indent=2) + "\n")
        return exit_status
    if not rows:
        out.write("No plugins installed (entry-point group 'callbacks').\n")
        return exit_status
    table = []
    for row in rows:
        status = "active" if row["active"] else "inactive"
        why = row["reason"] + (f": {row['error']}" if row["error"] else "")
        if row["active"] and row["listening"] is False:
            status, why = "idle", f"{why}; its settings leave it nothing to do, it gets no events"
        table.append(
            [
                row["name"],
                f"{row['distribution'] or '?'} {row['version'] or ''}".strip(),
                row["delivery"] or "-",
                f"{status} ({why})",
                ", ".join(row["hooks"]) or "-",
            ]
        )
    _print_table(table, ["NAME", "DISTRIBUTION", "DELIVERY", "STATUS", "HOOKS"], out)
    return exit_status


def _report_config_errors(rows: list[dict[str, Any]]) -> int:
    """Write one line per plugin turned off by its configuration; 2 if any, else 0."""
    failed = [row for row in rows if row["reason"] == "configuration error"]
    for row in failed:
        sys.stderr.write(f"callbacks: configuration error: {row['error']}\n")
    return 2 if failed else 0


def _cmd_config(args: argparse.Namespace, out: TextIO) -> int:
    from ._manager import CallbackManager

    manager = CallbackManager(load_entrypoints=True)
    try:
        names = list(manager.list_plugins())
        rows = manager.config.rows(
            {name: manager.settings_model(name) for name in names},
            {name: manager.plugin_settings(name) for name in names},
        )
        files = [(str(path), status) for path, status in manager.config.files]
    finally:
        manager.shutdown(1.0)
    if args.json:
        data = {
            "settings": [{"key": k, "value": v, "source": s} for k, v, s in rows],
            "files": [{"path": path, "status": status} for path, status in files],
        }
        out.write(json.dumps(data, indent=2, default=str) + "\n")
        return 0
    table = [[k, json.dumps(v, default=str), s] for k, v, s in rows]
    _print_table(table, ["KEY", "VALUE", "SOURCE"], out)
    out.write("\nConfiguration files looked for (highest priority first):\n")
    for path, status in files:
        out.write(f"  {path}: {status}\n")
    return 0


def _check_plugin(entry: Any, config: Any) -> str | None:
    """Import one installed plugin, validate its hooks and its settings section; the problem,
    or ``None``."""
    import pluggy

    from . import hookspecs

    try:
        plugin = entry.load()
        pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        pm.register(plugin, entry.name)
        pm.check_pending()
        declare = getattr(plugin, "callbacks_settings", None)
        model = declare() if callable(declare) else None
    except (Exception, SystemExit) as error:
        return f"plugin {entry.name!r} failed to load: {type(error).__name__}: {error}"
    try:
        config.settings_for(entry.name, model)
    except ConfigError as error:
        return str(error)
    return None


def _cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    """Validate the whole configuration (host keys, every installed plugin and its section)
    without starting anything; exit 0 when all is well, else 2 with one line per problem."""
    from ._config import load_config
    from ._discovery import discover, select

    config = load_config()
    installed = discover()
    problems: list[str] = []
    try:
        config.check_sections(entry.name for entry in installed)
    except ConfigError as error:
        problems.append(str(error))
    origins = config.host_origins
    try:
        select(
            installed,
            config.host,
            origins["plugins"].describe() if "plugins" in origins else "",
            disable_origin=origins["disable"].describe() if "disable" in origins else "",
        )
    except ConfigError as error:
        problems.append(str(error))
    rows = []
    for entry in installed:
        problem = _check_plugin(entry, config)
        if config.host.disabled:
            status = "off (CALLBACKS_DISABLED)"
        else:
            status = "active" if entry.active else f"inactive ({entry.reason or 'not selected'})"
        if problem is not None and (entry.active or "failed to load" not in problem):
            problems.append(problem)
            status += ": ERROR"
        elif problem is not None:
            status += ": does not load"
        distribution = f"{entry.distribution or '?'} {entry.version or ''}".strip()
        rows.append([entry.name, distribution, status])
    if rows:
        _print_table(rows, ["NAME", "DISTRIBUTION", "STATUS"], out)
    read = [str(path) for path, status in config.files if status == "read"]
    out.write(f"Configuration files read: {', '.join(read) or 'none'}\n")
    for problem in problems:
        sys.stderr.write(f"callbacks: configuration error: {problem}\n")
    out.write("Configuration OK\n" if not problems else f"{len(problems)} problem(s) found\n")
    return 2 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``callbacks`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="callbacks",
        description="Debug, track and trace an LLM application through plugins.",
    )
    parser.add_argument("--version", action="version", version=f"callbacks {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    plugins = commands.add_parser(
        "plugins", help="list installed plugins and whether they are active"
    )
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(run=_cmd_plugins)

    config = commands.add_parser("config", help="show effective settings and where each came from")
    config.add_argument("--json", action="store_true", help="machine-readable output")
    config.set_defaults(run=_cmd_config)

    check = commands.add_parser(
        "check",
        help="validate the configuration and every installed plugin's settings (exit 0 or 2)",
    )
    check.set_defaults(run=_cmd_check)
    _add_plugin_commands(commands)
    return parser


def _add_plugin_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Let every installed plugin that implements ``callbacks_commands`` add its subcommands.
    A plugin that fails to import, or whose hook raises, adds nothing; ``callbacks plugins``
    reports import failures."""
    import pluggy

    from . import hookspecs
    from ._discovery import discover
    from ._lifecycle import plugin_hook

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for entry in discover():
        try:
            pm.register(entry.load(), entry.name)
        except (Exception, SystemExit):
            continue
    for impl in pm.hook.callbacks_commands.get_hookimpls():
        hook = plugin_hook(pm, impl.plugin, "callbacks_commands")
        try:
            if hook is not None:
                hook(commands=commands)
        except KeyboardInterrupt:
            raise
        except BaseException as error:
            logger.warning(
                "callbacks plugin %r could not add its commands: %s: %s",
                impl.plugin_name,
                type(error).__name__,
                error,
            )


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``callbacks`` console script. Exits 2 with a one-line error on bad
    configuration."""
    out = out or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help(out)
        return 0
    host_logger = logging.getLogger("callbacks")
    level = host_logger.level
    if args.command in ("plugins", "config", "check"):
        # Load failures and configuration errors are part of the output; no log lines.
        host_logger.setLevel(logging.CRITICAL)
    try:
        return int(args.run(args, out))
    except ConfigError as error:
        sys.stderr.write(f"callbacks: configuration error: {error}\n")
        return 2
    finally:
        host_logger.setLevel(level)  # main() may run inside a process that keeps logging


if __name__ == "__main__":
    sys.exit(main())
