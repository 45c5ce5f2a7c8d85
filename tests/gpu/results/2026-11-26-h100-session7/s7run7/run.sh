#!/usr/bin/env bash
# Session 7, run 7 (H100): the top-n prefetches each next window's first key chunk: GPU top-n tests,
# Python top-n / NSA tests, and the cmp+top-n and NSA [paper] timings with cuDNN.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_JSON_TOPN=$out/gpu-topn.jsonl timeout 100 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuTopN.*' > "$out/gpu-topn.log" 2>&1
echo "gpu topn rc=$?"; grep -E " FAIL |passed|failed|cases" "$out/gpu-topn.log" | head -12 | cut -c1-220
timeout 100 python3 -m pytest -q -rs python/tests -p no:cacheprovider -k "topn" > "$out/pytest-topn.log" 2>&1
echo "pytest rc=$?"; grep -E "FAILED|passed|failed" "$out/pytest-topn.log" | tail -6 | cut -c1-250
timeout 200 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit cmp,nsajit nsa fused,sdpa-cudnn dense [paper]" --max-minutes 3 --out "$out/bench.json" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[|MISS|MET|PASS" "$out/bench.log" | cut -c1-160 | head -40
grep -E "kernels: nsa_selected_fwd 2|kernels: nsa_compressed_fwd 1" "$out/bench.log" | cut -c1-300
