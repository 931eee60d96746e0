"""The shared preparation base: splits and folds, resume, bad cases, workers, download, archives."""

from __future__ import annotations

import dataclasses
import http.server
import io
import json
import multiprocessing
import os
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from medseg.preprocessing import prepare as prep
from medseg.preprocessing.archive import extract
from medseg.preprocessing.cases import LabelRules
from medseg.preprocessing.description import load_description
from medseg.preprocessing.download import download, file_digest
from medseg.preprocessing.formats.nnunet import read_nnunet_raw
from medseg.preprocessing.io import read_volume, write_volume
from medseg.preprocessing.options import PrepareOptions
from medseg.preprocessing.splits import kfold_cases, split_cases
from medseg.utils.parallel import WorkerDiedError, run_cases
from tests._prepare_data import geometry, make_case, write_nnunet, write_nnunet_meta

OPTIONS = PrepareOptions(
    target_spacing=[3.0, 1.5, 1.5], patch_size=[16, 16, 16], ct_window=[0, 300]
)


# ---------------------------------------------------------------- splits


def test_splits_are_stable_disjoint_and_independent_of_input_order():
    ids = [f"case_{i:02d}" for i in range(23)]
    first = split_cases(ids, 0.2, 0.1, seed=3)
    assert first == split_cases(list(reversed(ids)), 0.2, 0.1, seed=3)
    assert sorted(first["train"] + first["val"] + first["test"]) == ids
    assert len(first["val"]) == 5 and len(first["test"]) == 2
    assert first != split_cases(ids, 0.2, 0.1, seed=4)


def test_kfolds_are_disjoint_cover_every_case_and_are_stable():
    ids = [f"c{i}" for i in range(11)]
    folds = kfold_cases(ids, 3, seed=1)
    vals = [set(f["val"]) for f in folds]
    assert set().union(*vals) == set(ids) and sum(map(len, vals)) == 11
    assert sorted(map(len, vals)) == [3, 4, 4]
    for fold in folds:
        assert set(fold["train"]).isdisjoint(fold["val"])
        assert set(fold["train"]) | set(fold["val"]) == set(ids)
    assert folds == kfold_cases(reversed(ids), 3, seed=1)
    with pytest.raises(ValueError, match=r"folds must be an integer in \[2, 11\]"):
        kfold_cases(ids, 12)


# ---------------------------------------------------------------- preparation


def _prepare(raw: Path, out: Path, options: PrepareOptions = OPTIONS, strict=False, **kwargs):
    raw_dataset = read_nnunet_raw(raw, strict=strict)
    return prep.prepare_raw(raw_dataset, out, options, prep.PrepareSettings(**kwargs))


def test_fold_files_are_written_and_match_dataset_json(tmp_path):
    raw = write_nnunet(tmp_path, num_cases=5)
    info = _prepare(raw, tmp_path / "out", folds=2, val_fraction=0.2)
    assert len(info.folds) == 2
    for k, fold in enumerate(info.folds):
        lines = (tmp_path / "out" / "folds" / f"fold_{k}_val_list.txt").read_text().splitlines()
        assert lines == [f"images/{c}.npy labels/{c}.npy" for c in fold["val"]]


def test_interrupted_run_resumes_skipping_finished_cases_with_identical_results(tmp_path):
    raw = write_nnunet(tmp_path, num_cases=4)
    reference = _prepare(raw, tmp_path / "ref")
    out = tmp_path / "out"
    _prepare(raw, out)
    # Simulate a run killed after two cases: later outputs missing or left half-written.
    (out / "dataset.json").unlink()
    (out / "records" / "blob_002.json").unlink()
    (out / "images" / "blob_003.npy").write_bytes(b"truncated")
    (out / "records" / "blob_003.json").unlink()
    before = {c: (out / "images" / f"{c}.npy").stat().st_mtime_ns for c in ("blob_000", "blob_001")}
    info = _prepare(raw, out)
    for case, mtime in before.items():  # finished cases were skipped
        assert (out / "images" / f"{case}.npy").stat().st_mtime_ns == mtime
    assert info.cases == reference.cases  # records, hashes and relative sources
    for case in info.cases:
        for kind in ("images", "labels"):
            assert np.array_equal(
                np.load(out / kind / f"{case}.npy"),
                np.load(tmp_path / "ref" / kind / f"{case}.npy"),
            )
    # A changed recipe redoes every case.
    changed = PrepareOptions(
        target_spacing=[3.0, 2.0, 2.0], patch_size=[16, 16, 16], ct_window=[0, 300]
    )
    _prepare(raw, out, changed, strict=True)
    assert all((out / "images" / f"{c}.npy").stat().st_mtime_ns != m for c, m in before.items())


