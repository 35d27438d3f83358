"""The official tqdm checkpoints (mmsegmentation format) in tqdm_core's names: the key map (METHOD.md 10, 12).

The official code (github.com/ByeongHyunPak/tqdm) saves the whole `tqdm_CLIP` / `tqdm_EVA_CLIP` segmentor through
mmcv: `{"meta": ..., "state_dict": ..., "optimizer": ...}`. Its state dict holds

- `backbone.*`: the DenseCLIP-style CLIP ViT (open_clip `VisionTransformer` names) or the EVA-CLIP ViT (EVA-CLIP
  names, renamed to timm's `Eva` by timm's own EVA-CLIP filter), with the pyramid as `fpn1`..`fpn4`;
- `text_encoder.*` (open_clip text-tower names), `context_decoder.*` (our names), `contexts` (1, M, C) and `gamma`;
- `decode_head.*`: the mmdet-style Mask2Former head, whose transformer layers are mmcv `BaseTransformerLayer`s
  (`attentions.N`, `norms.N`, `ffns.0.layers.*`) and whose convolutions are mmcv `ConvModule`s (`.conv`, `.gn`);
- `reg_E0.*`: the frozen teacher of the vision regularizer, a copy of the backbone made from the pretrained
  weights when the official model was built (METHOD.md 2.3, 6.2). It has the backbone's layout and converts by the
  backbone's rules into `OfficialConversion.teacher_state_dict`; training.convert_official stores it in the
  checkpoint's metadata under `TEACHER_METADATA` (training.trainer.checkpoint_teacher builds the teacher from it);
- what no model uses: in EVA files the RoPE tables (one per block, also in the teacher) and the text tower's
  non-persistent causal mask, which mmcv saves anyway.

Key rules depend only on the backbone kind ("vit": tqdm_CLIP, "eva": tqdm_EVA_CLIP), so a checkpoint converts into
any preset of its kind whose sizes match (the paper presets, or `tqdm-clip-vit-tiny-official` for the tiny parity
fixture). Every official tensor is mapped exactly once or dropped for a stated reason; anything else is an error.
No tensor changes layout except `contexts`, whose leading batch axis of 1 is removed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from timm.models.eva import checkpoint_filter_fn as timm_eva_checkpoint_filter
from torch import nn

from tqdm_core.checkpoint import CHECKPOINT_FORMAT, CheckpointError
from tqdm_core.presets import get_preset, list_presets

# Backbone kind -> the official segmentor class saved with it.
OFFICIAL_MODELS: dict[str, str] = {
    "vit": "tqdm_CLIP (CLIP ViT)",
    "eva": "tqdm_EVA_CLIP (EVA02-CLIP ViT)",
}
# Backbone kind -> the preset of the released checkpoints (the converter's choice when none is given).
RELEASED_PRESETS: dict[str, str] = {"vit": "tqdm-clip-vit-b16", "eva": "tqdm-eva02-l14"}

# Every official quirk ON (METHOD.md 11), whatever the preset defaults become: converted weights reproduce the
# official outputs only under the official computation. Sizes (widths, depths, FFN widths) come from the preset.
# The released models predict the 19 Cityscapes classes.
_OFFICIAL_HEADS: dict[str, Any] = {
    "class_table": "cityscapes19",
    "classes": None,
    "context_decoder": {"enabled": True, "gamma_init": "trunc_normal"},
    "pixel_decoder": {"final_norm": True, "text_attention": True},
    "decoder": {"textual_queries": True},
}
OFFICIAL_CONFIG_OVERRIDES: dict[str, dict[str, Any]] = {
    # DenseCLIP's ViT wrapper adds the class embedding twice to the CLS token, and the official CLIP residual
    # block hard-codes QuickGELU in both towers, whatever the weights. The EVA wrapper adds the class embedding
    # once; its text tower uses exact GELU.
    "vit": {"backbone": {"double_class_embedding": True}, "quick_gelu": True, **_OFFICIAL_HEADS},
    "eva": {"backbone": {"double_class_embedding": False}, "quick_gelu": False, **_OFFICIAL_HEADS},
}


def official_presets() -> list[str]:
    """Presets an official checkpoint can be converted into: those whose backbone kind has an official model."""
    return [name for name in list_presets() if get_preset(name).backbone.kind in OFFICIAL_MODELS]


# Prefix of the official frozen teacher (a copy of the backbone, same layout).
TEACHER_PREFIX = "reg_E0."
# Metadata entry of a converted checkpoint holding the teacher's weights in the keys of `model.backbone`.
TEACHER_METADATA = "teacher_state_dict"

# Keys of tensors no model needs, with the reason they are dropped.
_DROPPED: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"(backbone|reg_E0)\.(blocks\.\d+\.attn\.)?rope\.freqs_(cos|sin)"),
     "EVA RoPE tables (rebuilt for the patch grid when the model is built)"),
    (re.compile(r"text_encoder\.attn_mask"), "text causal-mask buffer (rebuilt when the model is built)"),
)


def _without_batch_axis(tensor: torch.Tensor) -> torch.Tensor:
    """(1, M, C) -> (M, C): the official prompt keeps a batch axis of 1; other shapes pass to the shape check."""
    return tensor[0] if tensor.dim() == 3 and tensor.shape[0] == 1 else tensor


# Official top-level tensors: our key and the layout change they need (None: none).
_EXACT: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor] | None]] = {
    "contexts": ("text_encoder.context_tokens", _without_batch_axis),
    "gamma": ("context_decoder.gamma", None),
}

# mmcv BaseTransformerLayer children -> ours. Layers are built in `operation_order`, so `attentions.0` is the
# first attention of the order: pixel encoder (self_attn, norm, cross_attn, norm, ffn, norm), masked decoder
# (cross_attn, norm, self_attn, norm, ffn, norm). mmcv's MultiheadAttention wraps nn.MultiheadAttention as `.attn`;
# mmcv's FFN is Sequential(Sequential(Linear, ReLU, Dropout), Linear, Dropout), ours Sequential(Linear, ReLU, Linear).
_FFN_AND_NORMS = (("norms.0.", "norm1."), ("norms.1.", "norm2."), ("norms.2.", "norm3."),
                  ("ffns.0.layers.0.0.", "ffn.0."), ("ffns.0.layers.1.", "ffn.2."))
_PIXEL_ENCODER_LAYER = (("attentions.0.", "self_attn."), ("attentions.1.attn.", "text_attn."), *_FFN_AND_NORMS)
_MASKED_DECODER_LAYER = (("attentions.0.attn.", "cross_attn."), ("attentions.1.attn.", "self_attn."),
                         *_FFN_AND_NORMS)

_PIXEL = "decode_head.pixel_decoder."
_DECODER = "decode_head.transformer_decoder."
# Official module prefix -> ours; "{i}" is a layer index. The longest matching prefix wins.
_COMMON_PREFIXES: tuple[tuple[str, str], ...] = (
    ("text_encoder.", "text_encoder."),
    ("context_decoder.", "context_decoder."),
    ("backbone.fpn1.", "backbone.pyramid.fpn1."),
    ("backbone.fpn2.0.", "backbone.pyramid.fpn2."),  # official fpn2 is a one-layer Sequential
    # mmcv ConvModule(conv, GroupNorm) -> our Sequential(conv, GroupNorm[, ReLU]).
    (_PIXEL + "input_convs.{i}.conv.", "pixel_decoder.input_convs.{i}.0."),
    (_PIXEL + "input_convs.{i}.gn.", "pixel_decoder.input_convs.{i}.1."),
    (_PIXEL + "lateral_convs.0.conv.", "pixel_decoder.lateral_conv.0."),
    (_PIXEL + "lateral_convs.0.gn.", "pixel_decoder.lateral_conv.1."),
    (_PIXEL + "output_convs.0.conv.", "pixel_decoder.output_conv.0."),
    (_PIXEL + "output_convs.0.gn.", "pixel_decoder.output_conv.1."),
    *((_PIXEL + "encoder.layers.{i}." + theirs, "pixel_decoder.encoder.{i}." + ours)
      for theirs, ours in _PIXEL_ENCODER_LAYER),
    (_PIXEL + "encoder.post_norm.", "pixel_decoder.final_norm."),  # DetrTransformerDecoder's extra final LN
    (_PIXEL + "level_encoding.", "pixel_decoder.level_encoding."),
    (_PIXEL + "mask_feature.", "pixel_decoder.mask_feature."),
    (_PIXEL + "text_proj.", "pixel_decoder.text_projection."),
    (_PIXEL + "text_pos_embed.", "pixel_decoder.text_position_embedding."),
    *((_DECODER + "layers.{i}." + theirs, "transformer_decoder.layers.{i}." + ours)
      for theirs, ours in _MASKED_DECODER_LAYER),
    (_DECODER + "post_norm.", "transformer_decoder.post_norm."),
    ("decode_head.text_proj.", "transformer_decoder.query_feat_mlp."),  # textual queries: MLP of the text
    ("decode_head.query_embed.", "transformer_decoder.query_embed."),
    ("decode_head.level_embed.", "transformer_decoder.level_embed."),
    ("decode_head.cls_embed.", "transformer_decoder.class_embed."),
    ("decode_head.mask_embed.", "transformer_decoder.mask_embed."),
)
# The CLIP ViT keeps open_clip's names; EVA backbone keys go through timm's EVA-CLIP filter instead.
_BACKBONE_PREFIXES: dict[str, tuple[tuple[str, str], ...]] = {
    "vit": (("backbone.", "backbone.visual."),),
    "eva": (),
}
_EVA_TRUNK = "backbone.visual.trunk."

# Keys that identify each official segmentor, by backbone kind.
_MARKERS: dict[str, str] = {
    "vit": "backbone.conv1.weight",
    "eva": "backbone.patch_embed.proj.weight",
}
_REQUIRED_PARTS = ("text_encoder.", "context_decoder.", "decode_head.")


@dataclass
class OfficialConversion:
    """An official state dict in our names.

    Attributes:
        state_dict: our key -> tensor (the official tensors themselves, re-keyed; no copies).
        teacher_state_dict: the frozen teacher `reg_E0.*` in the keys of `model.backbone.state_dict()` (re-keyed,
            no copies), or None when the file holds no teacher.
        dropped: reason -> the official keys dropped for it.
    """

    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    teacher_state_dict: dict[str, torch.Tensor] | None = None
    dropped: dict[str, list[str]] = field(default_factory=dict)


def official_state_dict(payload: Any, *, source: str) -> dict[str, torch.Tensor]:
    """The state dict inside an mmcv checkpoint payload ({"meta", "state_dict", ...}) or a bare state dict.

    Raises:
        CheckpointError: the payload is no state dict of tensors, or a tqdm_core checkpoint already.
    """
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        raise CheckpointError(f"'{source}' is already a tqdm_core checkpoint; load it with tqdm_core.load_checkpoint")
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else payload
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        found = sorted(payload)[:6] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"'{source}' holds no state dict of tensors (found {found}); expected an official "
                              f"tqdm checkpoint, an mmcv file with a 'state_dict' entry")
    return dict(state)


def detect_official_kind(state: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> str:
    """The backbone kind ("vit" or "eva") of the official segmentor the state dict belongs to.

    Raises:
        CheckpointError: the keys are not those of an official tqdm segmentor.
    """
    kinds = [kind for kind, marker in _MARKERS.items() if marker in state]
    missing_parts = [part for part in _REQUIRED_PARTS if not any(k.startswith(part) for k in state)]
    if len(kinds) != 1 or missing_parts:
        examples = sorted(state)[:8]
        raise CheckpointError(
            f"'{source}' is not an official tqdm checkpoint: expected the mmsegmentation keys of tqdm_CLIP "
            f"('{_MARKERS['vit']}') or tqdm_EVA_CLIP ('{_MARKERS['eva']}') with "
            f"{list(_REQUIRED_PARTS)} sub-modules; found {len(state)} keys such as {examples}. Download the "
            f"released checkpoints linked in the official README (github.com/ByeongHyunPak/tqdm)")
    return kinds[0]


def convert_official_state_dict(state: Mapping[str, torch.Tensor], model: nn.Module) -> OfficialConversion:
    """Re-key an official state dict for `model` (a preset of the file's backbone kind built with
    OFFICIAL_CONFIG_OVERRIDES of that kind), and its teacher `reg_E0.*`, if any, for `model.backbone`.

    Raises:
        ValueError: the model's backbone kind has no official model.
        CheckpointError: the file holds the other backbone kind, or has unknown keys, lacks keys the model (or,
            when it holds a teacher, the backbone) needs, maps two tensors to one key, or has tensors of other
            shapes. One error lists every problem found.
    """
    preset, kind = model.preset, model.config.backbone.kind
    if kind not in OFFICIAL_MODELS:
        raise ValueError(f"preset '{preset}' has a '{kind}' backbone, for which no official model exists; "
                         f"official checkpoints convert into the presets {official_presets()}")
    detected = detect_official_kind(state)
    if detected != kind:
        raise CheckpointError(f"the checkpoint holds an official {OFFICIAL_MODELS[detected]} model but the target "
                              f"preset '{preset}' has a '{kind}' backbone; convert it for a '{detected}' preset such "
                              f"as '{RELEASED_PRESETS[detected]}'")
    conversion = OfficialConversion()
    kept: dict[str, torch.Tensor] = {}
    teacher: dict[str, torch.Tensor] = {}  # reg_E0.* renamed backbone.*: the backbone's rules then apply
    for key, tensor in state.items():
        reason = next((why for pattern, why in _DROPPED if pattern.fullmatch(key)), None)
        if reason is not None:
            conversion.dropped.setdefault(reason, []).append(key)
        elif key.startswith(TEACHER_PREFIX):
            teacher["backbone." + key[len(TEACHER_PREFIX):]] = tensor
        else:
            kept[key] = tensor
    conversion.state_dict, problems = _rekeyed(kept, kind, model, model.state_dict())
    if teacher:
        backbone_keys = {"backbone." + key: value for key, value in model.backbone.state_dict().items()}
        teacher_state, teacher_problems = _rekeyed(teacher, kind, model, backbone_keys)
        problems += [f"teacher {TEACHER_PREFIX}* (called backbone.* here): {problem}" for problem in teacher_problems]
        conversion.teacher_state_dict = {key[len("backbone."):]: value for key, value in teacher_state.items()}
    if problems:
        raise CheckpointError(f"the official {OFFICIAL_MODELS[kind]} checkpoint does not fit preset '{preset}' "
                              f"(another model size, version or configuration? choose the preset of its size):\n  "
                              + "\n  ".join(problems[:12]))
    return conversion


def _rekeyed(kept: Mapping[str, torch.Tensor], kind: str, model: nn.Module,
             target: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official tensors under the keys of `target` (a state dict of `model` or, prefixed, of its backbone), and
    the problems found: unknown keys, target keys without a tensor, keys claimed twice, shape mismatches."""
    names = _our_names(kept, kind, model)
    rekeyed: dict[str, torch.Tensor] = {}
    problems = []
    unknown = sorted(key for key in kept if names.get(key) not in target)
    if unknown:
        listed = [f"{key} -> {names[key]}" if key in names else key for key in unknown]
        problems.append(f"{len(unknown)} official keys have no place in the model: {_first(listed)}")
    for key in unknown:
        names.pop(key, None)
    claimed: dict[str, list[str]] = {}
    for key, ours in names.items():
        claimed.setdefault(ours, []).append(key)
    twice = {ours: keys for ours, keys in claimed.items() if len(keys) > 1}
    if twice:
        problems.append(f"official keys mapped to the same model key: {_first(sorted(twice.items()))}")
    missing = sorted(set(target) - set(claimed))
    if missing:
        problems.append(f"{len(missing)} model keys have no official tensor: {_first(missing)}")
    for key, ours in names.items():
        transform = _EXACT[key][1] if key in _EXACT else None
        tensor = transform(kept[key]) if transform is not None else kept[key]
        if tuple(tensor.shape) != tuple(target[ours].shape):
            problems.append(f"shape mismatch: official '{key}' {tuple(kept[key].shape)} vs model '{ours}' "
                            f"{tuple(target[ours].shape)}")
        rekeyed[ours] = tensor
    return rekeyed, problems


