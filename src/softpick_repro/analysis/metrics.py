"""Attention-sink, massive-activation and sparsity metrics (SOFTPICK.md section 4).

Conventions, fixed by the paper's protocol:

- Attention maps are `[B, H, T, T]` (query rows, key columns), causal; row t holds the weights
  of query t over keys 0..t. The weights need not sum to one (softpick, rectified, ...).
- Sink rate (Gu et al. 2024): alpha[l, h] = mean over ALL query positions t, t = 0 included,
  of A[t, 0]; a (sample, layer, head) triple is a sink head when alpha > eps (strict); the
  rate is the percentage of such triples.
- Kurtosis is Pearson's mu4 / mu2^2 (a Gaussian gives 3, NOT 0), over every scalar of every
  hidden state, accumulated in float64 with the pairwise central-moment update of Chan et
  al. / Pebay (2008): merging per-chunk (n, mean, M2, M3, M4) avoids the cancellation of the
  raw-power-sum formula when |mean| >> std.
- Sparsity is the percentage of exact zeros among the causal lower triangle (diagonal
  included) of every map of every layer and head; upper-triangle entries are never counted.
  A second figure counts |a| <= 1e-5.

Everything here is streaming: accumulators take one batch at a time and keep O(layers x heads)
state, so no run ever holds all its maps or hidden states.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

SMALL_WEIGHT = 1e-5


# ----------------------------------------------------------------------------- moments
@dataclass
class MomentAccumulator:
    """Streaming count, mean, central moment sums M2..M4 (float64), min, max of a stream."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    m4: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    nonfinite: int = 0   # NaN/inf elements seen (e.g. fp16 overflow); they make the moments NaN

    def update(self, x: torch.Tensor | np.ndarray) -> "MomentAccumulator":
        """Add every element of `x` (any shape, any float dtype; summed in float64)."""
        x = torch.as_tensor(x)
        if x.numel() == 0:
            return self
        if not torch.is_floating_point(x):
            raise TypeError(f"moments need a floating-point tensor, got {x.dtype}")
        x = x.detach().reshape(-1).to(torch.float64)
        mean = x.mean()
        d = x - mean
        d2 = d * d
        # one device->host transfer per chunk instead of one per statistic
        stats = torch.stack([mean, d2.sum(), (d2 * d).sum(), (d2 * d2).sum(), x.min(), x.max(),
                             (~torch.isfinite(x)).sum().to(torch.float64)]).tolist()
        chunk = MomentAccumulator(n=x.numel(), mean=stats[0], m2=stats[1], m3=stats[2],
                                  m4=stats[3], min=stats[4], max=stats[5],
                                  nonfinite=int(stats[6]))
        return self.merge(chunk)

    def merge(self, other: "MomentAccumulator") -> "MomentAccumulator":
        """Combine with another accumulator in place (Pebay's pairwise formulas)."""
        if other.n == 0:
            return self
        self.nonfinite += other.nonfinite
        if self.n == 0:
            self.n, self.mean, self.m2, self.m3, self.m4 = (
                other.n, other.mean, other.m2, other.m3, other.m4)
            self.min, self.max = other.min, other.max
            return self
        na, nb = float(self.n), float(other.n)
        n = na + nb
        delta = other.mean - self.mean
        d_n = delta / n
        m2 = self.m2 + other.m2 + delta * d_n * na * nb
        m3 = (self.m3 + other.m3 + delta * d_n * d_n * na * nb * (na - nb)
              + 3.0 * d_n * (na * other.m2 - nb * self.m2))
        m4 = (self.m4 + other.m4
              + delta * d_n ** 3 * na * nb * (na * na - na * nb + nb * nb)
              + 6.0 * d_n * d_n * (na * na * other.m2 + nb * nb * self.m2)
              + 4.0 * d_n * (na * other.m3 - nb * self.m3))
        self.mean += d_n * nb
        self.m2, self.m3, self.m4 = m2, m3, m4
        self.n += other.n
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        return self

    @property
    def variance(self) -> float:
        """Population variance mu2 (NaN when empty)."""
        return self.m2 / self.n if self.n else math.nan

    @property
    def kurtosis(self) -> float:
        """Pearson kurtosis mu4 / mu2^2 (not excess); NaN for an empty or constant stream."""
        if self.n == 0 or self.m2 <= 0.0:
            return math.nan
        return self.n * self.m4 / (self.m2 * self.m2)

    @property
    def max_abs(self) -> float:
        return max(abs(self.min), abs(self.max)) if self.n else math.nan

    def as_dict(self) -> dict:
        empty = self.n == 0
        return {"n": self.n, "mean": math.nan if empty else self.mean,
                "variance": self.variance, "kurtosis": self.kurtosis,
                "min": math.nan if empty else self.min, "max": math.nan if empty else self.max,
                "max_abs": self.max_abs, "nonfinite": self.nonfinite}


