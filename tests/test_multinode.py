"""Across nodes: two torchrun agents (one process each) meeting at one c10d rendezvous on
localhost stand in for two SLURM nodes; they follow a one-process run's losses. The srun side
(job node list, node-count check, rendezvous from the first node) is tested without SLURM."""
import importlib
import json
import socket
import subprocess
import time

import pytest

from softpick_repro.io import dump_json
from softpick_repro.train import TrainConfig, launch, train
from softpick_repro.train.synthetic import micro_train_config
from train_fixtures import read_metrics as read, tokens_dir  # noqa: F401  (a fixture)

launcher = importlib.import_module("softpick_repro.train.launch")

CFG = micro_train_config(steps=12, global_batch=8, micro_batch=2, ckpt_every=6, val_every=6)
RTOL = {"loss": 1e-5, "grad_norm": 5e-4}  # as tests/test_ddp.py: 2 ranks vs accumulation


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def agents(cfg, tmp_path, tokens_dir, endpoint, nnodes=2, timeout_s=60):
    cfg = TrainConfig.from_dict(cfg)
    config_path = tmp_path / "ckpt" / "launch_config.json"
    dump_json(cfg.to_dict(), config_path)
    command = launcher.torchrun_command(config_path, tokens_dir=tokens_dir, ckpt_dir=tmp_path / "ckpt",
                                        out_dir=tmp_path / "out", nproc=1, nnodes=nnodes,
                                        rendezvous=endpoint, rendezvous_id="test", timeout_s=timeout_s,
                                        progress=False)
    return command, launcher.launch_env(cfg)


@pytest.mark.slow
def test_two_agents_on_one_rendezvous_match_one_process(tokens_dir, tmp_path):
    single = train(CFG, tokens_dir=tokens_dir, ckpt_dir=tmp_path / "c1", out_dir=tmp_path / "o1",
                   progress=False)
    command, env = agents(CFG, tmp_path, tokens_dir, f"127.0.0.1:{free_port()}")
    procs = [subprocess.Popen(command, env=env) for _ in range(2)]  # "node 0" and "node 1"
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    one, two = read(tmp_path / "o1"), read(tmp_path / "out")
    assert [r["step"] for r in two] == [str(s) for s in range(1, 13)]
    for a, b in zip(one, two):
        for column, rtol in RTOL.items():
            assert float(b[column]) == pytest.approx(float(a[column]), rel=rtol, abs=0), (a["step"], column)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["world_size"], summary["accum"]) == (2, 2)
    assert float(one[-1]["loss"]) < float(one[0]["loss"]) - 0.5


@pytest.mark.slow
def test_unreachable_rendezvous_times_out_clearly(tokens_dir, tmp_path):
    # 192.0.2.1 (TEST-NET-1) is never this machine and never answers.
    command, env = agents(CFG, tmp_path, tokens_dir, "192.0.2.1:29400", timeout_s=5)
    start = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert time.monotonic() - start < 120
    assert "RendezvousConnectionError" in result.stderr or "RendezvousTimeoutError" in result.stderr


def test_multinode_command_starts_one_agent_per_node():
    cfg = TrainConfig.from_dict(micro_train_config(nodes=2, processes=8, global_batch=32))
    command, endpoint = launcher.multinode_command(cfg, "4711", ["gpu07", "gpu08"], 64, config_path="c.json",
                                                   tokens_dir="t", ckpt_dir="k", out_dir="o")
    assert endpoint == "gpu07:30111"  # first node, 29400 + job id mod 1000
    srun = command[:command.index("-m")]
    assert srun[:8] == ["srun", "--overlap", "--jobid=4711", "--nodes=2", "--ntasks=2",
                        "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--cpus-per-task=64"]
    assert "--nnodes=2" in command and "--nproc_per_node=8" in command
    assert "--rdzv_endpoint=gpu07:30111" in command and "--rdzv_id=slurm-4711" in command


def test_node_count_the_allocation_lacks_is_refused(tokens_dir, tmp_path, monkeypatch):
    cfg = micro_train_config(nodes=4, global_batch=8)
    with pytest.raises(ValueError, match=r"nodes = 4, but SLURM job 99 has 2 node\(s\) \(a,b\)"):
        launcher.multinode_command(TrainConfig.from_dict(cfg), "99", ["a", "b"], None,
                                   config_path="c", tokens_dir="t", ckpt_dir="k", out_dir="o")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(ValueError, match="nodes = 4 needs a SLURM job of 4 nodes"):
        launch(cfg, tokens_dir=tokens_dir, ckpt_dir=tmp_path / "c", out_dir=tmp_path / "o", progress=False)
    assert not (tmp_path / "c" / "launch_config.json").exists()
