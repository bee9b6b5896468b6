"""Reproduction of "Softpick: No Attention Sink, No Massive Activations with Rectified Softmax".

The package holds all logic of the pipeline; the Snakemake workflow only calls it.
Importing it registers the model (`model_type = "softpick_llama"`, every arm but plain
softmax, which exports as transformers' own Llama) with transformers' Auto classes, so
`import softpick_repro` is all an exported model directory needs to load. Registration waits
until transformers is imported (softpick_repro._registration), so importing the package for
its config, plan or report code stays cheap.
"""
__version__ = "0.1.0"

from softpick_repro import _registration  # noqa: E402

_registration.install()
