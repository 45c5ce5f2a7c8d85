#!/usr/bin/env bash
# Session 10, run 10 (H100): the final benchmark (nsajit, SDPA cuDNN / flash, FlexAttention, compile
# times) at T = 64k on the final kernels (swizzled K/V for mma.sync, the top-n chunk stream, row-pointer staging), then the GPU top-n and compression suites.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 360 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit,cudnn,flex,compile" --max-minutes 5.5 --out "$out/bench.json" --png "$out/bench.png" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[|MISS|MET|PASS" "$out/bench.log" | grep -v "fwd:" | cut -c1-150
timeout 120 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuTopN.*:GpuCompress.*' > "$out/gpu-topn-compress.log" 2>&1
echo "gpu topn/compress rc=$?"; grep -E " FAIL |PASSED|FAILED|cases|OK \]" "$out/gpu-topn-compress.log" | head -8 | cut -c1-200
