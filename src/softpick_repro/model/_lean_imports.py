"""Import transformers without the two optional libraries it loads eagerly and we rarely need.

transformers imports, at module level and only because they are installed:
- hqq (~4 s on a 2-core machine, most of it torch._dynamo): for its HQQ-quantized KV cache
  (`transformers.cache_utils.HQQQuantizer`) and its HQQ quantizer
  (`transformers.quantizers.quantizer_hqq.HQQLinear`, whose import also gives hqq's `HQQLinear`
  a `weight` property);
- scikit-learn (~2 s): for assisted generation's confidence threshold
  (`transformers.generation.candidate_generator.roc_curve`).
Every pipeline job that touches a model paid those 6 s before doing anything.

`import_transformers_lean()` imports those transformers modules while the availability checks
answer "not installed", restores the checks everywhere they were bound, and binds a deferred
stand-in under each name that the skipped import would have bound. A stand-in imports the real
object on first use. For hqq, `import_hqq()` (our quantizer's way in, or the first use of a
stand-in) also re-runs `quantizer_hqq`'s guarded import, so hqq's `HQQLinear` gets transformers'
patch exactly as before. If transformers' modules are already imported, or a library is not
installed, nothing changes.
"""
from __future__ import annotations

import importlib
import sys

# transformers module -> (availability check it binds, name its guarded import binds, real module, real name)
DEFERRED = {
    "transformers.cache_utils": ("is_hqq_available", "HQQQuantizer", "hqq.core.quantize", "Quantizer"),
    "transformers.quantizers.quantizer_hqq": ("is_hqq_available", "HQQLinear", "hqq.core.quantize", "HQQLinear"),
    "transformers.generation.candidate_generator": ("is_sklearn_available", "roc_curve", "sklearn.metrics",
                                                    "roc_curve"),
}
HQQ = "hqq.core.quantize"


class Deferred:
    """Stands for `real_module.real_name`, imported when first called or looked into."""

    def __init__(self, module: str, name: str):
        self._where = (module, name)

    def resolve(self):
        module, name = self._where
        return getattr(import_hqq() if module == HQQ else importlib.import_module(module), name)

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


def import_hqq():
    """`hqq.core.quantize`, with transformers' hqq-dependent names bound as a plain import of
    transformers would have bound them (and `HQQLinear.weight` patched by `quantizer_hqq`)."""
    quantize = importlib.import_module(HQQ)
    for module, (_check, bound_name, real_module, real_name) in DEFERRED.items():
        mod = sys.modules.get(module)
        if real_module != HQQ or mod is None or not isinstance(vars(mod).get(bound_name), Deferred):
            continue
        if module == "transformers.quantizers.quantizer_hqq":
            importlib.reload(mod)  # its guarded block imports HQQLinear and patches it
        else:
            setattr(mod, bound_name, getattr(quantize, real_name))
    return quantize
