#!/usr/bin/env bash
# The one command for a lent NVIDIA machine (device tool): makes the carried Vulkan loader
# and the driver's Vulkan ICD and CUDA libraries findable, prints what it found, then runs
# `scripts/gpu_check.sh run` (wgpu with fusion, Burn's CUDA backend, PyTorch CUDA).
# Carry `.gpu` (the bench binary from `scripts/gpu_check.sh build`) and `.gl` (the loader
# debs). Everything goes to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [[ -f $icd ]] && ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
  export VK_DRIVER_FILES=$icd
fi
# cudarc loads libcuda and libnvrtc at run time.
nvrtc=$(python3 -c 'import nvidia.cuda_nvrtc, os; print(os.path.dirname(nvidia.cuda_nvrtc.__file__) + "/lib")' 2>/dev/null || true)
export LD_LIBRARY_PATH="/usr/local/nvidia/lib64:/usr/local/cuda/lib64:${nvrtc}:${LD_LIBRARY_PATH:-}"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
  ls /usr/local/cuda/lib64/libnvrtc* "$nvrtc" 2>&1 | head -5
  python3 -c 'import torch; print("torch", torch.__version__, torch.backends.cudnn.version())'
} 2>&1 | tee "$out/env.txt"
scripts/gpu_check.sh run