def pearson_kurtosis(x: torch.Tensor | np.ndarray) -> float:
    """One-shot Pearson kurtosis mu4 / mu2^2 in float64 (two-pass; the reference for tests)."""
    arr = np.asarray(torch.as_tensor(x).detach().cpu().to(torch.float64).reshape(-1))
    if arr.size == 0:
        return math.nan
    d = arr - arr.mean()
    mu2 = float(np.mean(d ** 2))
    return math.nan if mu2 <= 0 else float(np.mean(d ** 4)) / (mu2 * mu2)


@dataclass
class HiddenStateStats:
    """Per-entry and global moments of an HF `hidden_states` tuple, streamed sample by sample.

    Entry 0 is the embedding output, entries 1..L the layer outputs (for HF Llama-style models
    the last entry is the final-norm output instead of layer L's raw output). The global
    statistics are the merge of every entry: every scalar of every entry counts once.
    Each update holds whole sequences `[..., T, D]`, so that position 0 is the first (BOS) token:
    the largest |value| there and at the other positions is kept apart per entry, which tells a
    first-token massive activation from a peak spread over tokens.
    """

    per_entry: list[MomentAccumulator] = field(default_factory=list)
    first_token_max_abs: list[float] = field(default_factory=list)
    other_tokens_max_abs: list[float] = field(default_factory=list)

    def update(self, hidden_states: Sequence[torch.Tensor]) -> None:
        if not self.per_entry:
            self.per_entry = [MomentAccumulator() for _ in hidden_states]
            self.first_token_max_abs = [0.0] * len(hidden_states)
            self.other_tokens_max_abs = [0.0] * len(hidden_states)
        if len(hidden_states) != len(self.per_entry):
            raise ValueError(f"got {len(hidden_states)} hidden states, expected "
                             f"{len(self.per_entry)} (same model for every sample)")
        for i, (acc, h) in enumerate(zip(self.per_entry, hidden_states)):
            acc.update(h)
            magnitude = h.detach().abs()
            self.first_token_max_abs[i] = max(self.first_token_max_abs[i], float(magnitude[..., 0, :].max()))
            if h.shape[-2] > 1:
                self.other_tokens_max_abs[i] = max(self.other_tokens_max_abs[i],
                                                   float(magnitude[..., 1:, :].max()))

    def total(self) -> MomentAccumulator:
        out = MomentAccumulator()
        for acc in self.per_entry:
            out.merge(acc)
        return out

    def result(self) -> dict:
        tot = self.total()
        return {"kurtosis": tot.kurtosis, "min_activation": tot.min if tot.n else math.nan,
                "max_activation": tot.max if tot.n else math.nan, "num_scalars": tot.n,
                "hidden_nonfinite": tot.nonfinite,
                "max_abs_per_layer": [a.max_abs for a in self.per_entry],
                "first_token_max_abs_per_layer": list(self.first_token_max_abs),
                "other_tokens_max_abs_per_layer": list(self.other_tokens_max_abs),
                "per_layer": [a.as_dict() for a in self.per_entry]}


# ----------------------------------------------------------------------------- sink rate
def _check_maps(attn: torch.Tensor) -> torch.Tensor:
    if attn.dim() != 4 or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"attention maps must be [B, H, T, T] (square, self-attention), "
                         f"got shape {tuple(attn.shape)}")
    return attn


