"""The pretraining loop: the paper's recipe, resumable, single process or DDP under torchrun.

Conventions
- Steps count optimizer updates; "step s" is the state after s updates, and row s of the
  metrics CSV describes the update that produced it. A global batch is `global_batch`
  sequences of `seq_len` tokens = micro_batch * accum * world_size.
- The loss is the mean token cross-entropy (computed in fp32 from the logits) over the
  global batch: each micro-batch loss is divided by `accum`, DDP averages over processes.
- A step whose gradient norm (before clipping) is NaN/Inf is skipped: no optimizer update,
  gradients dropped, the LR schedule and data position still advance, `skipped=1` in the
  CSV. No checkpoint is written while such a stretch lasts (the weights may already be
  blown up by the update before it), and `max_consecutive_skips` skipped steps in a row
  abort the run, so the last checkpoint on disk is one from before the stretch.
- Run state lives in `ckpt_dir` (checkpoint.pt, the live metrics.csv, kept snapshots);
  the declared outputs in `out_dir` are published only once the run is complete, and
  hard-linked into `ckpt_dir/published/` (see `rundirs`: they survive a retrain with other
  settings).
- `parallel: fsdp` shards parameters, gradients and optimizer state over the processes with
  FSDP2 (`torch.distributed.fsdp.fully_shard`, each decoder layer and then the whole model).
  Its checkpoint is a gathered (full, unsharded) state dict in the same checkpoint.pt, written
  by process 0: the model entries are the same as DDP's, the optimizer state is keyed by
  parameter name (torch.distributed.checkpoint.state_dict) rather than by index, so a run
  resumes under the mode it was started with (`parallel` is part of the trajectory) on any
  number of processes that divides the global batch.

Test hooks (environment variables, read once per run):
`SOFTPICK_REPRO_TEST_NAN_STEPS="3,4"` multiplies the loss of those steps by NaN;
`SOFTPICK_REPRO_TEST_STEP_SLEEP=0.05` sleeps after every step (lets a test kill mid-run).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from softpick_repro.io import atomic_write_text, config_hash, dump_json, provenance
from softpick_repro.model.presets import check_context

from . import checkpoint as ckpt
from .config import TrainConfig, trajectory
from .data import PackedWindows, WindowOrder, open_shard, rank_slice, read_manifest, unigram_entropy
from .records import SNAPSHOT_FORMAT, MetricsCSV, fmt, save_snapshot
from .rundirs import keep_published
from .schedule import WarmupCosine

log = logging.getLogger(__name__)

_NAN_ENV = "SOFTPICK_REPRO_TEST_NAN_STEPS"
_SLEEP_ENV = "SOFTPICK_REPRO_TEST_STEP_SLEEP"


class TrainingAborted(RuntimeError):
    """Too many consecutive steps with a non-finite gradient norm."""


@dataclass
class _Dist:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(cfg: TrainConfig, dist_info: _Dist) -> torch.device:
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("training config asks for device cuda but no CUDA device is available")
        torch.cuda.set_device(dist_info.local_rank)
        return torch.device("cuda", dist_info.local_rank)
    return torch.device("cpu")


def _init_distributed(device_kind: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return _Dist(world, dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _env_steps(name: str) -> set[int]:
    raw = os.environ.get(name, "").strip()
    return {int(x) for x in raw.split(",") if x.strip()} if raw else set()


def build_model(cfg: TrainConfig, manifest: dict):
    """The model of this run, freshly initialised (seed first for reproducible init)."""
    from softpick_repro.model import SoftpickForCausalLM, build_config

    overrides = dict(cfg.model_overrides)
    for key in ("bos_id", "eos_id"):
        if manifest.get(key) is not None:
            overrides.setdefault(key.replace("_id", "_token_id"), manifest[key])
    model_config = build_config(cfg.preset, cfg.arm, int(manifest["vocab_size"]), **overrides)
    return SoftpickForCausalLM(model_config)


def decay_groups(model: torch.nn.Module, weight_decay: float, on: str) -> list[dict]:
    """AdamW parameter groups. `all` decays every parameter (the paper). `matrices` decays the
    projection matrices and the LM head only: the embedding table and the norm gains may grow
    freely, which is where softmax models park their first-token peaks (docs/SINKLAB.md)."""
    if on == "all":
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    decay, free = [], []
    for name, param in model.named_parameters():
        is_matrix = param.ndim >= 2 and "embed_tokens" not in name
        (decay if is_matrix else free).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": free, "weight_decay": 0.0}]


class _Run:
    """State of one training process; `train()` is the public entry."""

    def __init__(self, cfg: TrainConfig, tokens_dir, ckpt_dir, out_dir, progress: bool) -> None:
        self.cfg, self.progress = cfg, progress
        self.tokens_dir, self.ckpt_dir = Path(tokens_dir), Path(ckpt_dir)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        # Bad settings fail here, before any process group or file exists.
        self.accum = cfg.validate(int(os.environ.get("WORLD_SIZE", "1")))
        want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        self.dist = _init_distributed("cuda" if want_cuda else "cpu")
        self.device = _pick_device(cfg, self.dist)
        if self.device.type == "cpu" and cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda")
        if cfg.tensorboard:
            try:
                import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
            except ImportError as err:
                raise RuntimeError("training config: tensorboard is true but the tensorboard package "
                                   "is not installed (pip install -e '.[tensorboard]')") from err
        self.nan_steps = _env_steps(_NAN_ENV)
        self.sleep = float(os.environ.get(_SLEEP_ENV, "0") or 0)

    # ----- setup
    def _setup_data(self) -> None:
        self.manifest = read_manifest(self.tokens_dir)
        vocab = int(self.manifest["vocab_size"])
        # One process per node hashes the shards (a full read each: minutes at paper scale);
        # the others wait for it. A mismatch fails that process and torchrun stops the rest.
        verify = self.dist.local_rank == 0
        self.train_windows = PackedWindows(open_shard(self.tokens_dir, "train", self.manifest, verify),
                                           self.cfg.seq_len, vocab, "train.bin")
        self.val_windows = PackedWindows(open_shard(self.tokens_dir, "val", self.manifest, verify),
                                         self.cfg.seq_len, vocab, "val.bin")
        self._barrier()
        self.order = WindowOrder(self.train_windows.num_windows, self.cfg.seed)
        self.unigram_entropy = unigram_entropy(self.train_windows.tokens, vocab)
        epochs = self.cfg.last_step * self.cfg.global_batch / self.train_windows.num_windows
        if epochs > 1 and self.dist.is_main:
            log.warning("the run visits the %d training windows %.2f times (more than one epoch)",
                        self.train_windows.num_windows, epochs)

    def _setup_model(self) -> None:
        cfg = self.cfg
        _seed_everything(cfg.seed)
        self.model = build_model(cfg, self.manifest).to(self.device)
        check_context(self.model.config, cfg.seq_len, "train.seq_len")
        if cfg.activation_checkpointing:
            # trades one extra forward per layer for not storing its activations (1.8B at
            # 4096 x 8 sequences per GPU does not fit 80 GB otherwise); same numbers either way
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model.train()
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.fsdp = cfg.parallel == "fsdp" and self.dist.world_size > 1
        if self.fsdp:
            # before the optimizer: FSDP2 replaces the parameters by sharded DTensors
            from torch.distributed.fsdp import fully_shard

            for layer in self.model.model.layers:
                fully_shard(layer)
            fully_shard(self.model)
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(decay_groups(self.model, cfg.weight_decay, cfg.weight_decay_on),
                                           lr=cfg.lr, betas=cfg.betas,
                                           eps=cfg.adam_eps, weight_decay=cfg.weight_decay,
                                           fused=fused or None)
        self.scheduler = WarmupCosine(self.optimizer, lr=cfg.lr, warmup=cfg.warmup_steps,
                                      total_steps=cfg.steps, min_ratio=cfg.min_lr_ratio)

    def _wrap_model(self) -> None:
        self.forward_model, self.ddp = self.model, None
        if self.dist.world_size > 1 and not self.fsdp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = self.ddp = DDP(self.model, device_ids=ids)
        if self.cfg.compile:
            if self.device.type == "cuda":
                self.forward_model = torch.compile(self.forward_model)
            elif self.dist.is_main:
                log.warning("compile is only applied on CUDA; running eagerly on %s", self.device)

    def _resume_or_start(self) -> None:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = MetricsCSV(self.ckpt_dir / "metrics.csv")
        self.step, self.skipped_total, self.consecutive, self.train_time = 0, 0, 0, 0.0
        self.resumed_from: list[int] = []
        self.last_val: float | None = None
        self.ckpt_step: int | None = None  # step of the checkpoint on disk
        path = ckpt.checkpoint_path(self.ckpt_dir)
        if self.dist.is_main:
            for stale in ckpt.remove_stale_temps(self.ckpt_dir):
                log.warning("removed %s left by a checkpoint write that did not finish", stale)
        if not path.exists():
            if self.dist.is_main:
                self.metrics.start_fresh()
            self._barrier()
            return
        state = ckpt.load_checkpoint(path)
        saved, mine = trajectory(state["train_config"]), trajectory(self.cfg.to_dict())
        diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
        if diff:
            raise ckpt.CheckpointError(
                f"checkpoint {path} was written by a run with other settings ({', '.join(diff)}: "
                f"{ {k: saved.get(k) for k in diff} } vs now { {k: mine.get(k) for k in diff} }); "
                f"restore those settings or move the checkpoint away to start anew")
        if state["step"] > self.cfg.last_step:
            raise ckpt.CheckpointError(
                f"checkpoint {path} is at step {state['step']}, past this run's last step "
                f"{self.cfg.last_step}")
        try:
            if self.fsdp:
                from torch.distributed.checkpoint.state_dict import (set_model_state_dict,
                                                                     set_optimizer_state_dict)

                set_model_state_dict(self.model, state["model"], options=self._full_options())
                set_optimizer_state_dict(self.model, self.optimizer, state["optimizer"],
                                         options=self._full_options())
            else:
                self.model.load_state_dict(state["model"])
                self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise ckpt.CheckpointError(f"checkpoint {path} does not fit this model: {err}") from err
        ckpt.restore_rng(state["rng"])
        self.step = self.ckpt_step = int(state["step"])
        if state["data_position"] != self.step * self.cfg.global_batch:
            raise ckpt.CheckpointError(
                f"checkpoint {path}: data position {state['data_position']} does not match step "
                f"{self.step} x global batch {self.cfg.global_batch}")
        self.skipped_total = int(state["skipped_total"])
        self.consecutive = int(state["consecutive_skips"])
        self.train_time = float(state["train_time_s"])
        self.resumed_from = list(state["resumed_from"]) + [self.step]
        self.last_val = state["last_val_loss"]
        if self.dist.is_main:
            self.metrics.truncate(int(state["metrics_rows"]))
            log.info("resumed from %s at step %d", path, self.step)
        self._barrier()

    # ----- helpers
    def _barrier(self) -> None:
        if self.dist.world_size > 1:
            torch.distributed.barrier()

    def _all_reduce(self, tensor: torch.Tensor, op: str = "avg") -> torch.Tensor:
        if self.dist.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            if op == "avg":
                tensor /= self.dist.world_size
        return tensor

    @staticmethod
    def _full_options():
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, cpu_offload=True)

    def _model_state(self) -> dict:
        """The model's full state dict (under FSDP a collective: every process must call it;
        process 0 gets the tensors)."""
        if not self.fsdp:
            return self.model.state_dict()
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(self.model, options=self._full_options())

    def _optimizer_state(self) -> dict:
        if not self.fsdp:
            return self.optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(self.model, self.optimizer, options=self._full_options())

    def _autocast(self):
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _loss(self, model, batch: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        with self._autocast():
            logits = model(input_ids=inputs, use_cache=False).logits
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               reduction=reduction)

    @torch.no_grad()
    def validate_loss(self) -> float:
        """Mean token loss on the first val_batches * micro_batch validation windows."""
        count = min(self.cfg.val_batches * self.cfg.micro_batch, self.val_windows.num_windows)
        mine = np.arange(count)[self.dist.rank::self.dist.world_size]
        # Every process runs as many forwards as process 0 (FSDP's forward is a collective);
        # one whose share ran out repeats window 0 and does not count it.
        most = len(np.arange(count)[0::self.dist.world_size])
        self.model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        for start in range(0, most, self.cfg.micro_batch):
            ids = mine[start:start + self.cfg.micro_batch]
            batch = self.val_windows.batch(ids if len(ids) else np.zeros(1, dtype=np.int64)).to(self.device)
            loss = self._loss(self.model, batch, reduction="sum").double()
            if len(ids):
                total[0] += loss
                total[1] += batch[:, 1:].numel()
        self.model.train()
        self._all_reduce(total, op="sum")
        return float(total[0] / total[1])

    def _snapshot_meta(self) -> dict:
        return {"format": SNAPSHOT_FORMAT, "step": self.step,
                "tokens_seen": self.step * self.cfg.global_batch * self.cfg.seq_len,
                "arm": self.cfg.arm, "preset": self.cfg.preset,
                "model_config": self.model.config.to_dict(), "train_config": self.cfg.to_dict(),
                "config_hash": config_hash(self.cfg.to_dict()), "n_params": self.n_params}

    def _save_checkpoint(self) -> None:
        model_state, optimizer_state = self._model_state(), self._optimizer_state()
        if self.dist.is_main:
            self.metrics.sync()
            ckpt.save_checkpoint(self.ckpt_dir, {
                "format_version": ckpt.FORMAT_VERSION, "step": self.step,
                "model": model_state, "optimizer": optimizer_state,
                "scheduler": self.scheduler.state_dict(), "rng": ckpt.capture_rng(),
                "data_position": self.step * self.cfg.global_batch, "metrics_rows": self.step,
                "train_config": self.cfg.to_dict(), "skipped_total": self.skipped_total,
                "consecutive_skips": self.consecutive, "train_time_s": self.train_time,
                "resumed_from": self.resumed_from, "last_val_loss": self.last_val,
            })
        self.ckpt_step = self.step
        self._barrier()

    # ----- the loop
    def _train_step(self) -> tuple[float, float, bool, float]:
        cfg, step = self.cfg, self.step
        lr = self.scheduler.apply()
        inject_nan = (step + 1) in self.nan_steps
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(self.accum):
            start, count = rank_slice(step * cfg.global_batch, cfg.global_batch, cfg.micro_batch,
                                      self.accum, self.dist.world_size, self.dist.rank, micro)
            batch = self.train_windows.batch(self.order.windows(start, count))
            batch = batch.to(self.device, non_blocking=True)
            # DDP all-reduces (FSDP reduce-scatters) gradients only on the last micro-step.
            last = micro == self.accum - 1
            if self.fsdp:
                self.model.set_requires_gradient_sync(last)
            guard = contextlib.nullcontext() if self.ddp is None or last else self.ddp.no_sync()
            with guard:
                loss = self._loss(self.forward_model, batch)
                if inject_nan:
                    loss = loss * float("nan")
                (loss / self.accum).backward()
            loss_sum += loss.detach()
        loss_mean = self._all_reduce(loss_sum / self.accum)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        if hasattr(grad_norm, "full_tensor"):  # FSDP: a DTensor of the global norm
            grad_norm = grad_norm.full_tensor()
        finite = bool(torch.isfinite(grad_norm))
        if finite:
            self.optimizer.step()
            self.consecutive = 0
        else:
            self.skipped_total += 1
            self.consecutive += 1
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        return float(loss_mean), float(grad_norm), not finite, lr

    def run(self) -> dict:
        cfg = self.cfg
        self._setup_data()
        self._setup_model()
        self._resume_or_start()
        self._wrap_model()
        tokens_per_step = cfg.global_batch * cfg.seq_len
        log_every = cfg.log_every or max(1, cfg.last_step // 20)
        keep = set(cfg.keep_steps)
        snap_dir = self.ckpt_dir / "snapshots"
        board = None
        if cfg.tensorboard and self.dist.is_main:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: a resumed run drops the events logged after its checkpoint
            board = SummaryWriter(str(self.ckpt_dir / "tensorboard"), purge_step=self.step + 1)
        bar = None
        if self.dist.is_main and self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.last_step, initial=self.step, desc=f"{cfg.preset}/{cfg.arm}",
                       unit="step", mininterval=1.0, dynamic_ncols=True, file=sys.stderr)
        try:
            while self.step < cfg.last_step:
                t0 = time.perf_counter()
                loss, gnorm, skipped, lr = self._train_step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                tok_s = tokens_per_step / dt if dt > 0 else float("inf")
                val = None
                if (cfg.val_every and self.step % cfg.val_every == 0) or self.step == cfg.last_step:
                    tv = time.perf_counter()
                    val = self.last_val = self.validate_loss()
                    dt += time.perf_counter() - tv
                self.train_time += dt
                if self.dist.is_main:
                    self.metrics.append({
                        "step": str(self.step), "tokens": str(self.step * tokens_per_step),
                        "loss": fmt(loss), "grad_norm": fmt(gnorm), "lr": fmt(lr),
                        "tokens_per_s": f"{tok_s:.1f}", "skipped": str(int(skipped)),
                        "val_loss": fmt(val)})
                    if board is not None:
                        for name, value in (("train/loss", loss), ("train/lr", lr), ("train/grad_norm", gnorm),
                                            ("train/tokens_per_s", tok_s), ("val/loss", val)):
                            if value is not None and math.isfinite(value):
                                board.add_scalar(name, value, self.step)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tok_s:,.0f}", refresh=False)
                    if self.step % log_every == 0 or skipped or val is not None:
                        log.info("step %d/%d loss %.4f grad_norm %.3g lr %.3g %.0f tok/s%s%s",
                                 self.step, cfg.last_step, loss, gnorm, lr, tok_s,
                                 " SKIPPED (non-finite grad norm)" if skipped else "",
                                 f" val_loss {val:.4f}" if val is not None else "")
                if self.consecutive >= cfg.max_consecutive_skips:
                    self._abort()
                if self.step in keep:
                    state = self._model_state()
                    if self.dist.is_main:
                        save_snapshot(state, snap_dir / f"step_{self.step}.safetensors",
                                      self._snapshot_meta())
                if self.step % cfg.ckpt_every == 0 or self.step == cfg.last_step:
                    if self.consecutive == 0:
                        self._save_checkpoint()
                    elif self.dist.is_main:
                        log.warning("step %d: no checkpoint written, the last %d steps were skipped "
                                    "(non-finite gradient norm)", self.step, self.consecutive)
                if self.sleep:
                    time.sleep(self.sleep)
        finally:
            if board is not None:
                board.close()
            if bar is not None:
                bar.close()
            self.metrics.close()
        summary = self._summary()
        final_state = self._model_state() if self.out_dir is not None else None
        if self.dist.is_main and self.out_dir is not None:
            self._publish(summary, snap_dir, final_state)
        self._barrier()
        return summary

    def _abort(self) -> None:
        path = ckpt.checkpoint_path(self.ckpt_dir)
        first_bad = self.step - self.consecutive + 1
        if path.exists():
            last = (f"the last good checkpoint {path} (step {self.ckpt_step}, before the stretch, "
                    f"which began at step {first_bad}) is left as it was")
        else:
            last = f"no checkpoint from before the stretch (which began at step {first_bad}) exists"
        raise TrainingAborted(
            f"training of {self.cfg.preset}/{self.cfg.arm} aborted at step {self.step}: "
            f"{self.consecutive} consecutive steps had a NaN/Inf gradient norm "
            f"(max_consecutive_skips={self.cfg.max_consecutive_skips}, {self.skipped_total} "
            f"skipped in all); {last}. Lower the learning rate or check the data, then rerun.")

    def _summary(self) -> dict:
        import csv

        rows = []
        if self.dist.is_main:
            with open(self.metrics.path, newline="") as handle:
                rows = list(csv.DictReader(handle))
        losses = [float(r["loss"]) for r in rows if r["skipped"] == "0"]
        speeds = sorted(float(r["tokens_per_s"]) for r in rows[1:]) or [0.0]  # first step warms up
        tail = losses[-max(1, len(losses) // 10):] if losses else [math.nan]
        return {
            "preset": self.cfg.preset, "arm": self.cfg.arm, "steps": self.cfg.steps,
            "last_step": self.step, "tokens_seen": self.step * self.cfg.global_batch * self.cfg.seq_len,
            "train_time_s": self.train_time, "tokens_per_s_median": speeds[len(speeds) // 2],
            "final_train_loss_last10pct": sum(tail) / len(tail), "final_val_loss": self.last_val,
            "train_unigram_entropy": self.unigram_entropy,
            "skipped_steps": self.skipped_total, "n_params": self.n_params,
            "world_size": self.dist.world_size, "accum": self.accum, "device": str(self.device),
            "precision": "bf16-autocast" if self.bf16 else "fp32",
            "resumed_from_steps": self.resumed_from, "train_config": self.cfg.to_dict(),
        }

    def _publish(self, summary: dict, snap_dir: Path, final_state: dict) -> None:
        out = self.out_dir
        (out / "weights").mkdir(parents=True, exist_ok=True)
        for k in sorted(self.cfg.keep_steps):
            src = snap_dir / f"step_{k}.safetensors"
            if not src.exists():
                raise FileNotFoundError(f"kept snapshot {src} is missing; delete {self.ckpt_dir} and retrain")
            tmp = out / "weights" / f".step_{k}.safetensors.tmp"
            shutil.copyfile(src, tmp)
            os.replace(tmp, out / "weights" / f"step_{k}.safetensors")
        save_snapshot(final_state, out / "weights" / "final.safetensors", self._snapshot_meta())
        atomic_write_text(out / "metrics.csv", self.metrics.path.read_text())
        dump_json({**summary, "provenance": provenance(self.cfg.to_dict())}, out / "summary.json")
        # a copy Snakemake's clean-up before a rerun with other settings does not reach
        keep_published(out, self.ckpt_dir, [str(p.relative_to(out)) for p in
                                            output_files(out, self.cfg.keep_steps).values()])


def output_files(out_dir: str | os.PathLike, keep_steps: list[int]) -> dict[str, Path]:
    """The files `train` publishes in out_dir (for a rule's `output:`)."""
    out = Path(out_dir)
    files = {"metrics": out / "metrics.csv", "summary": out / "summary.json",
             "final": out / "weights" / "final.safetensors"}
    files.update({f"step_{k}": out / "weights" / f"step_{k}.safetensors" for k in sorted(keep_steps)})
    return files


def train(cfg: TrainConfig | dict, *, tokens_dir: str | os.PathLike, ckpt_dir: str | os.PathLike,
          out_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Train (resuming from `ckpt_dir/checkpoint.pt` when present) and publish the outputs.

    Under torchrun (WORLD_SIZE > 1) every process calls this; process 0 writes files.
    Publishes into out_dir: metrics.csv, summary.json, weights/final.safetensors and
    weights/step_{k}.safetensors for each keep step. Returns the summary dict.
    """
    if isinstance(cfg, dict):
        cfg = TrainConfig.from_dict(cfg)
    try:
        return _Run(cfg, tokens_dir, ckpt_dir, out_dir, progress).run()
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
