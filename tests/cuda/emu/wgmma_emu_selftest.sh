#!/usr/bin/env bash
# tests/cuda/emu/wgmma_emu_selftest.sh — checks the wgmma emulation (wgmma_emu.h) itself: runs
# the device probe kernels/cuda/sm90a/wgmma_probe.cu (its <<<>>> launch rewritten by sed) under
# emulation against its float64 product, under every schedule, plus negative tests (kernels that
# break the wgmma rules must be caught). Run from the repository root; EMU_OUT names a scratch dir.
set -euo pipefail
out=${EMU_OUT:-$(mktemp -d)}
mkdir -p "$out"
sed 's/\([A-Za-z_][A-Za-z_0-9]*\)<<<\(.*\)>>>(/emu_launcher(\2)(\1, /' kernels/cuda/sm90a/wgmma_probe.cu >"$out/wgmma_probe_emu.cu"
g++ -std=c++17 -O1 -DWG_EMU -Wall -Wno-unused-function -Wno-unknown-pragmas -I tests/cuda/emu/sm90a_inc -I . \
    -DWGMMA_PROBE_SRC="\"$out/wgmma_probe_emu.cu\"" -x c++ tests/cuda/emu/wgmma_emu_selftest.cpp -o "$out/wgmma_selftest"
"$out/wgmma_selftest"
