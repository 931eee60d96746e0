"""tools/visualize.py and medseg.visualization: planes, orientation, aspect, errors, the PNG."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from medseg.preprocessing.cases import LabelRules
from medseg.preprocessing.description import CaseEntry, DatasetDescription
from medseg.preprocessing.io import Geometry, read_volume, write_volume
from medseg.utils.vocabulary import IGNORE_INDEX
from medseg.visualization import (
    VIEWS,
    busiest_slices,
    intensity_window,
    load_overlay_case,
    overlay_figure,
    plane,
    view_aspect,
)
from tests.conftest import REPO, load_tool

LIVER, SPLEEN, KIDNEY = 1, 2, 3


@pytest.fixture(scope="module")
def visualize():
    return load_tool(REPO / "tools" / "visualize.py")


def raw_case(phantom_dir: Path, index: int) -> tuple[Path, Path]:
    case = f"phantom_{index:03d}"
    raw = phantom_dir / "raw"
    return raw / "imagesTr" / f"{case}_0000.nii.gz", raw / "labelsTr" / f"{case}.nii.gz"


def shifted_prediction(label_path: Path, out: Path, shift: int = 2) -> Path:
    """The reference moved by `shift` voxels along the file's last axis, same grid."""
    label, geometry = read_volume(label_path)
    write_volume(np.roll(label, shift, axis=2), geometry, out)
    return out


