"""Two CPU processes under torchrun (gloo) train in lock-step and end with identical weights."""
from __future__ import annotations

import subprocess
import textwrap

import torch

from tests.training.conftest import REPO_ROOT, small_config, torchrun_command


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



def test_two_gloo_processes_end_with_identical_weights(camvid_two_frames, tmp_path):
    config = small_config(camvid_two_frames, tmp_path / "run", "batch_size=1", "schedule.iterations=3",
                          "schedule.warmup_iterations=0", "optimizer.lr=1e-3", "checkpoint_interval=3",
                          "augmentation.photometric=true", "augmentation.flip_prob=0.5")
    command, environment = torchrun_command(config, WORKER, tmp_path)
    result = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True,
                            timeout=600)  # a hang guard: 245 s was seen beside two trainings
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
