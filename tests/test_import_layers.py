"""The package's layers hold: every subpackage's docstring says which others it may import
("May import: ..."), and no module imports anything else, at the top or inside a function.

The layers run io < weights < models < kinds < stylize < training < optimize, with app and dataset
on top; the command line (fast_nst/cli.py, entry.py, __main__.py) may import anything. A layer
that imported one above it would bring back the import circles the restructure removed (e.g.
io.export <-> kinds, io.validate <-> stylize.video).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fast_nst"


def _layers() -> dict[str, set[str]]:
    """{subpackage: the packages its docstring allows}. A subpackage without the line (a kind's
    package, say) keeps its parent's layer."""
    layers = {}
    for init in sorted(PACKAGE.rglob("__init__.py")):
        if init.parent == PACKAGE:
            continue
        name = ".".join(init.parent.relative_to(PACKAGE.parent).parts)
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        m = re.search(r"May import:(.*?)(?:\.\s*$|\.\s+[A-Z]|\n\n)", doc, re.S | re.M)
        if m is None:
            continue
        allowed = set(re.findall(r"fast_nst(?:\.\w+)+", m.group(1)))
        layers[name] = allowed
    return layers


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every fast_nst module `path` imports, module-level and function-level, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("fast_nst"):
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append(("<relative>", node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("fast_nst")]
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_every_subpackage_names_its_layer():
    layers = _layers()
    for expected in ("fast_nst.io", "fast_nst.weights", "fast_nst.models", "fast_nst.kinds", "fast_nst.stylize",
                     "fast_nst.training", "fast_nst.training.data", "fast_nst.optimize", "fast_nst.app",
                     "fast_nst.dataset"):
        assert expected in layers, f"{expected} has no 'May import' line"
    assert layers["fast_nst.io"] == set(), "io is the bottom layer: it may import nothing of fast_nst"


def test_the_layers_form_no_circle():
    layers = _layers()

    def reach(name: str, seen: tuple[str, ...]) -> None:
        for dep in layers.get(name, ()):
            assert dep not in seen, f"the allowed imports go round in a circle: {' -> '.join(seen + (dep,))}"
            reach(dep, seen + (dep,))

    for name in layers:
        reach(name, (name,))


def test_no_module_imports_outside_its_layer():
    layers = _layers()
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent)
        module = ".".join(rel.with_suffix("").parts)
        if path.parent == PACKAGE or path.name == "__main__.py":
            continue  # the command line and `python -m` shims sit above every layer
        # the innermost subpackage that states a layer holds this module
        owner = max((p for p in layers if _within(module, p)), key=len)
        # its own layer's packages, and the subpackages under it (training may use training.data,
        # whose own line is narrower)
        allowed = layers[owner] | {owner}
        for target, line in _imports(path):
            if target == "<relative>":
                problems.append(f"{rel}:{line}: relative import (the project writes absolute ones)")
            elif not any(_within(target, a) for a in allowed):
                problems.append(f"{rel}:{line}: imports {target}, outside {owner}'s layer ({', '.join(sorted(layers[owner])) or 'nothing'})")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module", ["fast_nst.io.export", "fast_nst.io.validate"])
def test_io_imports_nothing_above_it(module):
    """The two circles the structure review found, checked by name as well."""
    path = PACKAGE.parent / Path(*module.split(".")).with_suffix(".py")
    assert [t for t, _ in _imports(path) if not _within(t, "fast_nst.io")] == []