def test_writes_png_of_plausible_size(phantom_dir, tmp_path, visualize):
    image, label = raw_case(phantom_dir, 5)  # stored with permuted axes
    pred = shifted_prediction(label, tmp_path / "pred.nii.gz")
    out = tmp_path / "figs" / "case.png"
    args = ["--image", str(image), "--label", str(label), "--pred", str(pred), "--out", str(out)]
    labels_json = phantom_dir / "raw" / "dataset.json"
    assert visualize.main([*args, "--labels_json", str(labels_json), "--dpi", "100"]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000
    import matplotlib.image

    assert matplotlib.image.imread(out).shape[:2] == (480, 1200)  # 12 × 4.8 in at 100 dpi
    assert [p.name for p in out.parent.iterdir()] == ["case.png"]  # no temporary left behind


@pytest.mark.parametrize("index", range(6))
def test_default_planes_cut_foreground_in_radiological_orientation(phantom_dir, index):
    """Every storage orientation of the phantom shows liver (patient right) on the viewer's left."""
    case = load_overlay_case(*raw_case(phantom_dir, index))
    point = busiest_slices(case.foreground, case.image.shape)
    for view, index_along in zip(VIEWS, point, strict=True):
        assert plane(case.label, view, index_along).any(), view
    axial = plane(case.label, "axial", point[0])
    liver_col = np.nonzero(axial == LIVER)[1].mean()
    spleen_col = np.nonzero(axial == SPLEEN)[1].mean()
    kidney_row = np.nonzero(axial == KIDNEY)[0].mean()
    assert liver_col < axial.shape[1] / 2 < spleen_col
    assert kidney_row > axial.shape[0] / 2  # kidney is posterior: lower half


def test_superior_up_and_anterior_left(tmp_path):
    """A marker at the patient's left-anterior-superior corner of a RAS-stored volume."""
    geometry = Geometry(
        shape=(5, 6, 7),
        spacing=(2.0, 1.0, 1.0),
        origin=(0.0, 0.0, 0.0),
        direction=((0, 0, -1), (0, -1, 0), (1, 0, 0)),  # columns: file z → S, y → A, x → R
    )
    image = np.zeros(geometry.shape, np.float32)
    image[4, 5, 0] = 1.0  # most superior, most anterior, most left
    write_volume(image, geometry, tmp_path / "ras.nii.gz")
    case = load_overlay_case(tmp_path / "ras.nii.gz")
    z, y, x = case.to_lps_index((4, 5, 0))
    assert case.to_file_index((z, y, x)) == (4, 5, 0)
    expected = {"axial": (0, -1), "coronal": (0, -1), "sagittal": (0, 0)}  # (row, column)
    for view, (row, col) in expected.items():
        index = {"axial": z, "coronal": y, "sagittal": x}[view]
        cut = plane(case.image, view, index)
        assert cut[row, col] == 1.0, view


def test_busiest_slices_known_answer():
    mask = np.zeros((10, 12, 14), bool)
    mask[7, 2:10, 3:5] = True  # a plate in z = 7
    mask[2, 5, 11] = True
    assert busiest_slices(mask, mask.shape) == (7, 5, 3)
    assert busiest_slices(np.zeros_like(mask), mask.shape) == (5, 6, 7)
    assert busiest_slices(None, (4, 4, 4)) == (2, 2, 2)


def test_view_aspect_follows_spacing():
    spacing = (3.0, 0.5, 0.8)  # z, y, x
    assert view_aspect(spacing, "axial") == pytest.approx(0.5 / 0.8)
    assert view_aspect(spacing, "coronal") == pytest.approx(3.0 / 0.8)
    assert view_aspect(spacing, "sagittal") == pytest.approx(3.0 / 0.5)
    with pytest.raises(ValueError, match="unknown view 'oblique'"):
        view_aspect(spacing, "oblique")


def test_figure_uses_spacing_aspect_and_given_slices(phantom_dir):
    case = load_overlay_case(*raw_case(phantom_dir, 0))
    fig = overlay_figure(case, {1: "liver"}, slices=(3, 4, 5))
    for ax, view in zip(fig.axes, VIEWS, strict=True):
        assert ax.get_aspect() == pytest.approx(view_aspect(case.spacing, view))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("axial: z = 3 ")
    assert titles[1].startswith("coronal: y = 4 ")
    assert titles[2].startswith("sagittal: x = 5 ")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["liver", "class_2", "class_3", "reference"]
    with pytest.raises(ValueError, match=r"inside the volume of shape \(24, 64, 64\)"):
        overlay_figure(case, slices=(24, 0, 0))


def test_mismatched_grid_names_both_files(phantom_dir, tmp_path, visualize, caplog):
    image, label = raw_case(phantom_dir, 0)
    array, geometry = read_volume(label)
    moved = tmp_path / "moved.nii.gz"
    write_volume(array, geometry.replace(spacing=(3.0, 1.0, 1.0)), moved)
    with pytest.raises(ValueError, match=f"prediction {re.escape(str(moved))} is not on the grid"):
        load_overlay_case(image, label, moved)
    out = tmp_path / "x.png"
    assert visualize.main(["--image", str(image), "--label", str(moved), "--out", str(out)]) == 2
    assert "spacing differs" in caplog.text and str(image) in caplog.text
    assert not out.exists()


def test_non_integer_label_map_is_refused(phantom_dir, tmp_path):
    image, label = raw_case(phantom_dir, 0)
    array, geometry = read_volume(label)
    soft = tmp_path / "soft.nii.gz"
    write_volume(array.astype(np.float32) * 0.5, geometry, soft)
    with pytest.raises(ValueError, match=r"soft.nii.gz: the reference label must be .*whole"):
        load_overlay_case(image, soft)


def test_intensity_window():
    image = np.full((4, 10, 10), -1000.0, np.float32)  # air around a body
    image[1:3, 2:8, 2:8] = np.linspace(0.0, 100.0, 72).reshape(2, 6, 6)
    region = np.zeros(image.shape, bool)
    region[1:3, 2:8, 2:8] = True
    assert intensity_window(image, region=region, percentiles=(0, 100)) == (-50.0, 150.0)
    assert intensity_window(image, percentiles=(0, 100)) == (-1000.0, 100.0)
    assert intensity_window(image, window=(-160, 240)) == (-160.0, 240.0)
    with pytest.raises(ValueError, match="low < high"):
        intensity_window(image, window=(10, 10))


def test_planes_go_through_the_reference_not_a_poor_prediction(tmp_path):
    axes = ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))  # array z, y, x along ITK z, y, x
    geometry = Geometry((24, 40, 40), (3.0, 1.0, 1.0), (0.0, 0.0, 0.0), axes)
    image = np.random.default_rng(0).uniform(0, 800, (24, 40, 40)).astype(np.float32)  # MR-like
    reference = np.zeros(image.shape, np.uint8)
    reference[3:6, 30:34, 5:9] = 1  # a small tumour
    prediction = np.zeros(image.shape, np.uint8)
    prediction[12:22, 5:25, 15:35] = 1  # a large miss elsewhere
    paths = [tmp_path / f"{n}.nii.gz" for n in ("image", "label", "pred")]
    for array, path in zip((image, reference, prediction), paths, strict=True):
        write_volume(array, geometry, path)
    case = load_overlay_case(*paths)
    fig = overlay_figure(case)
    point = [int(re.search(r"= (\d+) ", ax.get_title())[1]) for ax in fig.axes[:3]]
    assert 3 <= point[0] < 6  # axial plane through the reference
    # The prediction is drawn as a fill over the grey image in every panel: two images each.
    assert [len(ax.images) for ax in fig.axes[:3]] == [2, 2, 2]
    low = float(re.search(r"window \[([^,]+),", fig._suptitle.get_text())[1])
    assert low >= 0.0  # the window does not reach below the MR scan's darkest voxel


