"""Verdicts on the paper's eight claims (SOFTPICK.md section 7).

Each claim is turned into checks, each a measured value against a threshold from the
config's `claims:` section (fixed before any run; docs/CLAIMS.md quotes the paper's words
beside each). A check's *slack* is how far the value is on the good side of its threshold
(positive = passes), in the check's own unit.

Verdicts:
- "holds" / "does not hold": every check of the claim passes / some check fails;
- "not testable at this scale": the softmax baseline lacks what the claim compares
  against (a precondition check fails at every size); the measured value is printed beside
  the threshold. A size whose preconditions fail is left out of the rule and named;
- "not measured": the run has none of the numbers the claim needs.

Seeds: `evaluate_claims` takes one `ClaimInputs` per seed. With >= 2 seeds each check's
slack is the pessimistic end of the interval mean - k * std over seeds (k =
`claims.interval_sd`), so a verdict needs the whole interval on the good side; a
precondition uses the mean. The margin of a claim is the smallest slack among its checks.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

HOLDS, FAILS, NOT_TESTABLE, NOT_MEASURED = "holds", "does not hold", "not testable at this scale", "not measured"
VERDICTS = (HOLDS, FAILS, NOT_TESTABLE, NOT_MEASURED)
ACCURACY = ("acc", "acc_norm")


@dataclass
class ClaimInputs:
    """What the verdicts need, keyed by size label ('S', '340M', ...) in size order (smallest first)."""

    sizes: list[str] = field(default_factory=list)
    # size label -> the paper size it stands in for (printed with the verdicts)
    paper_sizes: dict = field(default_factory=dict)
    # size -> arm -> {metric: value} from Table 2 (final models)
    attention: dict = field(default_factory=dict)
    # size -> arm -> {(task, metric): score} unquantized benchmark scores (acc x100, ppl raw)
    benchmarks: dict = field(default_factory=dict)
    # size -> arm -> {(task, metric): standard error in points} of the accuracies above
    benchmark_se: dict = field(default_factory=dict)
    # size -> arm -> {(method, bits, task, metric): score} quantized scores
    quantized: dict = field(default_factory=dict)
    # size -> arm -> {(method, bits, task, metric): standard error in points}
    quantized_se: dict = field(default_factory=dict)
    # size -> arm -> final validation loss
    final_loss: dict = field(default_factory=dict)
    # size -> (softpick - softmax loss gap, where it comes from); when given, final_loss is not used
    loss_gap: dict = field(default_factory=dict)
    # size -> [(step, percent dead heads)] for softpick; final step last
    dead_heads: dict = field(default_factory=dict)
    # arm -> [(fraction of the training context, accuracy %)] at the smallest size
    passkey: dict = field(default_factory=dict)
    # rows left out of the rules, with the reason (e.g. the paper's own oddities)
    excluded: list = field(default_factory=list)


@dataclass
class Check:
    """One comparison of a claim: `value op threshold`; `size` groups it for preconditions."""

    size: str
    what: str
    value: float
    op: str            # ">=" or "<="
    threshold: float
    unit: str = ""
    basis: str = ""    # how the threshold or value was formed (varies by seed: shown for one seed only)

    @property
    def slack(self) -> float:
        if math.isnan(self.value) or math.isnan(self.threshold):
            return -math.inf
        return self.value - self.threshold if self.op == ">=" else self.threshold - self.value


@dataclass
class Outcome:
    """What one claim function finds on one seed's inputs."""

    preconditions: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def _num(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


# ---- the eight claims ----------------------------------------------------------------

def claim1_no_sink(inp: ClaimInputs, rule: dict) -> Outcome:
    out = Outcome()
    for size in inp.sizes:
        arms = inp.attention.get(size, {})
        sp, sm = arms.get("softpick", {}), arms.get("softmax", {})
        for metric in sorted(k for k in sm if k.startswith("sink_rate_eps") and k in sp):
            eps = metric.removeprefix("sink_rate_eps")
            out.preconditions.append(Check(size, f"softmax sink rate at eps {eps}", sm[metric], ">=",
                                           rule["min_softmax_sink_pct"], "%"))
            out.checks.append(Check(size, f"softpick sink rate at eps {eps}", sp[metric], "<=",
                                    rule["max_softpick_pct"], "%"))
            out.checks.append(Check(size, f"softmax sink rate at eps {eps}", sm[metric], ">=",
                                    rule["min_ratio"] * sp[metric], "%", f"{rule['min_ratio']}x softpick's"))
    return out


def _absmax(d: dict) -> float:
    return max(abs(d["min_activation"]), abs(d["max_activation"]))


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


def claim2_activations(inp: ClaimInputs, rule: dict) -> Outcome:
    out = Outcome()
    for size in inp.sizes:
        arms = inp.attention.get(size, {})
        sp, sm = arms.get("softpick", {}), arms.get("softmax", {})
        if "kurtosis" not in sp or "kurtosis" not in sm:
            continue
        out.preconditions.append(Check(size, "softmax kurtosis", sm["kurtosis"], ">=",
                                       rule["min_softmax_kurtosis"]))
        out.checks.append(Check(size, "kurtosis ratio softmax/softpick", _ratio(sm["kurtosis"], sp["kurtosis"]),
                                ">=", rule["min_kurtosis_ratio"], "x"))
        if all(k in d for d in (sp, sm) for k in ("min_activation", "max_activation")):
            out.checks.append(Check(size, "max |activation| ratio softmax/softpick",
                                    _ratio(_absmax(sm), _absmax(sp)), ">=", rule["min_absmax_ratio"], "x"))
    return out


def claim3_sparsity(inp: ClaimInputs, rule: dict) -> Outcome:
    out = Outcome()
    for size in inp.sizes:
        sp = inp.attention.get(size, {}).get("softpick", {})
        if "sparsity_pct" in sp:
            out.checks.append(Check(size, "softpick exact zeros in the causal triangle", sp["sparsity_pct"], ">=",
                                    rule["min_softpick_sparsity_pct"], "%"))
    return out


def _accuracy_delta(inp: ClaimInputs, size: str) -> tuple[float, float, int] | None:
    """Mean softpick - softmax accuracy delta (points) over (task, metric) pairs, its pooled
    standard error (deltas taken as independent; nan when a stderr is missing) and the pair count."""
    sm, sp = inp.benchmarks.get(size, {}).get("softmax", {}), inp.benchmarks.get(size, {}).get("softpick", {})
    keys = [k for k in sm if k in sp and k[1] in ACCURACY and math.isfinite(sm[k]) and math.isfinite(sp[k])]
    if not keys:
        return None
    se = inp.benchmark_se.get(size, {})
    se_sm, se_sp = se.get("softmax", {}), se.get("softpick", {})
    variance = sum(se_sm.get(k, math.nan) ** 2 + se_sp.get(k, math.nan) ** 2 for k in keys)
    delta = sum(sp[k] - sm[k] for k in keys) / len(keys)
    return delta, math.sqrt(variance) / len(keys), len(keys)


def claim4_parity(inp: ClaimInputs, rule: dict) -> Outcome:
    out = Outcome()
    if not inp.sizes:
        return out
    small = _accuracy_delta(inp, inp.sizes[0])
    if small is not None:
        delta, se, n = small
        out.checks.append(Check(inp.sizes[0], "|mean accuracy delta softpick - softmax|", abs(delta), "<=",
                                rule["max_abs_delta_points"], " points", f"{n} scores, pooled SE {_num(se)}"))
    if len(inp.sizes) > 1:
        large = _accuracy_delta(inp, inp.sizes[-1])
        if large is not None:
            delta, se, n = large
            out.checks.append(Check(inp.sizes[-1], "mean accuracy delta softpick - softmax", delta, "<=",
                                    -rule["z"] * se, " points", f"-{rule['z']} x pooled SE {_num(se)} of {n} scores"))
    return out


def _drop(metric: str, unquantized: float, quantized: float) -> float:
    """How much quantization hurts: accuracy points lost, or log of the perplexity ratio."""
    if "perplexity" in metric:
        if not (quantized > 0 and unquantized > 0):
            return math.nan
        return math.log(quantized / unquantized) if math.isfinite(quantized) else math.inf
    return unquantized - quantized


def _advantages(inp: ClaimInputs, size: str):
    """(method, bits, task, metric, softmax drop - softpick drop) for every comparable quantized score."""
    q, u = inp.quantized.get(size, {}), inp.benchmarks.get(size, {})
    rows = []
    for key in q.get("softmax", {}):
        method, bits, task, metric = key
        if key not in q.get("softpick", {}):
            continue
        base = [u.get(arm, {}).get((task, metric)) for arm in ("softmax", "softpick")]
        if None in base:
            continue
        d_sm = _drop(metric, base[0], q["softmax"][key])
        d_sp = _drop(metric, base[1], q["softpick"][key])
        if math.isnan(d_sm) or math.isnan(d_sp) or (math.isinf(d_sm) and math.isinf(d_sp)):
            continue
        rows.append((key, int(bits), task, metric, d_sm, d_sp))
    return rows


def claim5_quantization(inp: ClaimInputs, rule: dict) -> Outcome:
    out = Outcome()
    low_bits = rule["max_bits"]
    ppl_tie = math.log1p(rule["tie_ppl_ratio"])
    for size in inp.sizes:
        rows = _advantages(inp, size)
        low = [r for r in rows if r[1] <= low_bits]
        if not low:
            continue
        # precondition: softmax's own low-bit accuracy drop beyond its standard error
        se_q = inp.quantized_se.get(size, {}).get("softmax", {})
        se_u = inp.benchmark_se.get(size, {}).get("softmax", {})
        acc = [r for r in low if r[3] in ACCURACY]
        if acc:
            mean_drop = sum(r[4] for r in acc) / len(acc)
            var = sum(se_q.get(r[0], math.nan) ** 2 + se_u.get((r[2], r[3]), math.nan) ** 2 for r in acc)
            se = math.sqrt(var) / len(acc)
            out.preconditions.append(Check(size, f"softmax mean accuracy drop at <= {low_bits} bits", mean_drop,
                                           ">=", rule["min_softmax_drop_se"] * se, " points",
                                           f"{rule['min_softmax_drop_se']} x its SE {_num(se)}"))
        wins = losses = 0
        for _, bits, task, metric, d_sm, d_sp in low:
            tie = ppl_tie if "perplexity" in metric else rule["tie_points"]
            adv = d_sm - d_sp
            wins += adv > tie
            losses += adv < -tie
        ties = len(low) - wins - losses
        share = wins / (wins + losses) if wins + losses else math.nan
        out.checks.append(Check(size, f"share of decided <= {low_bits}-bit comparisons where softpick degrades less",
                                share, ">=", rule["min_win_share"], "", f"{wins} won, {losses} lost, {ties} ties"))
        high = [r for r in rows if r[1] > low_bits and r[3] in ACCURACY]
        if acc and high:
            adv_low = sum(r[4] - r[5] for r in acc) / len(acc)
            adv_high = sum(r[4] - r[5] for r in high) / len(high)
            out.checks.append(Check(size, f"softpick's accuracy advantage at <= {low_bits} bits minus at > {low_bits}",
                                    adv_low - adv_high, ">=", 0.0, " points",
                                    f"{_num(adv_low)} vs {_num(adv_high)} points less degradation"))
        elif not high:
            out.notes.append(f"{size}: no scores above {low_bits} bits, so 'most at 2-3 bits' is not checked")
    return out


def claim6_loss(inp: ClaimInputs, rule: dict) -> Outcome:
    out = Outcome()
    if not inp.sizes:
        return out
    size = inp.sizes[0]
    if size in inp.loss_gap:
        gap, source = inp.loss_gap[size]
        out.notes.append(f"{size}: gap from {source}")
    else:
        losses = inp.final_loss.get(size, {})
        if "softmax" not in losses or "softpick" not in losses:
            return out
        gap = losses["softpick"] - losses["softmax"]
    out.checks.append(Check(size, "|final loss gap softpick - softmax|", abs(gap), "<=", rule["max_abs_gap"], " nats"))
    return out


def claim7_dead_heads(inp: ClaimInputs, rule: dict) -> Outcome:
    out = Outcome()
    for size in inp.sizes:
        points = sorted(inp.dead_heads.get(size, []))
        if len(points) < 2:
            continue
        peak_step, peak = max(points, key=lambda p: (p[1], -p[0]))
        final_step, final = points[-1]
        out.preconditions.append(Check(size, "largest % dead softpick heads", peak, ">=", rule["min_peak_pct"], "%"))
        out.checks.append(Check(size, "peak step / last step", peak_step / final_step, "<=",
                                rule["peak_by_fraction"], "", f"peak at step {peak_step} of {final_step}"))
        out.checks.append(Check(size, "decline of % dead heads from the peak", peak - final, ">=",
                                rule["min_decline_points"], " points", f"{_num(peak)}% -> {_num(final)}%"))
    return out


def _mean_acc(points, within: bool) -> float | None:
    picked = [acc for frac, acc in points if (frac <= 1.0) == within]
    return sum(picked) / len(picked) if picked else None


def claim8_passkey(inp: ClaimInputs, rule: dict) -> Outcome:
    out = Outcome()
    size = inp.sizes[0] if inp.sizes else ""
    within = {arm: _mean_acc(p, True) for arm, p in inp.passkey.items()}
    beyond = {arm: _mean_acc(p, False) for arm, p in inp.passkey.items()}
    if within.get("softmax") is None or within.get("softpick") is None:
        return out
    best = max(v for v in within.values() if v is not None)
    out.preconditions.append(Check(size, "best mean passkey accuracy within the context", best, ">=",
                                   rule["min_success_pct"], "%"))
    out.checks.append(Check(size, "softpick mean passkey accuracy within the context", within["softpick"], "<=",
                            within["softmax"] + rule["tolerance_points"], "%",
                            f"softmax {_num(within['softmax'])}% + {rule['tolerance_points']}"))
    if beyond.get("scalable_softpick") is not None and beyond.get("softmax") is not None:
        out.checks.append(Check(size, "scalable_softpick mean passkey accuracy beyond the context",
                                beyond["scalable_softpick"], "<=", beyond["softmax"] + rule["tolerance_points"], "%",
                                f"softmax {_num(beyond['softmax'])}% + {rule['tolerance_points']}"))
    elif "scalable_softpick" in inp.passkey:
        out.notes.append("no passkey length beyond the context, so scalable_softpick's recovery is not checked")
    return out


CLAIMS: list[tuple[str, str, Callable]] = [
    ("1", "Softpick reaches 0% sink rate at both thresholds; softmax is far above 0", claim1_no_sink),
    ("2", "Softpick hidden-state kurtosis ~100x lower; min/max an order of magnitude smaller", claim2_activations),
    ("3", "Softpick attention maps are mostly exact zeros (~95-99%)", claim3_sparsity),
    ("4", "Benchmark parity at the smaller size (within ~1 point), worse at the larger", claim4_parity),
    ("5", "Quantized softpick beats quantized softmax, most at 2-3 bits", claim5_quantization),
    ("6", "Softpick training loss ends within ~0.004 of softmax's at the smaller size", claim6_loss),
    ("7", "Dead heads peak early in training and then decline", claim7_dead_heads),
    ("8", "Softpick does not improve passkey retrieval; scalable-softpick does not fix it", claim8_passkey),
]


# ---- combining seeds and checks into a verdict -----------------------------------------

@dataclass
class Merged:
    """One check over all seeds."""

    size: str
    what: str
    op: str
    unit: str
    values: list
    thresholds: list
    slacks: list
    basis: str = ""

    def slack(self, k: float, pessimistic: bool) -> float:
        if len(self.slacks) == 1 or any(math.isinf(s) for s in self.slacks):
            return min(self.slacks) if pessimistic else statistics.fmean(self.slacks)
        mean = statistics.fmean(self.slacks)
        return mean - k * statistics.stdev(self.slacks) if pessimistic else mean

    def text(self, k: float, pessimistic: bool) -> str:
        if len(self.values) == 1:
            value = f"{_num(self.values[0])}{self.unit}"
        else:
            finite = all(math.isfinite(v) for v in self.values)
            std = statistics.stdev(self.values) if finite else math.nan
            value = f"{_num(statistics.fmean(self.values))} +- {_num(std)}{self.unit} (n={len(self.values)})"
        threshold = _num(statistics.fmean(self.thresholds))
        basis = f" = {self.basis}" if self.basis and len(self.values) == 1 else ""
        mark = ("ok" if pessimistic else "present") if self.slack(k, pessimistic) >= 0 else \
            ("FAILS" if pessimistic else "lacking")
        return f"{self.size}: {self.what} {value} (needs {self.op} {threshold}{self.unit}{basis}; {mark})"


def _merge(per_seed: list[list[Check]]) -> list[Merged]:
    merged: dict[tuple, Merged] = {}
    for checks in per_seed:
        for c in checks:
            key = (c.size, c.what)
            m = merged.setdefault(key, Merged(c.size, c.what, c.op, c.unit, [], [], [], c.basis))
            m.values.append(c.value)
            m.thresholds.append(c.threshold)
            m.slacks.append(c.slack)
    return list(merged.values())


def judge(outcomes: list[Outcome], k: float) -> tuple[str, float, str]:
    """(verdict, margin, evidence) of one claim from its per-seed outcomes."""
    pre, checks = _merge([o.preconditions for o in outcomes]), _merge([o.checks for o in outcomes])
    notes = list(dict.fromkeys(n for o in outcomes for n in o.notes))
    failed_sizes = {p.size for p in pre if p.slack(k, pessimistic=False) < 0}
    kept = [c for c in checks if c.size not in failed_sizes]
    parts = []
    if failed_sizes:
        lacking = [p.text(k, False) for p in pre if p.size in failed_sizes]
        parts.append("baseline lacks the phenomenon: " + ", ".join(lacking))
    if not kept:
        verdict = NOT_TESTABLE if failed_sizes else NOT_MEASURED
        return verdict, math.nan, "; ".join(parts + notes) or "no numbers for this claim"
    slacks = [c.slack(k, pessimistic=True) for c in kept]
    verdict = HOLDS if min(slacks) >= 0 else FAILS
    parts += [c.text(k, True) for c in kept]
    return verdict, min(slacks), "; ".join(parts + notes)


def evaluate_claims(inputs: ClaimInputs | list[ClaimInputs], rules: dict) -> pd.DataFrame:
    """One row per claim: claim, statement, verdict, margin, evidence, sizes, seeds."""
    per_seed = [inputs] if isinstance(inputs, ClaimInputs) else list(inputs)
    if not per_seed:
        raise ValueError("evaluate_claims needs the inputs of at least one seed")
    k = float(rules.get("interval_sd", 1.0))
    first = per_seed[0]
    sizes = ", ".join(f"{s} (for {first.paper_sizes[s]})" if first.paper_sizes.get(s, s) != s else s
                      for s in first.sizes)
    rows = []
    for number, text, fn in CLAIMS:
        verdict, margin, evidence = judge([fn(inp, rules[f"claim{number}"]) for inp in per_seed], k)
        rows.append({"claim": number, "statement": text, "verdict": verdict,
                     "margin": round(margin, 4) if math.isfinite(margin) else margin,
                     "evidence": evidence, "sizes": sizes, "seeds": len(per_seed)})
    return pd.DataFrame(rows)


def write_claims(frame: pd.DataFrame, stem: str | Path, excluded: list[str] = ()) -> list[Path]:
    from ..io import atomic_write_text

    stem = Path(stem)
    atomic_write_text(stem.with_suffix(".csv"), frame.to_csv(index=False))
    sizes = frame["sizes"].iloc[0] if len(frame) else ""
    seeds = int(frame["seeds"].iloc[0]) if len(frame) else 0
    lines = ["# Claims of the paper, checked on this run", "",
             f"Sizes the verdicts rest on: {sizes}; seeds: {seeds}"
             + (" (checks use the pessimistic end of mean +- k std over seeds)" if seeds > 1 else "") + ".",
             "Rules and the paper's words: docs/CLAIMS.md. \"not testable at this scale\" means the softmax "
             "baseline lacks what the claim compares against; it is not a refutation.", ""]
    lines += [f"- left out of the rules: {reason}" for reason in excluded]
    lines += ["", "| claim | statement | verdict | margin | evidence |", "|---|---|---|---|---|"]
    cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731  (a pipe would end the Markdown cell)
    lines += [f"| {r.claim} | {cell(r.statement)} | **{r.verdict}** | "
              f"{_num(r.margin) if math.isfinite(r.margin) else ''} | {cell(r.evidence)} |" for r in frame.itertuples()]
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    return [stem.with_suffix(".csv"), stem.with_suffix(".md")]


def main(argv: list[str] | None = None) -> int:
    """Check the rules on the paper's own published values: claim, verdict, margin, evidence as CSV."""
    import argparse
    import sys

    from ..config import REPO_ROOT
    from .published_claims import published_inputs

    parser = argparse.ArgumentParser(prog="python -m softpick_repro.report.claims", description=main.__doc__)
    parser.add_argument("--published", required=True, help="data/paper/published_values.csv")
    parser.add_argument("--config", default=str(REPO_ROOT / "config" / "config.yaml"),
                        help="config whose claims: section holds the rules (default: config/config.yaml)")
    parser.add_argument("--out", help="also write the CSV here")
    args = parser.parse_args(argv)
    import yaml

    for path in (args.published, args.config):
        if not Path(path).is_file():
            parser.error(f"no such file: {path}")
    rules = yaml.safe_load(Path(args.config).read_text())["claims"]
    inputs = published_inputs(args.published, rules)
    frame = evaluate_claims(inputs, rules)[["claim", "verdict", "margin", "evidence"]]
    for reason in inputs.excluded:
        print(f"left out by rule: {reason}", file=sys.stderr)
    for row in frame[frame.verdict == FAILS].itertuples():
        print(f"claim {row.claim}: the paper's own printed numbers fall short of its words (see evidence)",
              file=sys.stderr)
    text = frame.to_csv(index=False)
    if args.out:
        from ..io import atomic_write_text

        atomic_write_text(args.out, text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    # run the imported module's main, so its classes are the ones published_claims uses
    from softpick_repro.report.claims import main as _main

    raise SystemExit(_main())
