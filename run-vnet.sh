#!/usr/bin/env bash
# medseg's main job: the whole pipeline on the built-in phantom, offline, from any directory.
#   prepare (skipped when done) -> train with evaluation -> val.py in the scans' own space
#   -> export.py (ONNX) -> deploy/python/infer.py on the raw scans -> tools/evaluate.py -> a PNG,
#   and val.py on 20 unseen test cases (another phantom seed): the figures that mean something.
# MODEL=unet3d runs the UNet3D config instead of VNet; ITERS=N trains N iterations instead of the
# config's (a quick smoke run). Uses a GPU when torch sees one.
# Environment: the active virtualenv, else .venv/ (created and filled from requirements.txt).
set -euo pipefail
# Banners and logs on one stream, so `bash run-vnet.sh > run.log` keeps everything in order.
exec 2>&1

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$REPO"
MODEL=${MODEL:-vnet}
case "$MODEL" in
  vnet | unet3d) ;;
  *) echo "MODEL must be vnet or unet3d, got '$MODEL'" >&2; exit 2 ;;
esac
CONFIG="configs/phantom/${MODEL}_phantom_32_48_48_600.yml"
DATA="data/phantom"
TEST_DATA="data/phantom_test"  # unseen cases (seed 11) for the test-set figures
ITERS_FLAG=()
[ -n "${ITERS:-}" ] && ITERS_FLAG=(--iters "$ITERS")
OUT="output/${MODEL}_phantom"
declare -a STAGES=()

stage() {  # stage NAME COMMAND...: run, time and remember one step
  local name=$1 start=$SECONDS
  shift
  echo
  echo "==== $name"
  "$@"
  STAGES+=("$(printf '%-10s %4d s' "$name" $((SECONDS - start)))")
}

setup_python() {
  if [ -n "${VIRTUAL_ENV:-}" ]; then
    PY=python
  else
    [ -x .venv/bin/python ] || python3 -m venv .venv
    PY=.venv/bin/python
  fi
  # torch==2.13.0 is named only when torch is missing: on the CPU machines it is the local CPU
  # build, and an unpinned torch would pull a multi-GB CUDA build. An installed torch is kept.
  local torch_pin=""
  "$PY" -c "import torch" 2>/dev/null || torch_pin="torch==2.13.0"
  "$PY" -m pip install -q --disable-pip-version-check $torch_pin -r requirements.txt
  # medseg itself, editable: tools/*.py and the medseg-* commands import this checkout. Offline,
  # pip can build it only with the setuptools already here (70.1 and later need no `wheel`).
  local isolation=""
  "$PY" -c "import setuptools as s, sys; sys.exit(tuple(map(int, s.__version__.split('.')[:2])) < (70, 1))" \
    2>/dev/null && isolation="--no-build-isolation"
  "$PY" -m pip install -q --disable-pip-version-check --no-deps $isolation -e .
}

write_val_scan_list() {  # the raw scans of the validation cases, for the deploy runner
  "$PY" - "$DATA/preprocessed" "$OUT/val_scans.txt" <<'EOF'
import pathlib, sys
from medseg.preprocessing.description import load_description
description = load_description(sys.argv[1])
cases = [description.cases[c] for c in description.splits["val"]]
scans = [description.resolve(case.source_images[0]).resolve() for case in cases]
pathlib.Path(sys.argv[2]).write_text("".join(f"{s}\n" for s in scans))
EOF
}

stage setup setup_python
DEVICE=$("$PY" -c "import torch; print('gpu' if torch.cuda.is_available() else 'cpu')")
echo "device: $DEVICE"
mkdir -p "$OUT"

stage prepare "$PY" tools/prepare_phantom.py --output_dir "$DATA"
stage train "$PY" train.py --config "$CONFIG" --save_dir "$OUT" --do_eval --save_interval 100 \
  --log_iters 50 --keep_checkpoint_max 2 --seed 0 "${ITERS_FLAG[@]}"
stage prepare_test "$PY" tools/prepare_phantom.py --output_dir "$TEST_DATA" --seed 11
cat "$TEST_DATA/preprocessed/train_list.txt" "$TEST_DATA/preprocessed/val_list.txt" \
  >"$TEST_DATA/preprocessed/all_list.txt"
