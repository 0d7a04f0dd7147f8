"""Fails when a module of the package uses another module's private (``_name``) members: imports
them (``from dbbackup.x import _y``) or reaches them through an imported module (``x._y``). What
is shared must be public. Run by ``make lint``."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "shared" / "dbbackup"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path)
    found, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dbbackup"):
            for alias in node.names:
                if _private(alias.name) and node.module != here:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {node.module}.{alias.name}")
                elif not _private(alias.name):
                    modules.add(alias.asname or alias.name)  # may be a module (from dbbackup.pg import connect)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dbbackup"):
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: uses {node.value.id}.{node.attr}")
    return found


def main() -> int:
    found = [p for path in sorted(PACKAGE.rglob("*.py")) for p in problems(path)]
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} use(s) of another module's private names; make them public", file=sys.stderr)
        return 1
    print("private names: no module uses another module's private members")
    return 0


if __name__ == "__main__":
    sys.exit(main())
