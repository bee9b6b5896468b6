"""Dead-head detection (Figure 6, Table 5): known answers on micro models and a synthetic
module whose head outputs are set by hand; masking; held-out windows; table and figure."""
import numpy as np
import pytest
import torch
from torch import nn

from softpick_repro.analysis import dead_heads as dh
from softpick_repro.io import dump_json, load_json
from softpick_repro.model import SoftpickForCausalLM, build_config
from softpick_repro.report import deadhead_passkey as rep
from softpick_repro.train.export import save_model_files
from softpick_repro.train.synthetic import write_synthetic_shards

torch.set_num_threads(1)
VOCAB = 64


def micro_model(arm: str, dead=(1, 0), seed: int = 0, vocab: int = VOCAB) -> SoftpickForCausalLM:
    """micro-s (2 layers x 2 heads) with head `dead` forced to output zeros via its v_proj rows.

    A large init std keeps every other head's output far above the thresholds.
    """
    torch.manual_seed(seed)
    model = SoftpickForCausalLM(build_config("micro-s", arm, vocab, initializer_range=0.2)).eval()
    if dead is not None:
        layer, head = dead
        d = model.config.head_dim
        with torch.no_grad():
            model.model.layers[layer].self_attn.v_proj.weight[head * d:(head + 1) * d] = 0
    return model


def random_windows(n=3, t=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (n, t), generator=g)


@pytest.mark.parametrize("arm", ["softmax", "softpick"])
def test_zeroed_head_is_dead_and_masking_it_changes_nothing(arm):
    model, windows = micro_model(arm), random_windows()
    record = dh.measure_dead_heads(model, windows, eps_values=(1e-6, 1e-2), batch_size=2)
    assert record["tokens"] == windows.numel() and record["windows"] == 3
    assert (record["num_layers"], record["num_heads"]) == (2, 2)
    assert dh.dead_heads_at(record, 1e-6) == [[1, 0]]
    entry = dh.entry_at(record, 1e-6)
    assert entry["num_dead"] == 1 and entry["percent_dead"] == pytest.approx(25.0)
    frac = np.asarray(entry["dead_token_fraction"])
    assert frac[1, 0] == 1.0 and (frac >= 0.95).sum() == 1
    if arm == "softmax":  # rows sum to one: no other head is ever dead
        assert frac.sum() == 1.0

    with torch.no_grad():
        base = model(windows, use_cache=False).logits
        model.set_masked_heads([[1, 0]])
        masked_dead = model(windows, use_cache=False).logits
        model.set_masked_heads([[0, 1]])
        masked_alive = model(windows, use_cache=False).logits
    assert torch.equal(base, masked_dead)
    assert not torch.allclose(base, masked_alive, atol=1e-3)
    # a masked head reads as dead to the hooks (they see the masked o_proj input)
    again = dh.measure_dead_heads(model, windows, eps_values=(1e-6,))
    assert dh.dead_heads_at(again, 1e-6) == [[0, 1], [1, 0]]


