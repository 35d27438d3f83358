"""The one door from "a model and how to run it" to a ready Predictor.

`load_predictor` takes what every front end can name (a checkpoint file, "default" for the model shipped in the
package, or no checkpoint and a preset to build untrained) and an `InferenceOptions`. It checks the preset
against the checkpoint before any module is built, and resolves the input scale the checkpoint recommends.
"""
from __future__ import annotations

import os

from tqdm_core.checkpoint import Checkpoint, load_checkpoint
from tqdm_core.default_model import DEFAULT
from tqdm_core.inference.options import InferenceOptions
from tqdm_core.inference.predictor import Predictor


def load_predictor(checkpoint: str | os.PathLike | None = DEFAULT, *, preset: str | None = None,
                   pretrained: str | None = None, options: InferenceOptions = InferenceOptions()) -> Predictor:
    """Build the Predictor of a checkpoint, the default model, or an untrained preset.

    Args:
        checkpoint: a file written by `tqdm_core.save_checkpoint`; "default": the model shipped in the package;
            None: no checkpoint, build `preset` with untrained heads (to try the pipeline only).
        preset: with a checkpoint, the preset it must hold (None: any); without one, the preset to build.
        pretrained: without a checkpoint, the CLIP tower weights of the built preset (`create_model`'s
            `pretrained`: "default" for the preset's tag, another open_clip tag, a file; None: random towers).
            Unused with a checkpoint, which holds every weight.
        options: how to run the model; `options.scale` None takes the checkpoint's recommended input scale.

    Raises:
        FileNotFoundError: no such checkpoint file.
        tqdm_core.CheckpointError: a corrupt checkpoint, one of another preset than `preset`, or weights that do
            not fit.
        ValueError: no checkpoint and no preset, an unknown preset, or options the model or machine cannot run
            (a window that is not a multiple of the model's size divisor, CUDA requested but absent).
    """
    if checkpoint is None:
        if preset is None:
            raise ValueError("no checkpoint and no preset: name a checkpoint file, 'default' for the shipped "
                             "model, or a preset to build with untrained heads")
        from tqdm_core.builder import create_model

        return Predictor(create_model(preset, pretrained=pretrained),
                         **options.predictor_arguments(recommended_scale=None))
    return predictor_for(load_checkpoint(checkpoint, preset=preset), options)


def predictor_for(checkpoint: Checkpoint, options: InferenceOptions) -> Predictor:
    """The Predictor running an already loaded checkpoint's model with `options` (scale None: its recommended)."""
    return Predictor(checkpoint.model,
                     **options.predictor_arguments(recommended_scale=checkpoint.metadata.inference_scale))
