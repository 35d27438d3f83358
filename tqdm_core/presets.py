"""Named presets: one per paper configuration, plus a CPU-friendly ResNet variant and tiny random-weight presets
for tests. `tqdm_core.create_model(preset)` is the only place a preset becomes a model."""
from __future__ import annotations

import copy

from tqdm_core.config import (BackboneConfig, ContextDecoderConfig, PixelDecoderConfig, TextConfig, TqdmConfig,
                              TransformerDecoderConfig)

# Tiny towers for tests: real open_clip architectures at a fraction of the width and depth, random weights.
_TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}
_TINY_HEADS = dict(
    context_decoder=ContextDecoderConfig(width=32, heads=2, layers=1),
    pixel_decoder=PixelDecoderConfig(hidden_dim=64, encoder_layers=2, heads=4, points=2, ffn_dim=128),
    decoder=TransformerDecoderConfig(hidden_dim=64, layers=3, heads=4, ffn_dim=128),
)

PRESETS: dict[str, TqdmConfig] = {
    # METHOD.md 2.1: CLIP ViT-B/16 (OpenAI weights), DenseCLIP wrapper quirks on.
    "tqdm-clip-vit-b16": TqdmConfig(
        backbone=BackboneConfig(kind="vit", open_clip_model="ViT-B-16", embed_dim=512, image_size=512,
                                out_indices=(3, 5, 7, 11), drop_path_rate=0.1, double_class_embedding=True),
        text=TextConfig(open_clip_model="ViT-B-16", num_context_tokens=5),
        pretrained="openai",
        quick_gelu=True,  # OpenAI CLIP weights; the official tqdm_CLIP hard-codes QuickGELU in both towers
    ),
    # METHOD.md 2.2: EVA02-CLIP-L/14-336 at 512 input (36x36 grid), no drop path.
    "tqdm-eva02-l14": TqdmConfig(
        backbone=BackboneConfig(kind="eva", open_clip_model="EVA02-L-14-336", embed_dim=768, image_size=512,
                                out_indices=(7, 11, 15, 23), drop_path_rate=0.0, double_class_embedding=False),
        text=TextConfig(open_clip_model="EVA02-L-14-336", num_context_tokens=8),
        pretrained="merged2b_s6b_b61k",
        quick_gelu=False,  # EVA-CLIP's text tower uses exact GELU (its timm visual trunk has SwiGLU MLPs)
    ),
    # Hierarchical CLIP tower (not in the paper): stage outputs are the pyramid, no ViT, far cheaper on CPUs.
    "tqdm-clip-rn50": TqdmConfig(
        backbone=BackboneConfig(kind="resnet", open_clip_model="RN50", embed_dim=1024, image_size=512),
        text=TextConfig(open_clip_model="RN50", num_context_tokens=5),
        pretrained="openai",
        quick_gelu=True,  # OpenAI CLIP weights (the text tower; the ResNet itself has ReLUs)
    ),
    # CPU default: a small hierarchical CLIP-style tower trained from scratch (no vision-language pretraining).
    "tqdm-small-rn": TqdmConfig(
        backbone=BackboneConfig(kind="resnet", open_clip_model="", embed_dim=128, image_size=512,
                                vision_cfg={"layers": [1, 2, 2, 1], "width": 24, "image_size": 512,
                                            "patch_size": None}),
        text=TextConfig(open_clip_model="", text_cfg=dict(_TINY_TEXT), num_context_tokens=4),
        context_decoder=ContextDecoderConfig(width=64, heads=2, layers=1),
        pixel_decoder=PixelDecoderConfig(hidden_dim=96, encoder_layers=2, heads=4, points=4, ffn_dim=256),
        decoder=TransformerDecoderConfig(hidden_dim=96, layers=3, heads=4, ffn_dim=256),
        class_table="camvid11",
        quick_gelu=False,  # trained from scratch with exact GELU (the shipped default model)
    ),
    "tqdm-tiny-rn": TqdmConfig(
        backbone=BackboneConfig(kind="resnet", open_clip_model="", embed_dim=64, image_size=256,
                                vision_cfg={"layers": [1, 1, 1, 1], "width": 16, "image_size": 256,
                                            "patch_size": None}),
        text=TextConfig(open_clip_model="", text_cfg=dict(_TINY_TEXT), num_context_tokens=2),
        quick_gelu=False,
        **copy.deepcopy(_TINY_HEADS),
    ),
    "tqdm-tiny-vit": TqdmConfig(
        backbone=BackboneConfig(kind="vit", open_clip_model="", embed_dim=64, image_size=256, out_indices=(0, 1, 2, 3),
                                drop_path_rate=0.1, double_class_embedding=True,
                                vision_cfg={"layers": 4, "width": 64, "head_width": 32, "patch_size": 16,
                                            "image_size": 256}),
        text=TextConfig(open_clip_model="", text_cfg=dict(_TINY_TEXT), num_context_tokens=2),
        quick_gelu=False,
        **copy.deepcopy(_TINY_HEADS),
    ),
    # The official tqdm_CLIP (ViT-B/16 G->C config) at toy size, with every official quirk: the model of the
    # parity fixture tests/data/parity_fixture (official_tiny.pth converts into it). Every width differs from
    # the others, so a transposed or mis-routed tensor fails a shape check. Random weights.
    "tqdm-clip-vit-tiny-official": TqdmConfig(
        backbone=BackboneConfig(kind="vit", open_clip_model="", embed_dim=48, image_size=128, out_indices=(1, 2, 3, 5),
                                drop_path_rate=0.1, double_class_embedding=True,
                                vision_cfg={"layers": 6, "width": 96, "head_width": 24, "patch_size": 16,
                                            "image_size": 128}),
        text=TextConfig(open_clip_model="", num_context_tokens=5, name_length=5,
                        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}),
        context_decoder=ContextDecoderConfig(width=40, heads=2, layers=2, dropout=0.1, gamma_init="trunc_normal"),
        pixel_decoder=PixelDecoderConfig(hidden_dim=64, encoder_layers=2, heads=4, points=2, ffn_dim=128,
                                         final_norm=True, text_attention=True),
        decoder=TransformerDecoderConfig(hidden_dim=64, layers=4, heads=4, ffn_dim=96, textual_queries=True),
        class_table="cityscapes19",
        quick_gelu=True,  # the official CLIP blocks hard-code QuickGELU
    ),
}


def list_presets() -> list[str]:
    return sorted(PRESETS)


def get_preset(preset: str) -> TqdmConfig:
    """A fresh copy of a preset's config (callers may modify it)."""
    try:
        return copy.deepcopy(PRESETS[preset])
    except KeyError:
        raise KeyError(f"unknown preset '{preset}'; available presets: {list_presets()}") from None
