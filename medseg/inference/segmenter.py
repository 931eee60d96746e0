"""`Segmenter`: an exported model as a Python object, scans in, label images out (torch-free).

    from medseg.inference import Segmenter

    segmenter = Segmenter("output/export")  # the folder export.py wrote (or its deploy.yaml)
    label = segmenter(sitk.ReadImage("ct.nii.gz"))  # a SimpleITK label image on the scan's grid
    result = segmenter.predict("ct.nii.gz", probabilities=True)  # arrays: label, probabilities
    for result in segmenter.batch(["a.nii.gz", "b.nii.gz"]):
        ...

Inputs: a SimpleITK image, a path (volume file or DICOM series folder; a list of paths gives one
file per channel), or a `(C, Z, Y, X)` / `(Z, Y, X)` array with its `Geometry`. Every case runs
the one case pipeline (`CasePipeline`) that val.py and the deploy runner use.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813 (the library's own idiom)

from medseg.inference.case import CasePipeline, CasePrediction, stage
from medseg.inference.deploy_config import DeployConfig, load_deploy_config
from medseg.inference.onnx_predictor import OnnxPredictor
from medseg.inference.settings import InferenceSettings, with_tta
from medseg.inference.timing import StageTimer
from medseg.preprocessing.io import Geometry, image_channels, read_case, to_sitk

DEPLOY_FILE = "deploy.yaml"
PathLike = str | os.PathLike
ImageInput = sitk.Image | PathLike | Sequence[PathLike] | np.ndarray


def deploy_yaml_path(export: PathLike) -> Path:
    """deploy.yaml itself, or the one inside an export folder."""
    path = Path(export)
    return path / DEPLOY_FILE if path.is_dir() else path


class Segmenter:
    """Segment scans with a model exported by export.py, on onnxruntime.

    Args:
        export: The export folder (holding deploy.yaml and the ONNX model, or several: an
            ensemble), its deploy.yaml, or a loaded `DeployConfig`.
        device: "auto", "cpu" or "gpu" (see `OnnxPredictor`).
        threads: onnxruntime CPU threads; None: one per physical core.
        batch_size: Windows per onnxruntime call; None: deploy.yaml's.
        tta: Mirror test-time augmentation (deploy.yaml's axes, else all three).
        largest_component: Class ids reduced to their largest component; None: deploy.yaml's.

    Raises:
        FileNotFoundError, ConfigError: for a missing or invalid deploy.yaml.
        ImportError, ValueError: when onnxruntime is missing or cannot load the model.
    """

    def __init__(
        self,
        export: PathLike | DeployConfig,
        device: str = "auto",
        threads: int | None = None,
        batch_size: int | None = None,
        tta: bool = True,
        largest_component: Sequence[int] | None = None,
    ):
        if not isinstance(export, DeployConfig):
            export = load_deploy_config(deploy_yaml_path(export))
        self.deploy = export
        settings = with_tta(self.deploy.inference, tta)
        if batch_size is not None:
            settings = dataclasses.replace(settings, batch_size=batch_size)
        # An export folder with several models (folds) is an ensemble: probabilities averaged.
        self.predictors = [OnnxPredictor(p, device, threads) for p in self.deploy.model_paths]
        self.predictor = self.predictors[0]
        ids = self.deploy.largest_component if largest_component is None else largest_component
        self.pipeline = CasePipeline(
            self.predictors,
            settings,
            self.deploy.num_classes,
            self.deploy.output,
            ids,
            regions=self.deploy.regions,
        )

    @property
    def settings(self) -> InferenceSettings:
        """The sliding-window settings in use."""
        return self.pipeline.settings

    def read(
        self, image: ImageInput, geometry: Geometry | None = None
    ) -> tuple[np.ndarray, Geometry]:
        """Any accepted input as a float32 `(C, Z, Y, X)` array and its geometry, checked."""
        if isinstance(image, sitk.Image):
            array, geometry = image_channels(image)
        elif isinstance(image, np.ndarray):
            if geometry is None:
                raise ValueError("an array input needs its Geometry (spacing, origin, direction)")
            array = image[None] if image.ndim == 3 else image
        elif isinstance(image, (str, os.PathLike)):
            array, geometry = read_case([image])
        else:
            array, geometry = read_case(list(image))
        array = np.asarray(array, dtype=np.float32)
        deploy = self.deploy
        if array.ndim != 4:
            raise ValueError(f"expected a (C, Z, Y, X) or (Z, Y, X) image, got {array.shape}")
        if array.shape[0] != deploy.input_channels:
            raise ValueError(
                f"the model takes {deploy.input_channels} channel(s) "
                f"({', '.join(deploy.modalities)}), the input gave {array.shape[0]}"
            )
        return array, geometry

    def predict(
        self,
        image: ImageInput,
        geometry: Geometry | None = None,
        probabilities: bool = False,
        case: str = "case",
        timer: StageTimer | None = None,
    ) -> CasePrediction:
        """The label map (and, on request, class probabilities) on the input's own grid.

        A path is read here, and the scan's array is dropped once preprocessed: the network
        and the back-mapping then run without a float32 copy of the scan in memory.
        """
        with stage(timer, "read"):
            array, geometry = self.read(image, geometry)
        pipeline = self.pipeline
        array, record = pipeline.preprocess(array, geometry, self.deploy.recipe, case, timer)
        return pipeline.preprocessed(array, record, "original", probabilities, timer)

    def __call__(self, image: ImageInput, geometry: Geometry | None = None) -> sitk.Image:
        """The label image of `image`, in its geometry."""
        result = self.predict(image, geometry)
        return to_sitk(result.label, result.geometry)

    def batch(
        self, images: Iterable[ImageInput], probabilities: bool = False
    ) -> Iterator[CasePrediction]:
        """Predict many cases one after another (one session, one set of settings)."""
        for image in images:
            yield self.predict(image, probabilities=probabilities)
