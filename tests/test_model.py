"""Tests of the model definition: decoding, save/load, outputs, head masks, presets.

Models are micro presets in float64 with init std 0.2 (not the paper's 0.006), so that the
attention is far from uniform and a wrong position or cache alignment changes the logits
by much more than the tolerance. Tolerances: fp64 comparisons use atol 1e-10.
"""
from __future__ import annotations

import pytest
import torch

import softpick_repro.model as M
from softpick_repro.model import (PRESETS, SoftpickConfig, SoftpickForCausalLM, build_config,
                                  count_parameters)
from softpick_repro.ops import ARMS

VOCAB = 61
ATOL_FP64 = 1e-10


def make_model(arm: str, preset: str = "micro-s", seed: int = 0, **overrides):
    overrides.setdefault("initializer_range", 0.2)
    cfg = build_config(preset, arm, VOCAB, **overrides)
    torch.manual_seed(seed)
    model = SoftpickForCausalLM(cfg).double().eval()
    with torch.no_grad():  # break the symmetry of the constant-initialised arm parameters
        for layer in model.model.layers:
            attn = layer.self_attn
            if hasattr(attn, "head_scale"):
                attn.head_scale.uniform_(0.2, 0.6)
            if hasattr(attn, "sink_logits"):
                attn.sink_logits.normal_(0.0, 1.0)
            layer.input_layernorm.weight.uniform_(0.5, 1.5)
    return model


def tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (batch, length), generator=g)


@pytest.mark.parametrize("arm", ARMS)
def test_cached_decoding_equals_full_recompute(arm):
    model = make_model(arm, num_key_value_heads=1)  # GQA: 2 query heads share 1 kv head
    x = tokens(2, 14)
    with torch.no_grad():
        full = model(x, use_cache=False).logits
        out = model(x[:, :5], use_cache=True)
        cache, pieces = out.past_key_values, [out.logits]
        # a 3-token chunk (Tq > 1 against a longer cache), then single tokens
        for lo, hi in [(5, 8)] + [(t, t + 1) for t in range(8, 14)]:
            out = model(x[:, lo:hi], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            pieces.append(out.logits)
    assert cache.get_seq_length() == 14
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=ATOL_FP64, rtol=0)


@pytest.mark.parametrize("arm", ["softmax", "softpick", "scalable_softpick", "gated_attention"])
def test_generate_matches_greedy_full_recompute(arm):
    model = make_model(arm)
    prompt = tokens(1, 6, seed=2)
    with torch.no_grad():
        generated = model.generate(prompt, max_new_tokens=5, min_new_tokens=5, do_sample=False)
        seq = prompt
        for _ in range(5):
            nxt = model(seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    assert torch.equal(generated, seq)


@pytest.mark.parametrize("arm", ["softmax", "softpick", "gpt_oss_sink", "relu_softmax"])
def test_left_padding_mask_matches_unpadded(arm):
    model = make_model(arm)
    row = tokens(1, 6, seed=3)
    other = tokens(1, 9, seed=4)
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), row], dim=1)
    batch = torch.cat([padded, other], dim=0)
    mask = torch.ones_like(batch)
    mask[0, :3] = 0
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        got = model(batch, attention_mask=mask, position_ids=position_ids).logits
        want = model(row).logits
        want_other = model(other).logits
    torch.testing.assert_close(got[0, 3:], want[0], atol=ATOL_FP64, rtol=0)
    torch.testing.assert_close(got[1], want_other[0], atol=ATOL_FP64, rtol=0)


def test_bad_attention_mask_is_rejected():
    model = make_model("softpick")
    x = tokens(1, 5)
    with pytest.raises(ValueError, match="padding mask"):
        model(x, attention_mask=torch.ones(1, 4, dtype=torch.long))


@pytest.mark.parametrize("arm", ["softpick", "scalable_softpick", "gpt_oss_sink", "gated_attention"])
def test_save_pretrained_roundtrip(arm, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    model = make_model(arm, masked_heads=[[1, 0]])
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert AutoConfig.from_pretrained(tmp_path).model_type == "softpick_llama"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float64).eval()
    assert isinstance(loaded, SoftpickForCausalLM)
    assert loaded.config.attn_arm == arm and loaded.config.masked_heads == [[1, 0]]
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = tokens(2, 9)
    with torch.no_grad():  # equal weights; BLAS may round differently on other buffers (~1e-16)
        torch.testing.assert_close(loaded(x).logits, model(x).logits, atol=ATOL_FP64, rtol=0)


