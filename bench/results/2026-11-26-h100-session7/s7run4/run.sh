#!/usr/bin/env bash
# Session 7, run 4 (H100): top-n row-wise staging + register bit search; dense dK/dV split by CTA count.
# GPU top-n and backward tests, Python top-n / NSA tests, cmp+top-n and NSA [paper] timings with cuDNN.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_JSON_TOPN=$out/gpu-topn.jsonl timeout 120 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuTopN.*' > "$out/gpu-topn.log" 2>&1
echo "gpu topn rc=$?"; grep -E " FAIL |passed|failed|cases" "$out/gpu-topn.log" | head -12 | cut -c1-220
timeout 200 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.Matrix*:GpuBackward.Split*' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -E " FAIL |passed|failed|cases" "$out/gpu-bwd.log" | head -12 | cut -c1-220
timeout 120 python3 -m pytest -q -rs python/tests -p no:cacheprovider -k "topn or nsa_attention" > "$out/pytest-topn.log" 2>&1
echo "pytest rc=$?"; grep -E "FAILED|passed|failed" "$out/pytest-topn.log" | tail -6 | cut -c1-250
timeout 200 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit cmp64+top16 ,nsajit nsa fused,sdpa-cudnn dense [paper]" --max-minutes 3 --out "$out/bench.json" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[|MISS|MET" "$out/bench.log" | cut -c1-160 | head -40
grep -iE "topn|bwd_dkdv|profile" "$out/bench.log" | head -30 | cut -c1-200
ls "$out"
