"""Every `pip install` line of the READMEs works from a clone: `callbacks-core` is not on the
package index yet, so a line that installs a plugin distribution from its folder must install the
host from the clone too (else pip looks `callbacks-core` up on the index and fails). The
distribution names are read from the real pyproject files."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - tomli is a dependency of callbacks-core before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", *sorted(ROOT.glob("plugins-*/README.md"))]


def _install_lines(path: Path) -> list[str]:
    lines = []
    for line in path.read_text().splitlines():
        code = line.split("#", 1)[0]
        for match in re.finditer(r"pip install ([^`|]+)", code):
            lines.append(match.group(1).split("&&")[0].strip())
    return lines


def _depends_on_host(folder: Path) -> bool:
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    return any(re.match(r"callbacks-core\b", dep) for dep in project.get("dependencies", []))


@pytest.mark.parametrize("readme", READMES, ids=[str(p.relative_to(ROOT)) for p in READMES])
def test_install_lines_work_from_a_clone(readme: Path) -> None:
    host = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert host == "callbacks-core"
    for line in _install_lines(readme):
        args = line.split()
        if "--no-deps" in args:
            continue
        targets = [a.strip("\"'") for a in args if not a.startswith("-")]
        assert "callbacks" not in targets and not any(
            t.startswith("callbacks[") for t in targets
        ), f"{readme.name}: {line!r} installs PyPI's unrelated 'callbacks'"
        folders = [t.split("[")[0] for t in targets]
        folders = [f for f in folders if f != "." and (ROOT / f).is_dir()]
        for folder in folders:
            if _depends_on_host(ROOT / folder):
                assert "." in targets or any(t.startswith(".[") for t in targets), (
                    f"{readme.name}: {line!r} needs the host from the clone ('.') too"
                )
        named = [t for t in targets if re.fullmatch(r"callbacks-[a-z]+(\[.*\])?", t)]
        assert not named, f"{readme.name}: {line!r} names a distribution not on the index yet"
