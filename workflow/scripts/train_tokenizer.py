"""Snakemake adapter: train (or fetch) the tokenizer named by the config."""
from softpick_repro.logs import log_to
from softpick_repro.tokenize import configured_documents, save_pretrained_tokenizer, train_bpe_tokenizer

with log_to(snakemake.log[0]):
    tok_cfg, data_cfg = snakemake.params.tokenizer, snakemake.params.data
    out_dir = snakemake.output[0]
    if tok_cfg["kind"] == "pretrained":
        save_pretrained_tokenizer(tok_cfg["pretrained_name"], out_dir)
    elif tok_cfg["kind"] == "symbols":
        from softpick_repro.data.synthetic_tasks import save_symbol_tokenizer, task_from_data_config

        task, _ = task_from_data_config(data_cfg)
        save_symbol_tokenizer(task.vocabulary, out_dir)
        print(f"one token per symbol: {len(task.vocabulary)} symbols of the {task.describe()}")
    else:
        docs, _ = configured_documents(data_cfg)
        n = train_bpe_tokenizer(docs, tok_cfg["vocab_size"], tok_cfg["min_frequency"], out_dir,
                                val_fraction=data_cfg["val_fraction"])
        print(f"trained a {tok_cfg['vocab_size']}-token byte-level BPE on {n:,} documents")
