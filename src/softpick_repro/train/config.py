"""`TrainConfig`: every setting of one training run, with the paper's recipe as defaults."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


class TrainConfigError(ValueError):
    """A training setting that cannot run; `field` is the TrainConfig field at fault."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass
class TrainConfig:
    """One training run. Defaults are the paper's recipe (SOFTPICK.md section 3)."""

    preset: str                          # model size preset (softpick_repro.model.presets)
    arm: str                             # attention arm
    seq_len: int                         # tokens per packed sequence (the paper: 4096)
    global_batch: int                    # sequences per optimizer step, over all processes
    micro_batch: int                     # sequences per forward/backward on one process
    steps: int                           # length of the LR schedule (the full run)
    lr: float                            # peak learning rate
    warmup_steps: int                    # linear warmup updates
    stop_at_step: int | None = None      # stop early on the full schedule (Table 3: 10%)
    min_lr_ratio: float = 0.1            # cosine floor as a share of lr
    betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-15
    weight_decay: float = 0.1            # on all parameters, as in the paper
    weight_decay_on: str = "all"         # all (the paper) | matrices (not the embedding table, not the norm gains)
    grad_clip: float = 1.0
    seed: int = 79
    ckpt_every: int = 1000               # checkpoint period in steps (plus one at the end)
    keep_steps: list[int] = field(default_factory=list)   # steps whose weights are published
    val_every: int = 0                   # validation period in steps; 0 = only at the end
    val_batches: int = 8                 # validation micro-batches (of micro_batch sequences)
    max_consecutive_skips: int = 10      # abort after this many non-finite steps in a row
    precision: str = "auto"              # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False                # torch.compile the model (CUDA only)
    activation_checkpointing: bool = False   # recompute each decoder layer in the backward
    device: str = "auto"                 # auto | cpu | cuda
    threads: int | None = None           # CPU intra-op threads per process (None: torch's default)
    processes: int = 1                   # data-parallel processes per node; launch() uses torchrun when > 1
    parallel: str = "ddp"                # ddp (replicated weights) | fsdp (FSDP2: sharded weights/grads/optimizer)
    nodes: int = 1                       # nodes of a SLURM job; > 1 starts one torchrun per node (launch)
    rendezvous_timeout_s: int = 300      # multi-node: how long torchrun waits for every node to join
    tensorboard: bool = False            # also log to <ckpt_dir>/tensorboard (process 0 only)
    log_every: int = 0                   # log a text line every N steps; 0 = about 20 lines
    model_overrides: dict[str, Any] = field(default_factory=dict)   # passed to build_config

    # Fields that do not change the trajectory of the weights: a resumed run may differ here.
    RESUME_FREE = ("stop_at_step", "ckpt_every", "keep_steps", "val_every", "val_batches",
                   "max_consecutive_skips", "compile", "activation_checkpointing", "device", "threads", "processes",
                   "log_every", "micro_batch", "nodes", "rendezvous_timeout_s", "tensorboard")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown} (known: {sorted(names)})")
        values = dict(values)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out

    @property
    def last_step(self) -> int:
        return self.stop_at_step if self.stop_at_step is not None else self.steps

    def validate(self, world_size: int = 1) -> int:
        """Check the config; return gradient-accumulation steps per process.

        Raises TrainConfigError, whose `field` names the offending setting (the plan check,
        softpick_repro.plancheck, maps it to the config key)."""
        def bad(name: str, msg: str) -> TrainConfigError:
            return TrainConfigError(name, f"training config: {msg}")

        for name in ("seq_len", "global_batch", "micro_batch", "steps", "ckpt_every",
                     "val_batches", "max_consecutive_skips", "processes", "nodes", "rendezvous_timeout_s"):
            if int(getattr(self, name)) < 1:
                raise bad(name, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "min_lr_ratio", "adam_eps", "weight_decay", "grad_clip"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                raise bad(name, f"{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'}, "
                                f"got {getattr(self, name)}")
        if self.warmup_steps < 0 or self.warmup_steps >= self.steps:
            raise bad("warmup_steps", f"warmup_steps must be in [0, steps={self.steps}), "
                                      f"got {self.warmup_steps}")
        if self.stop_at_step is not None and not 1 <= self.stop_at_step <= self.steps:
            raise bad("stop_at_step",
                      f"stop_at_step must be in [1, steps={self.steps}], got {self.stop_at_step}")
        bad_steps = [s for s in self.keep_steps if not 1 <= s <= self.last_step]
        if bad_steps:
            raise bad("keep_steps", f"keep_steps {bad_steps} lie outside [1, {self.last_step}] "
                                    f"(the last step of this run)")
        if self.weight_decay_on not in ("all", "matrices"):
            raise bad("weight_decay_on", f"weight_decay_on must be all|matrices, got {self.weight_decay_on!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise bad("precision", f"precision must be auto|fp32|bf16, got {self.precision!r}")
        if self.parallel not in ("ddp", "fsdp"):
            raise bad("parallel", f"parallel must be ddp|fsdp, got {self.parallel!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise bad("device", f"device must be auto|cpu|cuda, got {self.device!r}")
        per_step = self.micro_batch * world_size
        if self.global_batch % per_step:
            raise TrainConfigError(
                "global_batch",
                f"global batch {self.global_batch} does not divide into micro_batch {self.micro_batch} "
                f"x {world_size} process(es): it must be a multiple of {per_step}")
        return self.global_batch // per_step


def trajectory(cfg_dict: dict) -> dict:
    """The settings that decide the weights' trajectory (must match to resume); a field that a
    checkpoint written before it existed lacks counts as its default."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                if f.default is not dataclasses.MISSING}
    return {k: v for k, v in {**defaults, **cfg_dict}.items() if k not in TrainConfig.RESUME_FREE}