def test_bad_cases_are_reported_skipped_and_listed(tmp_path):
    raw = write_nnunet(tmp_path, num_cases=5)
    (raw / "imagesTr" / "blob_001_0000.nii.gz").write_bytes(b"not a nifti")  # corrupt
    shifted = geometry(2).replace(origin=(99.0, 0.0, 0.0))  # the label on another grid
    write_volume(np.zeros(shifted.shape, np.uint8), shifted, raw / "labelsTr" / "blob_002.nii.gz")
    bad_ids = np.zeros(geometry(3).shape, np.uint8)
    bad_ids[0, 0, 0] = 7
    write_volume(bad_ids, geometry(3), raw / "labelsTr" / "blob_003.nii.gz")
    with pytest.raises(prep.PreparationError) as caught:
        _prepare(raw, tmp_path / "out", val_fraction=0.5)
    failed = caught.value.failed_cases
    assert sorted(failed) == ["blob_001", "blob_002", "blob_003"]
    assert "blob_001_0000.nii.gz" in failed["blob_001"]
    assert "origin differs" in failed["blob_002"]
    assert "label ids [7] are not declared" in failed["blob_003"]
    info = load_description(tmp_path / "out")
    assert sorted(info.cases) == ["blob_000", "blob_004"] and info.failed_cases == failed
    assert _prepare(raw, tmp_path / "out", val_fraction=0.5, allow_failures=True).cases


def test_nan_or_infinite_intensities_fail_the_case_and_stay_out_of_the_plan(tmp_path):
    raw = write_nnunet(tmp_path, num_cases=4)
    some = make_case(1)[0][0].astype(np.float32)
    some[3, 4, 5], some[4, 4, 5] = np.nan, np.inf
    write_volume(some, geometry(1), raw / "imagesTr" / "blob_001_0000.nii.gz")
    every = np.full(geometry(2).shape, np.nan, np.float32)
    write_volume(every, geometry(2), raw / "imagesTr" / "blob_002_0000.nii.gz")
    options = PrepareOptions(target_spacing=[3.0, 1.5, 1.5], patch_size=[16, 16, 16])
    raw_cases = read_nnunet_raw(raw)
    settings = prep.PrepareSettings(allow_failures=True)
    info = prep.prepare_raw(raw_cases, tmp_path / "out", options, settings)
    failed = info.failed_cases
    assert sorted(failed) == ["blob_001", "blob_002"]
    assert "blob_001_0000.nii.gz: holds 2 NaN or infinite voxel(s)" in failed["blob_001"]
    assert f"holds {every.size} NaN or infinite voxel(s)" in failed["blob_002"]
    assert sorted(info.cases) == ["blob_000", "blob_003"]
    good = {c: f for c, f in raw_cases.cases.items() if c not in failed}
    clean = prep.prepare_raw(
        dataclasses.replace(raw_cases, cases=good), tmp_path / "clean", options
    )
    assert info.plan == clean.plan  # the bad scans shifted nothing that was planned


def test_a_failed_case_moves_no_other_case_between_splits_or_folds(tmp_path):
    raw = write_nnunet(tmp_path, num_cases=12)
    whole = _prepare(raw, tmp_path / "whole", val_fraction=0.25, folds=3)
    (raw / "imagesTr" / "blob_005_0000.nii.gz").write_bytes(b"not a nifti")
    part = _prepare(raw, tmp_path / "part", val_fraction=0.25, folds=3, allow_failures=True)
    assert list(part.failed_cases) == ["blob_005"]

    def without_the_failed(lists):
        return {name: tuple(c for c in ids if c != "blob_005") for name, ids in lists.items()}

    assert part.splits == without_the_failed(whole.splits)
    assert part.folds == tuple(without_the_failed(fold) for fold in whole.folds)


def test_changed_class_names_redo_the_cases(tmp_path):
    """Declared ids are part of a case's hash: labels checked against 3 classes are not reused
    for 2."""
    raw = write_nnunet(tmp_path, num_cases=3)
    _prepare(raw, tmp_path / "out", val_fraction=0.34)
    write_nnunet_meta(raw, num_cases=3, labels={"background": 0, "core": 1})
    with pytest.raises(prep.PreparationError) as caught:
        _prepare(raw, tmp_path / "out", val_fraction=0.34)
    failed = caught.value.failed_cases
    assert sorted(failed) == ["blob_000", "blob_001", "blob_002"]
    assert all("label ids [2] are not declared" in why for why in failed.values())