def test_intensity_window_never_goes_below_the_image_minimum():
    image = np.linspace(0.0, 100.0, 400, dtype=np.float32).reshape(4, 10, 10)
    region = np.zeros(image.shape, bool)
    region[:2] = True  # the darker half: widened by half its width, it would reach below 0
    low, high = intensity_window(image, region=region, percentiles=(0, 100))
    assert low == 0.0 and high > 50.0


def test_label_rules_turn_the_raw_reference_into_training_ids(tmp_path, visualize, caplog):
    """A dataset prepared with `--label_map` / `--ignore_labels`: the reference is drawn in
    training ids (raw 7 merged into 1, raw 9 ignored and not drawn), found through --dataset."""
    axes = ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))
    geometry = Geometry((8, 20, 20), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), axes)
    image = np.random.default_rng(0).normal(0, 1, geometry.shape).astype(np.float32)
    raw = np.zeros(geometry.shape, np.int32)
    raw[2:4, 2:6, 2:6] = 7
    raw[5:7, 10:14, 10:14] = 9
    for name, array in (("scan", image), ("label", raw)):
        write_volume(array, geometry, tmp_path / f"{name}.nrrd")
    rules = LabelRules(label_map={7: 1}, ignore_labels=(9,))
    case = load_overlay_case(tmp_path / "scan.nrrd", tmp_path / "label.nrrd", label_rules=rules)
    assert case.class_ids == (1,)
    assert set(np.unique(case.label).tolist()) == {0, 1, IGNORE_INDEX}
    assert load_overlay_case(tmp_path / "scan.nrrd", tmp_path / "label.nrrd").class_ids == (7, 9)

    entry = CaseEntry("images/c1.npy", "labels/c1.npy", ("scan.nrrd",), "label.nrrd")
    DatasetDescription(
        root=tmp_path, labels={0: "background", 1: "organ"}, label_rules=rules, cases={"c1": entry}
    ).write()
    out = tmp_path / "c1.png"
    args = ["--dataset", str(tmp_path), "--case", "c1", "--out", str(out)]
    assert visualize.main(args) == 0 and out.is_file()
    assert visualize.main(["--dataset", str(tmp_path), "--case", "c9", "--out", str(out)]) == 2
    assert "no case 'c9'" in caplog.text
    assert visualize.main(["--case", "c1", "--out", str(out)]) == 2
    assert "give --dataset too" in caplog.text
