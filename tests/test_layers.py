"""The packages import only the layers below them, as pyproject.toml's import-linter contracts say."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    # --no-cache: no cache directory left in the tree, and never a stale graph.
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_import_keeps_to_the_layers() -> None:
    """lint-imports finds every contract kept: dockping is a leaf, the services independent."""
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_import_across_the_layers_breaks_the_contract(tmp_path: Path) -> None:
    """The shared package importing db, or one service another, is reported as broken."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for package in project["tool"]["importlinter"]["root_packages"]:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    with (tmp_path / "dockping" / "contract.py").open("a", encoding="utf-8") as contract:
        contract.write("\nimport db.connector  # noqa\n")
    with (tmp_path / "query" / "cursor.py").open("a", encoding="utf-8") as cursor:
        cursor.write("\nimport notify.rules  # noqa\n")
    result = _lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "dockping.contract -> db.connector" in result.stdout
    assert "query.cursor -> notify.rules" in result.stdout