@pytest.mark.parametrize("arm", ARMS)
def test_output_attentions(arm):
    model = make_model(arm)
    x = tokens(2, 7)
    with torch.no_grad():
        out = model(x, output_attentions=True, use_cache=True)
        step = model(tokens(2, 1, seed=9), past_key_values=out.past_key_values,
                     output_attentions=True)
    cfg = model.config
    assert len(out.attentions) == cfg.num_hidden_layers
    for w in out.attentions:
        assert w.shape == (2, cfg.num_attention_heads, 7, 7)
        upper = torch.triu(torch.ones(7, 7, dtype=torch.bool), diagonal=1)
        assert torch.all(w[..., upper] == 0)
    assert all(w.shape == (2, cfg.num_attention_heads, 1, 8) for w in step.attentions)
    if arm in ("softmax", "gated_attention"):
        torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(2, 2, 7, dtype=torch.float64))
    if arm == "softpick":  # rectified: some exact zeros inside the causal triangle too
        lower = torch.tril(torch.ones(7, 7, dtype=torch.bool))
        assert any(torch.any(w[..., lower] == 0) for w in out.attentions)


def test_output_hidden_states_protocol():
    model = make_model("softpick", preset="micro-m")
    x = tokens(2, 6)
    layer_outputs = []
    hooks = [layer.register_forward_hook(lambda m, a, o: layer_outputs.append(o[0]))
             for layer in model.model.layers]
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
    for h in hooks:
        h.remove()
    n_layers = model.config.num_hidden_layers
    hs = out.hidden_states
    assert len(hs) == n_layers + 1
    assert torch.equal(hs[0], model.model.embed_tokens(x))
    for i in range(1, n_layers):
        assert torch.equal(hs[i], layer_outputs[i - 1])
    with torch.no_grad():
        assert torch.equal(hs[-1], model.model.norm(layer_outputs[-1]))
        assert torch.equal(model.lm_head(hs[-1]), out.logits)


@pytest.mark.parametrize("arm", ["softpick", "gated_attention"])
def test_masked_heads_zero_the_o_proj_input_slice(arm):
    model = make_model(arm, preset="micro-m")
    hd = model.config.head_dim
    seen = {}
    hook = model.model.layers[1].self_attn.o_proj.register_forward_pre_hook(
        lambda m, args: seen.__setitem__("x", args[0].detach().clone()))
    x = tokens(2, 6)
    with torch.no_grad():
        base = model(x).logits
        assert seen["x"][..., hd:2 * hd].abs().sum() > 0
        model.set_masked_heads([[1, 1]])
        masked = model(x).logits
    hook.remove()
    assert torch.all(seen["x"][..., hd:2 * hd] == 0)
    assert seen["x"][..., :hd].abs().sum() > 0
    assert not torch.allclose(base, masked)
    with pytest.raises(ValueError, match="masked_heads"):
        model.set_masked_heads([[5, 0]])


def test_config_validation_messages():
    with pytest.raises(ValueError, match="attn_arm"):
        build_config("micro-s", "sparsemax", VOCAB)
    with pytest.raises(ValueError, match="unknown model preset"):
        build_config("7b", "softmax", VOCAB)
    with pytest.raises(ValueError, match="num_hiden_layers"):
        build_config("micro-s", "softmax", VOCAB, num_hiden_layers=3)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        build_config("micro-s", "softmax", VOCAB, num_key_value_heads=3)
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        SoftpickConfig(tie_word_embeddings=True)


def test_presets_shapes():
    assert {"micro-s", "micro-m", "tiny-s", "tiny-m", "340m", "1.8b"} <= set(PRESETS)
    for name, kw in PRESETS.items():
        cfg = build_config(name, "softpick", 32000)
        assert 32 <= cfg.head_dim <= 128, name
        assert cfg.hidden_size % 64 == 0 and cfg.intermediate_size % 64 == 0, name
        assert cfg.num_attention_heads * cfg.head_dim == cfg.hidden_size, name
    paper = build_config("340m", "softpick", 32000)
    assert (paper.hidden_size, paper.num_hidden_layers, paper.num_attention_heads,
            paper.intermediate_size, paper.max_position_embeddings) == (1024, 24, 16, 2816, 8192)
    big = build_config("1.8b", "softpick", 32000)
    assert (big.hidden_size, big.num_hidden_layers, big.num_attention_heads,
            big.intermediate_size) == (2048, 32, 32, 5632)


