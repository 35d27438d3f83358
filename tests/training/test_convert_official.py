"""Official checkpoint conversion, traced tensor by tensor.

The official layouts below are written from the official module structure (models/segmentors/tqdm_{clip,eva_clip}.py,
models/backbones/{clip,eva_clip}, decode_heads/tqdm_head.py, plugins/tqdm_msdeformattn_pixel_decoder.py, mmcv's
BaseTransformerLayer / FFN / MultiheadAttention / ConvModule naming), independently of the converter's key map,
and each entry says where the tensor must land in our model. The key counts match the state dicts saved by the
official code (METHOD.md section 12: 887 keys for CLIP ViT-B/16, 1,708 for EVA02-L/14).

Every official tensor gets values unique to it: element j of tensor i is (j mod 4093) * 4096 + i, exact in float32
(< 2**24), so a tensor that lands under the wrong key, transposed, or shifted is caught. For EVA02-L (470 M values)
one such row is broadcast over each tensor's leading axes instead: still unique per tensor and along the last axis,
without generating and writing a 2 GB official file (EVA's conversion only renames tensors; the CLIP test covers
the shared head with fully unique values). Dropped tensors and the teacher `reg_E0` (a third of each file) are
1-element constants, unique per tensor, broadcast to their shape; the teacher's values are traced on the tiny
official file of tests/data/parity_fixture instead.
"""
from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from tqdm_core import CITYSCAPES_19, CheckpointError, load_checkpoint, read_checkpoint
from tqdm_core.checkpoint import CHECKPOINT_FORMAT
from tqdm_core.config import TqdmConfig
from tqdm_core.losses import vision_regularization
from tqdm_core.official_keys import (OFFICIAL_CONFIG_OVERRIDES, TEACHER_METADATA, convert_official_state_dict,
                                     detect_official_kind, official_presets)
from training import convert_official
from training.trainer import checkpoint_teacher, frozen_teacher

Entry = tuple[str, tuple[int, ...], "str | None"]  # official key, shape, our key (None: dropped)
TEACHER = "teacher"  # our key of a teacher tensor: "teacher." + its key in the backbone's state dict
FIXTURE = Path(__file__).resolve().parents[1] / "data" / "parity_fixture"


def child(ours: str | None, name: str) -> str | None:
    """Our key below `ours`, or None (dropped) all the way down."""
    return None if ours is None else f"{ours}.{name}"


def params(official: str, ours: str | None, shapes: dict[str, tuple[int, ...]]) -> list[Entry]:
    """One module's tensors: {parameter name: shape}, same parameter names on both sides."""
    return [(f"{official}.{name}", shape, child(ours, name)) for name, shape in shapes.items()]


def linear(official: str, ours: str | None, out_features: int, in_features: int, bias: bool = True) -> list[Entry]:
    bias_shape = {"bias": (out_features,)} if bias else {}
    return params(official, ours, {"weight": (out_features, in_features), **bias_shape})


def layer_norm(official: str, ours: str | None, width: int) -> list[Entry]:
    return params(official, ours, {"weight": (width,), "bias": (width,)})


def packed_attention(official: str, ours: str | None, width: int) -> list[Entry]:
    """nn.MultiheadAttention (and EVA-CLIP's text Attention): packed q/k/v."""
    return (params(official, ours, {"in_proj_weight": (3 * width, width), "in_proj_bias": (3 * width,)})
            + linear(f"{official}.out_proj", child(ours, "out_proj"), width, width))


def clip_block(official: str, ours: str | None, width: int) -> list[Entry]:
    """open_clip / OpenAI CLIP residual attention block (same names in the official CLIP and EVA text towers)."""
    return (layer_norm(f"{official}.ln_1", child(ours, "ln_1"), width)
            + packed_attention(f"{official}.attn", child(ours, "attn"), width)
            + layer_norm(f"{official}.ln_2", child(ours, "ln_2"), width)
            + linear(f"{official}.mlp.c_fc", child(ours, "mlp.c_fc"), 4 * width, width)
            + linear(f"{official}.mlp.c_proj", child(ours, "mlp.c_proj"), width, 4 * width))


