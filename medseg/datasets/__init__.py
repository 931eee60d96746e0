"""Training/validation datasets over the preprocessed layout; importing registers them."""

from medseg.datasets.medical_dataset import MedicalDataset
from medseg.datasets.sampler import InfiniteSampler, sample_seed

__all__ = ["InfiniteSampler", "MedicalDataset", "sample_seed"]
