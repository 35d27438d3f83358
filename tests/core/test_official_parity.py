"""The official tqdm model as a permanent test: tests/data/parity_fixture (its README says how it was made).

The fixture holds a tiny tqdm_CLIP built and run by the official code itself: the checkpoint it saved
(`official_tiny.pth`), the inputs and every official output and intermediate (`outputs.pt`). The checkpoint is
converted with `training.convert_official` into the `tqdm-clip-vit-tiny-official` preset; then the whole, rectangle
and slide images go through the model and the Predictor, the training image through the model, the teacher the
converted checkpoint carries (`training.trainer.checkpoint_teacher`) and the training loss (with the official
mask-loss points injected), and every item of `outputs.pt` must match:

- tensors within 1e-5 absolute (their values are at most about 5);
- losses within max(1e-5, 1e-6 |value|) (the total is about 87);
- `seg_logit` (the official `whole_inference` / `slide_inference` output: the scores S, the softmax input) is
  compared with `Predictor.scores` as it is; `Predictor.softmax_probabilities` with its softmax, the official
  `inference` output (a test of its own);
- `train.point_coords.*` are inputs (injected into the loss), not outputs.

One CPU thread: the ops are tiny, and two threads on a loaded 2-core machine are slower.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tqdm_core import Checkpoint, Predictor, load_checkpoint
from tqdm_core.inference.sliding_window import window_starts
from tqdm_core.losses import LossConfig, TqdmLoss, pixel_text_scores
from tqdm_core.modeling.semantic_inference import semantic_scores
from training import convert_official
from training.trainer import checkpoint_teacher

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "parity_fixture"
PRESET = "tqdm-clip-vit-tiny-official"
WINDOW, STRIDE = 128, 85  # the fixture config's slide test_cfg
NUM_POINTS = 784  # the fixture config's mask-loss points per mask
TEMPERATURE = 0.07
TENSOR_TOLERANCE = 1e-5
# Official log_vars name -> ours (TqdmLoss); "decode.X" is "X" and "decode.dI.X" is "dI.X".
OFFICIAL_LOSS_NAMES = {"reg.textual.loss": "loss_reg_language", "reg.visual.loss": "loss_reg_vision",
                       "scr_map.loss_seg": "loss_reg_vision_language", "loss": "total"}
INJECTED = "train.point_coords."  # inputs of the loss, not outputs
PREDICTOR_RUNS = (("whole", "whole"), ("rect", "whole"), ("slide", "slide"))  # fixture input name, Predictor mode


def loss_tolerance(value: float) -> float:
    return max(1e-5, 1e-6 * abs(value))


def run_fixture(model: nn.Module, teacher: nn.Module, inputs: dict,
                point_coords: list[torch.Tensor]) -> dict[str, torch.Tensor | float]:
    """Everything outputs.pt holds, computed by tqdm_core from the same inputs, under the fixture's keys."""
    ours: dict[str, torch.Tensor | float] = {}
    with torch.no_grad():
        for name in ("whole", "rect", "train"):
            ours.update({f"{name}.{key}": value for key, value in model_items(model, inputs[f"{name}.img"]).items()})
        for name, mode in PREDICTOR_RUNS:
            ours[f"{name}.seg_logit"] = fixture_predictor(model, mode).scores(fixture_image(inputs, name))
        slide = inputs["slide.img"]
        windows = [(y, y + WINDOW, x, x + WINDOW) for y in window_starts(slide.shape[2], WINDOW, STRIDE)
                   for x in window_starts(slide.shape[3], WINDOW, STRIDE)]
        ours["slide.windows_y1y2x1x2"] = torch.tensor(windows)
        crops = torch.cat([slide[..., y1:y2, x1:x2] for y1, y2, x1, x2 in windows])
        outputs = model(crops)
        ours["slide.seg_mask_per_window"] = semantic_scores(outputs["pred_logits"], outputs["pred_masks"])
        ours["texts_token_ids"] = model.text_encoder.class_token_ids
        anchors = model.text_encoder.anchor_embeddings()
        ours["reg_T0_normalized_anchors"] = anchors
        teacher_embedding = teacher(inputs["train.img"]).image_embedding
        ours["train.teacher_global_embedding"] = teacher_embedding[:, None]  # (B, D) -> (B, 1, D)
        labels = inputs["train.gt_semantic_seg"][:, 0]  # (B, 1, H, W) -> (B, H, W)
        outputs = model(inputs["train.img"])
        criterion = TqdmLoss.from_config(LossConfig(num_points=NUM_POINTS))
        losses = criterion(outputs, labels, anchor_embeddings=anchors, teacher_image_embedding=teacher_embedding,
                           point_coords=point_coords)
        ours.update({f"losses.{name}": float(value) for name, value in losses.items()})
        ours["losses.scr_map.acc_seg"] = score_map_accuracy(ours["train.score_map"], labels)
    return ours


