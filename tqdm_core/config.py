"""Typed configuration of the tqdm segmenter. Presets (presets.py) fill these; YAML files only override fields.

Section numbers refer to docs METHOD.md. Fields marked "official quirk" reproduce a behaviour of the official code
(METHOD.md section 11) that changes outputs or parameter shapes; they are ON in the paper presets so converted
official checkpoints reproduce official outputs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BackboneConfig:
    """Visual encoder over an open_clip visual tower (section 2)."""

    kind: str = "vit"  # "vit" (open_clip VisionTransformer), "eva" (timm EVA02 trunk), "resnet" (ModifiedResNet)
    open_clip_model: str = "ViT-B-16"  # open_clip model name whose towers are used; "" for an inline config
    vision_cfg: dict[str, Any] | None = None  # inline open_clip CLIPVisionCfg (small presets); overrides the name
    embed_dim: int = 512  # CLIP joint-space width (g, V and text embeddings)
    image_size: int = 512  # grid the positional embedding is resized to when weights are loaded
    out_indices: tuple[int, ...] = (3, 5, 7, 11)  # ViT/EVA blocks tapped for the pyramid (0-indexed)
    drop_path_rate: float = 0.1  # stochastic depth over the ViT blocks, linear from 0
    double_class_embedding: bool = False  # official quirk (CLIP ViT, DenseCLIP): CLS input = 2*e_cls + p_0


@dataclass
class TextConfig:
    """Frozen text tower with shared learnable context tokens (section 3.2)."""

    open_clip_model: str = "ViT-B-16"  # where the text tower comes from; "" for an inline config
    text_cfg: dict[str, Any] | None = None  # inline open_clip CLIPTextCfg (small presets)
    num_context_tokens: int = 5  # M learnable tokens inserted right after SOS (5 CLIP, 8 EVA)
    name_length: int = 5  # tokens for "[SOS] class name [EOS] pad" (section 3.2)
    anchor_template: str = "a clean origami of a {}"  # prompt of the language regularizer's anchors (6.2)


@dataclass
class ContextDecoderConfig:
    """DenseCLIP-style image-conditioned refinement of the text embeddings (section 3.3)."""

    enabled: bool = True  # ablation switch (section 11.1)
    width: int = 256
    heads: int = 4
    layers: int = 3
    dropout: float = 0.1
    gamma_init: str = "trunc_normal"  # official quirk: gamma ~ N(0,1) clipped to +-2; "small" gives 1e-4 (DenseCLIP)


@dataclass
class PixelDecoderConfig:
    """Multi-scale deformable attention encoder with text-to-pixel attention, FPN to stride 4 (section 4)."""

    hidden_dim: int = 256
    encoder_layers: int = 6
    heads: int = 8
    points: int = 4
    ffn_dim: int = 2048  # official quirk: mmcv's deprecated kwarg makes it 2048 (Mask2Former uses 1024)
    final_norm: bool = True  # official quirk: one more LayerNorm after the last encoder layer
    text_attention: bool = True  # text-to-pixel cross-attention in every encoder layer (ablation switch)


@dataclass
class TransformerDecoderConfig:
    """Masked-attention decoder with one textual object query per class (section 5)."""

    hidden_dim: int = 256
    layers: int = 9
    heads: int = 8
    ffn_dim: int = 2048
    textual_queries: bool = True  # queries from text embeddings; False: learned queries (ablation)


@dataclass
class TqdmConfig:
    """The whole segmenter. `classes` is the ordered class-name list the text queries are built from."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    text: TextConfig = field(default_factory=TextConfig)
    context_decoder: ContextDecoderConfig = field(default_factory=ContextDecoderConfig)
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    decoder: TransformerDecoderConfig = field(default_factory=TransformerDecoderConfig)
    class_table: str = "cityscapes19"  # built-in class table name, or "custom" with `classes` given
    classes: tuple[str, ...] | None = None  # class names when class_table is "custom"
    pretrained: str | None = None  # open_clip pretrained tag the paper preset starts from (e.g. "openai")
    # MLP activation of every residual block of both open_clip towers: True is QuickGELU x*sigmoid(1.702x), the
    # activation OpenAI's CLIP weights were trained with (official quirk: tqdm_CLIP hard-codes it in both towers);
    # False is exact GELU. The pyramid and the heads use exact GELU either way. None: not recorded (configs
    # saved before this field existed); `create_model` then uses the preset's value.
    quick_gelu: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (only str/int/float/bool/None/list/dict), safe for weights_only checkpoints."""
        return plain_data(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TqdmConfig":
        return _from_dict(cls, data)


def plain_data(value: Any) -> Any:
    """Tuples to lists, recursively: the only container types weights_only checkpoints and YAML need."""
    if isinstance(value, dict):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    return value


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass; unknown keys are an error so typos in YAML overrides do not pass."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; valid fields: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        default = getattr(cls(), name) if name in known else None
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            kwargs[name] = _from_dict(type(default), value)
        elif isinstance(default, tuple) or (name == "classes" and value is not None):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def merge_overrides(config: TqdmConfig, overrides: dict[str, Any]) -> TqdmConfig:
    """Apply a nested dict of overrides (e.g. from YAML) on top of a preset config."""
    merged = deep_update(config.to_dict(), overrides)
    return TqdmConfig.from_dict(merged)


def deep_update(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides into base; nested mappings merge key by key (configs and their YAML overrides)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out
