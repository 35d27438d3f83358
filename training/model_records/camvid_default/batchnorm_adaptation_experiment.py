"""Test-time BatchNorm adaptation (AdaBN) on a held-out CamVid recording (session-12 record, not adopted).

Does re-estimating the BatchNorm statistics on unlabeled frames of the new street help a fold model? The held-out
recording is split in time order; the statistics are re-estimated on one half (SWA's `update_bn`, batches of 4 full
frames cut to 352x480, a multiple of the size divisor) and the other half is scored, both ways, against the
unadapted model on the same frames. `--control` re-estimates on 64 full frames of the fold's own training
recordings instead: a gain there would come from crop-versus-frame statistics, not from the new street.

    python training/model_records/camvid_default/batchnorm_adaptation_experiment.py \
        runs/sched5000_holdout_0001TP/model_final.pt runs/sched5000_holdout_0006R0/model_final.pt
"""
import argparse
import copy

import numpy as np
import torch
from torch.optim.swa_utils import update_bn

from tqdm_core import Predictor, load_checkpoint
from tqdm_core.data import SegmentationDataset, build_dataset
from tqdm_core.evaluation import SemSegEvaluator
from tqdm_core.image_normalization import normalize_images

CAMVID = "../shared/data/camvid"
SEQUENCES = ("0001TP", "0006R0")


def miou(model: torch.nn.Module, frames: SegmentationDataset, indices: np.ndarray) -> float:
    """mIoU in % of `model` on the frames `indices` (whole image, fp32, scale 1.0, as the model card)."""
    predictor = Predictor(model, precision="fp32", mode="whole", scale=1.0)
    evaluator = SemSegEvaluator(frames.class_table.num_classes, class_names=frames.class_table.names)
    for index in indices:
        sample = frames.load_sample(int(index))
        evaluator.process(predictor.predict(sample["image"]).labels, sample["label"])
    return 100 * evaluator.evaluate()["miou"]


def adapted(model: torch.nn.Module, frames: SegmentationDataset, indices: np.ndarray) -> torch.nn.Module:
    """A copy of `model` whose BatchNorm statistics are the cumulative average over the frames `indices`."""
    batches = []
    for start in range(0, len(indices), 4):
        images = [frames.load_sample(int(i))["image"][4:356] for i in indices[start:start + 4]]  # 360 -> 352 rows
        batches.append(normalize_images(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()))
    copied = copy.deepcopy(model)
    with torch.no_grad():
        update_bn(batches, copied)
    return copied.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="fold models; the held-out recording is read from the path")
    parser.add_argument("--control", action="store_true", help="re-estimate on the fold's training frames instead")
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    for path in arguments.checkpoints:
        sequence = next(s for s in SEQUENCES if s in path)
        model = load_checkpoint(path).model.eval()
        frames = build_dataset("camvid", CAMVID, "trainval", sequences=[sequence])
        order = np.argsort([sample.name for sample in frames.samples])  # time order
        halves = (order[:len(order) // 2], order[len(order) // 2:])
        results = []
        for adapt_on, score_on in (halves, halves[::-1]):
            if arguments.control:
                source = build_dataset("camvid", CAMVID, "trainval", exclude_sequences=[sequence])
                model_after = adapted(model, source, np.random.default_rng(0).permutation(len(source))[:64])
            else:
                model_after = adapted(model, frames, adapt_on)
            results.append((miou(model, frames, score_on), miou(model_after, frames, score_on)))
        print(path, " | ".join(f"{before:.1f} -> {after:.1f} ({after - before:+.1f})" for before, after in results),
              f"mean gain {np.mean([after - before for before, after in results]):+.2f}", flush=True)


if __name__ == "__main__":
    main()
