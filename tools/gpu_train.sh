#!/usr/bin/env bash
# One-shot training on a lent GPU machine with no network: train a run for a fixed number of
# minutes on CUDA (AMP, parallel data workers), then copy its folder (last.pt, best.pt,
# metrics.jsonl) to $OUT, from where it comes back to resume here with --resume auto.
#
#   tools/gpu_train.sh MINUTES RUN_DIR [CONFIG] [WORKERS]
#   e.g. through the device tool, carrying .whl and the run folder:
#   tools/gpu_train.sh 8 runs/real_motion config/train_real_motion.yaml 12
#
# The machine has PyTorch with CUDA; the package's other dependencies come from the wheels in
# .whl/ (fill it here with: pip download --no-deps -d .whl safetensors==0.8.0 PyYAML==6.0.3
# tqdm==4.70.1 rosbags==0.11.9 opencv-python-headless==5.0.0.93) unless already installed.
# Photo textures are read from $JOINTPERCEPTION_DATA when it is carried; without it the run stops
# with the config's error, so carry the frames or use a config without photo_textures.
# DEVICE (default cuda) and PYTHON (default python) let the test suite run it on the CPU.
set -euo pipefail
minutes=${1:?usage: tools/gpu_train.sh MINUTES RUN_DIR [CONFIG] [WORKERS]}
run_dir=${2:?usage: tools/gpu_train.sh MINUTES RUN_DIR [CONFIG] [WORKERS]}
config=${3:-config/train_real_motion.yaml}
workers=${4:-12}
out=${OUT:?OUT must name the folder that comes back}
python=${PYTHON:-python}
device=${DEVICE:-cuda}

for module in safetensors yaml tqdm rosbags cv2; do
  if ! "${python}" -c "import ${module}" 2>/dev/null; then
    "${python}" -m pip install --quiet --no-index --find-links .whl safetensors PyYAML tqdm rosbags opencv-python-headless
    break
  fi
done
if [ "${device}" = cuda ]; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true; fi
# the time budget ends the run resumable (last.pt); the copy below runs whatever the exit status
status=0
PYTHONPATH=. "${python}" -m jointperception train --config "${config}" --out "${run_dir}" --resume auto --device "${device}" \
  --minutes "${minutes}" --workers "${workers}" || status=$?
mkdir -p "${out}/$(dirname "${run_dir}")"
cp -r "${run_dir}" "${out}/${run_dir}"
exit "${status}"
