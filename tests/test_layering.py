"""The layering rules of docs/architecture.md, checked on the real import graph.

Every module of the engine belongs to exactly one layer; a module may import from its own
layer and the layers below it (``ALLOWED``). Plugins (``algorithms/``, ``problems/``) may
import only the layers a contributor writes against. Imports inside functions count: a lazy
import is still a dependency. A new module must be placed in a layer here (and in
docs/architecture.md) before it can land — the test names the file to edit.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "blobench"

#: the layers: each is a subpackage of blobench/ (autodiff a module, the CLI two top-level
#: modules, the facade the package root), so a module's layer is the folder it lives in
LAYERS: dict[str, str] = {
    "contracts": "contracts", "autodiff": "autodiff", "bases": "bases", "toolkit": "toolkit",
    "execution": "execution", "reporting": "reporting", "workflows": "workflows",
    "cli": "cli", "__main__": "cli",
    # the package root: re-exports the plugin API and the Python API lazily (PEP 562)
    "__init__": "facade",
}

ORDER = ["contracts", "autodiff", "bases", "toolkit", "execution", "reporting", "workflows", "cli",
         "facade"]

#: what each layer may import (besides itself); reporting reads records, it does not run cells
ALLOWED: dict[str, set[str]] = {
    "contracts": set(),
    "autodiff": {"contracts"},
    "bases": {"contracts", "autodiff"},
    "toolkit": {"contracts", "autodiff"},
    "execution": {"contracts", "autodiff", "bases", "toolkit"},
    "reporting": {"contracts", "execution"},
    "workflows": {"contracts", "autodiff", "bases", "toolkit", "execution", "reporting"},
    "cli": set(ORDER),
    "facade": set(ORDER),
}

#: what a plugin file may import
PLUGIN_ALLOWED = {"contracts", "autodiff", "bases", "toolkit", "facade"}

#: imports that break the rules today, each with the reason it is tolerated; the list may
#: only shrink (a stale entry fails the test, so a fixed violation is removed from here)
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}


def _engine_module(node: ast.AST) -> list[str]:
    """Layers (top-level names under blobench/) an import statement names
    (``blobench.x.y`` → ``x``)."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            parts = alias.name.split(".")
            if parts[0] == "blobench":
                names.append(parts[1] if len(parts) > 1 else "__init__")
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        parts = node.module.split(".")
        if parts[0] == "blobench":
            if len(parts) > 1:
                names.append(parts[1])
            else:  # from blobench import x: x is a module or a name of the package root
                for alias in node.names:
                    is_module = ((ENGINE / f"{alias.name}.py").exists()
                                 or (ENGINE / alias.name).is_dir())
                    names.append(alias.name if is_module else "__init__")
    return names


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {name for node in ast.walk(tree) for name in _engine_module(node)}


def _module_name(path: Path) -> str:
    """The layer folder (or top-level module) a file belongs to."""
    rel = path.relative_to(ENGINE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _engine_files() -> list[Path]:
    return sorted(p for p in ENGINE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_engine_module_has_a_layer():
    missing = sorted({_module_name(p) for p in _engine_files()} - set(LAYERS))
    assert not missing, (f"engine modules outside the layer folders: {missing}; move each into "
                         f"the layer folder it belongs to (docs/architecture.md)")


def test_engine_imports_follow_the_layers():
    broken, used_exceptions = [], set()
    for path in _engine_files():
        mod = _module_name(path)
        layer = LAYERS.get(mod)
        if layer is None:
            continue  # reported by the test above
        for target in _imports(path):
            target_layer = LAYERS.get(target)
            if target_layer is None or target_layer == layer:
                continue
            if target_layer in ALLOWED[layer]:
                continue
            rel = path.relative_to(ENGINE).as_posix()
            if (rel, target) in KNOWN_VIOLATIONS:
                used_exceptions.add((rel, target))
                continue
            broken.append(f"{path.relative_to(ROOT)} ({layer}) imports blobench.{target} "
                          f"({target_layer})")
    assert not broken, "layering rules broken:\n" + "\n".join(broken)
    stale = set(KNOWN_VIOLATIONS) - used_exceptions
    assert not stale, f"KNOWN_VIOLATIONS entries no longer needed, remove them: {sorted(stale)}"


@pytest.mark.parametrize("folder", ["algorithms", "problems"])
def test_plugins_import_only_the_public_layers(folder):
    broken = []
    for path in sorted((ROOT / folder).glob("*.py")):
        for target in _imports(path):
            if LAYERS.get(target) not in PLUGIN_ALLOWED:
                broken.append(f"{path.relative_to(ROOT)} imports blobench.{target} "
                              f"({LAYERS.get(target, 'no layer')})")
    assert not broken, "plugins may import only " + ", ".join(sorted(PLUGIN_ALLOWED)) + ":\n" \
        + "\n".join(broken)


def test_the_checker_sees_a_violation(tmp_path):
    """Self-check: an autodiff-layer file importing the harness is reported."""
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from blobench.execution.harness import run_cell\n")
    assert _imports(bad) == {"execution"}
    assert LAYERS["execution"] not in ALLOWED["autodiff"]