def test_geometry_tolerance_is_an_option(tmp_path):
    """A label 0.01 mm off its scan's origin fails at the default 1e-3 mm, passes when relaxed."""
    raw = write_nnunet(tmp_path, num_cases=3)
    label, near = np.zeros(geometry(1).shape, np.uint8), geometry(1)
    near = near.replace(origin=(near.origin[0] + 0.01, *near.origin[1:]))
    write_volume(label, near, raw / "labelsTr" / "blob_001.nii.gz")
    strict = _prepare(raw, tmp_path / "strict", val_fraction=0.34, allow_failures=True)
    assert "origin differs" in strict.failed_cases["blob_001"]
    relaxed = dataclasses.replace(OPTIONS, geometry_tolerance=0.05)
    info = _prepare(raw, tmp_path / "relaxed", relaxed, strict=True, val_fraction=0.34)
    assert not info.failed_cases and "blob_001" in info.cases
    with pytest.raises(ValueError, match="option 'geometry_tolerance': got -1"):
        dataclasses.replace(OPTIONS, geometry_tolerance=-1)


def test_label_rules_remap_and_ignore():
    label = np.array([[[0, 1, 2, 3, 4]]], np.uint8)
    rules = LabelRules({3: 1}, ignore_labels=[4])
    assert rules.apply(label, [0, 1, 2], Path("x")).tolist() == [[[0, 1, 2, 1, 255]]]
    with pytest.raises(ValueError, match=r"x: label ids \[4\] are not declared"):
        LabelRules({3: 1}).apply(label, [0, 1, 2], Path("x"))


def _die_on_blob_001(case, *args):
    if case == "blob_001":
        os._exit(3)
    return real_prepare_one(case, *args)


real_prepare_one = prep._prepare_one


@pytest.mark.skipif(
    multiprocessing.get_start_method() != "fork", reason="the fault is injected through fork"
)
def test_a_dying_worker_raises_instead_of_hanging(tmp_path, monkeypatch):
    raw = write_nnunet(tmp_path, num_cases=3)
    monkeypatch.setattr(prep, "_prepare_one", _die_on_blob_001)
    with pytest.raises(WorkerDiedError, match="a worker process died"):
        _prepare(raw, tmp_path / "out", num_workers=2, val_fraction=0.34)
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_workers_give_the_same_result_as_one_process(tmp_path):
    raw = write_nnunet(tmp_path, num_cases=3)
    one = _prepare(raw, tmp_path / "one", val_fraction=0.34)
    two = _prepare(raw, tmp_path / "two", num_workers=2, val_fraction=0.34)
    assert [e.record for e in one.cases.values()] == [e.record for e in two.cases.values()]


def _mark(case: str, folder: str, seconds: float) -> str:
    time.sleep(seconds)
    (Path(folder) / case).touch()
    return case


def test_spawned_workers_run_the_cases(tmp_path):
    """ "spawn" is how workers start with the CuPy backend (CUDA does not survive a fork)."""
    jobs = [(f"c{i}", (str(tmp_path), 0.0)) for i in range(4)]
    results = list(run_cases(_mark, jobs, 2, "marking", start_method="spawn"))
    assert sorted(results) == [(f"c{i}", f"c{i}", None) for i in range(4)]


def test_stopping_early_cancels_the_queued_cases(tmp_path):
    """Ctrl-C while preparing: the queued cases are dropped, not all run before exiting."""
    jobs = [(f"c{i}", (str(tmp_path), 0.2)) for i in range(40)]
    results = run_cases(_mark, jobs, 1, "marking")
    next(results)
    with pytest.raises(KeyboardInterrupt):
        results.throw(KeyboardInterrupt)
    time.sleep(3)  # what was already handed to the worker finishes; the queue does not run
    assert len(list(tmp_path.iterdir())) < 8