def pyramid(official: str, ours: str | None, width: int) -> list[Entry]:
    """fpn1 = Sequential(ConvT, SyncBN, GELU, ConvT), fpn2 = Sequential(ConvT); ours keeps fpn2 unwrapped."""
    conv_t = {"weight": (width, width, 2, 2), "bias": (width,)}
    norm = {"weight": (width,), "bias": (width,), "running_mean": (width,), "running_var": (width,),
            "num_batches_tracked": ()}
    return (params(f"{official}.fpn1.0", child(ours, "fpn1.0"), conv_t)
            + params(f"{official}.fpn1.1", child(ours, "fpn1.1"), norm)
            + params(f"{official}.fpn1.3", child(ours, "fpn1.3"), conv_t)
            + params(f"{official}.fpn2.0", child(ours, "fpn2"), conv_t))


def clip_vit_b16(official: str, ours: str | None) -> list[Entry]:
    """DenseCLIP-style CLIPVisionTransformer at 512 px (32x32 grid), get_embeddings=True, with its pyramid."""
    visual = child(ours, "visual")
    entries = params(official, visual, {"class_embedding": (768,), "positional_embedding": (1025, 768),
                                        "proj": (768, 512), "conv1.weight": (768, 3, 16, 16)})
    entries += layer_norm(f"{official}.ln_pre", child(visual, "ln_pre"), 768)
    for i in range(12):
        entries += clip_block(f"{official}.transformer.resblocks.{i}", child(visual, f"transformer.resblocks.{i}"), 768)
    entries += layer_norm(f"{official}.ln_post", child(visual, "ln_post"), 768)
    return entries + pyramid(official, child(ours, "pyramid"), 768)


def eva02_l14(official: str, ours: str | None) -> list[Entry]:
    """EVA-CLIP EVAVisionTransformer (EVA02-CLIP-L-14-336 at 512 px: 36x36 grid, SwiGLU 2730, sub-LN, RoPE)."""
    trunk = child(ours, "visual.trunk")
    entries = params(official, trunk, {"cls_token": (1, 1, 1024), "pos_embed": (1, 1297, 1024),
                                       "patch_embed.proj.weight": (1024, 3, 14, 14), "patch_embed.proj.bias": (1024,)})
    rope = {"freqs_cos": (1296, 64), "freqs_sin": (1296, 64)}
    entries += params(f"{official}.rope", None, rope)
    for i in range(24):
        block, ours_block = f"{official}.blocks.{i}", child(trunk, f"blocks.{i}")
        entries += layer_norm(f"{block}.norm1", child(ours_block, "norm1"), 1024)
        entries += [(f"{block}.attn.q_bias", (1024,), child(ours_block, "attn.q_proj.bias")),
                    (f"{block}.attn.v_bias", (1024,), child(ours_block, "attn.v_proj.bias"))]
        for name in ("q_proj", "k_proj", "v_proj"):
            entries += linear(f"{block}.attn.{name}", child(ours_block, f"attn.{name}"), 1024, 1024, bias=False)
        entries += params(f"{block}.attn.rope", None, rope)
        entries += layer_norm(f"{block}.attn.inner_attn_ln", child(ours_block, "attn.norm"), 1024)
        entries += linear(f"{block}.attn.proj", child(ours_block, "attn.proj"), 1024, 1024)
        entries += layer_norm(f"{block}.norm2", child(ours_block, "norm2"), 1024)
        entries += linear(f"{block}.mlp.w1", child(ours_block, "mlp.fc1_g"), 2730, 1024)
        entries += linear(f"{block}.mlp.w2", child(ours_block, "mlp.fc1_x"), 2730, 1024)
        entries += layer_norm(f"{block}.mlp.ffn_ln", child(ours_block, "mlp.norm"), 2730)
        entries += linear(f"{block}.mlp.w3", child(ours_block, "mlp.fc2"), 1024, 2730)
    entries += layer_norm(f"{official}.norm", child(trunk, "norm"), 1024)
    entries += linear(f"{official}.head", child(trunk, "head"), 768, 1024)
    return entries + pyramid(official, child(ours, "pyramid"), 1024)


def text_tower(width: int, length: int, causal_mask_saved: bool) -> list[Entry]:
    entries = params("text_encoder", "text_encoder", {"token_embedding.weight": (49408, width),
                                                      "positional_embedding": (length, width),
                                                      "text_projection": (width, width)})
    for i in range(12):
        entries += clip_block(f"text_encoder.transformer.resblocks.{i}", f"text_encoder.transformer.resblocks.{i}",
                              width)
    entries += layer_norm("text_encoder.ln_final", "text_encoder.ln_final", width)
    return entries + ([("text_encoder.attn_mask", (length, length), None)] if causal_mask_saved else [])


