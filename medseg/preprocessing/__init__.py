"""Torch-free preprocessing: volume I/O, reorient, crop, resample, normalise, record and invert.

Shared by the dataset-preparation tools, training/validation and the onnxruntime deploy runner.
"""

from medseg.preprocessing.description import CaseEntry, DatasetDescription, load_description
from medseg.preprocessing.formats.nnunet import read_nnunet_raw
from medseg.preprocessing.io import Geometry, read_case, read_volume, write_volume
from medseg.preprocessing.pipeline import (
    PreprocessRecord,
    invert_label,
    invert_probabilities,
    preprocess_case,
    preprocessed_geometry,
    probabilities_to_original_labels,
)
from medseg.preprocessing.prepare import CaseFiles, PrepareSettings, prepare_cases, prepare_raw
from medseg.preprocessing.recipe import Recipe
from medseg.preprocessing.splits import split_cases

__all__ = [
    "CaseEntry",
    "CaseFiles",
    "DatasetDescription",
    "Geometry",
    "PrepareSettings",
    "PreprocessRecord",
    "Recipe",
    "invert_label",
    "invert_probabilities",
    "load_description",
    "prepare_cases",
    "prepare_raw",
    "preprocess_case",
    "preprocessed_geometry",
    "probabilities_to_original_labels",
    "read_case",
    "read_nnunet_raw",
    "read_volume",
    "split_cases",
    "write_volume",
]
