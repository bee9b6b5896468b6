"""`load_exported`, the one loader of exported model directories, lives in
`softpick_repro.model.llama_export` (a Llama export comes back as our class); it checks every
`*.safetensors` against its content digest first (`softpick_repro.integrity.verify_model_dir`),
never unpickles and never runs code from the directory. This name is kept for imports of it."""
from softpick_repro.model.llama_export import load_exported

__all__ = ["load_exported"]
