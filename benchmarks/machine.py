"""The machine and the versions a run measured, for the report."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

__all__ = ["DISTRIBUTIONS", "describe_machine", "versions"]

DISTRIBUTIONS = (
    "callbacks-core",
    "pluggy",
    "llama-index-core",
    "langchain-core",
    "opentelemetry-sdk",
    "wandb",
    "aim",
    "callbacks-wandb",
    "callbacks-aim",
    "callbacks-openinference",
    "pyperf",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict[str, str]:
    """CPU model, cores, OS and Python."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU": _cpu_model(),
        "cores": f"{os.cpu_count()} logical ({usable} usable by this process)",
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "GIL switch interval": f"{sys.getswitchinterval() * 1000:g} ms",
    }


def versions() -> dict[str, str]:
    """Installed versions of the measured libraries (``-`` when not installed)."""
    found: dict[str, str] = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "-"
    return found