def context_decoder(dim: int) -> list[Entry]:
    """DenseCLIP ContextDecoder, 3 layers of width 256; our module keeps its names."""
    entries = (layer_norm("context_decoder.memory_proj.0", "context_decoder.memory_proj.0", dim)
               + linear("context_decoder.memory_proj.1", "context_decoder.memory_proj.1", 256, dim)
               + layer_norm("context_decoder.memory_proj.2", "context_decoder.memory_proj.2", 256)
               + layer_norm("context_decoder.text_proj.0", "context_decoder.text_proj.0", dim)
               + linear("context_decoder.text_proj.1", "context_decoder.text_proj.1", 256, dim))
    for i in range(3):
        layer = f"context_decoder.decoder.{i}"
        for attention in ("self_attn", "cross_attn"):
            for name in ("q_proj", "k_proj", "v_proj"):
                entries += linear(f"{layer}.{attention}.{name}", f"{layer}.{attention}.{name}", 256, 256, bias=False)
            entries += linear(f"{layer}.{attention}.proj", f"{layer}.{attention}.proj", 256, 256)
        for name in ("norm1", "norm2", "norm3"):
            entries += layer_norm(f"{layer}.{name}", f"{layer}.{name}", 256)
        entries += linear(f"{layer}.mlp.0", f"{layer}.mlp.0", 1024, 256)
        entries += linear(f"{layer}.mlp.3", f"{layer}.mlp.3", 256, 1024)
    return (entries + layer_norm("context_decoder.out_proj.0", "context_decoder.out_proj.0", 256)
            + linear("context_decoder.out_proj.1", "context_decoder.out_proj.1", dim, 256))


def mmcv_layer(official: str, ours: str, attentions: list[tuple[str, str]]) -> list[Entry]:
    """mmcv BaseTransformerLayer: attentions in operation order, norms.0-2, FFN 256 -> 2048 -> 256."""
    entries = []
    for index, (kind, name) in enumerate(attentions):
        if kind == "deformable":
            entries += linear(f"{official}.attentions.{index}.sampling_offsets", f"{ours}.{name}.sampling_offsets",
                              192, 256)
            entries += linear(f"{official}.attentions.{index}.attention_weights", f"{ours}.{name}.attention_weights",
                              96, 256)
            for projection in ("value_proj", "output_proj"):
                entries += linear(f"{official}.attentions.{index}.{projection}", f"{ours}.{name}.{projection}", 256,
                                  256)
        else:
            entries += packed_attention(f"{official}.attentions.{index}.attn", f"{ours}.{name}", 256)
    for index in range(3):
        entries += layer_norm(f"{official}.norms.{index}", f"{ours}.norm{index + 1}", 256)
    return (entries + linear(f"{official}.ffns.0.layers.0.0", f"{ours}.ffn.0", 2048, 256)
            + linear(f"{official}.ffns.0.layers.1", f"{ours}.ffn.2", 256, 2048))


def conv_module(official: str, ours: str, out_channels: int, in_channels: int, kernel: int, bias: bool) -> list[Entry]:
    """mmcv ConvModule(conv, GroupNorm) -> our Sequential(conv, GroupNorm)."""
    conv = {"weight": (out_channels, in_channels, kernel, kernel), **({"bias": (out_channels,)} if bias else {})}
    return params(f"{official}.conv", f"{ours}.0", conv) + layer_norm(f"{official}.gn", f"{ours}.1", out_channels)


