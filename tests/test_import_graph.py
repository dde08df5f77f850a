"""The import graph of ``data_selection`` and ``llamafactory_ext`` (issue 26.5/26.6), read from the source (AST).

Every import counts, at module top and inside functions alike (a function-local import is an arrow a reader
does not see, not an absent one). Per module: it is in no import cycle, ``data_selection`` never imports
``llamafactory_ext``, a function-local import of our own modules says why on its line (``# lazy: <reason>``),
and the file has at most 400 lines. For the whole: at most 15 function-local imports of our own modules.
Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from helpers import REPO_ROOT

PACKAGES = ("data_selection", "llamafactory_ext")
MAX_LINES = 400
MAX_LAZY = 15



@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module of ours
    line: int
    local: bool  # inside a function
    reason: str  # text after "# lazy:" on the statement's lines ("" when none)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _files() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO_ROOT / pkg).rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    """Modules of ours an import statement loads (``from a.b import c`` is a.b.c when that is a module)."""
    known = _files()
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] in PACKAGES]
    base = node.module or ""
    if node.level:
        anchor = module.split(".")
        anchor = anchor if is_package else anchor[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    if base.split(".")[0] not in PACKAGES:
        return []
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
    rest = [a for a in node.names if f"{base}.{a.name}" not in known]
    return subs + ([base] if rest or not subs else [])


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, in_function: bool = False):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking(child):
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function
        yield from _walk(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))


@cache
def imports() -> tuple[Import, ...]:
    out = []
    for module, path in _files().items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node, local in _walk(ast.parse(text)):
            span = " ".join(lines[node.lineno - 1: node.end_lineno])
            reason = span.split("# lazy:", 1)[1].strip() if "# lazy:" in span else ""
            for target in _resolve(module, node, path.name == "__init__.py"):
                out.append(Import(module, target, node.lineno, local, reason))
    return tuple(out)


@cache
def cycles() -> tuple[frozenset[str], ...]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {m: set() for m in _files()}
    for imp in imports():
        if imp.target in graph and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return tuple(found)


def _params():
    out = []
    for module, path in _files().items():
        rel = path.relative_to(REPO_ROOT).as_posix()
        out.append(pytest.param(module, rel, id=rel))
    return out


@pytest.mark.parametrize(("module", "rel"), _params())
def test_module_imports(module, rel):
    problems = []
    for comp in cycles():
        if module in comp:
            problems.append(f"in an import cycle with {sorted(comp - {module})}")
    mine = [i for i in imports() if i.source == module]
    if module.startswith("data_selection"):
        problems += [f"line {i.line}: imports {i.target} (data_selection never imports llamafactory_ext)"
                     for i in mine if i.target.startswith("llamafactory_ext")]
    problems += [f"line {i.line}: function-local import of {i.target} without a '# lazy: <reason>' comment"
                 for i in mine if i.local and not i.reason]
    assert not problems, f"{rel}:\n" + "\n".join(problems)


@pytest.mark.parametrize(("module", "rel"), _params())
def test_module_size(module, rel):
    lines = len((REPO_ROOT / rel).read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{rel}: {lines} lines (at most {MAX_LINES}: split it by job)"


def test_at_most_15_function_local_imports_of_our_modules():
    local = [f"{i.source}:{i.line} -> {i.target}" for i in imports() if i.local]
    assert len(local) <= MAX_LAZY, f"{len(local)} function-local imports of our modules:\n" + "\n".join(local)


def test_the_graph_reader_sees_what_it_must():
    """The checks above are only as good as the reader: it must see local imports, relative ones and cycles."""
    found = {(i.source, i.target, i.local) for i in imports()}
    assert ("data_selection.cli", "data_selection.command_line", False) in found
    assert any(i.local for i in imports())  # today's tree still has some; a reader that saw none would be blind
    assert all(i.target.split(".")[0] in PACKAGES for i in imports())
    node = ast.parse("from .b import c\nfrom .. import d\n")
    assert _resolve("data_selection.perturb.a", node.body[0], False) == ["data_selection.perturb.b"]
    assert _resolve("data_selection.perturb.a", node.body[1], False) == ["data_selection"]
