#!/usr/bin/env bash
# Session 10, run 3 (H100): row-wise staging with one address a row (commit in BUILD_INFO):
# GPU top-n suite, quick forward matrix, backward matrix; then the NSA layer with the window
# branch on a side stream (experiment knob NSAJIT_EXP_OVERLAP = where it forks, NSAJIT_EXP_PRIO
# its stream priority) against one stream, with cuDNN [paper] in the same run.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 100 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuTopN.*' > "$out/gpu-topn.log" 2>&1
echo "gpu topn rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-topn.log" | head -8 | cut -c1-200
NSAJIT_GPU_TEST_QUICK=1 timeout 120 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-quick.log" 2>&1
echo "gpu fwd quick rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-quick.log" | head -5 | cut -c1-200
timeout 130 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.Matrix*' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-bwd.log" | head -5 | cut -c1-200
for v in "one - 0" "slc slc 0" "slchi slc -1" "cmphi cmp -1"; do set -- $v
  if [ "$2" = "-" ]; then unset NSAJIT_EXP_OVERLAP; else export NSAJIT_EXP_OVERLAP=$2; fi; export NSAJIT_EXP_PRIO=$3
  only="nsajit nsa fused"; [ "$1" = one ] && only="nsajit nsa fused,sdpa-cudnn dense [paper]"
  timeout 120 python3 bench/bench_nsa.py --quick --T 64k --only "$only" --no-compile-test --no-png --max-minutes 1.8 --out "$out/bench-$1.json" > "$out/bench-$1.log" 2>&1
  echo "== $1 rc=$?"; grep -E "^\[" "$out/bench-$1.log" | grep -v ceiling | cut -c1-120
done
