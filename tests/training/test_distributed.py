"""Tests genreg/training/distributed.py: each rank's share of a batch; two CPU processes with gloo agree and
match one process with the same global batch; torchrun writes a run folder once and resumes it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

import genreg
from genreg.files.run_folder import RunFolder
from genreg.training import distributed
from tests.helpers import small_data

MLP = {"type": "mlp", "hidden": [32]}
SPEC = {"type": "ae", "latent_dim": 4, "encoder": MLP, "decoder": MLP}  # no sampling: comparable exactly
PER_RANK_BATCH = 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trained(batch_size: int, precision: str) -> tuple[genreg.GenerativeModel, list[dict]]:
    torch.manual_seed(0)
    data = small_data(512)  # eight global batches of 64: one process and two ranks see the same batches
    model = genreg.build_model(SPEC, data.info)
    config = genreg.TrainConfig(epochs=2, batch_size=batch_size, device="cpu", precision=precision)
    return model, genreg.train(model, data, config, seed=0, progress=False).history


def rank_main(rank: int, port: int, out: str, precision: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    try:
        model, history = trained(PER_RANK_BATCH, precision)
        save_file(model.state_dict(), f"{out}/rank{rank}.safetensors")
        Path(f"{out}/history{rank}.json").write_text(json.dumps(history))
    finally:
        distributed.leave()


def test_shard_gives_each_rank_its_part_of_every_global_batch() -> None:
    order = torch.arange(23)
    parts = [distributed.shard(order, 4, distributed.World(rank, 2)) for rank in (0, 1)]
    assert parts[0].tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18]  # tail 16..22: 3 each, 22 left out
    assert parts[1].tolist() == [4, 5, 6, 7, 12, 13, 14, 15, 19, 20, 21]
    assert all(distributed.share_size(23, 4, distributed.World(r, 2)) == 11 for r in (0, 1))


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_two_gloo_ranks_agree_and_match_one_process_with_the_same_global_batch(tmp_path: Path, precision: str) -> None:
    mp.start_processes(rank_main, args=(free_port(), str(tmp_path), precision), nprocs=2, start_method="spawn")
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # DDP kept the replicas identical
    single, single_history = trained(2 * PER_RANK_BATCH, precision)
    difference = max((ranks[0][k] - v).abs().max().item() for k, v in single.state_dict().items())
    # Same batches, same gradients up to summation order (fp32), or up to the rounding of each rank's half-batch
    # gradient to bf16 (8 significant bits) before DDP averages it, against one rounding of the whole batch's
    # (measured 0.0024; 16 Adam steps of lr 1e-3 move a weight by at most 0.016).
    assert difference < {"fp32": 1e-4, "bf16": 1e-2}[precision]
    history = json.loads((tmp_path / "history0.json").read_text())
    tolerance = {"fp32": 1e-4, "bf16": 1e-3}[precision]
    assert history[-1]["train"]["loss"] == pytest.approx(single_history[-1]["train"]["loss"], rel=tolerance)


@pytest.mark.slow
def test_torchrun_trains_a_run_folder_written_once_and_resumes(tmp_path: Path) -> None:
    spec = {
        "model": {**SPEC, "type": "vae"},
        "data": {"type": "mnist-sample"},
        "train": {"epochs": 2, "batch_size": 128, "device": "cpu"},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    folder = tmp_path / "run"

    def torchrun(*extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        command += ["--master_port", str(free_port()), "-m", "genreg", "run", str(tmp_path / "spec.json")]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(
            [*command, "--out", str(folder), "--quiet", *extra], capture_output=True, text=True, env=env
        )

    first = torchrun()
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("run folder:") == 1  # rank 0 alone reports and writes
    assert [r["epoch"] for r in RunFolder(folder).read_metrics()] == [1, 2]
    assert genreg.load_model(folder / "model.safetensors") is not None
    again = torchrun("--resume", "--set", "train.epochs=3")
    assert again.returncode == 0, again.stderr
    assert [r["epoch"] for r in RunFolder(folder).read_metrics()] == [1, 2, 3]
