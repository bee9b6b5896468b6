"""Command line (`python -m softpick_repro.train`) and the multi-process launcher.

The CLI is what torchrun starts in every process; `launch()` is what the Snakemake script
calls: in-process for one process, else it writes the config as JSON into the checkpoint
directory and runs `torchrun --standalone --nproc_per_node N -m softpick_repro.train`.

Across nodes (`nodes` > 1, inside a SLURM job of that many nodes): one torchrun agent per node,
started by `srun --overlap --nodes=N --ntasks=N --ntasks-per-node=1` from the job's batch step
(the pretrain rule sets the executor plugin's `mpi` resource, so the plugin runs the job script
directly instead of inside its own `srun -n1`, where a nested srun would get one task or hang).
The agents meet at a c10d rendezvous on the job's first node (from `scontrol show job`: the
plugin strips SLURM_JOB_NODELIST and the like from the job's environment), port 29400 + job id
mod 1000, rendezvous id = the job id; `rendezvous_timeout_s` bounds both the wait for every node
to join and each connection to the store.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from softpick_repro.io import dump_json, load_json

from .config import TrainConfig
from .trainer import train

_SRC = Path(__file__).resolve().parents[2]  # so the children import this checkout
RDZV_BASE_PORT = 29400


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m softpick_repro.train",
                                     description="Pretrain one model (resumes from --ckpt-dir).")
    parser.add_argument("--config", required=True, help="JSON file of TrainConfig fields")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one field (VALUE parsed as JSON when it parses)")
    parser.add_argument("--tokens-dir", required=True, help="directory of train.bin/val.bin/manifest.json")
    parser.add_argument("--ckpt-dir", required=True, help="resumable state (checkpoint.pt, live metrics)")
    parser.add_argument("--out-dir", default=None, help="where the finished run is published")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    values = load_json(args.config)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        values[key] = _parse_value(value)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train(TrainConfig.from_dict(values), tokens_dir=args.tokens_dir, ckpt_dir=args.ckpt_dir,
          out_dir=args.out_dir, progress=not args.no_progress)
    return 0


def torchrun_command(config_path, *, tokens_dir, ckpt_dir, out_dir, nproc: int, nnodes: int = 1,
                     rendezvous: str | None = None, rendezvous_id: str = "softpick",
                     timeout_s: int = 300, progress: bool = True) -> list[str]:
    """The torchrun command of one node: `--standalone` on one node, else a c10d rendezvous
    at `rendezvous` (host:port) shared by `nnodes` agents."""
    if nnodes == 1:
        where = ["--standalone"]
    else:
        where = [f"--nnodes={nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={rendezvous}",
                 f"--rdzv_id={rendezvous_id}",
                 f"--rdzv_conf=join_timeout={timeout_s},read_timeout={timeout_s}"]
    command = [sys.executable, "-m", "torch.distributed.run", *where, f"--nproc_per_node={nproc}",
               "-m", "softpick_repro.train", "--config", str(config_path),
               "--tokens-dir", str(tokens_dir), "--ckpt-dir", str(ckpt_dir), "--out-dir", str(out_dir)]
    if not progress:
        command.append("--no-progress")
    return command


def launch_env(cfg: TrainConfig) -> dict:
    """The environment of the torchrun agents: this checkout first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SRC), env.get("PYTHONPATH")]))
    if cfg.threads:
        env["OMP_NUM_THREADS"] = str(cfg.threads)
    return env


def slurm_job_nodes(job_id: str) -> tuple[list[str], int | None]:
    """The host names of SLURM job `job_id` and its CPUs per task (None if not stated)."""
    info = subprocess.run(["scontrol", "show", "job", "-o", job_id], check=True,
                          capture_output=True, text=True).stdout
    nodelist = re.search(r"\bNodeList=(\S+)", info)
    if not nodelist or nodelist.group(1) in ("(null)", ""):
        raise RuntimeError(f"SLURM job {job_id} has no nodes yet (scontrol: {info.strip()[:200]})")
    hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist.group(1)], check=True,
                           capture_output=True, text=True).stdout.split()
    cpus = re.search(r"\bCPUs/Task=(\d+)", info)
    return hosts, int(cpus.group(1)) if cpus else None


