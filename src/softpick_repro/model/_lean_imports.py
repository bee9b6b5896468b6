"""Import transformers without scikit-learn, which it loads eagerly and we never need there.

transformers imports scikit-learn (~2 s on a 2-core machine) at module level, only because it is
installed, for assisted generation's confidence threshold
(`transformers.generation.candidate_generator.roc_curve`). Every pipeline job that touches a
model paid that before doing anything.

`import_transformers_lean()` imports that transformers module while its availability check
answers "not installed", then restores the check everywhere it was bound and puts a deferred
stand-in under the name the skipped import would have bound. The stand-in imports the real
function on first use, so the feature keeps working. If the module is already imported, or
scikit-learn is not installed, it changes nothing.

hqq (~4 s, most of it torch._dynamo) is imported the same way by transformers, but
`transformers.quantizers.quantizer_hqq` also patches hqq's `HQQLinear` class when it imports
it, a side effect that our HQQ quantizer may meet; so hqq is left alone.
"""
from __future__ import annotations

import importlib
import sys

# transformers module -> (availability check it binds, name its guarded import binds, real module, real name)
DEFERRED = {
    "transformers.generation.candidate_generator": ("is_sklearn_available", "roc_curve", "sklearn.metrics",
                                                    "roc_curve"),
}


class Deferred:
    """Stands for `real_module.real_name`, imported when first called or looked into."""

    def __init__(self, module: str, name: str):
        self._where = (module, name)

    def resolve(self):
        module, name = self._where
        return getattr(importlib.import_module(module), name)

    def __getattr__(self, item):
        if item.startswith("__"):
            raise AttributeError(item)
        return getattr(self.resolve(), item)

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<deferred {self._where[0]}.{self._where[1]}>"


def import_transformers_lean() -> None:
    if any(name in sys.modules for name in DEFERRED):
        return
    import transformers.utils as utils

    to_defer = {}
    for module, (check, *rest) in DEFERRED.items():
        original = getattr(utils, check, None)
        if callable(original) and original():  # installed (a metadata lookup, no import)
            to_defer[module] = (check, original, *rest)
    if not to_defer:
        return
    stand_ins = {check: (lambda *args, **kwargs: False) for check, *_ in to_defer.values()}
    for check, *_ in to_defer.values():
        setattr(utils, check, stand_ins[check])
    try:
        for module in to_defer:
            importlib.import_module(module)
    finally:
        originals = {check: original for check, original, *_ in to_defer.values()}
        # any transformers module imported meanwhile may have bound a stand-in: give it the original
        for name, mod in list(sys.modules.items()):
            if not (name == "transformers" or name.startswith("transformers.")) or mod is None:
                continue
            for check, stand_in in stand_ins.items():
                if vars(mod).get(check) is stand_in:  # vars: no lazy-module attribute imports
                    setattr(mod, check, originals[check])
        for module, (check, original, bound_name, real_module, real_name) in to_defer.items():
            mod = sys.modules.get(module)
            if mod is not None and bound_name not in vars(mod):
                setattr(mod, bound_name, Deferred(real_module, real_name))