stage test "$PY" val.py --config "$CONFIG" --model_path "$OUT/best_model/model.pth" \
  --save_dir "$OUT/test" --metrics dice hd95 \
  --opts "val_dataset.dataset_root=phantom_test/preprocessed" "val_dataset.file_list=all_list.txt"
stage val "$PY" val.py --config "$CONFIG" --model_path "$OUT/best_model/model.pth" \
  --save_dir "$OUT/val" --metrics dice hd95 assd --save_predictions
stage export "$PY" export.py --config "$CONFIG" --model_path "$OUT/best_model/model.pth" \
  --save_dir "$OUT/export"
write_val_scan_list
stage infer "$PY" deploy/python/infer.py --config "$OUT/export/deploy.yaml" \
  --image_path "$OUT/val_scans.txt" --save_dir "$OUT/infer" --device "$DEVICE"
stage evaluate "$PY" tools/evaluate.py --pred_dir "$OUT/infer" --gt_dir "$DATA/raw/labelsTr" \
  --save_dir "$OUT/infer_eval" --label_names "$DATA/raw/dataset.json" --only_predicted
CASE=$(head -n 1 "$OUT/val_scans.txt" | xargs basename | sed 's/_0000\.nii\.gz$//')
stage picture "$PY" tools/visualize.py --image "$DATA/raw/imagesTr/${CASE}_0000.nii.gz" \
  --label "$DATA/raw/labelsTr/$CASE.nii.gz" --pred "$OUT/infer/$CASE.nii.gz" \
  --labels_json "$DATA/raw/dataset.json" --out "$OUT/overlay_$CASE.png"

echo
echo "==== summary ($MODEL on the phantom, device $DEVICE)"
"$PY" - "$OUT" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
val = json.loads((out / "val" / "summary.json").read_text())
deployed = json.loads((out / "infer_eval" / "summary.json").read_text())
print(f"{'class':<16}{'Dice (val.py)':>15}{'HD95 mm':>10}{'Dice (ONNX)':>13}")
for name, entry in val["per_class"].items():
    onnx = deployed["per_class"].get(name, {}).get("dice", {}).get("mean", float("nan"))
    print(f"{name:<16}{entry['dice']['mean']:>15.4f}{entry['hd95']['mean']:>10.2f}{onnx:>13.4f}")
print(f"{'foreground mean':<16}{val['foreground_mean']['dice']:>15.4f}"
      f"{val['foreground_mean']['hd95']:>10.2f}{deployed['foreground_mean']['dice']:>13.4f}")
print("(Dice and HD95 per class over the validation cases, in each scan's own space)")
test = json.loads((out / "test" / "summary.json").read_text())
print(f"\n{'test set':<16}{'Dice':>8}{'HD95 mm':>10}{'cases':>7}")
for name, entry in test["per_class"].items():
    print(f"{name:<16}{entry['dice']['mean']:>8.4f}{entry['hd95']['mean']:>10.2f}"
          f"{entry['dice']['count']:>7}")
print(f"{'foreground mean':<16}{test['foreground_mean']['dice']:>8.4f}"
      f"{test['foreground_mean']['hd95']:>10.2f}")
print("(unseen cases of another phantom seed, mirrored prediction, each scan's own space)")
EOF
echo
echo "stage times:"
printf '  %s\n' "${STAGES[@]}"
echo
echo "outputs:"
echo "  checkpoints, train.log      $OUT/"
echo "  best model                  $OUT/best_model/model.pth"
echo "  metrics (val.py)            $OUT/val/metrics_per_case.csv, $OUT/val/summary.json"
echo "  test-set metrics            $OUT/test/metrics_per_case.csv, $OUT/test/summary.json"
echo "  predictions (val.py)        $OUT/val/predictions/"
echo "  ONNX model + deploy.yaml    $OUT/export/"
echo "  predictions (onnxruntime)   $OUT/infer/"
echo "  metrics of those            $OUT/infer_eval/"
echo "  picture                     $OUT/overlay_$CASE.png"
if "$PY" -c "import itkwidgets, notebook" 2>/dev/null; then
  echo "  explore in 3D               jupyter notebook visualize.ipynb"
else
  echo "  explore in 3D               $PY -m pip install -r requirements-notebook.txt (once, ~1.2 GB),"
  echo "                              then jupyter notebook visualize.ipynb"
fi