def multinode_command(cfg: TrainConfig, job_id: str | None, hosts: list[str], cpus_per_task: int | None,
                      **paths) -> tuple[list[str], str]:
    """srun + torchrun across the job's nodes, and the rendezvous endpoint; refuses a job that
    lacks the nodes before anything starts."""
    if not job_id:
        raise ValueError(f"training config: nodes = {cfg.nodes} needs a SLURM job of {cfg.nodes} nodes "
                         f"(no SLURM_JOB_ID here); run it through --profile profiles/slurm")
    if len(hosts) < cfg.nodes:
        raise ValueError(f"training config: nodes = {cfg.nodes}, but SLURM job {job_id} has "
                         f"{len(hosts)} node(s) ({','.join(hosts)}); give the pretrain rule "
                         f"nodes={cfg.nodes} (it does from train.nodes)")
    endpoint = f"{hosts[0]}:{RDZV_BASE_PORT + int(job_id) % 1000}"
    srun = ["srun", "--overlap", f"--jobid={job_id}", f"--nodes={cfg.nodes}", f"--ntasks={cfg.nodes}",
            "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    if cpus_per_task:
        srun.append(f"--cpus-per-task={cpus_per_task}")
    return srun + torchrun_command(nproc=cfg.processes, nnodes=cfg.nodes, rendezvous=endpoint,
                                   rendezvous_id=f"slurm-{job_id}", timeout_s=cfg.rendezvous_timeout_s,
                                   **paths), endpoint


def launch(cfg: TrainConfig | dict, *, tokens_dir, ckpt_dir, out_dir, nproc: int | None = None,
           progress: bool = True) -> dict:
    """Run training with `nproc` processes per node (default cfg.processes; torchrun when > 1,
    one torchrun per node of the SLURM job when cfg.nodes > 1); return the summary."""
    if isinstance(cfg, dict):
        cfg = TrainConfig.from_dict(cfg)
    nproc = cfg.processes if nproc is None else nproc
    if nproc <= 1 and cfg.nodes <= 1:
        return train(cfg, tokens_dir=tokens_dir, ckpt_dir=ckpt_dir, out_dir=out_dir, progress=progress)
    cfg.validate(nproc * cfg.nodes)  # reject an indivisible global batch before starting processes
    ckpt_dir = Path(ckpt_dir)
    paths = dict(tokens_dir=tokens_dir, ckpt_dir=ckpt_dir, out_dir=out_dir, progress=progress)
    if cfg.nodes > 1:
        job_id = os.environ.get("SLURM_JOB_ID")
        hosts, cpus = slurm_job_nodes(job_id) if job_id else ([], None)
        command, endpoint = multinode_command(cfg, job_id, hosts, cpus,
                                              config_path=ckpt_dir / "launch_config.json", **paths)
        what = (f"torchrun on {cfg.nodes} nodes x {nproc} processes (rendezvous {endpoint}, "
                f"timeout {cfg.rendezvous_timeout_s} s: a node that cannot reach it fails with "
                f"RendezvousConnectionError, one that never joins with RendezvousTimeoutError)")
    else:
        command = torchrun_command(ckpt_dir / "launch_config.json", nproc=nproc, **paths)
        what = f"torchrun with {nproc} processes"
    dump_json(cfg.to_dict(), ckpt_dir / "launch_config.json")
    result = subprocess.run(command, env=launch_env(cfg))
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {result.returncode}); see the log above. "
                           f"Rerunning resumes from {ckpt_dir}.")
    return load_json(Path(out_dir) / "summary.json")
