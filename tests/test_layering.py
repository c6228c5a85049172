"""The shape we keep, walked over every module of every subpackage:

- backend never imports gradio; webui never imports torch, transformers or peft;
- no two modules import each other, directly or round a circle, not even inside a function;
- no two folders do either (a top-level module of backend counts as its own folder, webui as one);
- the app (webui, and backend's runs, serving, evaluation, access, sweeps, recipes and the app's entry points)
  never imports the job's code (backend.train, backend.training), which it only starts as a process;
- the job never imports the app's code, and the shared code (everything else) neither side's;
- every folder of backend is placed on a side, so a new one is covered the day it is added.

Imports under `if TYPE_CHECKING:` never run and name types only; they are left out, as import-linter's
exclude_type_checking_imports does.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

FORBIDDEN = {"backend": {"gradio"}, "webui": {"torch", "transformers", "peft"}}
JOB_SIDE = ("backend.train", "backend.training")
APP_SIDE = ("webui", "backend.runs", "backend.serving", "backend.evaluation", "backend.access", "backend.sweeps")
APP_SIDE += ("backend.recipes", "backend.recipe", "backend.evaluate", "backend.sweep", "backend.serve")
APP_SIDE += ("backend.export",)
SHARED_FOLDERS = (
    "backend.data",
    "backend.rewards",
    "backend.models",
)  # with backend's top-level modules that are no entry point


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in FORBIDDEN for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(path: Path) -> list[ast.AST]:
    found, todo = [], [ast.parse(path.read_text(encoding="utf-8"))]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


def imported_names(path: Path) -> set[str]:
    """Every module path named by an import: `from a.b import c` names a.b, and a.b.c where that is a module."""
    names = set()
    for node in imports_of(path):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def project_imports(name: str) -> set[str]:
    return {n for n in imported_names(MODULES[name]) if n in MODULES and n != name}


def is_within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_every_subpackage_is_walked():
    assert {
        "backend.training.recipe",
        "backend.runs.job_manager",
        "backend.serving.chat",
        "webui.app",
    } <= MODULES.keys()


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_the_other_layer(package):
    for name, path in MODULES.items():
        if is_within(name, (package,)):
            bad = {n.split(".")[0] for n in imported_names(path)} & FORBIDDEN[package]
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_no_module_imports_itself_round_a_circle():
    graph = {name: project_imports(name) for name in MODULES}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            circle = path[path.index(name) :] + [name]
            pytest.fail("import cycle: " + " -> ".join(circle))
        if name in done:
            return
        for other in sorted(graph[name]):
            visit(other, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def folder_of(name: str) -> str:
    """backend.runs.job_manager -> backend.runs; backend.config -> backend.config; webui.tab_chat -> webui."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "backend" else parts[0]


def folder_edges() -> dict[tuple[str, str], str]:
    """(folder, folder it imports) -> one module import that makes the edge, to name in a failure."""
    edges = {}
    for name in sorted(MODULES):
        for other in sorted(project_imports(name)):
            if folder_of(name) != folder_of(other):
                edges.setdefault((folder_of(name), folder_of(other)), f"{name} imports {other}")
    return edges


def test_no_folder_imports_another_round_a_circle():
    edges = folder_edges()
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    done: set[str] = set()

    def visit(folder: str, path: list[str]) -> None:
        if folder in path:
            circle = [*path[path.index(folder) :], folder]
            named = "; ".join(edges[(a, b)] for a, b in zip(circle, circle[1:], strict=False))
            pytest.fail(f"folder loop {' -> '.join(circle)} ({named})")
        if folder in done:
            return
        for other in sorted(graph.get(folder, ())):
            visit(other, [*path, folder])
        done.add(folder)

    for folder in sorted(graph):
        visit(folder, [])


def test_every_folder_of_backend_is_on_a_side():
    folders = {folder_of(name) for name in MODULES if name.count(".") >= 2}
    placed = set(JOB_SIDE) | set(APP_SIDE) | set(SHARED_FOLDERS)
    assert folders <= placed, f"place {sorted(folders - placed)} in JOB_SIDE, APP_SIDE or SHARED_FOLDERS"


def test_the_job_never_imports_the_apps_code_and_shared_code_neither_sides():
    for (a, b), example in folder_edges().items():
        if is_within(a, JOB_SIDE):
            assert not is_within(b, APP_SIDE), f"job-side {a} imports app-side {b} ({example})"
        elif not is_within(a, APP_SIDE):
            assert not is_within(b, APP_SIDE + JOB_SIDE), f"shared {a} imports {b}, one side's code ({example})"


def test_the_app_never_imports_the_jobs_code():
    for name in MODULES:
        if is_within(name, APP_SIDE):
            bad = {n for n in project_imports(name) if is_within(n, JOB_SIDE)}
            assert not bad, f"{name} (app side) imports job-side {sorted(bad)}"


def test_the_app_starts_without_loading_torch_transformers_or_peft_or_the_jobs_code():
    """Not only direct imports: no backend module the UI reaches may pull the ML stack in at import time."""
    probe = (
        "import sys, webui.app; "
        "print(sorted(m for m in sys.modules if m in ('torch', 'transformers', 'peft', 'backend.train') "
        "or m.startswith('backend.training')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
