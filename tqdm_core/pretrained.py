"""open_clip towers and their pretrained CLIP / EVA-CLIP weights.

Weights are loaded the normal open_clip way: a pretrained tag (downloaded once into the open_clip / Hugging Face
cache) or a local file. When neither can be had the error says what to download and where to put it; a model is
never silently left with random weights.
"""
from __future__ import annotations

import os
from typing import Any

import open_clip
import torch
from torch import nn


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained CLIP/EVA-CLIP weights were requested but cannot be loaded here."""


def build_open_clip(*, model_name: str, vision_cfg: dict[str, Any] | None, text_cfg: dict[str, Any] | None,
                    embed_dim: int, image_size: int, quick_gelu: bool) -> nn.Module:
    """An open_clip CLIP with random weights whose vision tower is sized for `image_size` inputs.

    Args:
        model_name: open_clip model name (e.g. "ViT-B-16"), or "" to build from the inline configs.
        vision_cfg, text_cfg: inline open_clip tower configs for presets that are not in open_clip's registry.
        embed_dim: joint-space width for inline configs.
        image_size: input size the positional embeddings are laid out for.
        quick_gelu: QuickGELU (True) or exact GELU (False) in the residual blocks of both towers; the towers'
            other layers (convolutions of a ResNet, a timm trunk) keep their own activations.

    Raises:
        ValueError: the open_clip model's own config fixes QuickGELU (a "-quickgelu" name) but exact GELU was
            asked for.
    """
    if model_name:
        fixed = bool((open_clip.get_model_config(model_name) or {}).get("quick_gelu", False))
        if fixed and not quick_gelu:
            raise ValueError(f"open_clip model '{model_name}' always uses QuickGELU but quick_gelu=False was asked "
                             f"for; set quick_gelu: true or use the model name without '-quickgelu'")
        return open_clip.create_model(model_name, pretrained=None, force_image_size=image_size,
                                      force_quick_gelu=quick_gelu)
    if vision_cfg is None or text_cfg is None:
        raise ValueError("a preset without an open_clip model name needs inline vision_cfg and text_cfg")
    vision = dict(vision_cfg, image_size=image_size)
    return open_clip.model.CLIP(embed_dim=embed_dim, vision_cfg=vision, text_cfg=dict(text_cfg), quick_gelu=quick_gelu)


def load_pretrained_state(model_name: str, pretrained: str, *, quick_gelu: bool) -> dict[str, torch.Tensor]:
    """The full open_clip state dict (native resolution) for a pretrained tag or a local file.

    Args:
        model_name: open_clip model name (e.g. "ViT-B-16").
        pretrained: an open_clip pretrained tag of that model, or the path of an open_clip checkpoint.
        quick_gelu: the activation the towers are built with (the state dict does not depend on it; open_clip
            warns when it differs from the tag's).

    Raises:
        FileNotFoundError: `pretrained` looks like a path and does not exist.
        PretrainedWeightsUnavailable: the tag is unknown, or the download failed (e.g. no internet).
    """
    if not model_name:
        raise PretrainedWeightsUnavailable("this preset has no open_clip model: it has no pretrained weights")
    looks_like_path = os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
    if looks_like_path and not os.path.isfile(pretrained):
        raise FileNotFoundError(f"pretrained weights file '{pretrained}' does not exist; pass an open_clip "
                                f"checkpoint for {model_name} or one of the tags {_tags(model_name)}")
    if not looks_like_path and pretrained not in _tags(model_name):
        raise PretrainedWeightsUnavailable(
            f"'{pretrained}' is not an open_clip pretrained tag of {model_name}; tags: {_tags(model_name)}")
    try:
        model = open_clip.create_model(model_name, pretrained=pretrained, force_quick_gelu=quick_gelu)
    except Exception as error:  # download and hub errors come in many types; all mean the same to the user
        raise PretrainedWeightsUnavailable(_download_help(model_name, pretrained, error)) from error
    return model.state_dict()


def _tags(model_name: str) -> list[str]:
    return list(open_clip.list_pretrained_tags_by_model(model_name))


def _download_help(model_name: str, tag: str, error: Exception) -> str:
    cfg = open_clip.get_pretrained_cfg(model_name, tag) or {}
    source = cfg.get("hf_hub") or cfg.get("url") or "the open_clip model hub"
    return (f"could not load open_clip weights {model_name}/{tag} ({type(error).__name__}: {error}). "
            f"On a machine with internet, run python -c \"import open_clip; open_clip.create_model('{model_name}', "
            f"pretrained='{tag}')\" to fill the cache (~/.cache/huggingface), or download {source} and pass its "
            f"local path as pretrained='/path/to/open_clip_model.safetensors'. For a trained tqdm model, load its "
            f"checkpoint instead (tqdm_core.load_checkpoint): no CLIP weights are needed then.")