def decode_head(channels: int, dim: int) -> list[Entry]:
    """tqdmHead: tqdmMSDeformAttnPixelDecoder (6 layers) + 9 masked-attention layers + heads."""
    pixel, ours_pixel = "decode_head.pixel_decoder", "pixel_decoder"
    entries = []
    for i in range(3):
        entries += conv_module(f"{pixel}.input_convs.{i}", f"{ours_pixel}.input_convs.{i}", 256, channels, 1, True)
    for i in range(6):
        entries += mmcv_layer(f"{pixel}.encoder.layers.{i}", f"{ours_pixel}.encoder.{i}",
                              [("deformable", "self_attn"), ("attention", "text_attn")])
    entries += layer_norm(f"{pixel}.encoder.post_norm", f"{ours_pixel}.final_norm", 256)
    entries += [(f"{pixel}.level_encoding.weight", (3, 256), f"{ours_pixel}.level_encoding.weight")]
    entries += conv_module(f"{pixel}.lateral_convs.0", f"{ours_pixel}.lateral_conv", 256, channels, 1, False)
    entries += conv_module(f"{pixel}.output_convs.0", f"{ours_pixel}.output_conv", 256, 256, 3, False)
    entries += params(f"{pixel}.mask_feature", f"{ours_pixel}.mask_feature",
                      {"weight": (256, 256, 1, 1), "bias": (256,)})
    entries += linear(f"{pixel}.text_proj", f"{ours_pixel}.text_projection", 256, dim)
    entries += [(f"{pixel}.text_pos_embed.weight", (19, 256), f"{ours_pixel}.text_position_embedding.weight")]
    for i in range(9):
        entries += mmcv_layer(f"decode_head.transformer_decoder.layers.{i}", f"transformer_decoder.layers.{i}",
                              [("attention", "cross_attn"), ("attention", "self_attn")])
    entries += layer_norm("decode_head.transformer_decoder.post_norm", "transformer_decoder.post_norm", 256)
    entries += [("decode_head.query_embed.weight", (19, 256), "transformer_decoder.query_embed.weight"),
                ("decode_head.level_embed.weight", (3, 256), "transformer_decoder.level_embed.weight")]
    entries += linear("decode_head.text_proj.0", "transformer_decoder.query_feat_mlp.0", 256, dim)
    entries += linear("decode_head.text_proj.2", "transformer_decoder.query_feat_mlp.2", 256, 256)
    entries += linear("decode_head.cls_embed", "transformer_decoder.class_embed", 20, 256)
    for i in (0, 2, 4):
        entries += linear(f"decode_head.mask_embed.{i}", f"transformer_decoder.mask_embed.{i}", 256, 256)
    return entries


def official_clip_b16() -> list[Entry]:
    return (clip_vit_b16("backbone", "backbone") + text_tower(512, 10, causal_mask_saved=False)
            + context_decoder(512) + [("contexts", (1, 5, 512), "text_encoder.context_tokens"),
                                      ("gamma", (512,), "context_decoder.gamma")]
            + decode_head(768, 512) + clip_vit_b16("reg_E0", TEACHER))


def official_eva02_l14() -> list[Entry]:
    return (eva02_l14("backbone", "backbone") + text_tower(768, 13, causal_mask_saved=True)
            + context_decoder(768) + [("contexts", (1, 8, 768), "text_encoder.context_tokens"),
                                      ("gamma", (768,), "context_decoder.gamma")]
            + decode_head(1024, 768) + eva02_l14("reg_E0", TEACHER))


@functools.cache
def base_pattern(size: int) -> torch.Tensor:
    return ((torch.arange(size) % 4093) * 4096).float()


def traced_value(index: int, shape: tuple[int, ...], rows: bool) -> torch.Tensor:
    """Values unique to tensor `index` (see the module docstring); int64 scalars for BatchNorm counters.

    With `rows`, one row of values is broadcast over the leading axes (a stride-0 view: no memory, tiny on disk).
    """
    if shape == ():
        return torch.tensor(index)
    if rows:
        return (base_pattern(4096)[: shape[-1]] + index).expand(shape)
    return (base_pattern(40_000_000)[: torch.Size(shape).numel()] + index).view(shape)


def is_model_tensor(ours: str | None) -> bool:
    return ours is not None and not ours.startswith(TEACHER + ".")


def constant_value(index: int, shape: tuple[int, ...]) -> torch.Tensor:
    """-1 - index broadcast to `shape` (no memory, tiny on disk); int64 0 for BatchNorm counters."""
    return torch.full((1,), -1.0 - index).expand(shape) if shape else torch.tensor(0)


def official_state(entries: list[Entry], *, traced: bool, rows: bool = False) -> dict[str, torch.Tensor]:
    """Model tensors traced (or, if not `traced`, cheap constants); teacher and dropped tensors cheap constants."""
    return {key: traced_value(index, shape, rows) if traced and is_model_tensor(ours) else constant_value(index, shape)
            for index, (key, shape, ours) in enumerate(entries)}