def first_token_mass(attn: torch.Tensor) -> torch.Tensor:
    """alpha[b, h] = mean over all query positions t (t = 0 included) of A[b, h, t, 0]."""
    return _check_maps(attn)[..., :, 0].to(torch.float64).mean(dim=-1)


@dataclass
class SinkRateAccumulator:
    """Counts sink heads (alpha > eps) over (sample, layer, head) triples per threshold.

    Running sums stay on the maps' device (no host sync per update); `result()` reads them.
    """

    thresholds: tuple[float, ...] = (0.2, 0.3)
    hits: dict = field(default_factory=dict)          # layer -> int64 [n_thresholds]
    alpha_sum: dict = field(default_factory=dict)     # layer -> float64 [H], summed over samples
    layer_samples: dict = field(default_factory=dict)  # layer -> samples seen

    def update(self, attn: torch.Tensor, layer: int) -> torch.Tensor:
        """Add one layer's maps `[B, H, T, T]`; returns alpha `[B, H]`."""
        alpha = first_token_mass(attn)
        eps = torch.tensor(self.thresholds, dtype=alpha.dtype, device=alpha.device)
        hits = (alpha[..., None] > eps).sum(dim=(0, 1))
        self.hits[layer] = self.hits[layer] + hits if layer in self.hits else hits
        summed = alpha.sum(dim=0)
        self.alpha_sum[layer] = (self.alpha_sum[layer] + summed if layer in self.alpha_sum
                                 else summed)
        self.layer_samples[layer] = self.layer_samples.get(layer, 0) + alpha.shape[0]
        return alpha

    @property
    def total(self) -> int:
        """(sample, layer, head) triples seen."""
        return sum(self.layer_samples[l] * self.alpha_sum[l].numel() for l in self.layer_samples)

    def _layer_hits(self) -> dict[int, list[int]]:
        return {l: [int(v) for v in self.hits[l].tolist()] for l in sorted(self.hits)}

    def rate(self, eps: float) -> float:
        """Percentage of (sample, layer, head) triples with alpha > eps."""
        if self.total == 0:
            return math.nan
        k = self.thresholds.index(eps)
        return 100.0 * sum(h[k] for h in self._layer_hits().values()) / self.total

    def result(self) -> dict:
        layers = sorted(self.layer_samples)
        per = self._layer_hits()
        out = {f"sink_rate_eps{_eps_label(e)}": self.rate(e) for e in self.thresholds}
        out["sink_rate_per_layer"] = {
            _eps_label(e): [100.0 * per[l][k] / (self.layer_samples[l] * self.alpha_sum[l].numel())
                            for l in layers] for k, e in enumerate(self.thresholds)}
        # per layer and head, alpha averaged over samples: the heat map behind the sink rate
        out["mean_first_token_mass"] = [(self.alpha_sum[l] / self.layer_samples[l]).tolist()
                                        for l in layers]
        out["sink_triples"] = self.total
        return out


def uniform_first_token_mass(seq_len: int) -> float:
    """alpha of a head that attends uniformly over its causal prefix: mean over t of 1/(t+1).

    The sink-rate baseline: for eps below this value uniform attention alone counts as a
    sink (for T = 8 it is 0.34; for T = 64, 0.074; for T = 256, 0.024).
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    return float(np.mean(1.0 / np.arange(1, seq_len + 1)))


def _eps_label(eps: float) -> str:
    return f"{eps:g}"


def sink_rate(maps: Iterable[torch.Tensor], eps: float) -> float:
    """One-shot sink rate (%) over layer maps `[B, H, T, T]` (all from the same samples)."""
    acc = SinkRateAccumulator(thresholds=(eps,))
    for layer, attn in enumerate(maps):
        acc.update(attn, layer)
    return acc.rate(eps)


# ----------------------------------------------------------------------------- sparsity
_TRIL_CACHE: dict = {}


def _tril(t: int, device: torch.device) -> torch.Tensor:
    key = (t, str(device))
    if key not in _TRIL_CACHE:
        _TRIL_CACHE[key] = torch.ones(t, t, dtype=torch.bool, device=device).tril()
    return _TRIL_CACHE[key]


def causal_zero_counts(attn: torch.Tensor, small: float = SMALL_WEIGHT) -> tuple[int, int, int]:
    """(exact zeros, entries with |a| <= small, entries) in the causal lower triangle of `attn`."""
    zeros, tiny = (int(v) for v in _causal_counts_tensor(attn, small).tolist())
    per_map = attn.shape[-1] * (attn.shape[-1] + 1) // 2
    return zeros, tiny, per_map * attn.shape[0] * attn.shape[1]


def _causal_counts_tensor(attn: torch.Tensor, small: float) -> torch.Tensor:
    """int64 [2] on attn's device: exact zeros and |a| <= small in the causal triangle."""
    _check_maps(attn)
    mask = _tril(attn.shape[-1], attn.device)
    return torch.stack([((attn == 0) & mask).sum(), ((attn.abs() <= small) & mask).sum()])


