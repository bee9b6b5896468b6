"""Reproduction of "Softpick: No Attention Sink, No Massive Activations with Rectified Softmax".

The package holds all logic of the pipeline; the Snakemake workflow only calls it.
Importing it registers the model (`model_type = "softpick_llama"`, every arm but plain
softmax, which exports as transformers' own Llama) with transformers' Auto classes, so
`import softpick_repro` is all an exported model directory needs to load.
"""
__version__ = "0.1.0"

from softpick_repro import model  # noqa: E402,F401  (registers the Auto classes)