@pytest.mark.parametrize("arm", ARMS)
def test_count_parameters_is_exact(arm):
    cfg = build_config("micro-m", arm, VOCAB, num_key_value_heads=1)
    model = SoftpickForCausalLM(cfg)
    assert count_parameters(cfg) == sum(p.numel() for p in model.parameters())
    assert count_parameters(cfg, embeddings=False) == count_parameters(cfg) - VOCAB * cfg.hidden_size


def test_paper_parameter_counts_match_names():
    cfg = build_config("340m", "softpick", 32000)
    with torch.device("meta"):
        n_meta = sum(p.numel() for p in SoftpickForCausalLM(cfg).parameters())
    assert n_meta == count_parameters(cfg)
    # 340M: without the input embedding table 341M (374M with it).
    assert abs(count_parameters(cfg, embeddings=False) / 340e6 - 1) < 0.05
    # 1.8B: 1.78B in total.
    big = build_config("1.8b", "softpick", 32000)
    assert abs(count_parameters(big) / 1.8e9 - 1) < 0.05


def test_init_follows_the_paper():
    cfg = build_config("tiny-m", "scalable_softpick", 4096)
    torch.manual_seed(0)
    model = SoftpickForCausalLM(cfg)
    for name, p in model.named_parameters():
        if name.endswith("proj.weight") or name.endswith("embed_tokens.weight") or name == "lm_head.weight":
            assert abs(p.std().item() / 0.006 - 1) < 0.05, name
            assert abs(p.mean().item()) < 1e-3, name
        elif "norm" in name:
            assert torch.all(p == 1), name
        elif name.endswith("head_scale"):
            assert torch.all(p == 0.3), name
    sink_cfg = build_config("tiny-m", "gpt_oss_sink", 4096)
    sinks = torch.cat([l.self_attn.sink_logits.detach() for l in SoftpickForCausalLM(sink_cfg).model.layers])
    assert torch.all(sinks != 0) and sinks.abs().max() < 0.006 * 6


def test_loss_and_gradient_checkpointing():
    model = make_model("softpick").train()
    x = tokens(2, 8)
    out = model(x, labels=x)
    manual = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, VOCAB), x[:, 1:].reshape(-1))
    # transformers' loss computes in fp32 (it upcasts bf16 logits), hence the fp32 tolerance
    torch.testing.assert_close(out.loss.double(), manual, atol=1e-6, rtol=1e-6)
    assert out.past_key_values is None  # no cache while training
    out.loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    model(x, labels=x).loss.backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[n], atol=1e-12, rtol=0, msg=n)


def test_auto_registration():
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model("softpick_llama", **PRESETS["micro-s"], vocab_size=VOCAB)
    assert isinstance(cfg, SoftpickConfig)
    assert isinstance(AutoModelForCausalLM.from_config(cfg), SoftpickForCausalLM)
    assert M.SoftpickForCausalLM is SoftpickForCausalLM