@dataclass
class SparsityAccumulator:
    """Exact-zero and near-zero shares of the causal triangle, overall and per layer.

    Counts stay on the maps' device until `result()`.
    """

    small: float = SMALL_WEIGHT
    counts: dict = field(default_factory=dict)   # layer -> int64 [2] (zeros, near zeros)
    entries: dict = field(default_factory=dict)  # layer -> causal entries seen

    def update(self, attn: torch.Tensor, layer: int) -> None:
        c = _causal_counts_tensor(attn, self.small)
        self.counts[layer] = self.counts[layer] + c if layer in self.counts else c
        t = attn.shape[-1]
        self.entries[layer] = (self.entries.get(layer, 0)
                               + attn.shape[0] * attn.shape[1] * t * (t + 1) // 2)

    def result(self) -> dict:
        pct = (lambda a, b: 100.0 * a / b if b else math.nan)
        layers = sorted(self.entries)
        counts = {l: [int(v) for v in self.counts[l].tolist()] for l in layers}
        total = sum(self.entries.values())
        return {"sparsity_pct": pct(sum(c[0] for c in counts.values()), total),
                "near_zero_pct": pct(sum(c[1] for c in counts.values()), total),
                "near_zero_threshold": self.small,
                "causal_entries": total,
                "sparsity_pct_per_layer": [pct(counts[l][0], self.entries[l]) for l in layers]}


def sparsity(maps: Iterable[torch.Tensor], small: float = SMALL_WEIGHT) -> float:
    """One-shot exact-zero percentage of the causal triangles of `maps`."""
    acc = SparsityAccumulator(small=small)
    for layer, attn in enumerate(maps):
        acc.update(attn, layer)
    return acc.result()["sparsity_pct"]


# ----------------------------------------------------------------------------- box plots
def box_stats(x: torch.Tensor | np.ndarray, whisker: float = 1.5, max_fliers: int = 64) -> dict:
    """Tukey box-plot statistics in the form `matplotlib.axes.Axes.bxp` draws.

    Quartiles use linear interpolation (numpy's and matplotlib's default); whiskers reach the
    most extreme data within `whisker` x IQR of the box. Only the `max_fliers` values farthest
    from the median are kept (they carry the massive activations); `n_fliers` says how many
    lay outside the whiskers in all.
    """
    arr = np.asarray(torch.as_tensor(x).detach().cpu().to(torch.float64).reshape(-1))
    if arr.size == 0:
        raise ValueError("box_stats needs at least one value")
    q1, med, q3 = np.quantile(arr, [0.25, 0.5, 0.75])
    iqr = q3 - q1
    lo_fence, hi_fence = q1 - whisker * iqr, q3 + whisker * iqr
    inside = arr[(arr >= lo_fence) & (arr <= hi_fence)]
    outside = arr[(arr < lo_fence) | (arr > hi_fence)]
    keep = outside[np.argsort(-np.abs(outside - med), kind="stable")[:max_fliers]]
    return {"q1": float(q1), "med": float(med), "q3": float(q3), "mean": float(arr.mean()),
            "whislo": float(inside.min()), "whishi": float(inside.max()),
            "min": float(arr.min()), "max": float(arr.max()), "n": int(arr.size),
            "n_fliers": int(outside.size), "fliers": sorted(float(v) for v in keep)}
