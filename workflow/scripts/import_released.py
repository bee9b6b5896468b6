"""Snakemake adapter: one released fla checkpoint -> results/{size}/{arm}/seed_{seed}/train/final/.

Rule contract (workflow/rules/released.smk): input.tokenizer (the pipeline's tokenizer
directory, used when the checkpoint ships none); params.run = {size, arm, source, preset,
step}; output.model the HF directory. By hand:
  python workflow/scripts/import_released.py SOURCE TOKENIZER_DIR OUT_DIR --arm softpick \
      --preset 340m --step 100000
"""
import argparse
from types import SimpleNamespace

if "snakemake" not in globals():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="hub repo id (owner/name) or local fla checkpoint directory")
    parser.add_argument("tokenizer")
    parser.add_argument("out_dir")
    parser.add_argument("--arm", required=True)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--step", type=int, required=True)
    parser.add_argument("--log", default=None)
    args = parser.parse_args()
    snakemake = SimpleNamespace(
        input=SimpleNamespace(tokenizer=args.tokenizer), output=SimpleNamespace(model=args.out_dir),
        params=SimpleNamespace(run={"source": args.source, "arm": args.arm, "preset": args.preset,
                                    "step": args.step, "size": None}),
        log=[args.log])

from softpick_repro.logs import log_to
from softpick_repro.released import import_released

with log_to(snakemake.log[0]):
    run = snakemake.params.run
    out = import_released(run["source"], snakemake.input.tokenizer, snakemake.output.model,
                          arm=run["arm"], preset=run["preset"], step=run["step"],
                          extra={"size": run["size"]})
    print(f"imported {run['source']} ({run['arm']}, step {run['step']}) -> {out}")