class _Attn(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.o_proj = nn.Linear(width, 4, bias=False)


class _Layer(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.self_attn = _Attn(width)


class HandSetHeads(nn.Module):
    """A stand-in model whose o_proj input is a fixed tensor [tokens, heads * head_dim]."""

    def __init__(self, head_out: torch.Tensor):
        super().__init__()
        tokens, heads, head_dim = head_out.shape
        self.head_out = head_out
        self.config = type("Cfg", (), dict(num_attention_heads=heads, head_dim=head_dim,
                                           vocab_size=head_out.shape[0]))()
        self.model = nn.Module()
        self.model.layers = nn.ModuleList([_Layer(heads * head_dim)])

    def forward(self, input_ids, use_cache=False):
        b, t = input_ids.shape
        start = int(input_ids[0, 0])  # windows carry their token offset in the first id
        x = self.head_out[start: start + b * t].reshape(b, t, -1)
        return self.model.layers[0].self_attn.o_proj(x)


def test_thresholds_are_strict_on_eps_and_inclusive_on_fraction():
    tokens, d, eps = 200, 4, 2.0 ** -20  # eps exactly representable in float32
    out = torch.ones(tokens, 5, d)
    out[:190, 0] = eps / 2          # dead on exactly 95% of tokens -> dead (>= 0.95)
    out[:189, 1] = eps / 2          # 94.5% -> alive
    out[:, 2] = eps              # |x| == eps is not below eps -> alive
    out[:, 3] = 0.0
    out[:, 3, 2] = -2 * eps        # one coordinate above eps in magnitude (sign ignored) -> alive
    out[:, 4] = 0.0              # exact zeros -> dead
    model = HandSetHeads(out)
    windows = torch.arange(tokens).reshape(10, 20)  # window i starts at token offset 20 i
    record = dh.measure_dead_heads(model, windows, eps_values=(eps, 1e-2), batch_size=1)
    frac = np.asarray(dh.entry_at(record, eps)["dead_token_fraction"])[0]
    assert frac.tolist() == pytest.approx([0.95, 0.945, 0.0, 0.0, 1.0])
    assert dh.dead_heads_at(record, eps) == [[0, 0], [0, 4]]
    assert dh.dead_heads_at(record, 1e-2) == [[0, 0], [0, 2], [0, 3], [0, 4]]
    with pytest.raises(KeyError, match="no entry for eps=0.001"):
        dh.dead_heads_at(record, 1e-3)


def test_bad_inputs_are_named():
    model = micro_model("softpick", dead=None)
    with pytest.raises(ValueError, match="vocab_size"):
        dh.measure_dead_heads(model, torch.full((1, 4), VOCAB))
    with pytest.raises(ValueError, match="dead_fraction"):
        dh.measure_dead_heads(model, random_windows(), dead_fraction=1.5)
    with pytest.raises(ValueError, match="eps"):
        dh.measure_dead_heads(model, random_windows(), eps_values=(0.0,))


def test_held_out_windows_follow_the_budget(tmp_path):
    tokens_dir = write_synthetic_shards(tmp_path / "tokens", vocab_size=VOCAB, train_tokens=500,
                                        val_tokens=300)
    val = np.fromfile(tokens_dir / "val.bin", dtype=np.uint16)
    windows = dh.held_out_windows(tokens_dir, seq_len=32, token_budget=100)
    assert windows.shape == (3, 32) and windows.dtype == torch.int64
    assert windows.flatten().tolist() == val[:96].tolist()
    assert dh.held_out_windows(tokens_dir, 32, 10).shape == (1, 32)      # at least one window
    assert dh.held_out_windows(tokens_dir, 32, 10**6).shape == (9, 32)   # capped by the shard
    with pytest.raises(ValueError, match="fewer than one window"):
        dh.held_out_windows(tokens_dir, 1000, 5000)


def test_exported_model_roundtrip_with_mask(tmp_path):
    model = micro_model("softpick")
    save_model_files(model, tmp_path / "m")  # the pipeline's writer: weights carry their content hash
    dump_json({"step": 30}, tmp_path / "m" / "provenance.json")
    assert dh.checkpoint_step(tmp_path / "m") == 30
    loaded = dh.load_model(tmp_path / "m", device="cpu", masked_heads=[[0, 1]])
    assert loaded.config.masked_heads == [[0, 1]]
    record = dh.measure_dead_heads(loaded, random_windows(), eps_values=(1e-6,))
    assert dh.dead_heads_at(record, 1e-6) == [[0, 1], [1, 0]]
    with pytest.raises(FileNotFoundError, match="no config.json"):
        dh.load_model(tmp_path / "missing")


def test_masked_evaluations_zero_exactly_the_dead_heads():
    model, windows = micro_model("softpick"), random_windows()
    record = dh.measure_dead_heads(model, windows, eps_values=(1e-6, 1e3))
    seen = []

    def evaluate(m):
        seen.append(list(m.config.masked_heads))
        with torch.no_grad():
            return {"stub": {"loss": float(m(windows, labels=windows, use_cache=False).loss)}}

    rows = dh.masked_evaluations(model, record, (1e-6, 1e3), evaluate)
    assert [r["mask_eps"] for r in rows] == [None, 1e-6, 1e3]
    assert [r["num_masked"] for r in rows] == [0, 1, 4]
    assert seen == [[], [[1, 0]], [[0, 0], [0, 1], [1, 0], [1, 1]]]
    loss = [r["results"]["stub"]["loss"] for r in rows]
    assert loss[0] == loss[1] and loss[2] != loss[0]  # masking a dead head is a no-op
    assert model.config.masked_heads == []
    other = dict(record, num_heads=3)
    with pytest.raises(ValueError, match="2 layers x 3 heads"):
        dh.masked_evaluations(model, other, (1e-6,), evaluate)


def test_table5_tasks_in_paper_column_order():
    from softpick_repro.evaluate.tasks import TaskSpec

    tasks = [TaskSpec("narrative_cloze", "cloze", "sp_narrative_cloze", "lambada_openai"),
             TaskSpec("social_iqa", "multiple_choice", "sp_social_iqa", "arc_easy"),
             TaskSpec("wiki_ppl", "perplexity", "sp_wiki_ppl", "wikitext")]
    assert [t.name for t in dh.table5_tasks(tasks)] == ["wiki_ppl", "narrative_cloze"]
    with pytest.raises(ValueError, match="needs a perplexity or cloze task"):
        dh.table5_tasks(tasks[1:2])


@pytest.mark.slow
def test_run_masked_eval_with_lm_eval(tmp_path):
    """Table 5's pipeline entry point through lm-eval on one embedded task (2 documents).
    Slow: every lm-eval run indexes lm-eval's task registry (~10 s CPU)."""
    import shutil

    from softpick_repro.config import REPO_ROOT
    from softpick_repro.evaluate.tasks import embedded_sets, write_task_dir
    from softpick_repro.tokenize import train_bpe_tokenizer

    eval_dir = REPO_ROOT / "data" / "eval"
    if not (eval_dir / "narrative_cloze.jsonl.xz").exists():
        pytest.skip("embedded evaluation sets not built")
    docs = ["the cat sat on the mat and the dog sat on the log " * 3] * 10
    train_bpe_tokenizer(docs, 300, 2, tmp_path / "tok")
    model = micro_model("softpick", vocab=300)
    save_model_files(model, tmp_path / "model")
    for item in (tmp_path / "tok").iterdir():
        shutil.copy(item, tmp_path / "model" / item.name)
    dump_json({"step": 7}, tmp_path / "model" / "provenance.json")
    record = dh.measure_dead_heads(model, random_windows(), eps_values=(1e-6,))
    dump_json(record, tmp_path / "dead.json")
    write_task_dir(embedded_sets(eval_dir, ["narrative_cloze", "social_iqa"]), tmp_path / "tasks")
    # social_iqa (multiple choice) is configured but not a Table 5 task: it must be left out
    eval_cfg = dict(source="embedded", tasks={"embedded": ["narrative_cloze", "social_iqa"], "lm_eval": []},
                    limit=2, batch_size=2, max_length=0, add_bos=True, dtype="float32", bootstrap_iters=0)
    out = dh.run_masked_eval(tmp_path / "model", tmp_path / "dead.json", tmp_path / "masked.json",
                             {"eps": [1e-6]}, eval_cfg, task_dir=tmp_path / "tasks",
                             max_length=32, device="cpu", meta={"size": "micro-s"})
    saved = load_json(tmp_path / "masked.json")
    assert saved["step"] == 7 and saved["size"] == "micro-s" and len(saved["rows"]) == 2
    base, dead = (r["results"] for r in saved["rows"])
    assert base == dead and set(base) == {"narrative_cloze"}  # a dead head's mask changes nothing
    assert [m[:2] for m in dh.table5_metrics(out)] == [("narrative_cloze", "acc"),
                                                        ("narrative_cloze", "perplexity")]
    frame = rep.masking_table([("micro-S", saved)], dh.table5_metrics(saved))
    assert frame["count"].tolist() == ["0 / 4", "1 / 4"]


def _record(step, percents):
    return {"step": step, "num_layers": 2, "num_heads": 2,
            "by_eps": [{"eps": e, "percent_dead": p, "num_dead": int(p / 25), "dead_heads": []}
                       for e, p in zip((1e-6, 1e-2), percents)]}


def test_figure06_and_table05(tmp_path):
    paths = []
    for step, pcts in ((20, (25.0, 50.0)), (10, (50.0, 75.0)), (30, (0.0, 25.0))):
        paths.append(tmp_path / f"{step}.json")
        dump_json(_record(step, pcts), paths[-1])
    curves = rep.dead_head_curves({"micro-S": paths}, 1e-6)
    assert curves == {"micro-S": [(10, 50.0), (20, 25.0), (30, 0.0)]}
    with pytest.raises(ValueError, match="duplicate training steps"):
        rep.dead_head_curves({"x": [_record(10, (0, 0)), _record(10, (0, 0))]}, 1e-6)
    outputs = rep.plot_dead_heads({"micro-S": paths, "micro-M": paths[:2]}, (1e-6, 1e-2),
                                  tmp_path / "figure06")
    assert [p.suffix for p in outputs] == [".pdf", ".png"] and all(p.stat().st_size > 1000 for p in outputs)

    rows = [{"mask_eps": eps, "num_masked": n, "masked_heads": [],
             "results": {"ppl": {"word_perplexity": ppl}, "cloze": {"acc": acc, "perplexity": 9.5}}}
            for eps, n, ppl, acc in ((None, 0, 26.47, 0.3701), (1e-6, 1, 65.4, 0.19), (1e-2, 2, 79.1, 0.1888))]
    masked = {"num_layers": 2, "num_heads": 2, "rows": rows}
    metrics = [("ppl", "word_perplexity", "ppl"), ("cloze", "acc", "cloze acc"),
               ("cloze", "perplexity", "cloze ppl")]
    frame = rep.masking_table([("micro-S", masked)], metrics)
    assert frame["masked heads"].tolist() == ["none", "dead at eps 1e-06", "dead at eps 0.01"]
    assert frame["cloze acc"].tolist() == ["37.01", "19.00", "18.88"]
    assert frame["ppl"].tolist() == ["26.47", "65.40", "79.10"] and frame["count"][2] == "2 / 4"
    written = rep.write_masking_table([("micro-S", masked)], metrics, tmp_path / "table05")
    assert "37.01" in written[1].read_text()
    with pytest.raises(ValueError, match="lacks cloze/acc_norm"):
        rep.masking_table([("micro-S", masked)], [("cloze", "acc_norm", "x")])
    assert load_json(paths[0])["step"] == 20
