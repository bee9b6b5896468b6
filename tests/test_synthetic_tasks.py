"""The synthetic trigger-copy source: generator rules, determinism, the symbol tokenizer,
the data-stage chain, config checks, the stage switches and synthetic attention-map text."""
import numpy as np
import pytest

from softpick_repro.config import REPO_ROOT, ConfigError, load_config
from softpick_repro.analysis.metrics import uniform_first_token_mass
from softpick_repro.data.synthetic_tasks import (SyntheticTaskError, TriggerCopyTask,
                                                 save_symbol_tokenizer, task_from_data_config)

TASK = TriggerCopyTask(symbols=16, copy_offsets=(1, 3), triggers_per_offset=2, trigger_prob=0.2,
                       length=63, seed=5)


def test_every_trigger_is_followed_by_the_copy_its_offset_names():
    ids = TASK.generate_ids(300)
    triggers = np.argwhere(ids >= TASK.symbols)
    assert len(triggers) > 1000  # the rule below is checked on many cases
    for doc, q in triggers:
        offset = TASK.copy_offsets[(ids[doc, q] - TASK.symbols) // TASK.triggers_per_offset]
        assert q >= max(TASK.copy_offsets) and q + 1 < TASK.length
        assert ids[doc, q + 1] == ids[doc, q - offset]
        # copy sources and the copies themselves are ordinary symbols
        assert ids[doc, q - offset] < TASK.symbols and ids[doc, q + 1] < TASK.symbols


def test_trigger_rate_and_plain_documents():
    ids = TASK.generate_ids(400)
    share = (ids >= TASK.symbols).mean()
    assert 0.05 < share < 0.2, share  # below trigger_prob: positions after a trigger are excluded
    plain = TriggerCopyTask(**{**TASK.__dict__, "plain_fraction": 1.0}).generate_ids(50)
    assert (plain < TASK.symbols).all()
    half = TriggerCopyTask(**{**TASK.__dict__, "plain_fraction": 0.5}).generate_ids(2000)
    without = ((half >= TASK.symbols).sum(axis=1) == 0).mean()
    assert 0.45 < without < 0.55, without


def test_bigram_chain_follows_its_table():
    task = TriggerCopyTask(symbols=8, trigger_prob=0.0, dirichlet_alpha=0.5, length=200, seed=1)
    ids = task.generate_ids(400)
    counts = np.zeros((8, 8))
    np.add.at(counts, (ids[:, :-1].ravel(), ids[:, 1:].ravel()), 1)
    empirical = counts / counts.sum(axis=1, keepdims=True)
    assert np.abs(empirical - task.bigram_table()).max() < 0.03


def test_documents_are_a_function_of_the_seed_and_prefix_stable():
    a = TASK.generate_ids(3000)
    assert np.array_equal(a[:100], TASK.generate_ids(100))  # more documents never change the first ones
    assert np.array_equal(a, TASK.generate_ids(3000))
    other = TriggerCopyTask(**{**TASK.__dict__, "seed": 6}).generate_ids(100)
    assert not np.array_equal(a[:100], other)
    names = TASK.vocabulary
    text = list(TASK.documents(5))
    assert text == [" ".join(names[i] for i in row) for row in a[:5]]


@pytest.mark.parametrize("change, message", [
    ({"copy_offsets": ()}, "copy_offsets"), ({"copy_offsets": (0,)}, "copy_offsets"),
    ({"copy_offsets": (2, 2)}, "repeats"), ({"trigger_prob": 1.5}, "trigger_prob"),
    ({"dirichlet_alpha": 0.0}, "dirichlet_alpha"), ({"length": 3}, "length"),
    ({"symbols": 1}, "symbols"), ({"triggers_per_offset": 0}, "triggers_per_offset"),
])
def test_bad_parameters_are_named(change, message):
    with pytest.raises(SyntheticTaskError, match=message):
        TriggerCopyTask(**{**TASK.__dict__, **change}).check()


def test_data_config_errors():
    with pytest.raises(SyntheticTaskError, match="data.synthetic section"):
        task_from_data_config({"source": "synthetic"})
    with pytest.raises(SyntheticTaskError, match="documents"):
        task_from_data_config({"synthetic": {"documents": 0}})
    with pytest.raises(SyntheticTaskError, match="unknown data.synthetic keys"):
        task_from_data_config({"synthetic": {"documents": 4, "symbol": 3}})


def test_uniform_baseline_is_the_mean_harmonic_weight():
    assert uniform_first_token_mass(1) == 1.0
    assert uniform_first_token_mass(2) == pytest.approx(0.75)
    t = 256
    assert uniform_first_token_mass(t) == pytest.approx(sum(1 / k for k in range(1, t + 1)) / t)
    assert uniform_first_token_mass(64) < 0.3 < uniform_first_token_mass(8)


def test_symbol_tokenizer_gives_one_id_per_symbol(tmp_path):
    from transformers import AutoTokenizer

    save_symbol_tokenizer(TASK.vocabulary, tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert len(tok) == 3 + len(TASK.vocabulary)
    row = TASK.generate_ids(1)[0]
    ids = tok(next(TASK.documents(1)), add_special_tokens=False)["input_ids"]
    assert ids == (row + 3).tolist()  # symbol i -> id 3 + i, never merged or split
    assert tok("a1 a10 a1a1", add_special_tokens=False)["input_ids"] == [4, 13, 0]
    with pytest.raises(SyntheticTaskError, match="unique"):
        save_symbol_tokenizer(["a", "a"], tmp_path / "bad")


def test_data_stage_chain_writes_the_generator_ids(tmp_path):
    from softpick_repro.data.token_shards import open_split
    from softpick_repro.tokenize import configured_documents, is_validation, tokenize_corpus

    data_cfg = {"source": "synthetic", "synthetic": {**{k: v for k, v in TASK.__dict__.items()},
                                                     "copy_offsets": [1, 3], "documents": 200}}
    task, documents = task_from_data_config(data_cfg)
    save_symbol_tokenizer(task.vocabulary, tmp_path / "tok")
    docs, source_hash = configured_documents(data_cfg)
    manifest = tokenize_corpus(docs, tmp_path / "tok", tmp_path / "tokens", val_fraction=0.1,
                               source_hash=source_hash, progress=False)
    assert source_hash.startswith("synthetic:") and manifest["source_hash"] == source_hash
    texts = list(task.documents(documents))
    rows = task.generate_ids(documents)
    expected = {"train": [], "val": []}
    for text, row in zip(texts, rows):
        expected["val" if is_validation(text, 0.1) else "train"] += [1, *(row + 3)]
    for split in ("train", "val"):
        got = np.asarray(open_split(tmp_path / "tokens", split))   # the one reader of the shards
        assert got.tolist() == expected[split]
    assert manifest["documents"]["val"] > 0


def _config(tmp_path, text):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(text)
    return [REPO_ROOT / "config" / "config.yaml", overlay]


def test_synthetic_source_needs_the_symbol_tokenizer(tmp_path):
    with pytest.raises(ConfigError, match="tokenizer.kind"):
        load_config(_config(tmp_path, "data: {source: synthetic}\n"))
    with pytest.raises(ConfigError, match="tokenizer.kind"):
        load_config(_config(tmp_path, "tokenizer: {kind: symbols}\n"))
    with pytest.raises(ConfigError, match="unknown config key data.synthetic.symbol"):
        load_config(_config(tmp_path, "data: {synthetic: {symbol: 3}}\n"))


def test_stage_switches_empty_their_jobs(tmp_path):
    from softpick_repro import plan

    full = load_config([REPO_ROOT / "config" / "config.yaml"])
    assert plan.evaluations(full) and plan.passkey_runs(full) and plan.deadheads_runs(full)
    no_quant = load_config(_config(tmp_path, "stages: {quantization: false}\n"))
    assert plan.evaluations(no_quant) and {q for *_, q in plan.evaluations(no_quant)} == {"none"}
    off = load_config(_config(tmp_path, "stages: {benchmarks: false, passkey: false, dead_heads: false}\n"))
    assert plan.evaluations(off) == [] and plan.quants(off) == []  # quantization needs benchmarks
    assert plan.passkey_runs(off) == [] and plan.deadheads_runs(off) == []
    assert plan.attention_metric_runs(off) == plan.attention_metric_runs(full)
    with pytest.raises(ValueError, match="unknown stage"):
        plan.stage_enabled(full, "benchmark")


@pytest.mark.parametrize("overlays", [["sinklab.yaml"], ["sinklab.yaml", "sinklab_massive.yaml"]])
def test_sinklab_config_plans_training_and_attention_only(overlays):
    from softpick_repro import plan

    cfg = load_config([REPO_ROOT / "config" / name for name in ["config.yaml", *overlays]])
    assert cfg["data"]["source"] == "synthetic" and cfg["tokenizer"]["kind"] == "symbols"
    assert plan.evaluations(cfg) == [] and plan.passkey_runs(cfg) == [] and plan.deadheads_runs(cfg) == []
    assert len(plan.attention_map_runs(cfg)) == 4  # Figures 8-19 need two sizes x softmax/softpick
    assert cfg["metrics"]["map_text"] == "val_shard"
    # every training window is one whole document (BOS + length symbols)
    assert cfg["train"]["seq_len"] == cfg["data"]["synthetic"]["length"] + 1
    assert cfg["metrics"]["seq_len"] >= 64
    # one pass: no training window is seen twice (2% of the documents go to validation)
    windows = max(entry["steps"] for entry in cfg["sizes"]) * cfg["train"]["global_batch"]
    assert 0.975 * cfg["data"]["synthetic"]["documents"] >= windows   # the 2% split is by hash: ~+-0.05%
    from softpick_repro import cost

    rules = [job.rule for job in cost.plan_jobs(cfg)]
    # 2 sizes x 2 main arms + 6 arms stopped at 10% (Table 3); no evaluation-side jobs
    assert rules.count("pretrain") == 10
    assert not {"evaluate", "dead_heads", "masked_eval", "passkey"} & set(rules)


def test_map_sequences_from_the_validation_shard(tmp_path):
    from transformers import AutoTokenizer

    from softpick_repro.analysis.attention_run import map_sequences
    from softpick_repro.tokenize import tokenize_corpus

    save_symbol_tokenizer(TASK.vocabulary, tmp_path / "tok")
    tokenize_corpus(TASK.documents(300), tmp_path / "tok", tmp_path / "tokens", val_fraction=0.1,
                    source_hash="x", progress=False)
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    seqs = map_sequences({"map_text": "val_shard", "map_len": 40}, tok, tmp_path / "tokens" / "manifest.json")
    assert len(seqs) == 3
    for ids, labels in seqs:
        assert len(ids) == len(labels) == 40 and ids[0] == 1 and labels[0] == "<s>"
        assert all(label in TASK.vocabulary for label in labels[1:])
    english = map_sequences({"map_text": "appendix"}, tok)
    assert len(english) == 3
    with pytest.raises(ValueError, match="needs the token manifest"):
        map_sequences({"map_text": "val_shard", "map_len": 40}, tok)