def fixture_predictor(model: nn.Module, mode: str) -> Predictor:
    return Predictor(model, precision="fp32", mode=mode, window=WINDOW, stride=STRIDE)


def fixture_image(inputs: dict, name: str) -> np.ndarray:
    """The fixture's uint8 RGB input `name` as a Predictor batch: (1, 3, H, W) -> (1, H, W, 3)."""
    return inputs[f"{name}.img_uint8_rgb"].permute(0, 2, 3, 1).numpy()


def model_items(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Predictions of every decoder layer, the embeddings and the intermediates the fixture records.

    Intermediates are read with hooks: the visual token stream as it enters `ln_pre`, each block's output as it
    enters the next block's `ln_1` (the last one: `ln_post`), and the outputs of the backbone, the text encoder and
    the pixel decoder.
    """
    items: dict[str, torch.Tensor] = {}
    visual = model.backbone.visual
    blocks = visual.transformer.resblocks

    def keep_input(name: str) -> Callable:
        return lambda module, args: items.__setitem__(name, args[0])

    def keep_output(unpack: Callable) -> Callable:
        return lambda module, args, output: items.update(unpack(output))

    hooks = [visual.ln_pre.register_forward_pre_hook(keep_input("backbone.ln_pre_input"))]
    hooks += [(blocks[i + 1].ln_1 if i + 1 < len(blocks) else visual.ln_post).register_forward_pre_hook(
        keep_input(f"backbone.block{i}")) for i in range(len(blocks))]
    hooks.append(model.backbone.register_forward_hook(keep_output(lambda out: {
        **{f"backbone.s{stride}": feature for stride, feature in zip((4, 8, 16, 32), out.features)},
        "backbone.global_embedding": out.image_embedding[:, None],  # (B, D) -> (B, 1, D)
        "backbone.dense_embedding": out.dense_embeddings})))
    hooks.append(model.text_encoder.register_forward_hook(keep_output(lambda out: {"text_encoder_out": out[None]})))
    hooks.append(model.pixel_decoder.register_forward_hook(keep_output(lambda out: {
        "pixel_decoder.mask_feature": out[0],
        **{f"pixel_decoder.multi_scale.{level}": memory for level, memory in enumerate(out[1])}})))
    try:
        outputs = model(images)
    finally:
        for hook in hooks:
            hook.remove()
    for index, prediction in enumerate([*outputs["aux_outputs"], outputs]):
        items[f"cls_pred.{index}"] = prediction["pred_logits"]
        items[f"mask_pred.{index}"] = prediction["pred_masks"]
    items["seg_mask"] = semantic_scores(outputs["pred_logits"], outputs["pred_masks"])
    items["text_embeddings"] = outputs["text_embeddings"]
    items["global_embedding"] = outputs["image_embedding"][:, None]  # (B, D) -> (B, 1, D)
    items["dense_embedding"] = outputs["dense_embeddings"]
    items["score_map"] = pixel_text_scores(outputs["dense_embeddings"], outputs["text_embeddings"])
    return items


def score_map_accuracy(score_map: torch.Tensor, labels: torch.Tensor) -> float:
    """mmseg's `acc_seg` of the score-map logits: percent of pixels whose argmax class is the label.

    The official decode head calls mmseg's `accuracy` without `ignore_index`, so ignored pixels count in the
    denominator (and are never right).
    """
    logits = F.interpolate(score_map / TEMPERATURE, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return float((logits.argmax(dim=1) == labels).float().mean() * 100.0)


def expected_items(outputs: dict) -> dict[str, torch.Tensor | float]:
    """outputs.pt flattened to the keys of `run_fixture`: losses as `losses.<our name>`, tensors as they are."""
    expected: dict[str, torch.Tensor | float] = {}
    for key, value in outputs.items():
        if isinstance(value, torch.Tensor) and not key.startswith(INJECTED):
            expected[key] = value
    for name, value in outputs["losses"].items():
        ours = OFFICIAL_LOSS_NAMES.get(name, name.removeprefix("decode."))
        expected[f"losses.{ours}"] = value
    expected["losses.total_loss"] = outputs["total_loss"]
    return expected


def differences(ours: dict, expected: dict) -> dict[str, tuple[float, float]]:
    """Per item: (largest absolute difference, tolerance). A missing item or a shape change is an infinite one."""
    result = {}
    for key, value in expected.items():
        mine = ours.get("losses.total" if key == "losses.total_loss" else key)
        if isinstance(value, torch.Tensor):
            if not isinstance(mine, torch.Tensor) or mine.shape != value.shape:
                result[key] = (float("inf"), TENSOR_TOLERANCE)
            else:
                result[key] = (float((mine.double() - value.double()).abs().max()), TENSOR_TOLERANCE)
        else:
            result[key] = (float("inf") if mine is None else abs(mine - value), loss_tolerance(value))
    return result


@pytest.fixture(scope="module")
def fixture_files() -> tuple[dict, dict]:
    inputs = torch.load(FIXTURE / "inputs.pt", weights_only=True)
    outputs = torch.load(FIXTURE / "outputs.pt", weights_only=True)
    return inputs, outputs


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def converted_checkpoint(tmp_path_factory, one_thread) -> Checkpoint:
    """official_tiny.pth through the command-line converter, loaded back like any checkpoint."""
    output = tmp_path_factory.mktemp("parity") / "official_tiny.pt"
    assert convert_official.main([str(FIXTURE / "official_tiny.pth"), str(output), "--preset", PRESET,
                                  "--keep-teacher"]) == 0
    return load_checkpoint(output, preset=PRESET)


@pytest.fixture(scope="module")
def converted_model(converted_checkpoint) -> nn.Module:
    return converted_checkpoint.model


def test_converted_official_model_reproduces_every_official_output(converted_checkpoint, fixture_files):
    inputs, outputs = fixture_files
    points = [outputs[f"{INJECTED}{index}"] for index in range(outputs["info"]["n_prediction_layers"])]
    expected = expected_items(outputs)
    assert len(expected) == 56 + len(outputs["losses"]) + 1  # 56 tensors, every loss entry and the total
    teacher = checkpoint_teacher(converted_checkpoint)
    diffs = differences(run_fixture(converted_checkpoint.model, teacher, inputs, points), expected)
    failing = {key: diff for key, diff in diffs.items() if not diff[0] <= diff[1]}
    worst_first = sorted(failing.items(), key=lambda item: -item[1][0])
    assert not failing, f"{len(failing)} of {len(diffs)} items off the official outputs (|diff| > tolerance): " + (
        ", ".join(f"{key} {diff:.2e} > {tolerance:.0e}" for key, (diff, tolerance) in worst_first))


def test_softmax_probabilities_are_the_official_inference_output(converted_model, fixture_files):
    """The official `inference` returns softmax over classes of the `whole_inference` / `slide_inference` output
    (the fixture's `seg_logit`), and `simple_test` takes its argmax: `Predictor.softmax_probabilities` is that
    tensor, compared as it is (no renormalisation), and its argmax is the official prediction."""
    inputs, outputs = fixture_files
    with torch.no_grad():
        for name, mode in PREDICTOR_RUNS:
            official = F.softmax(outputs[f"{name}.seg_logit"], dim=1)
            ours = fixture_predictor(converted_model, mode).softmax_probabilities(fixture_image(inputs, name))
            assert ours.shape == official.shape
            assert float((ours - official).abs().max()) <= TENSOR_TOLERANCE, name
            assert torch.equal(ours.argmax(dim=1), official.argmax(dim=1)), name


def test_converted_official_model_records_what_it_was_built_with(converted_model):
    config = converted_model.config
    assert config.quick_gelu is True and config.backbone.double_class_embedding is True
    assert config.backbone.out_indices == (1, 2, 3, 5) and config.pixel_decoder.ffn_dim == 128
    activations = {type(block.mlp.gelu).__name__ for block in converted_model.backbone.visual.transformer.resblocks}
    activations |= {type(block.mlp.gelu).__name__ for block in converted_model.text_encoder.transformer.resblocks}
    assert activations == {"QuickGELU"}
