"""MixStyle in a training run: it changes the trained model's forward pass, not the copies made from it."""
from __future__ import annotations

import json
from pathlib import Path

from tests.training.conftest import small_config
from training.trainer import Trainer

STAGES = ("layer1", "layer2", "layer3")


def first_losses(config) -> dict:
    with Trainer(config, progress=False) as trainer:
        trainer.train()
    return json.loads((Path(config.output_dir) / "log.jsonl").read_text().splitlines()[0])["losses"]


def test_mix_style_hooks_only_the_trained_model(camvid_two_frames, tmp_path):
    config = small_config(camvid_two_frames, tmp_path / "run", "mix_style.probability=1.0", "ema_decay=0.9",
                          "schedule.iterations=1")
    with Trainer(config, progress=False) as trainer:
        visual = trainer.model.backbone.visual
        assert [bool(getattr(visual, stage)._forward_hooks) for stage in (*STAGES, "layer4")] == [True] * 3 + [False]
        for copy in (trainer.teacher, trainer.ema.module.backbone):
            assert copy is not None
            assert not any(module._forward_hooks for module in copy.modules()), "a copy of the model mixes styles"


def test_mix_style_changes_the_training_losses(camvid_two_frames, tmp_path):
    plain = first_losses(small_config(camvid_two_frames, tmp_path / "plain", "schedule.iterations=1"))
    mixed = first_losses(small_config(camvid_two_frames, tmp_path / "mixed", "schedule.iterations=1",
                                      "mix_style.probability=1.0"))
    assert plain.keys() == mixed.keys()
    assert plain["total"] != mixed["total"]
