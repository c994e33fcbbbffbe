#!/usr/bin/env bash
# The seed-size results on one GPU, in one command: on the GPU machine (the `device` tool), in the tree that
# tools/gpu_pack.sh prepared, install the carried wheels, run the samples set at the `gpu` size (the seed's networks,
# fewer epochs: mrisr.training.recipes), and pack what each notebook wrote into $OUT/NAME.tar.gz as soon as it ends
# (the device returns at most 8 files of 16 MiB), so that a run cut short still brings back the notebooks it finished.
#
#   bash tools/gpu_run.sh [SIZE [NOTEBOOK ...]]
#
# SIZE: gpu (default); smoke rehearses the same path on a CPU in a few minutes. NOTEBOOK: names without .ipynb
# (default: 02 and 03, the knee; 04, the heart; 05, self-supervised SR). Each notebook's first cell then says the
# device, the data and the time. Exit status: the number of notebooks that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
size=${1:-gpu}
[ $# -gt 0 ] && shift
notebooks=("$@")
[ ${#notebooks[@]} -gt 0 ] || notebooks=(02_knee3d_train 03_knee3d_compare 04_cardiac2d_four_models
                                         05_selfsupervised_knee)
out=${OUT:?set OUT to the folder that comes back}
python=${PYTHON:-python3}
if [ -d .whl ]; then  # the GPU image lacks fastai, nibabel, pydicom, ismrmrd and jupyter
  site=${MRISR_SITE:-/tmp/mrisr-site}
  "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl || exit 100
  export PYTHONPATH="$site:$PWD"
fi
export MRISR_SAMPLE_DATA=${MRISR_SAMPLE_DATA:-$PWD/.samples} PYTHONUNBUFFERED=1
export MPLCONFIGDIR=$PWD/.cache/matplotlib TORCH_HOME=$PWD/.cache/torch IPYTHONDIR=$PWD/.cache/ipython
export JUPYTER_RUNTIME_DIR=$PWD/.cache/jupyter-runtime TORCHINDUCTOR_CACHE_DIR=$PWD/.cache/torchinductor
mkdir -p runs
log=runs/gpu_run.log
"$python" -c "import torch; print('device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU')" \
  | tee "$log"
failed=0
for name in "${notebooks[@]}"; do
  start=$(date +%s)
  touch runs/.started  # what this notebook writes is newer
  sleep 1
  if "$python" -m mrisr.notebook run samples "$name" --set size="$size" >> "$log" 2>&1; then
    echo "$name: done in $(( $(date +%s) - start )) s" | tee -a "$log"
  else
    failed=$((failed + 1))
    echo "$name: FAILED after $(( $(date +%s) - start )) s (its notebook keeps the cells up to the failing one)" \
      | tee -a "$log"
    tail -5 "$log"
  fi
  written=$(find docs/results volume_animations -type f -newer runs/.started)
  # shellcheck disable=SC2086
  tar czf "$out/$name.tar.gz.part" "notebooks/$name.ipynb" $written \
    && mv "$out/$name.tar.gz.part" "$out/$name.tar.gz"  # never a half-written archive
  [ "$(stat -c %s "$out/$name.tar.gz")" -lt $((16 * 1024 * 1024)) ] \
    || echo "$name.tar.gz: over the 16 MiB the device returns per file" | tee -a "$log"
  cp "$log" "$out/gpu_run.log"
done
exit $failed
