"""Two CPU processes under torchrun (gloo) train in lock-step and end with identical weights."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
import yaml

from tests.training.conftest import small_config

REPO_ROOT = Path(__file__).resolve().parents[2]

# Run by torchrun in each process: train, then save this process's weights.
WORKER = textwrap.dedent("""
    import sys, torch
    from training.train_config import TrainConfig
    from training.trainer import Trainer
    import yaml
    config = TrainConfig.from_dict(yaml.safe_load(open(sys.argv[1])))
    trainer = Trainer(config, progress=False)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    rank = trainer.context.rank
    torch.save({"initial": initial, "final": trainer.model.state_dict(), "world_size": trainer.context.world_size},
               f"{sys.argv[2]}/rank{rank}.pt")
    trainer.close()
""")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_gloo_processes_end_with_identical_weights(camvid_two_frames, tmp_path):
    config = small_config(camvid_two_frames, tmp_path / "run", "batch_size=1", "schedule.iterations=3",
                          "schedule.warmup_iterations=0", "optimizer.lr=1e-3", "checkpoint_interval=3",
                          "augmentation.photometric=true", "augmentation.flip_prob=0.5")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config.to_dict()))
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT), GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), str(worker), str(config_path), str(tmp_path)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]

    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    first, second = ranks[0]["final"], ranks[1]["final"]
    different = [name for name in first if not torch.equal(first[name], second[name])]
    assert not different, f"{len(different)} tensors differ between the ranks, e.g. {different[:3]}"
    trained = [name for name in first if first[name].is_floating_point()
               and not torch.equal(first[name], ranks[0]["initial"][name])]
    assert any(name.startswith("pixel_decoder.") for name in trained)
    assert any(name.startswith("backbone.") for name in trained)
    assert "text_encoder.context_tokens" in trained
    assert "text_encoder.token_embedding.weight" not in trained  # the text tower is frozen
    assert (tmp_path / "run" / "model_final.pt").is_file()
