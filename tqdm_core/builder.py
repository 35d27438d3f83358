"""`create_model`: the one place a config becomes a TqdmSegmentor (sub-modules built here and injected)."""
from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from torch import nn

from tqdm_core.classes import ClassTable, get_class_table
from tqdm_core.config import TqdmConfig, merge_overrides
from tqdm_core.modeling.context_decoder import ContextDecoder
from tqdm_core.modeling.eva_backbone import EvaViTBackbone
from tqdm_core.modeling.pixel_decoder import PixelDecoder
from tqdm_core.modeling.prompted_text_encoder import PromptedTextEncoder
from tqdm_core.modeling.resnet_backbone import ClipResNetBackbone
from tqdm_core.modeling.segmentor import TqdmSegmentor
from tqdm_core.modeling.transformer_decoder import TransformerDecoder
from tqdm_core.modeling.vit_backbone import ClipViTBackbone
from tqdm_core.presets import PRESETS, get_preset
from tqdm_core.pretrained import build_open_clip, load_pretrained_state

logger = logging.getLogger(__name__)

DEFAULT_PRETRAINED = "default"  # sentinel: the preset's own pretrained tag


def class_table_of(config: TqdmConfig) -> ClassTable:
    if config.class_table == "custom":
        if not config.classes:
            raise ValueError("class_table 'custom' needs a non-empty `classes` list")
        return ClassTable.from_names(config.classes)
    return get_class_table(config.class_table)


def create_model(preset: str, *, pretrained: str | None = DEFAULT_PRETRAINED, classes: Sequence[str] | None = None,
                 seed: int | None = None, overrides: dict[str, Any] | None = None,
                 config: TqdmConfig | None = None) -> TqdmSegmentor:
    """Build a tqdm segmenter from a named preset.

    Args:
        preset: preset name (see `tqdm_core.list_presets()`).
        pretrained: CLIP/EVA-CLIP weights for the visual and text towers: "default" (the preset's open_clip tag,
            e.g. "openai"; random for presets without one), another open_clip tag, a local file path, or None for
            random towers (tests, or before loading a trained tqdm checkpoint).
        classes: class names for the textual queries; replaces the preset's class table. A list of another
            length changes the per-class parameters (the model then needs training).
        seed: seeds the random initialisation, for reproducible random-weight models.
        overrides: nested dict of config fields to change (e.g. from a YAML file).
        config: a complete config to use instead of the preset's (checkpoint loading). A config that does not
            record the towers' activation (`quick_gelu` None: saved before the field existed) gets the preset's.
    """
    config = config if config is not None else get_preset(preset)
    if overrides:
        config = merge_overrides(config, overrides)
    if classes is not None:
        config = merge_overrides(config, {"class_table": "custom", "classes": list(classes)})
    if config.quick_gelu is None:
        config = merge_overrides(config, {"quick_gelu": unrecorded_activation(preset)})
    if pretrained == DEFAULT_PRETRAINED:
        pretrained = config.pretrained
    # Fetch the weights first: a missing file or an offline download fails before minutes of model building.
    pretrained_state = (load_pretrained_state(config.backbone.open_clip_model, pretrained, quick_gelu=config.quick_gelu)
                        if pretrained else None)
    generator_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    try:
        model = _build(preset, config)
    finally:
        if seed is not None:
            torch.random.set_rng_state(generator_state)
    if pretrained_state is not None:
        _load_towers(model, config, pretrained_state, pretrained)
    else:
        logger.info("model '%s' built with random CLIP towers (pretrained=None)", preset)
    model.config = config
    return model


def unrecorded_activation(preset: str) -> bool:
    """`quick_gelu` for a config saved before the activation was recorded: the preset's own value.

    Such configs were built with exact GELU, but every real weight of the CLIP presets is QuickGELU (OpenAI CLIP,
    converted official checkpoints), so those load as QuickGELU, with a one-line log. Presets trained from
    scratch (the default model, tiny presets) keep exact GELU, as they were trained; unknown names too.
    """
    quick_gelu = bool(PRESETS[preset].quick_gelu) if preset in PRESETS else False
    if quick_gelu:
        logger.warning("this '%s' config predates the recorded tower activation: building its CLIP towers with "
                       "QuickGELU, the activation of every real weight of this preset", preset)
    return quick_gelu


