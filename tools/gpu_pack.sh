#!/usr/bin/env bash
# Prepares this checkout's working tree to travel to the GPU machine for tools/gpu_run.sh, within the device tool's
# 64 MiB: the wheels the GPU image lacks (.whl, ../shared/tools/gpu-prep.sh --notebooks), the samples the set reads
# (.samples: the DESS knee rewritten losslessly as deflated DICOM and checked voxel for voxel, the FAIR knee, the
# VGG16 weights, the cardiac frames and cine slice), and the committed GIFs and notebook outputs taken out of the
# working tree (the run writes them again). Prints the size of what travels and fails above the cap.
#
#   bash tools/gpu_pack.sh          then: the device's run with carry [".whl", ".samples"] and
#                                   command "bash tools/gpu_run.sh"; afterwards
#   bash tools/gpu_pack.sh --undo   puts the GIFs and notebook outputs back (git checkout), or unpack the results
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
if [ "${1:-}" = --undo ]; then
  git checkout -- notebooks volume_animations
  exit 0
fi
rm -rf .samples  # this project's staging folder (git ignores it), made anew: nothing stale travels
../shared/tools/gpu-prep.sh --notebooks vgg16 knee_fair cardiac_sax_frames cardiac_acdc_cine_slice > /dev/null
"$python" tools/deflate_dicom.py "${MRISR_SAMPLE_DATA:-../shared/data}/knee_dess_sample" .samples/knee_dess_sample
git ls-files -z volume_animations | grep -z '\.gif$' | xargs -0 rm -f
"$python" - <<'PY'
import nbformat, pathlib
for path in sorted(pathlib.Path("notebooks").glob("*.ipynb")):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, path)
PY
bytes=$( (git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1;
          du -sb .whl .samples | cut -f1) | paste -sd+ | bc)
echo "the tree that travels: $((bytes / 1024 / 1024)) MiB of 64 ($(du -sh .whl | cut -f1) wheels, $(du -sh .samples | cut -f1) samples)"
[ "$bytes" -lt $((64 * 1024 * 1024)) ] || { echo "over the device's 64 MiB: leave something out" >&2; exit 1; }
