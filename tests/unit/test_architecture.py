"""The imports of the package keep to the allowed arrows of docs/architecture.md.

The table there is parsed, every module of the package is read with ``ast`` (no import), and
each ``import loopml…`` is checked against its part's row: the part it reaches must be named,
and a *surface* part may reach another slice only through the slice's package. The parts'
run-time arrows (``TYPE_CHECKING`` imports left out) must form no cycle. The checker is
tested on a made-up package first, so a checker that finds nothing cannot pass.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"core": "loopml", "executor": "loopml.executor", "registry": "loopml.registry",
           "serving": "loopml.serving", "monitor": "loopml.monitor", "hub_config": "loopml.hub_config",
           "jupyter_ext": "loopml.jupyter_ext"}
SLICES = ("executor", "registry", "serving", "monitor")


@dataclass(frozen=True)
class Part:
    name: str
    modules: tuple[str, ...]
    allowed: frozenset[str]
    surface_only: bool


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module imported
    where: str  # file:line
    typing_only: bool


def parse_arrows(markdown: str) -> dict[str, Part]:
    """The rows between the ``allowed-arrows`` markers of docs/architecture.md."""
    block = re.search(r"<!-- allowed-arrows.*?-->(.*?)<!-- /allowed-arrows -->", markdown, re.S)
    assert block, "docs/architecture.md has no allowed-arrows table"
    parts = {}
    for line in block.group(1).strip().splitlines()[2:]:
        name, modules, allowed, through = (cell.strip() for cell in line.strip().strip("|").split("|"))
        parts[name] = Part(name, tuple(re.findall(r"`([\w.]+)`", modules)),
                           frozenset(a.strip() for a in allowed.split(",") if a.strip()), through == "surface")
    for part in parts.values():
        unknown = part.allowed - set(parts)
        assert not unknown, f"part {part.name} allows unknown parts {sorted(unknown)}"
    return parts


def part_of(module: str, parts: dict[str, Part]) -> Part | None:
    best, length = None, -1
    for part in parts.values():
        for prefix in part.modules:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = part, len(prefix)
    return best


def _typing_lines(tree: ast.Module) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def read_imports(files: dict[str, tuple[str, bool]], known: set[str]) -> list[Import]:
    """Every import of a ``loopml`` module in ``files`` (module name -> (source, is a package)).

    ``from loopml import x`` names module ``loopml.x`` when that module exists, else ``loopml``.
    """
    found = []
    for module, (source, is_package) in files.items():
        tree = ast.parse(source)
        typing = _typing_lines(tree)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            for target in targets:
                if target == "loopml" or target.startswith("loopml."):
                    found.append(Import(module, target, f"{module}:{node.lineno}", node.lineno in typing))
    return found


def violations(imports: list[Import], parts: dict[str, Part]) -> list[str]:
    """The imports that cross the arrows, and the parts' run-time cycles, as readable lines."""
    problems, edges = [], {}
    for imp in imports:
        source, target = part_of(imp.module, parts), part_of(imp.target, parts)
        if source is None or target is None:
            problems.append(f"{imp.where}: {imp.module if source is None else imp.target} belongs to no part of the table")
            continue
        if source is target:
            continue
        if target.name not in source.allowed:
            problems.append(f"{imp.where}: {source.name} may not import {target.name} ({imp.target})")
        elif source.surface_only and target.name in SLICES and imp.target != target.modules[0]:
            problems.append(f"{imp.where}: {source.name} uses slices through their surface only: "
                            f"import from {target.modules[0]}, not {imp.target}")
        if not imp.typing_only:
            edges.setdefault(source.name, set()).add(target.name)
    problems = list(dict.fromkeys(problems))  # one line per import statement and rule
    return problems + [f"run-time import cycle: {' -> '.join(cycle)}" for cycle in _cycles(edges)]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    cycles, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append([*path[path.index(node):], node])
            return
        if node in done:
            return
        for nxt in sorted(edges.get(node, ())):
            visit(nxt, [*path, node])
        done.add(node)

    for start in sorted(edges):
        visit(start, [])
    return cycles


def package_files() -> dict[str, tuple[str, bool]]:
    files = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("").parts
            if folder == "core" and rel and rel[0] in FOLDERS:  # not a core module
                continue
            name = ".".join([package, *(p for p in rel if p != "__init__")])
            files[name] = (path.read_text(), path.name == "__init__.py")
    return files


def test_the_checker_finds_a_crossing_a_surface_bypass_and_a_cycle():
    parts = parse_arrows("""<!-- allowed-arrows -->
| part | modules | may import | slices through |
|---|---|---|---|
| foundation | `loopml.errors` | | any |
| registry | `loopml.registry` | foundation | any |
| monitor | `loopml.monitor` | foundation, registry | any |
| client | `loopml.client` | foundation, registry | surface |
<!-- /allowed-arrows -->""")
    files = {
        "loopml.errors": ("", False),
        "loopml.registry": ("from loopml.registry.service import X\n", True),
        "loopml.registry.service": ("from loopml.monitor import report\nimport loopml.errors\n", False),
        "loopml.monitor": ("from .stats import ks\nfrom loopml.registry import RegistryService\n", True),
        "loopml.monitor.stats": ("", False),
        "loopml.client": ("from loopml.registry.service import X\nfrom loopml.registry import Y\n", False),
        "loopml.odd": ("import json\n", False),
        "loopml.errors2": ("from loopml import odd\n", False),
    }
    imports = read_imports(files, set(files))
    assert any(i.target == "loopml.monitor.stats" for i in imports)  # relative import resolved
    found = violations(imports, parts)
    assert "loopml.registry.service:1: registry may not import monitor (loopml.monitor)" in found
    assert any("client uses slices through their surface only" in line and "loopml.registry.service" in line
               for line in found)
    assert not any("loopml.client:2" in line for line in found)  # through the package: fine
    assert "run-time import cycle: registry -> monitor -> registry" in found
    assert any("loopml.errors2 belongs to no part" in line for line in found)
    typing_only = read_imports({"loopml.registry": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                                    "    from loopml.monitor import M\n", True)}, set())
    assert typing_only[0].typing_only
    assert violations(typing_only, parts) == ["loopml.registry:3: registry may not import monitor (loopml.monitor)"]


@pytest.fixture(scope="module")
def parts() -> dict[str, Part]:
    return parse_arrows((ROOT / "docs" / "architecture.md").read_text())


def test_every_module_of_the_package_belongs_to_a_part(parts):
    orphans = [name for name in package_files() if part_of(name, parts) is None]
    assert not orphans, f"add these modules to a part of docs/architecture.md: {orphans}"


def test_the_package_keeps_to_the_allowed_arrows(parts):
    files = package_files()
    found = violations(read_imports(files, set(files)), parts)
    assert not found, "imports that cross docs/architecture.md's arrows:\n" + "\n".join(found)
