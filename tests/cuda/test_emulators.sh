#!/usr/bin/env bash
# tests/cuda/test_emulators.sh — the host emulations of the hand-written tensor-core kernels,
# so that a machine without a GPU (CI) still checks their index maths, masks, barriers,
# cp.async ordering and mma/ldmatrix fragment bookkeeping against the CPU reference.
# Each emulator compiles the kernel's own source as C++ with every CUDA thread a host thread
# (or fiber), shared memory NaN-poisoned and cp.async landing only at its wait; see the
# header of each file. They cannot see real-hardware races, alignment faults or speed:
# the GPU tests (tests/cuda/test_cuda_*.c) do that on a GPU.
#   attention      tests/cuda/emu/attention.cpp (+ emu/attention_inc/)     kernels/cuda/attention.cu
#   conv1d, gated  tests/cuda/emu/conv_gn.cu (nvcc as the host compiler)   conv1d_window.cuh, gated_norm_warp.cuh
#   grouped GEMM   tests/cuda/emu/grouped_gemm_emu.cpp                     grouped_gemm_core.cuh
#   SSD forward    tests/cuda/emu/ssd_fast_fwd_emu.cpp (+ emu/shim/)       ssd_fast.cu
#   SSD backward   tests/cuda/emu/ssd_bwd/run.sh                           ssd_fast_bwd.cu
#   wgmma (sm_90a) tests/cuda/emu/wgmma_emu_selftest.sh (wgmma_emu.h)       sm90a/wgmma_probe.cu
#   attention 90a  tests/cuda/emu/attention_sm90a_{fwd,bwd}_emu.cpp        sm90a/attention_sm90a_{fwd,bwd}.cu
set -uo pipefail
: "${HLAB_SRC:?HLAB_SRC must name the source tree}"
cd "$HLAB_SRC"
command -v g++ >/dev/null || { echo "SKIP: no g++"; exit 77; }
# The sanitizer pass of dev.sh sets HLAB_TEST_QUICK; the emulations (minutes) run in the normal pass.
[ "${HLAB_TEST_QUICK:-0}" = 1 ] && { echo "SKIP: HLAB_TEST_QUICK=1 (the emulations run in the normal test pass)"; exit 77; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
passed=0 failed=0
run() { # name, command...
  local name=$1 t0=$SECONDS
  shift
  if "$@" >"$out/$name.log" 2>&1; then
    echo "ok   $name ($((SECONDS - t0)) s)"
    passed=$((passed + 1))
  else
    echo "FAIL $name ($((SECONDS - t0)) s):"
    tail -25 "$out/$name.log"
    failed=$((failed + 1))
  fi
}
cuda_inc=""
if command -v nvcc >/dev/null; then cuda_inc=$(dirname "$(command -v nvcc)")/../include; fi

run attention sh -c "g++ -std=c++17 -O1 -DATT_EMU -w -I tests/cuda/emu/attention_inc -I . -x c++ tests/cuda/emu/attention.cpp -o $out/attn && $out/attn"
if [ -n "$cuda_inc" ]; then
  run conv_gated sh -c "nvcc -std=c++17 -O1 -I. tests/cuda/emu/conv_gn.cu -o $out/conv_gn && $out/conv_gn"
  run grouped_gemm sh -c "g++ -std=c++20 -O1 -I. -I$cuda_inc tests/cuda/emu/grouped_gemm_emu.cpp -o $out/gg -lpthread && $out/gg"
else
  echo "(no nvcc: the conv1d/gated-norm and grouped-GEMM emulations need CUDA's headers; not run)"
fi
run ssd_fwd sh -c "g++ -std=c++20 -O2 -fno-strict-aliasing -pthread -DSF_EMU -Itests/cuda/emu/shim -I. -w -o $out/sf tests/cuda/emu/ssd_fast_fwd_emu.cpp && $out/sf"
run ssd_bwd env EMU_OUT="$out/sb" bash tests/cuda/emu/ssd_bwd/run.sh
run wgmma_selftest env EMU_OUT="$out/wg" bash tests/cuda/emu/wgmma_emu_selftest.sh
run attention_sm90a_fwd sh -c "g++ -std=c++17 -O1 -DWG_EMU -w -I tests/cuda/emu/sm90a_inc -I . -x c++ tests/cuda/emu/attention_sm90a_fwd_emu.cpp -o $out/a90 && $out/a90"
run attention_sm90a_bwd sh -c "g++ -std=c++17 -O1 -DWG_EMU -w -I tests/cuda/emu/sm90a_inc -I . -x c++ tests/cuda/emu/attention_sm90a_bwd_emu.cpp -o $out/ab90 && $out/ab90"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