@pytest.mark.slow
def test_lm_eval_hflm_accepts_the_model():
    """lm-eval's HFLM runs loglikelihood and batched (left-padded) generation on the object."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "the a cat dog sat on mat is big small".split()
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>")
    model = SoftpickForCausalLM(build_config("micro-s", "softpick", len(vocab))).eval()
    lm = HFLM(pretrained=model, tokenizer=tok, backend="causal", batch_size=2, max_length=64)
    ll = lm.loglikelihood([
        Instance("loglikelihood", {}, ("the cat", " sat on the mat"), 0),
        Instance("loglikelihood", {}, ("a dog", " is big"), 1),
    ])
    assert len(ll) == 2 and all(v < 0 for v, _ in ll)
    gen = lm.generate_until([
        Instance("generate_until", {}, ("the cat sat", {"until": ["</s>"], "max_gen_toks": 3}), 0),
        Instance("generate_until", {}, ("a", {"until": ["</s>"], "max_gen_toks": 3}), 1),
    ])
    assert len(gen) == 2


@pytest.mark.slow
def test_llmcompressor_sequential_gptq_runs(tmp_path):
    """llmcompressor's sequential pipeline traces the model's forward with torch.fx."""
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier
    from tokenizers import Tokenizer, models
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, VOCAB)}}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                                  bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<unk>")
    SoftpickForCausalLM(build_config("tiny-s", "softpick", VOCAB)).save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path).eval()  # llmcompressor reads config.name_or_path
    x = tokens(1, 16)
    with torch.no_grad():
        before = model(x).logits
    data = Dataset.from_dict({"input_ids": tokens(4, 32).tolist(), "attention_mask": [[1] * 32] * 4})
    oneshot(model=model, processor=tok, dataset=data, num_calibration_samples=4, max_seq_length=32,
            recipe=GPTQModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"]))
    with torch.no_grad():
        after = model(x).logits
    assert torch.isfinite(after).all() and not torch.equal(before, after)


def test_attention_gets_one_dtype_under_autocast(monkeypatch):
    """Fused kernels need q, k, v in one dtype; RoPE in fp32 must not leave q/k upcast."""
    from softpick_repro.model import modeling

    seen = []
    real = modeling.ops.attention

    def spy(q, k, v, *args, **kwargs):
        seen.append((q.dtype, k.dtype, v.dtype))
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(modeling.ops, "attention", spy)
    model = SoftpickForCausalLM(build_config("micro-s", "softpick", 128))
    ids = torch.randint(0, 128, (1, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(ids, labels=ids).loss.backward()
    assert seen and all(len(set(d)) == 1 for d in seen), seen


def test_rope_under_compile_is_one_opaque_op_with_the_eager_values():
    """Compiled, cos/sin come from the softpick_repro::rope_cos_sin custom op (so Inductor cannot
    recompute them inside every layer's q/k rotation); its values equal the eager computation's,
    and the whole training forward still compiles to one graph."""
    from softpick_repro.model.modeling import rope_cos_sin

    pos = torch.arange(3, 70)[None]
    eager = rope_cos_sin(pos, 32, 10000.0, torch.float32)
    torch._dynamo.reset()
    compiled = torch.compile(rope_cos_sin, backend="aot_eager", fullgraph=True)(pos, 32, 10000.0, torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(eager, compiled))
    ops_seen = []

    def record(gm, example_inputs):
        ops_seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    torch._dynamo.reset()
    model = SoftpickForCausalLM(build_config("micro-s", "softpick", 64))
    ids = torch.randint(0, 64, (1, 16))
    torch.compile(lambda x: model(input_ids=x, labels=x).loss, backend=record, fullgraph=True)(ids)
    assert any("rope_cos_sin" in name for name in ops_seen), sorted(set(ops_seen))[:20]


# What a fresh interpreter must see after `import softpick_repro.model` (model/_lean_imports.py):
# the deferred library is not imported, transformers still reports it installed, and the names
# transformers' guarded import binds still give the real objects.
LEAN_IMPORT_CHECKS = {
    "sklearn": (
        "import transformers.utils as u, transformers.generation.candidate_generator as cg\n"
        "assert u.is_sklearn_available() and cg.is_sklearn_available()\n"
        "fpr, tpr, thr = cg.roc_curve([0, 1, 1], [0.1, 0.8, 0.6])\n"
        "assert 'sklearn' in sys.modules and list(tpr)[-1] == 1.0\n"
    ),
    "hqq": (
        "import transformers.quantizers.quantizer_hqq as qh, transformers.cache_utils as cu\n"
        "assert qh.is_hqq_available() and cu.is_hqq_available()\n"
        "from softpick_repro.model._lean_imports import import_hqq\n"
        "q = import_hqq()\n"
        "assert qh.HQQLinear is q.HQQLinear and cu.HQQQuantizer is q.Quantizer\n"
        "assert isinstance(vars(q.HQQLinear).get('weight'), property)  # transformers' patch\n"
    ),
}


@pytest.mark.parametrize("library", sorted(LEAN_IMPORT_CHECKS))
def test_model_import_defers_library_and_keeps_transformers_whole(library):
    """Importing the model no longer imports scikit-learn (2 s) or hqq (4 s, with torch._dynamo)
    through transformers, yet transformers' features that use them still work."""
    import subprocess
    import sys

    pytest.importorskip(library)
    code = (f"import sys, softpick_repro.model\nassert {library!r} not in sys.modules, 'imported'\n"
            + LEAN_IMPORT_CHECKS[library] + "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
