"""Graph breaks of torch.compile over one training forward (model + loss), per arm.

    python perf/explain_graphs.py --preset 340m --arms softmax softpick [--seq-len 512]

Prints torch._dynamo.explain's graph and break counts and each break's reason and innermost user
frames: where a compiled step leaves the graph (the GPU issue: the softmax step had 8 graphs).
"""
from __future__ import annotations

import argparse

import torch


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="340m")
    ap.add_argument("--arms", nargs="+", default=["softmax", "softpick"])
    ap.add_argument("--seq-len", type=int, default=512)
    args = ap.parse_args(argv)
    from softpick_repro.model import SoftpickForCausalLM, build_config

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for arm in args.arms:
        torch._dynamo.reset()
        model = SoftpickForCausalLM(build_config(args.preset, arm, 32000)).to(device)
        ids = torch.randint(0, 32000, (1, args.seq_len), device=device)

        def loss_of(ids):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                return model(input_ids=ids, labels=ids).loss

        ex = torch._dynamo.explain(loss_of)(ids)
        print(f"{arm}: {ex.graph_count} graphs, {ex.graph_break_count} breaks", flush=True)
        seen = set()
        for br in ex.break_reasons:
            frames = tuple(f"{fs.filename.split('site-packages/')[-1]}:{fs.lineno} {fs.name}"
                           for fs in br.user_stack[-3:])
            if (br.reason, frames) in seen:
                continue
            seen.add((br.reason, frames))
            print(f"  - {br.reason[:400]}")
            for fr in frames:
                print(f"      {fr}")
        del model


if __name__ == "__main__":
    main()