# ---------------------------------------------------------------- download


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files, honouring `Range: bytes=N-` (http.server alone ignores it)."""

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if "Range" not in self.headers or not path.is_file():
            return super().send_head()
        start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
        data = path.read_bytes()[start:]
        self.send_response(206)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return io.BytesIO(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(root), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_resumes_a_partial_file_and_checks_the_checksum(server, tmp_path):
    root, url = server
    payload = np.random.default_rng(0).bytes(300_000)
    (root / "data.bin").write_bytes(payload)
    dest = tmp_path / "dl" / "data.bin"
    dest.parent.mkdir()
    (tmp_path / "dl" / "data.bin.part").write_bytes(payload[:123_456])  # an interrupted download
    sha = file_digest(root / "data.bin", "sha256")
    assert download(f"{url}/data.bin", dest, sha256=sha).read_bytes() == payload
    assert not (tmp_path / "dl" / "data.bin.part").exists()
    # A wrong partial file fails the checksum: deleted, nothing left that looks valid.
    (tmp_path / "dl" / "other.part").write_bytes(b"x" * 1000)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        download(f"{url}/data.bin", tmp_path / "dl" / "other", sha256=sha)
    assert not (tmp_path / "dl" / "other").exists()
    assert not (tmp_path / "dl" / "other.part").exists()
    with pytest.raises(ValueError, match="md5 mismatch"):
        download(f"{url}/data.bin", tmp_path / "dl" / "third", md5="0" * 32)


# ---------------------------------------------------------------- archives


def _tar_with(path: Path, name: str, link: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(name)
        if link is not None:
            info.type, info.linkname = tarfile.SYMTYPE, link
            tf.addfile(info)
        else:
            info.size = 2
            tf.addfile(info, io.BytesIO(b"ok"))
    return path


@pytest.mark.parametrize(
    ("name", "link", "message"),
    [
        ("../evil.txt", None, "outside the destination"),
        ("a/../../evil.txt", None, "outside the destination"),
        ("/etc/evil.txt", None, "absolute path"),
        ("data/link", "../../outside", "outside the destination"),
        ("data/link", "/etc/passwd", "is absolute"),
    ],
)
def test_unsafe_tar_members_are_refused(tmp_path, name, link, message):
    archive = _tar_with(tmp_path / "bad.tar.gz", name, link)
    with pytest.raises(ValueError, match=message):
        extract(archive, tmp_path / "dest")
    assert not any((tmp_path / "dest").rglob("*evil*"))
    assert not (tmp_path / "evil.txt").exists()


def test_zip_traversal_is_refused_and_junk_skipped(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(ValueError, match="outside the destination"):
        extract(bad, tmp_path / "dest")
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("Task/imagesTr/a.nii.gz", "a")
        zf.writestr("Task/imagesTr/._a.nii.gz", "junk")
        zf.writestr("__MACOSX/Task/x", "junk")
    extract(good, tmp_path / "dest")
    files = sorted(
        p.relative_to(tmp_path / "dest").as_posix()
        for p in (tmp_path / "dest").rglob("*")
        if p.is_file()
    )
    assert files == [".good.zip.extracted", "Task/imagesTr/a.nii.gz"]


def _uncompressed(raw: Path) -> Path:
    """The raw dataset with .nii files, whose size does not change when a voxel does."""
    for path in sorted(raw.rglob("*.nii.gz")):
        array, geom = read_volume(path)
        write_volume(array, geom, path.with_name(path.name.replace(".nii.gz", ".nii")))
        path.unlink()
    meta = json.loads((raw / "dataset.json").read_text())
    (raw / "dataset.json").write_text(json.dumps({**meta, "file_ending": ".nii"}))
    return raw


def test_a_label_corrected_in_place_with_the_same_size_is_prepared_again(tmp_path):
    raw = _uncompressed(write_nnunet(tmp_path, num_cases=3))
    out = tmp_path / "out"
    _prepare(raw, out)
    before = {c: (out / "labels" / f"{c}.npy").stat().st_mtime_ns for c in ("blob_000", "blob_001")}
    path = raw / "labelsTr" / "blob_001.nii"
    label, geom = read_volume(path)
    label[label == 2] = 1  # the correction: the rim merged into the core
    size = path.stat().st_size
    write_volume(label, geom, path)
    assert path.stat().st_size == size
    later = path.stat().st_mtime_ns + 10**9  # a clock with coarse timestamps
    os.utime(path, ns=(later, later))
    _prepare(raw, out)
    assert (out / "labels" / "blob_000.npy").stat().st_mtime_ns == before["blob_000"]
    assert (out / "labels" / "blob_001.npy").stat().st_mtime_ns != before["blob_001"]
    assert 2 not in np.load(out / "labels" / "blob_001.npy")


def test_records_of_the_size_only_key_are_still_reused(tmp_path, monkeypatch):
    raw = write_nnunet(tmp_path, num_cases=3)
    out = tmp_path / "out"
    size_only = prep._case_hash
    monkeypatch.setattr(
        prep, "_case_hash", lambda key, files, with_mtime=True: size_only(key, files, False)
    )
    old = _prepare(raw, out)
    monkeypatch.undo()
    before = {c: (out / "images" / f"{c}.npy").stat().st_mtime_ns for c in old.cases}
    later = max(before.values()) + 100 * 10**9
    edited = raw / "imagesTr" / "blob_002_0000.nii.gz"
    os.utime(edited, ns=(later, later))  # touched after it was prepared: not trusted
    info = _prepare(raw, out)
    after = {c: (out / "images" / f"{c}.npy").stat().st_mtime_ns for c in info.cases}
    assert after["blob_000"] == before["blob_000"] and after["blob_001"] == before["blob_001"]
    assert after["blob_002"] != before["blob_002"]
    assert all(info.cases[c].hash != old.cases[c].hash for c in info.cases)
