"""Training stage: the trainer, resumable checkpoints, and export to Hugging Face directories.

Public API:
- `TrainConfig`, `train(cfg, tokens_dir=, ckpt_dir=, out_dir=)`, `output_files(out_dir, keep_steps)`
- `launch(cfg, ..., nproc=)`: the same under torchrun when nproc > 1
- `compare_weight_files(got_dir, want_dir)`: tensor-by-tensor differences of two weights/ dirs
- `export_hf(snapshot, tokenizer_dir, out_dir)`, `load_snapshot_model(snapshot)`
- errors: `TrainingAborted` (NaN/Inf streak), `CheckpointError` (unusable checkpoint file)
"""
from .checkpoint import CheckpointError
from .export import export_hf, load_snapshot_model, read_snapshot_metadata
from .launch import launch
from .records import compare_weight_files
from .config import TrainConfig
from .trainer import TrainingAborted, output_files, train

__all__ = ["CheckpointError", "TrainConfig", "TrainingAborted", "compare_weight_files", "export_hf", "launch",
           "load_snapshot_model", "output_files", "read_snapshot_metadata", "train"]
