"""Package-wide conventions: every `udl_jax` module declares its public API in ``__all__``.

The API page (book/api.md) documents each module with ``automodule :members:``, and autodoc
shows exactly the names ``__all__`` lists, in its order (``autodoc_member_order: bysource``).
So ``__all__`` must name every public function and class a module defines, every name another
module imports from it, and every name a chapter calls, in its code cells or in the code of its
solutions. Fast: imports and parsing only, nothing is trained.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import re
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "udl_jax"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
PROJECT_CODE = ("udl_jax", "benchmarks", "tools")  # code that imports udl_jax modules

# Public top-level functions and classes a module defines but deliberately leaves out of its
# `__all__`: {module: {name: reason}}. Keep it empty unless there is a reason worth writing
# down; a helper that is private by convention gets a leading underscore instead.
NOT_EXPORTED: dict[str, dict[str, str]] = {}

FENCED_PYTHON = re.compile(r"^```python[^\n]*\n(.*?)^```", re.M | re.S)


def _module(name: str):
    return importlib.import_module(f"udl_jax.{name}")


def _all(name: str) -> list[str]:
    module = _module(name)
    assert hasattr(module, "__all__"), f"udl_jax/{name}.py has no __all__"
    return list(module.__all__)


def _defined(name: str) -> list[str]:
    """Public functions and classes defined at the top level of ``udl_jax/<name>.py``."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return [n.name for n in tree.body if isinstance(n, kinds) and not n.name.startswith("_")]


def _load_api_links():
    spec = importlib.util.spec_from_file_location("api_links", ROOT / "tools" / "api_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Notebook code with IPython magics (``%pip``, ``!ls``) replaced by ``pass``, as the api-links
# tool reads it.
_parsable = _load_api_links()._parsable


def _target(node: ast.ImportFrom) -> str | None:
    """The absolute module an ``ImportFrom`` reads from, if it is in ``udl_jax``."""
    if node.level == 1:  # inside the package: `from . import x`, `from .data import Dataset`
        return f"udl_jax.{node.module}" if node.module else "udl_jax"
    if node.level == 0 and node.module and node.module.split(".")[0] == "udl_jax":
        return node.module
    return None


def references(trees: list[ast.AST]) -> set[tuple[str, str]]:
    """``(module, name)`` for every public name the code takes from a `udl_jax` module.

    Follows the ways the book imports modules: ``from udl_jax import ntk``, aliases
    (``algorithmic_stability as stab``), ``import udl_jax.ntk as nt``, relative imports inside
    the package, and ``from udl_jax.data import Dataset``; then every ``alias.name`` and
    ``udl_jax.module.name``. Names with a leading underscore are private and skipped.
    """
    aliases: dict[str, str] = {}  # local name -> udl_jax module
    found: set[tuple[str, str]] = set()
    for tree in trees:  # a notebook imports in one cell and calls in the others
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (target := _target(node)):
                for a in node.names:
                    if target == "udl_jax" and a.name in MODULES:
                        aliases[a.asname or a.name] = a.name
                    elif target.count(".") == 1 and not a.name.startswith("_"):
                        found.add((target.split(".")[1], a.name))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    parts = a.name.split(".")
                    if parts[0] == "udl_jax" and len(parts) == 2 and a.asname:
                        aliases[a.asname] = parts[1]
    for tree in trees:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or node.attr.startswith("_"):
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id in aliases:
                found.add((aliases[value.id], node.attr))
            elif (isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name)
                  and value.value.id == "udl_jax" and value.attr in MODULES):
                found.add((value.attr, node.attr))
    return {(m, n) for m, n in found if m in MODULES}


@functools.cache
def chapter_references() -> dict[str, dict[str, set[str]]]:
    """{module: {name: chapters}} for what the chapters' code cells and solutions use."""
    used: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        sources = [_parsable(c.source) for c in nb.cells if c.cell_type == "code"]
        sources += [block for c in nb.cells if c.cell_type == "markdown"
                    for block in FENCED_PYTHON.findall(c.source)]
        for module, name in references([ast.parse(s, str(path)) for s in sources]):
            used[module][name].add(path.name)
    return used


@functools.cache
def code_references() -> dict[str, dict[str, set[str]]]:
    """{module: {name: files}} for what the package, the benchmarks and the tools import."""
    used: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for folder in PROJECT_CODE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            for module, name in references([ast.parse(path.read_text(), rel)]):
                if rel != f"udl_jax/{module}.py":  # a module's use of its own names is free
                    used[module][name].add(rel)
    return used


def _missing(module: str, used: dict[str, set[str]]) -> list[str]:
    exported = set(_all(module))
    return [f"{module}.{name} (used in {', '.join(sorted(where))})"
            for name, where in sorted(used.items()) if name not in exported]


# ------------------------------------------------------------------------------ the checker


def test_references_follow_every_way_of_importing():
    code = (
        "import importlib.util\nif True:\n    %pip install -q udl_jax\n"
        "from udl_jax import data, algorithmic_stability as stab\n"
        "import udl_jax.ntk as nt\nimport udl_jax\nfrom udl_jax.models import MLP\n"
        "from .hessian import sharpness\nfrom . import bounds\n"
        "stab.coherence(g); nt.mlp_ntk(m, x); data._seed(k); bounds.occam_bound(e, b, n, d)\n"
        "udl_jax.plot.use_style(); other.thing; x = data.Dataset\n"
    )
    assert references([ast.parse(_parsable(code))]) == {
        ("algorithmic_stability", "coherence"), ("ntk", "mlp_ntk"), ("models", "MLP"),
        ("hessian", "sharpness"), ("bounds", "occam_bound"), ("plot", "use_style"),
        ("data", "Dataset"),
    }


def test_chapters_are_read():
    used = chapter_references()
    assert NOTEBOOKS and "mnist1d" in used["data"] and "verify" in used["checks"]
    assert "count_regions_2d" in used["regions"]  # only in a solution's code (chapter 2)


# ------------------------------------------------------------------------------- conventions


@pytest.mark.parametrize("module", MODULES)
def test_all_is_a_list_of_existing_unique_names(module):
    names = _all(module)
    assert all(isinstance(n, str) for n in names), f"udl_jax.{module}.__all__: not all strings"
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"udl_jax.{module}.__all__ lists twice: {duplicates}"
    absent = [n for n in names if not hasattr(_module(module), n)]
    assert not absent, f"udl_jax.{module}.__all__ names what the module lacks: {absent}"


@pytest.mark.parametrize("module", MODULES)
def test_all_names_every_public_function_and_class(module):
    exceptions = NOT_EXPORTED.get(module, {})
    defined = _defined(module)
    stale = sorted(set(exceptions) - set(defined)) + sorted(set(exceptions) & set(_all(module)))
    assert not stale, f"NOT_EXPORTED[{module!r}]: undefined or exported after all: {stale}"
    missing = [n for n in defined if n not in _all(module) and n not in exceptions]
    assert not missing, (
        f"udl_jax/{module}.py defines public {missing} but its __all__ leaves them out: add "
        "them (in reading order), prefix an internal helper with _, or list it in NOT_EXPORTED"
    )


@pytest.mark.parametrize("module", MODULES)
def test_all_names_what_other_modules_import(module):
    missing = _missing(module, code_references().get(module, {}))
    assert not missing, f"imported from udl_jax.{module} but not in its __all__: {missing}"


@pytest.mark.parametrize("module", MODULES)
def test_all_names_what_chapters_use(module):
    missing = _missing(module, chapter_references().get(module, {}))
    assert not missing, f"used by a chapter but not in udl_jax.{module}.__all__: {missing}"
