"""gradio imported without regenerating its own type stubs: a quarter of the app's start.

As gradio's modules define their ~60 component classes, each class parses its module's source and its `.pyi`
with `ast` to rewrite the stub's event listener signatures (`gradio.component_meta.create_or_modify_pyi`). The
stubs serve editors of gradio's own source; an installed gradio has them from its first import already, and the
app never reads them. Skipped, the app's start took 2.7-2.9 CPU-s instead of 3.6-4.3, and its page answered
a second sooner (bench/app_start.py, docs/benchmarks.md). A gradio imported before the call is left as it is.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

STUBS_MODULE = "gradio.component_meta"


class _WithoutStubRewrite(importlib.abc.MetaPathFinder):
    """Finds gradio.component_meta as Python would, and turns its stub writer into nothing once it has run."""

    def find_spec(self, name, path, target=None):
        if name != STUBS_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.create_or_modify_pyi = _keep_stubs

        spec.loader.exec_module = exec_module
        return spec


def _keep_stubs(component_class, class_name, events) -> None:
    return None


def skip_stub_rewrite() -> None:
    """Before gradio's first import in this process: its components are defined without rewriting stubs."""
    if STUBS_MODULE not in sys.modules and not any(isinstance(f, _WithoutStubRewrite) for f in sys.meta_path):
        sys.meta_path.insert(0, _WithoutStubRewrite())
