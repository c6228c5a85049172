"""The shape we keep, walked over every module of every subpackage:

- backend never imports gradio; webui never imports torch, transformers or peft;
- no two modules import each other, directly or round a circle, not even inside a function;
- the app (webui, and backend's runs, serving, evaluation, access and sweeps) never imports the job's code
  (backend.train, backend.training), which it only starts as a process.
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


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in FORBIDDEN for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(path: Path) -> list[ast.AST]:
    return [
        n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.Import | ast.ImportFrom)
    ]


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
    assert {"backend.training.recipe", "backend.runs.manager", "backend.serving.chat", "webui.app"} <= MODULES.keys()


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
