#!/bin/bash
# Host emulation of the tensor-core SSD backward (no GPU needed): every CUDA thread a ucontext
# fiber of one OS thread, __syncthreads / __syncwarp barriers of the scheduler, shuffles, mma.sync
# m16n8k16 and ldmatrix exchanged through per-warp arrays in the PTX fragment layouts, dynamic
# shared memory and the scratch NaN-poisoned before every block / call, compared with the fp32 CPU
# backend (kernels/cpu/ssd.c) on the 8 shapes of test_cuda_ssd_fast (7 run v5; chunk 512 runs the v1
# path, the only one for chunks > 256). Not part of the build.
#   tests/cuda/emu/ssd_bwd/run.sh [shape index]   (none: all);
#   EMU_REV=1: threads scheduled in reverse; EMU_SERIAL=1: one warp at a time up to its next
#   block-wide barrier (with EMU_REV: the last warp first). cp.async lands at its wait (NaN before).
set -e
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../../../.." && pwd); out=${EMU_OUT:-/tmp/emu_ssd_bwd}
mkdir -p "$out"
python3 "$here/gen.py" "$root" "$out/bwd_gen.cpp"
blas_inc=/usr/include/x86_64-linux-gnu/openblas-openmp; blas_lib=/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so
gcc -O2 -std=c17 -fopenmp -I "$here/emu" -I "$root" -I "$blas_inc" -c "$root/kernels/cpu/ssd.c" -o "$out/ssd_ref.o"
g++ -O1 -std=c++20 -w -DSF_EMU -I "$out" -I "$here/emu" -I "$root" -o "$out/emu_bwd" "$here/emu.cpp" "$out/ssd_ref.o" \
    "$blas_lib" -fopenmp -lm
OMP_NUM_THREADS=1 "$out/emu_bwd" "${1:--1}"