def _our_names(state: Mapping[str, torch.Tensor], kind: str, model: nn.Module) -> dict[str, str]:
    """official key -> our key, for every key a rule covers (the caller reports the rest)."""
    rules = sorted(_COMMON_PREFIXES + _BACKBONE_PREFIXES[kind], key=lambda rule: -len(rule[0]))
    compiled = [(re.compile(re.escape(theirs).replace(r"\{i\}", r"(?P<i>\d+)")), ours) for theirs, ours in rules]
    names: dict[str, str] = {}
    eva_trunk: dict[str, torch.Tensor] = {}
    for key in state:
        if key in _EXACT:
            names[key] = _EXACT[key][0]
            continue
        for pattern, ours in compiled:
            match = pattern.match(key)
            if match:
                names[key] = ours.replace("{i}", match.groupdict().get("i") or "") + key[match.end():]
                break
        else:
            if kind == "eva" and key.startswith("backbone."):
                eva_trunk[key[len("backbone."):]] = state[key]
    if eva_trunk:
        names.update({f"backbone.{key}": _EVA_TRUNK + name
                      for key, name in _timm_eva_names(eva_trunk, model.backbone.visual.trunk).items()})
    return names


def _timm_eva_names(official: dict[str, torch.Tensor], trunk: nn.Module) -> dict[str, str]:
    """EVA-CLIP visual key -> timm `Eva` key, as timm's own EVA-CLIP checkpoint filter renames them.

    The filter returns the same tensor objects under their new names, so names are matched by identity. A tensor
    the filter had to resample (another patch size or grid) keeps its name and fails our shape check instead:
    official weights are never resampled here.
    """
    renamed = timm_eva_checkpoint_filter(official, trunk)
    by_identity = {id(tensor): name for name, tensor in renamed.items()}
    names = {}
    for key, tensor in official.items():
        name = by_identity.get(id(tensor))
        if name is None and key in renamed:
            name = key
        if name is not None:
            names[key] = name
    return names


def _first(items: list, count: int = 8) -> str:
    shown = ", ".join(str(item) for item in items[:count])
    return f"[{shown}{', ...' if len(items) > count else ''}]"
