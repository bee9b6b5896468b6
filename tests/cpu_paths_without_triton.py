"""The CPU code paths, run where triton and fla cannot be imported:

    python tests/cpu_paths_without_triton.py OUT_DIR [--block]

--block makes importing triton or fla fail inside this interpreter (tests/test_without_triton.py
on a machine that has them); .ci/no_triton.sh runs it without --block in a virtual environment
where they are not installed at all. Prints "ok" at the end.
"""
import importlib.abc
import sys


class BlockGpuOnlyImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("triton", "fla"):
            raise ImportError(f"No module named {name!r} (blocked: no wheel on this platform)")
        return None


def main(out_dir: str) -> None:
    import torch

    import softpick_repro  # noqa: F401
    import softpick_repro.analysis.attention_probe  # noqa: F401
    import softpick_repro.analysis.dead_heads  # noqa: F401
    import softpick_repro.evaluate.lm_eval_runner  # noqa: F401
    import softpick_repro.evaluate.quantize  # noqa: F401
    from softpick_repro.model import SoftpickForCausalLM, build_config
    from softpick_repro.ops import ARMS
    from softpick_repro.tokenize import tokenize_corpus, train_bpe_tokenizer

    for arm in ARMS:
        model = SoftpickForCausalLM(build_config("micro-s", arm, 300))
        ids = torch.randint(0, 300, (2, 16))
        out = model(ids, labels=ids)
        out.loss.backward()
        assert torch.isfinite(out.loss), arm
    docs = [f"document number {i} about cats and dogs and {i * 7} birds" for i in range(60)]
    train_bpe_tokenizer(docs, 300, 1, out_dir + "/tok")
    manifest = tokenize_corpus(docs, out_dir + "/tok", out_dir + "/tokens", val_fraction=0.2,
                               source_hash="x", progress=False)
    assert manifest["tokens"]["train"] > 0
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("triton", "fla"))
    assert not loaded, f"imported without need: {loaded[:5]}"
    print("ok")


if __name__ == "__main__":
    if "--block" in sys.argv[2:]:
        sys.meta_path.insert(0, BlockGpuOnlyImports())
    main(sys.argv[1])