def write_official(path, entries: list[Entry], *, rows: bool = False) -> None:
    """As mmcv saves a checkpoint: meta, state dict, optimizer state."""
    meta = {"mmcv_version": "1.5.3", "iter": 20000, "epoch": 1, "config": "model = dict(type='tqdm_CLIP')",
            "CLASSES": tuple(CITYSCAPES_19.names), "PALETTE": [[128, 64, 128]] * 19}
    torch.save({"meta": meta, "state_dict": official_state(entries, traced=True, rows=rows),
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-6, "betas": (0.9, 0.999)}]}}, path)


def assert_traced(state: dict[str, torch.Tensor], entries: list[Entry], *, rows: bool = False) -> None:
    """Every model tensor holds exactly the official tensor the layout says it comes from."""
    kept = [(index, key, shape, ours) for index, (key, shape, ours) in enumerate(entries) if is_model_tensor(ours)]
    assert sorted(ours for *_, ours in kept) == sorted(state), "layout and model cover different keys"
    for index, key, shape, ours in kept:
        expected = traced_value(index, shape, rows)
        assert torch.equal(state[ours], expected.reshape(state[ours].shape).to(state[ours].dtype)), (
            f"{ours} does not hold official {key}")


def assert_teacher(teacher: dict[str, torch.Tensor], entries: list[Entry]) -> None:
    """The teacher holds every reg_E0 tensor the layout gives a backbone key, each under that key."""
    kept = [(index, key, shape, ours[len(TEACHER) + 1:]) for index, (key, shape, ours) in enumerate(entries)
            if ours is not None and not is_model_tensor(ours)]
    assert sorted(ours for *_, ours in kept) == sorted(teacher), "layout and teacher cover different keys"
    for index, key, shape, ours in kept:
        assert torch.equal(teacher[ours], constant_value(index, shape).to(teacher[ours].dtype)), (
            f"teacher {ours} does not hold official {key}")


def assert_official_config(config, preset: str) -> None:
    # tqdm_CLIP: DenseCLIP's double class embedding and QuickGELU in both CLIP towers; tqdm_EVA_CLIP: neither.
    assert config.backbone.double_class_embedding is (preset == "tqdm-clip-vit-b16")
    assert config.quick_gelu is (preset == "tqdm-clip-vit-b16")
    assert (config.pixel_decoder.ffn_dim, config.pixel_decoder.final_norm) == (2048, True)
    assert config.context_decoder.gamma_init == "trunc_normal" and config.class_table == "cityscapes19"


def test_official_layouts_have_the_official_key_counts():
    # METHOD.md 12: keys and values of the state dicts the official code saves (values: CLIP, with/without teacher).
    clip, eva = official_clip_b16(), official_eva02_l14()
    assert (len(clip), len(eva)) == (887, 1708)
    assert len({key for key, *_ in clip}) == 887 and len({key for key, *_ in eva}) == 1708
    values = {key: torch.Size(shape).numel() for key, shape, _ in clip}
    assert round(sum(values.values()) / 1e6, 1) == 280.1
    assert round(sum(n for key, n in values.items() if not key.startswith("reg_E0.")) / 1e6, 1) == 186.2


@pytest.fixture(scope="module")
def converted_clip(tmp_path_factory):
    """The official CLIP ViT-B/16 layout with traced values, converted by the command line, loaded back."""
    folder = tmp_path_factory.mktemp("official_clip")
    entries = official_clip_b16()
    write_official(folder / "tqdm_clip_vit-b_gta.pth", entries)
    status = convert_official.main([str(folder / "tqdm_clip_vit-b_gta.pth"), str(folder / "converted.pt"),
                                    "--keep-teacher"])
    assert status == 0
    model = load_checkpoint(folder / "converted.pt", preset="tqdm-clip-vit-b16").model
    return model, entries, folder


def test_clip_vit_b16_every_tensor_lands_where_it_belongs(converted_clip):
    model, entries, folder = converted_clip
    assert_traced(model.state_dict(), entries)
    assert_official_config(model.config, "tqdm-clip-vit-b16")
    assert model.class_table.names == CITYSCAPES_19.names
    metadata = read_checkpoint(folder / "converted.pt")["metadata"]
    assert metadata["converted_from"] == "tqdm_clip_vit-b_gta.pth"
    assert metadata["official_meta"]["iter"] == 20000
    assert metadata["dropped_official_tensors"] == {}  # CLIP files hold nothing the models do not use
    assert len(metadata[TEACHER_METADATA]) == 163 == len(model.backbone.state_dict())
    assert_teacher(metadata[TEACHER_METADATA], entries)
    assert not any(name.startswith(".") for name in os.listdir(folder))  # no temporary file left behind