def _build(name: str, config: TqdmConfig) -> TqdmSegmentor:
    class_table = class_table_of(config)
    bb, tx = config.backbone, config.text
    clip = build_open_clip(model_name=bb.open_clip_model, vision_cfg=bb.vision_cfg, text_cfg=tx.text_cfg,
                           embed_dim=bb.embed_dim, image_size=bb.image_size, quick_gelu=config.quick_gelu)
    if tx.open_clip_model != bb.open_clip_model:
        raise ValueError("visual and text towers must come from the same open_clip model")
    backbone = _build_backbone(config, clip.visual)
    text_tower = clip.text if hasattr(clip, "text") else clip
    text_encoder = PromptedTextEncoder(text_tower=text_tower, class_names=class_table.names,
                                       num_context_tokens=tx.num_context_tokens, name_length=tx.name_length,
                                       anchor_template=tx.anchor_template)
    embed_dim = text_encoder.output_dim
    if embed_dim != backbone.embed_dim:
        raise ValueError(f"text embeddings ({embed_dim}) and image embeddings ({backbone.embed_dim}) differ")
    cd = config.context_decoder
    context_decoder = (ContextDecoder(embed_dim=embed_dim, width=cd.width, heads=cd.heads, layers=cd.layers,
                                      dropout=cd.dropout, gamma_init=cd.gamma_init) if cd.enabled else None)
    pd = config.pixel_decoder
    pixel_decoder = PixelDecoder(in_channels=list(backbone.out_channels), text_dim=embed_dim,
                                 num_classes=class_table.num_classes, hidden_dim=pd.hidden_dim,
                                 encoder_layers=pd.encoder_layers, heads=pd.heads, points=pd.points,
                                 ffn_dim=pd.ffn_dim, final_norm=pd.final_norm, text_attention=pd.text_attention)
    td = config.decoder
    if td.hidden_dim != pd.hidden_dim:
        raise ValueError(f"decoder hidden_dim {td.hidden_dim} must equal pixel decoder hidden_dim {pd.hidden_dim}")
    transformer_decoder = TransformerDecoder(text_dim=embed_dim, num_classes=class_table.num_classes,
                                             hidden_dim=td.hidden_dim, layers=td.layers, heads=td.heads,
                                             ffn_dim=td.ffn_dim, textual_queries=td.textual_queries)
    return TqdmSegmentor(backbone=backbone, text_encoder=text_encoder, context_decoder=context_decoder,
                         pixel_decoder=pixel_decoder, transformer_decoder=transformer_decoder,
                         class_table=class_table, preset=name)


def _build_backbone(config: TqdmConfig, visual: nn.Module) -> nn.Module:
    bb = config.backbone
    if bb.kind == "vit":
        return ClipViTBackbone(visual=visual, out_indices=bb.out_indices, drop_path_rate=bb.drop_path_rate,
                               double_class_embedding=bb.double_class_embedding)
    if bb.kind == "eva":
        return EvaViTBackbone(visual=visual, out_indices=bb.out_indices)
    if bb.kind == "resnet":
        return ClipResNetBackbone(visual=visual)
    raise ValueError(f"unknown backbone kind '{bb.kind}'; expected 'vit', 'eva' or 'resnet'")


def _load_towers(model: TqdmSegmentor, config: TqdmConfig, state: dict[str, torch.Tensor], pretrained: str) -> None:
    """Load pretrained CLIP weights into the visual tower (positional grid resized) and the frozen text tower."""
    visual_state = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    model.backbone.visual.load_state_dict(model.backbone.adapt_pretrained_state(visual_state), strict=True)
    text = model.text_encoder
    prefix = "text." if any(k.startswith("text.") for k in state) else ""
    text_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and not k.startswith("visual.")}
    text_state["positional_embedding"] = text_state["positional_embedding"][: text.sequence_length]
    wanted = {k for k in text.state_dict() if k != "context_tokens"}
    missing = sorted(wanted - set(text_state))
    if missing:
        raise RuntimeError(f"pretrained weights {pretrained} lack text-tower keys {missing[:8]}")
    text.load_state_dict({k: text_state[k] for k in wanted} | {"context_tokens": text.context_tokens}, strict=True)
    logger.info("loaded pretrained CLIP towers %s/%s", config.backbone.open_clip_model, pretrained)
