"""The package's layers, held to the code: no import circles (counting imports inside functions
and the ``"package.module:function"`` builder paths the registry names); the compiler never
imports the runtime, the analysis, torch or MLflow; the runtime never imports the compiler;
the analysis never imports the runtime; the catalogue imports no stage and no torch; models are
built under ``kdspec/runtime/models``. And ``kdspec check`` reads a spec without importing
torch or MLflow."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kdspec"
HEAVY = ("torch", "torchvision", "mlflow", "accelerate", "transformers", "timm")
BUILDER_PATH = re.compile(r"""["'](kdspec(?:\.\w+)+):\w+["']""")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Lines inside ``if TYPE_CHECKING:`` blocks (annotations only, never imported)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _resolve(name: str) -> str | None:
    """The kdspec module an import of ``name`` executes (a module, or its package)."""
    while name and name not in _modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def _imports(module: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(kdspec modules imported anywhere in it, third-party top-level packages imported,
    kdspec modules named as builder paths)."""
    tree = ast.parse(_modules()[module].read_text())
    skip = _type_checking_lines(tree)
    own: set[str] = set()
    other: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] == "kdspec":
                target = _resolve(name)
                if target is not None and target != module:
                    own.add(target)
            else:
                other.add(name.split(".")[0])
    built = {_resolve(m) for m in BUILDER_PATH.findall(_modules()[module].read_text())}
    return tuple(sorted(own)), tuple(sorted(other)), tuple(sorted(b for b in built if b))


def _graph(*, with_builders: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module in _modules():
        own, _, built = _imports(module)
        graph[module] = set(own) | (set(built) if with_builders else set())
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _reachable(start: str, graph: dict[str, set[str]]) -> Iterator[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
                yield nxt


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_import_circles_not_even_through_builder_paths() -> None:
    assert _cycles(_graph(with_builders=True)) == []


@pytest.mark.parametrize(("layer", "forbidden"), [
    ("kdspec.dsl", ("kdspec.runtime", "kdspec.analysis", "kdspec.commands")),
    ("kdspec.runtime", ("kdspec.dsl", "kdspec.analysis", "kdspec.commands")),
    ("kdspec.analysis", ("kdspec.runtime", "kdspec.dsl", "kdspec.commands")),
    ("kdspec.catalogue", ("kdspec.runtime", "kdspec.dsl", "kdspec.analysis",
                          "kdspec.commands", "kdspec.tracking")),
    ("kdspec.tracking", ("kdspec.runtime", "kdspec.dsl", "kdspec.analysis", "kdspec.commands")),
])
def test_each_layer_imports_only_what_is_below_it(layer: str, forbidden: tuple[str, ...]
                                                  ) -> None:
    """Everything a layer's modules import, directly or through other kdspec modules."""
    graph = _graph(with_builders=False)
    wrong = sorted({f"{m} -> {r}" for m in _modules() if _in(m, layer)
                    for r in _reachable(m, graph) if any(_in(r, f) for f in forbidden)})
    assert wrong == []


@pytest.mark.parametrize("layer", ["kdspec.dsl", "kdspec.catalogue"])
def test_the_compiler_and_the_catalogue_never_import_torch_or_mlflow(layer: str) -> None:
    graph = _graph(with_builders=False)
    wrong = sorted({f"{r} imports {pkg}" for m in _modules() if _in(m, layer)
                    for r in (m, *_reachable(m, graph)) for pkg in _imports(r)[1]
                    if pkg in HEAVY})
    assert wrong == []


def test_models_are_built_under_runtime_models() -> None:
    """Every module that defines a torch ``nn.Module`` lives in kdspec/runtime."""
    defining = sorted(m for m, path in _modules().items()
                      if re.search(r"^class \w+\((nn|torch\.nn)\.Module\)", path.read_text(),
                                   re.MULTILINE))
    assert defining and all(_in(m, "kdspec.runtime") for m in defining), defining
    builders = {b for m in _modules() for b in _imports(m)[2]}
    assert builders and all(_in(b, "kdspec.runtime.models") for b in builders), builders


def test_check_reads_a_spec_without_torch_or_mlflow() -> None:
    code = ("import sys; from kdspec.cli import main; "
            "code = main(['check', 'specs/quickstart.kdspec']); "
            f"print(code, sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()[-1]
    assert out == "0 []"


def test_runtime_functions_read_in_one_sitting() -> None:
    """No function of the runtime over 60 lines or 7 parameters (self and cls not counted):
    state that travels through a step belongs in an object or a frozen value."""
    long = []
    for module, path in _modules().items():
        if not _in(module, "kdspec.runtime"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs
                         if a.arg not in ("self", "cls")]
                names += ["*"] * bool(args.vararg) + ["**"] * bool(args.kwarg)
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > 60 or len(names) > 7:
                    long.append(f"{module}.{node.name}: {lines} lines, {len(names)} parameters")
    assert long == []