def test_eva02_l14_every_tensor_lands_where_it_belongs(tmp_path, capsys):
    entries = official_eva02_l14()
    write_official(tmp_path / "tqdm_eva02_gta.pth", entries, rows=True)
    assert convert_official.main([str(tmp_path / "tqdm_eva02_gta.pth"), str(tmp_path / "converted.pt"),
                                  "--keep-teacher"]) == 0
    report = capsys.readouterr().out
    assert "tqdm-eva02-l14" in report and "1084 tensors" in report
    # Building EVA takes ~20 s and ~2 GB: check the file the way load_checkpoint does, without a second build.
    payload = torch.load(tmp_path / "converted.pt", map_location="cpu", weights_only=True, mmap=True)
    assert (payload["format"], payload["preset"]) == (CHECKPOINT_FORMAT, "tqdm-eva02-l14")
    assert_traced(payload["state_dict"], entries, rows=True)
    assert_official_config(TqdmConfig.from_dict(payload["config"]), "tqdm-eva02-l14")
    assert payload["metadata"]["dropped_official_tensors"] == {
        "EVA RoPE tables (rebuilt for the patch grid when the model is built)": 100,  # 50 each: model and teacher
        "text causal-mask buffer (rebuilt when the model is built)": 1}
    assert len(payload["metadata"][TEACHER_METADATA]) == 523  # the 573 reg_E0 tensors but their 50 RoPE tables
    assert_teacher(payload["metadata"][TEACHER_METADATA], entries)


def test_unknown_missing_and_misshapen_tensors_are_named(converted_clip):
    model, entries, _ = converted_clip
    state = official_state(entries, traced=False)
    state["decode_head.extra_head.weight"] = torch.zeros(3)
    del state["decode_head.cls_embed.bias"]
    state["gamma"] = torch.zeros(768)
    with pytest.raises(CheckpointError) as error:
        convert_official_state_dict(state, model)
    message = str(error.value)
    assert "decode_head.extra_head.weight" in message
    assert "transformer_decoder.class_embed.bias" in message
    assert "'gamma' (768,)" in message and "'context_decoder.gamma' (512,)" in message


def test_checkpoint_of_another_architecture_is_refused(tmp_path, capsys):
    resnet = {"conv1.weight": torch.randn(64, 3, 7, 7), "bn1.weight": torch.ones(64),
              "layer1.0.conv1.weight": torch.randn(64, 64, 3, 3), "fc.weight": torch.randn(1000, 2048)}
    torch.save({"meta": {"iter": 1}, "state_dict": resnet}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="not an official tqdm checkpoint.*conv1.weight"):
        convert_official.convert_official_checkpoint(tmp_path / "resnet.pth", tmp_path / "out.pt")
    assert "not an official tqdm checkpoint" in convert_error([str(tmp_path / "resnet.pth"), str(tmp_path / "out.pt")],
                                                              capsys)
    assert not (tmp_path / "out.pt").exists()


def test_presets_of_another_backbone_kind_are_refused(converted_clip):
    _, _, folder = converted_clip
    source = folder / "tqdm_clip_vit-b_gta.pth"
    with pytest.raises(CheckpointError, match="tqdm_CLIP.*'eva' backbone.*tqdm-clip-vit-b16"):
        convert_official.convert_official_checkpoint(source, folder / "other.pt", preset="tqdm-eva02-l14")
    assert "tqdm-clip-rn50" not in official_presets()  # no official ResNet model: not even offered
    with pytest.raises(ValueError, match="--preset must be 'auto' or one of"):
        convert_official.convert_official_checkpoint(source, folder / "other.pt", preset="tqdm-clip-rn50")


def test_a_preset_of_the_same_kind_is_tried_and_its_sizes_are_checked(converted_clip):
    """The key rules follow the backbone kind, so any ViT preset is accepted; one of other sizes fails on shapes
    (tests/core/test_official_parity.py converts a real official file into the tiny ViT preset of its size)."""
    _, _, folder = converted_clip
    expected = "(?s)does not fit preset 'tqdm-tiny-vit'.*shape mismatch: official 'backbone.class_embedding' \\(768,\\)"
    with pytest.raises(CheckpointError, match=expected):
        convert_official.convert_official_checkpoint(folder / "tqdm_clip_vit-b_gta.pth", folder / "tiny.pt",
                                                     preset="tqdm-tiny-vit")
    assert not (folder / "tiny.pt").exists()


