"""The ``callbacks`` command: list plugins and show the effective configuration; installed plugins
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
    from ._manager import CallbackManager

    manager = CallbackManager(load_entrypoints=True)
    try:
        rows = []
        registered = manager.list_plugins()
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
    if args.json:
        out.write(json.dumps(rows, indent=2) + "\n")
        return 0
    if not rows:
        out.write("No plugins installed (entry-point group 'callbacks').\n")
        return 0
    table = []
    for row in rows:
        status = "active" if row["active"] else "inactive"
        why = row["reason"] + (f": {row['error']}" if row["error"] else "")
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
    return 0


def _cmd_config(args: argparse.Namespace, out: TextIO) -> int:
    from ._manager import CallbackManager

    manager = CallbackManager(load_entrypoints=True)
    try:
        names = list(manager.list_plugins())
        rows = manager.config.rows(
            {name: manager.settings_model(name) for name in names},
            {name: manager.plugin_settings(name) for name in names},
        )
    finally:
        manager.shutdown(1.0)
    if args.json:
        data = [{"key": k, "value": v, "source": s} for k, v, s in rows]
        out.write(json.dumps(data, indent=2, default=str) + "\n")
        return 0
    table = [[k, json.dumps(v, default=str), s] for k, v, s in rows]
    _print_table(table, ["KEY", "VALUE", "SOURCE"], out)
    return 0


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
    if args.command in ("plugins", "config"):
        # Load failures are part of the listing; do not repeat them as log lines.
        logging.getLogger("callbacks").setLevel(logging.ERROR)
    try:
        return int(args.run(args, out))
    except ConfigError as error:
        sys.stderr.write(f"callbacks: configuration error: {error}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
