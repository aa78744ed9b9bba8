#!/usr/bin/env bash
# The GPU benchmark of the CubeCL kernels, for a machine with an NVIDIA GPU and a short slot
# (~15 minutes): dwconv vs Burn's stock grouped conv on wgpu (Vulkan) and on Burn's CUDA
# backend, per depthwise layer (forward + all gradients) and a MobileNetV2 training step
# and inference, and PyTorch CUDA (cuDNN, NCHW and channels_last) on the same workload.
#
# Two phases, because the GPU machine may have no Rust toolchain and no network:
#
#   scripts/gpu_check.sh build   # here: the benchmark binary (wgpu with fusion and CUDA),
#                                # stripped, into .gpu/bench
#   scripts/gpu_check.sh run     # there: runs it on both backends and PyTorch; JSON and a
#                                # Markdown table into $OUT (or ./gpu_check_out)
#
# `.gpu/` is ignored by git (.git/info/exclude): carry it to the machine. For the Vulkan
# loader on a bare machine, see the device notes: debs in `.gl/` are unpacked first.
#
# Workload (environment): LAYER_BATCH (256), E2E_SIZE (224), E2E_BATCH (64,128), REPEATS (5),
# STEP_TIMEOUT seconds per program (240). SMALL=1 is the smoke test run on lavapipe
# (layer batch 2, 32×32 images, batch 2, 1 repeat): every step end to end, no figures.
set -euo pipefail
cd "$(dirname "$0")/.."

phase="${1:-}"
BIN=.gpu

if [[ "${SMALL:-0}" == 1 ]]; then
  LAYER_BATCH=2 E2E_SIZE=32 E2E_BATCH=2 REPEATS=1
fi
LAYER_BATCH="${LAYER_BATCH:-256}"
E2E_SIZE="${E2E_SIZE:-224}"
E2E_BATCH="${E2E_BATCH:-64,128}"
REPEATS="${REPEATS:-5}"
STEP_TIMEOUT="${STEP_TIMEOUT:-240}"
WORKLOAD=(--repeats "$REPEATS" --layer-batch "$LAYER_BATCH" --e2e-size "$E2E_SIZE" --e2e-batch "$E2E_BATCH")

step() { echo "== $* ($(date -u +%T))"; }

build() {
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dwconv-target}"
  mkdir -p "$BIN"
  grep -qxF "/$BIN/" .git/info/exclude 2>/dev/null || echo "/$BIN/" >> .git/info/exclude
  # CUDA is the feature-selected backend; `--backend wgpu` runs wgpu with fusion (Burn's
  # default GPU setup) in the same binary.
  step "cargo build --release --no-default-features --features wgpu,fusion,cuda --example bench"
  cargo build --release --no-default-features --features wgpu,fusion,cuda --example bench
  strip -o "$BIN/bench" "$CARGO_TARGET_DIR/release/examples/bench"
  ls -la "$BIN"
}

run() {
  local out="${OUT:-gpu_check_out}"
  mkdir -p "$out"
  # A bare machine's Vulkan loader, carried as Debian packages (see the device notes).
  if compgen -G ".gl/*.deb" >/dev/null; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null \
    | tee "$out/gpu.txt" || echo "no nvidia-smi: no NVIDIA GPU here" | tee "$out/gpu.txt"
  local results=()
  local bin="$BIN/bench"
  if [[ ! -x "$bin" ]]; then
    echo "$bin missing: run '$0 build' first" >&2
    exit 1
  fi
  for backend in wgpu cuda; do
    if [[ "$backend" == cuda ]] && ! nvidia-smi >/dev/null 2>&1; then
      echo "skipped cuda: no NVIDIA GPU"
      continue
    fi
    step "$bin --backend $backend ${WORKLOAD[*]}"
    if timeout "$STEP_TIMEOUT" "$bin" --backend "$backend" "${WORKLOAD[@]}" --json \
      > "$out/$backend.json" 2> "$out/$backend.log"; then
      results+=("$out/$backend.json")
    else
      echo "bench --backend $backend failed or timed out (exit $?); tail of its log:"
      tail -5 "$out/$backend.log"
    fi
  done
  if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    step "python3 scripts/bench_torch.py --device cuda ${WORKLOAD[*]}"
    timeout "$STEP_TIMEOUT" python3 scripts/bench_torch.py --device cuda "${WORKLOAD[@]}" --json \
      > "$out/torch_cuda.json" && results+=("$out/torch_cuda.json")
  else
    echo "skipped PyTorch: no torch with CUDA here"
  fi
  if ((${#results[@]})); then
    python3 scripts/compare_bench.py "${results[@]}" | tee "$out/table.md"
  fi
}

case "$phase" in
  build) build ;;
  run) run ;;
  *) echo "usage: $0 build|run" >&2; exit 2 ;;
esac