def convert_error(arguments: list[str], capsys) -> str:
    """Run the command line, expect exit code 2, return the one line it printed."""
    with pytest.raises(SystemExit) as exited:
        convert_official.main(arguments)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("python -m training.convert_official: error: ") and error.count("\n") == 1, error
    assert "Traceback" not in error
    return error


def flip_a_bit_in_the_largest_tensor(path: Path) -> str:
    """Flip one bit in the middle of the data of the largest tensor record of a torch zip file; returns its name."""
    with zipfile.ZipFile(path) as archive:
        record = max((info for info in archive.infolist() if "/data/" in info.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as stream:
        stream.seek(record.header_offset + 26)  # local file header: name and extra-field lengths at byte 26
        name_length, extra_length = struct.unpack("<HH", stream.read(4))
        stream.seek(record.header_offset + 30 + name_length + extra_length + record.file_size // 2)
        byte = stream.read(1)[0]
        stream.seek(-1, os.SEEK_CUR)
        stream.write(bytes([byte ^ 0x10]))
    return record.filename


def test_a_damaged_record_is_refused_before_converting(tmp_path, capsys):
    """torch.load does not check CRCs: a flipped bit in a tensor used to convert with exit code 0 into a file with
    fresh CRCs and one wrong weight."""
    damaged = tmp_path / "official_tiny.pth"
    shutil.copy(FIXTURE / "official_tiny.pth", damaged)
    record = flip_a_bit_in_the_largest_tensor(damaged)
    error = convert_error([str(damaged), str(tmp_path / "out.pt"), "--preset", "tqdm-clip-vit-tiny-official"], capsys)
    assert f"'{damaged}' is corrupt: its record '{record}' fails its CRC-32 check" in error
    assert "download it again" in error
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("content, looks_like", [
    (b"hello world\n", "it is a text file (first line 'hello world')"),
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "it is a PNG image"),
    (b"<!DOCTYPE html><html><title>Google Drive - quota exceeded</title></html>", "it is an HTML page"),
    (b"", "it is an empty file"),
    (None, "it is a zip archive without the data.pkl record of torch.save"),
], ids=["text", "png", "html", "empty", "zip"])
def test_a_file_that_is_not_a_checkpoint_is_named_without_pickle_advice(tmp_path, capsys, content, looks_like):
    """A text file used to end in a KeyError traceback from the unpickler, a PNG in advice to rerun with
    --allow-pickle, which does not apply to a file torch.save did not write."""
    source = tmp_path / "download.pth"
    if content is None:
        with zipfile.ZipFile(source, "w") as archive:
            archive.writestr("README.txt", "not a checkpoint")
    else:
        source.write_bytes(content)
    for arguments in ([], ["--allow-pickle"]):
        error = convert_error([str(source), str(tmp_path / "out.pt"), *arguments], capsys)
        assert f"'{source}' is not a PyTorch checkpoint: {looks_like}" in error
        assert "download it again" in error and "--allow-pickle" not in error
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_allow_pickle_is_offered_for_a_checkpoint_that_needs_it(tmp_path, capsys, zip_format):
    """A real torch.save file whose meta holds an object the safe loader refuses (mmcv saves such objects)."""
    source = tmp_path / "official.pth"
    torch.save({"meta": {"config": argparse.Namespace(iters=20000)}, "state_dict": {"gamma": torch.zeros(3)}},
               source, _use_new_zipfile_serialization=zip_format)
    error = convert_error([str(source), str(tmp_path / "out.pt")], capsys)
    assert "safe loader refuses" in error and "if you trust the file" in error and "rerun with --allow-pickle" in error
    # With the flag the file is read and judged by its keys.
    assert "not an official tqdm checkpoint" in convert_error([str(source), str(tmp_path / "out.pt"),
                                                               "--allow-pickle"], capsys)


def test_truncated_file_is_refused(tmp_path):
    torch.save({"meta": {}, "state_dict": {"backbone.conv1.weight": torch.randn(768, 3, 16, 16)}},
               tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt.*download it again"):
        convert_official.convert_official_checkpoint(tmp_path / "cut.pth", tmp_path / "out.pt")
    # The end-of-archive record intact, the directory it points to damaged.
    directory = struct.unpack("<I", data[data.rfind(b"PK\x05\x06") + 16:][:4])[0]
    (tmp_path / "bad_directory.pth").write_bytes(data[:directory] + b"XX" + data[directory + 2:])
    with pytest.raises(CheckpointError, match="truncated or corrupt.*download it again"):
        convert_official.convert_official_checkpoint(tmp_path / "bad_directory.pth", tmp_path / "out.pt")


def test_tqdm_core_checkpoint_is_not_converted_twice(converted_clip):
    _, _, folder = converted_clip
    with pytest.raises(CheckpointError, match="already a tqdm_core checkpoint"):
        convert_official.convert_official_checkpoint(folder / "converted.pt", folder / "again.pt")


def test_the_official_teacher_is_kept_and_gives_the_vision_regularizer_its_loss(tmp_path, capsys):
    """The tiny tqdm_CLIP the official code saved (tests/data/parity_fixture: random weights, the backbone perturbed
    after the teacher `reg_E0` was copied, so the two differ) converted into tqdm-clip-vit-tiny-official.

    Every teacher tensor is its reg_E0 tensor, found through the student: the converted backbone tensor under the
    same key holds backbone.<name>, so the teacher's holds reg_E0.<name> (the pyramid included, which the
    embedding does not use). The teacher built from the checkpoint gives a vision regularization loss of 0.024,
    the official `reg.visual.loss` of the fixture, where a copy of the loaded backbone (the fine-tuned student)
    gives 0."""
    source, output = FIXTURE / "official_tiny.pth", tmp_path / "official_tiny.pt"
    assert convert_official.main([str(source), str(output), "--preset", "tqdm-clip-vit-tiny-official"]) == 0
    assert re.search(r"teacher +91 tensors .* M values dropped", capsys.readouterr().out)
    assert TEACHER_METADATA not in load_checkpoint(output).metadata.extra  # a file for inference: no teacher
    output.unlink()
    assert convert_official.main([str(source), str(output), "--preset", "tqdm-clip-vit-tiny-official",
                                  "--keep-teacher"]) == 0
    assert "teacher    91 tensors" in capsys.readouterr().out
    official, _ = convert_official.read_official_checkpoint(source)
    checkpoint = load_checkpoint(output)
    student = checkpoint.model.backbone.state_dict()
    teacher_state = checkpoint.metadata.extra[TEACHER_METADATA]
    assert teacher_state.keys() == student.keys()
    official_name = {}
    for key, value in student.items():
        twins = [name for name, tensor in official.items() if name.startswith("backbone.") and tensor.shape ==
                 value.shape and torch.equal(tensor, value)]
        assert len(twins) == 1, (key, twins)
        official_name[key] = twins[0][len("backbone."):]
    for key, value in teacher_state.items():
        assert torch.equal(value, official[f"reg_E0.{official_name[key]}"]), key
    assert not torch.equal(teacher_state["visual.proj"], student["visual.proj"])

    teacher = checkpoint_teacher(checkpoint)
    assert not teacher.training and not any(parameter.requires_grad for parameter in teacher.parameters())
    outputs = torch.load(FIXTURE / "outputs.pt", weights_only=True)
    image = torch.load(FIXTURE / "inputs.pt", weights_only=True)["train.img"]
    with torch.no_grad():
        embedding = checkpoint.model(image)["image_embedding"]
        loss = vision_regularization(embedding, teacher(image).image_embedding)
        student_copy = frozen_teacher(checkpoint.model.backbone)
        student_loss = vision_regularization(embedding, student_copy(image).image_embedding)
    assert abs(float(loss) - outputs["losses"]["reg.visual.loss"]) <= 1e-6 and float(loss) > 0.02
    assert float(student_loss) == 0.0


def test_a_checkpoint_without_a_teacher_is_refused_by_name():
    shipped = load_checkpoint()  # the default model: trained by us, its teacher stayed in its training checkpoints
    with pytest.raises(CheckpointError, match="holds no teacher.*iter_\\*.pt"):
        checkpoint_teacher(shipped)


def test_detection_needs_every_official_part():
    state = {"backbone.conv1.weight": torch.zeros(1), "text_encoder.positional_embedding": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="not an official tqdm checkpoint"):
        detect_official_kind(state)
    state |= {"context_decoder.gamma": torch.zeros(1), "decode_head.cls_embed.weight": torch.zeros(1)}
    assert detect_official_kind(state) == "vit"
    assert set(OFFICIAL_CONFIG_OVERRIDES) == {"vit", "eva"}
