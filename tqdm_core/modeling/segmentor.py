"""The tqdm segmenter: visual encoder, textual queries, context decoder, pixel decoder, transformer decoder
(METHOD.md section 1)."""
from __future__ import annotations

import torch
from torch import nn

from tqdm_core.classes import ClassTable
from tqdm_core.modeling.context_decoder import ContextDecoder
from tqdm_core.modeling.pixel_decoder import PixelDecoder
from tqdm_core.modeling.prompted_text_encoder import PromptedTextEncoder
from tqdm_core.modeling.transformer_decoder import TransformerDecoder


class TqdmSegmentor(nn.Module):
    """Sub-modules are built by `tqdm_core.create_model` and injected here.

    Args (keyword-only):
        backbone: visual encoder returning a BackboneOutput (features, g, V).
        text_encoder: prompted frozen text tower giving (K, D) class embeddings.
        context_decoder: image-conditioned text refinement, or None (ablation).
        pixel_decoder: text-aware deformable pixel decoder.
        transformer_decoder: masked-attention decoder with textual queries.
        class_table: the classes the model predicts, with their colours.
        preset: name of the preset the model was built from (recorded in checkpoints).
    """

    def __init__(self, *, backbone: nn.Module, text_encoder: PromptedTextEncoder,
                 context_decoder: ContextDecoder | None, pixel_decoder: PixelDecoder,
                 transformer_decoder: TransformerDecoder, class_table: ClassTable, preset: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.text_encoder = text_encoder
        self.context_decoder = context_decoder
        self.pixel_decoder = pixel_decoder
        self.transformer_decoder = transformer_decoder
        self.class_table = class_table
        self.preset = preset

    @property
    def num_classes(self) -> int:
        return self.class_table.num_classes

    @property
    def size_divisor(self) -> int:
        """Input height and width must be multiples of this (the Predictor pads to it)."""
        return self.backbone.size_divisor

    def forward(self, images: torch.Tensor, *, auxiliary: bool = True) -> dict:
        """
        Args:
            images: (B, 3, H, W) CLIP-normalised RGB, H and W multiples of `size_divisor`.
            auxiliary: also compute the earlier predictions ("aux_outputs", supervised in training); False
                (inference) leaves "aux_outputs" empty and skips their full-resolution masks.

        Returns:
            dict with "pred_logits" (B, K, K + 1), "pred_masks" (B, K, H/4, W/4), "aux_outputs" (the earlier
            predictions, first = from the initial text queries), "text_embeddings" (B, K, D),
            "dense_embeddings" (B, D, h, w) and "image_embedding" (B, D).
        """
        divisor = self.size_divisor
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] % divisor or images.shape[-2] % divisor:
            raise ValueError(f"expected images of shape (B, 3, H, W) with H and W multiples of {divisor}, "
                             f"got {tuple(images.shape)}; the Predictor pads inputs for you")
        visual = self.backbone(images)
        batch = images.shape[0]
        text = self.text_encoder().to(visual.image_embedding.dtype)
        text = text[None].expand(batch, -1, -1)  # (K, D) -> (B, K, D): the same prompts for every image
        if self.context_decoder is not None:
            dense_tokens = visual.dense_embeddings.flatten(2).transpose(1, 2)  # (B, D, h, w) -> (B, hw, D)
            visual_context = torch.cat([visual.image_embedding[:, None], dense_tokens], dim=1)  # (B, 1 + hw, D)
            text = self.context_decoder(text, visual_context)
        mask_feature, memories = self.pixel_decoder(visual.features, text)
        predictions = self.transformer_decoder(memories, mask_feature, text, auxiliary=auxiliary)
        final = predictions[-1]
        return {
            "pred_logits": final["pred_logits"],
            "pred_masks": final["pred_masks"],
            "aux_outputs": predictions[:-1],
            "text_embeddings": text,
            "dense_embeddings": visual.dense_embeddings,
            "image_embedding": visual.image_embedding,
        }
