"""The training data as one endless stream of samples, each a pure function of its global sample number.

Sample ``k`` of a run is the same whichever process, DataLoader worker or restart asks for it. A data-parallel
run with P processes, batch B and A accumulation micro-steps gives process ``r`` the numbers

    k = ((iteration * A + micro_step) * P + r) * B + j,    j = 0 .. B - 1,

so the processes never share a sample, and the data-sampler state of a checkpoint is just the next iteration:
a resumed run sees exactly the samples an uninterrupted run would have seen.

Two sources give items by number: ``RareClassSamplingDataset`` (rare-class sampling, draws seeded by the number)
and ``ShuffledStream`` (epochs of seeded permutations, each sample augmented with a generator seeded by the number).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Dataset, Sampler

from tqdm_core.data import SegmentationDataset, TrainTransform
from tqdm_core.data.base import Sample


class ShuffledStream(Dataset):
    """Sample ``k`` is item ``permutation_e[k mod N]`` of epoch ``e = k // N``, augmented with a generator seeded by
    (seed, k).

    Args:
        dataset: the source dataset (its own ``transform`` is not used).
        transform: the training augmentation, called as ``transform(sample, rng=generator)``.
        seed: seed of the permutations and the augmentation.
    """

    def __init__(self, dataset: SegmentationDataset, *, transform: TrainTransform, seed: int) -> None:
        if len(dataset) == 0:
            raise ValueError(f"training dataset {dataset!r} is empty")
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self._epoch = -1
        self._permutation = np.arange(0)

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def class_table(self):
        return self.dataset.class_table

    def source_index(self, number: int) -> int:
        """Dataset index of sample ``number`` (>= 0)."""
        if number < 0:
            raise IndexError(f"sample numbers are >= 0, got {number}")
        epoch, position = divmod(number, len(self.dataset))
        if epoch != self._epoch:  # cached: consecutive numbers almost always share an epoch
            self._permutation = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
            self._epoch = epoch
        return int(self._permutation[position])

    def __getitem__(self, number: int) -> Sample:
        raw = self.dataset.load_sample(self.source_index(number))
        return self.transform(raw, rng=np.random.default_rng([self.seed, 1, number]))


class StreamSampler(Sampler[int]):
    """The sample numbers of one process, from ``start_iteration`` to the end of the run (see the module doc).

    Args:
        start_iteration: first iteration to produce (0, or the iteration a run resumes at).
        total_iterations: the run's last iteration + 1.
        batch_size: samples per process and micro-step (B).
        accumulation_steps: micro-steps per iteration (A).
        rank: this process (r).
        world_size: number of processes (P).
    """

    def __init__(self, *, start_iteration: int, total_iterations: int, batch_size: int, accumulation_steps: int,
                 rank: int, world_size: int) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.start_iteration = start_iteration
        self.total_iterations = total_iterations
        self.batch_size = batch_size
        self.accumulation_steps = accumulation_steps
        self.rank = rank
        self.world_size = world_size

    def sample_number(self, iteration: int, micro_step: int, slot: int) -> int:
        """Global number of sample ``slot`` of ``micro_step`` of ``iteration`` on this process."""
        step = iteration * self.accumulation_steps + micro_step
        return (step * self.world_size + self.rank) * self.batch_size + slot

    def __iter__(self) -> Iterator[int]:
        for iteration in range(self.start_iteration, self.total_iterations):
            for micro_step in range(self.accumulation_steps):
                first = self.sample_number(iteration, micro_step, 0)
                yield from range(first, first + self.batch_size)

    def __len__(self) -> int:
        return max(self.total_iterations - self.start_iteration, 0) * self.accumulation_steps * self.batch_size
