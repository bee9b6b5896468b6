"""Registration of our model with transformers' Auto classes, deferred until transformers is
imported.

`import softpick_repro` must be all an exported directory needs to load through
`AutoModelForCausalLM`, but importing the model (and with it transformers, which pulls in hqq,
torch._dynamo and scikit-learn, though those two are now deferred: model/_lean_imports.py) costs ~7 s on a 2-core machine. Most importers never touch a
model: the Snakefile when it loads (in every SLURM job too), the table, figure and report jobs.
So the package installs a one-shot import hook: when `transformers` itself finishes importing,
`softpick_repro.model` is imported, which registers `softpick_llama`. If transformers is
already imported, registration happens at once.
"""
from __future__ import annotations

import importlib.abc
import sys

TRIGGER = "transformers"


def register() -> None:
    from softpick_repro import model  # noqa: F401  (its import registers the Auto classes)


class RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    """A meta-path finder that finds nothing itself: for `transformers` it asks the other
    finders and wraps the loader so that registration follows the module's execution.
    It stays installed until that execution happens (a bare `importlib.util.find_spec`
    availability check, as libraries do, finds a spec but executes nothing)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != TRIGGER:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_module(module):
            execute(module)
            uninstall()
            register()

        loader.exec_module = exec_module
        return spec


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, RegisterAfterTransformers)]


def install() -> None:
    if TRIGGER in sys.modules:
        register()
    elif not any(isinstance(f, RegisterAfterTransformers) for f in sys.meta_path):
        sys.meta_path.insert(0, RegisterAfterTransformers())
