"""Parameter groups and the poly schedule of METHOD.md section 7.3, against hand-derived values."""
from __future__ import annotations

import pytest
import torch

import tqdm_core
from tests.training.test_convert_official import official_clip_b16
from training.optimizer import PolySchedule, build_optimizer
from training.train_config import OptimizerConfig, ScheduleConfig


@pytest.fixture(scope="module")
def model():
    return tqdm_core.create_model("tqdm-tiny-rn", pretrained=None, seed=0)


def _groups_by_parameter(optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    return {name: group for group in optimizer.param_groups for name in group["param_names"]}


def test_groups_of_the_gta5_source_configs(model):
    """G configs: backbone 0.1x with decay on its norms (mmcv key order), norms named "norm" without decay (norms
    named by position keep it, as officially), text frozen."""
    optimizer = build_optimizer(model, OptimizerConfig(lr=1e-5, weight_decay=1e-4), ScheduleConfig())
    groups = _groups_by_parameter(optimizer)
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert sorted(groups) == sorted(trainable)  # every trainable parameter exactly once
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(trainable)

    expected = {  # parameter: (group, initial lr, weight decay)
        "backbone.visual.conv1.weight": ("backbone", 1e-6, 1e-4),
        "backbone.visual.bn1.weight": ("backbone", 1e-6, 1e-4),  # BatchNorm inside the backbone keeps decay
        "backbone.visual.attnpool.c_proj.weight": ("backbone", 1e-6, 1e-4),
        "text_encoder.context_tokens": ("head", 1e-5, 1e-4),
        "context_decoder.gamma": ("head", 1e-5, 1e-4),
        "context_decoder.memory_proj.0.weight": ("head", 1e-5, 1e-4),  # LayerNorm named by position: decays
        "pixel_decoder.input_convs.0.1.weight": ("head", 1e-5, 1e-4),  # GroupNorm named by position: decays
        "pixel_decoder.encoder.0.norm1.bias": ("head_no_decay", 1e-5, 0.0),
        "pixel_decoder.final_norm.weight": ("head_no_decay", 1e-5, 0.0),
        "transformer_decoder.query_embed.weight": ("head", 1e-5, 1e-4),
        "transformer_decoder.level_embed.weight": ("head", 1e-5, 1e-4),
    }
    for name, (group_name, lr, decay) in expected.items():
        group = groups[name]
        assert (group["name"], group["weight_decay"]) == (group_name, decay), name
        assert group["initial_lr"] == pytest.approx(lr, rel=1e-12), name
    assert "text_encoder.token_embedding.weight" not in groups
    assert "text_encoder.transformer.resblocks.0.attn.in_proj_weight" not in groups


def test_groups_of_the_cityscapes_source_configs(model):
    """C configs also exempt the level and query embeddings; optionally the backbone norms too (the ResNet's
    BatchNorms are named bn*, so only the type rule finds them)."""
    config = OptimizerConfig(lr=1e-4, weight_decay=1e-5, no_decay_keys=("level_embed", "query_embed"))
    groups = _groups_by_parameter(build_optimizer(model, config, ScheduleConfig()))
    assert groups["transformer_decoder.query_embed.weight"]["weight_decay"] == 0.0
    assert groups["transformer_decoder.level_embed.weight"]["weight_decay"] == 0.0
    assert groups["transformer_decoder.query_feat_mlp.0.weight"]["weight_decay"] == 1e-5
    assert groups["backbone.visual.bn1.weight"]["weight_decay"] == 1e-5
    config = OptimizerConfig(lr=1e-4, weight_decay=1e-5, backbone_norm_decay=False, norm_rule="type")
    groups = _groups_by_parameter(build_optimizer(model, config, ScheduleConfig()))
    assert groups["backbone.visual.bn1.weight"]["name"] == "backbone_no_decay"
    assert groups["backbone.visual.bn1.weight"]["initial_lr"] == pytest.approx(1e-5)
    assert groups["backbone.visual.conv1.weight"]["weight_decay"] == 1e-5


def test_type_rule_exempts_every_normalization_layer(model):
    """norm_rule "type": norms named by position lose their decay too; nothing else changes."""
    config = OptimizerConfig(lr=1e-5, weight_decay=1e-4, norm_rule="type")
    by_type = _groups_by_parameter(build_optimizer(model, config, ScheduleConfig()))
    official = OptimizerConfig(lr=1e-5, weight_decay=1e-4)
    by_name = _groups_by_parameter(build_optimizer(model, official, ScheduleConfig()))
    changed = sorted(name for name in by_name if by_name[name]["name"] != by_type[name]["name"])
    positional_norms = [f"{module}.{kind}" for module in (
        "context_decoder.memory_proj.0", "context_decoder.memory_proj.2", "context_decoder.out_proj.0",
        "context_decoder.text_proj.0", "pixel_decoder.input_convs.0.1", "pixel_decoder.input_convs.1.1",
        "pixel_decoder.input_convs.2.1", "pixel_decoder.lateral_conv.1", "pixel_decoder.output_conv.1")
        for kind in ("bias", "weight")]
    assert changed == sorted(positional_norms)
    assert all(by_type[name]["weight_decay"] == 0.0 for name in changed)
    with pytest.raises(ValueError, match="norm_rule must be one of \\['name', 'type'\\], got 'module'"):
        build_optimizer(model, OptimizerConfig(norm_rule="module"), ScheduleConfig())


def mmcv_multipliers(official_name: str, custom_keys: dict[str, dict[str, float]]) -> tuple[float, float]:
    """(lr_mult, decay_mult) of one official parameter under mmcv's DefaultOptimizerConstructor: the custom keys
    sorted alphabetically, then by length, longest first; the first key contained in the name decides."""
    for key in sorted(sorted(custom_keys), key=len, reverse=True):
        if key in official_name:
            return custom_keys[key].get("lr_mult", 1.0), custom_keys[key].get("decay_mult", 1.0)
    return 1.0, 1.0


@pytest.mark.parametrize("config,custom_keys", [
    (OptimizerConfig(), {"backbone": {"lr_mult": 0.1}, "text_encoder": {"lr_mult": 0.0},
                         "norm": {"decay_mult": 0.0}}),
    (OptimizerConfig(lr=1e-4, weight_decay=1e-5, no_decay_keys=("level_embed", "query_embed")),
     {"backbone": {"lr_mult": 0.1}, "text_encoder": {"lr_mult": 0.0}, "level_embed": {"decay_mult": 0.0},
      "query_embed": {"decay_mult": 0.0}, "norm": {"decay_mult": 0.0}}),
], ids=["gta5-source", "cityscapes-source"])
def test_paper_preset_groups_equal_the_official_groups(config, custom_keys):
    """The official paramwise_cfg applied to the official parameter names of tqdm_CLIP (the converter's layout in
    test_convert_official.py) gives, parameter by parameter, our LR and weight-decay multipliers on the
    ViT-B/16 paper preset; the official lr_mult 0 of the text tower is our frozen text tower."""
    paper_model = tqdm_core.create_model("tqdm-clip-vit-b16", pretrained=None, seed=0)
    groups = _groups_by_parameter(build_optimizer(paper_model, config, ScheduleConfig()))
    parameters = dict(paper_model.named_parameters())
    checked = 0
    for official, _, ours in official_clip_b16():
        if ours not in parameters:  # dropped, the teacher (not a model parameter) or a buffer
            continue
        lr_mult, decay_mult = mmcv_multipliers(official, custom_keys)
        if lr_mult == 0.0:
            assert ours not in groups, ours
            continue
        assert (groups[ours]["lr_mult"], groups[ours]["decay_mult"]) == (lr_mult, decay_mult), (official, ours)
        checked += 1
    assert checked == len(groups)  # every trainable parameter has its official counterpart


def test_poly_schedule_with_warmup_matches_hand_derived_values():
    """T = 10 iterations, warm-up W = 4 from ratio 0.1, power 0.9, floor 1e-6, head group starting at 1e-4.

    regular(i) = (1e-4 - 1e-6) (1 - i/10)^0.9 + 1e-6; warm-up factor 1 - (1 - i/4)(1 - 0.1) for i < 4.
      i = 0:  regular 1e-4,                                  factor 0.1   -> 1.0e-5
      i = 2:  0.8^0.9 = 0.8180521, regular 8.198716e-5,      factor 0.55  -> 4.509294e-5
      i = 5:  0.5^0.9 = 0.5358867, regular 5.405278e-5,      no warm-up   -> 5.405278e-5
      i = 10: regular = the floor                                         -> 1e-6
    """
    schedule = PolySchedule(ScheduleConfig(iterations=10, warmup_iterations=4, warmup_ratio=0.1, power=0.9))
    expected = {0: 1.0e-5, 2: 4.509294e-5, 5: 5.405278e-5, 10: 1e-6}
    for iteration, lr in expected.items():
        assert schedule.learning_rate(iteration, 1e-4, 1e-6) == pytest.approx(lr, rel=1e-6), iteration


def test_backbone_of_gta5_configs_sits_at_the_floor(model):
    """G configs: backbone 1e-5 x 0.1 = 1e-6 = min_lr, so after warm-up it stays at 1e-6 while the head decays.

    During warm-up it is scaled like every group: at i = 750 of W = 1500 (ratio 1e-6) the factor is
    1 - 0.5 (1 - 1e-6) = 0.5000005. With ``scale_min_lr`` the backbone floor is 1e-7 and it decays too.
    """
    schedule_config = ScheduleConfig()  # official: 20k iterations, 1500 warm-up, power 0.9, floor 1e-6
    optimizer = build_optimizer(model, OptimizerConfig(), schedule_config)
    schedule = PolySchedule(schedule_config)
    lrs = {}
    for iteration in (750, 1500, 10000, 19999):
        schedule.apply(optimizer, iteration)
        lrs[iteration] = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert lrs[750]["backbone"] == pytest.approx(0.5000005e-6, rel=1e-9)
    for iteration in (1500, 10000, 19999):
        assert lrs[iteration]["backbone"] == pytest.approx(1e-6, rel=1e-9)
    # Head at i = 10000: (1e-5 - 1e-6) 0.5^0.9 + 1e-6 = 9e-6 x 0.5358867 + 1e-6 = 5.822980e-6.
    assert lrs[10000]["head"] == pytest.approx(5.822980e-6, rel=1e-6)
    assert lrs[10000]["head_no_decay"] == lrs[10000]["head"]

    scaled = build_optimizer(model, OptimizerConfig(), ScheduleConfig(scale_min_lr=True))
    schedule.apply(scaled, 10000)
    backbone = next(group for group in scaled.param_groups if group["name"] == "backbone")
    # (1e-6 - 1e-7) x 0.5358867 + 1e-7 = 5.822980e-7
    assert backbone["lr"] == pytest.approx(5.822980e-7, rel=1e-6)
