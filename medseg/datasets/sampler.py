"""An endless, seeded sampler whose n-th sample is the same however training is interrupted."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


def sample_seed(seed: int, sample_number: int) -> int:
    """The augmentation seed of the `sample_number`-th training sample of a run seeded `seed`."""
    return int(np.random.SeedSequence([seed, sample_number]).generate_state(1)[0])


class InfiniteSampler(Sampler):
    """Yields `(case_index, augmentation_seed)` forever, one shuffled pass over the cases per epoch.

    Sample `n` depends only on `(seed, n)`: a run resumed at iteration `k` with
    `start_sample = k * batch_size` sees exactly the samples an uninterrupted run would, whatever
    the number of data-loading workers. With `world_size > 1` each rank takes every
    `world_size`-th sample of the same global stream.

    Args:
        num_cases: Number of cases in the dataset.
        seed: Run seed.
        start_sample: Global sample number to start from.
        rank: This process's rank.
        world_size: Number of processes sharing the stream.
    """

    def __init__(
        self,
        num_cases: int,
        seed: int = 0,
        start_sample: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if num_cases <= 0:
            raise ValueError("InfiniteSampler needs at least one case; the dataset is empty")
        self.num_cases = num_cases
        self.seed = seed
        self.start_sample = start_sample
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        number = self.start_sample * self.world_size + self.rank
        epoch, order = -1, None
        while True:
            sample_epoch, position = divmod(number, self.num_cases)
            if sample_epoch != epoch:
                epoch = sample_epoch
                order = np.random.default_rng([self.seed, epoch]).permutation(self.num_cases)
            yield int(order[position]), sample_seed(self.seed, number)
            number += self.world_size
