#!/usr/bin/env bash
# Session 9, run 6 (H100): experiment switches for the selected forward's ring of K/V chunk
# buffers (NSAJIT_EXP_SEL_STAGES) and chunk size (NSAJIT_EXP_SEL_CHUNK), random and local
# indices, main and paper shapes; plus the quick forward matrix on the ring variants.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
for v in "s2c32:2:32" "s3c32:3:32" "s2c16:2:16" "s3c16:3:16" "s4c16:4:16"; do
  IFS=: read n st ch <<< "$v"
  NSAJIT_EXP_SEL_STAGES=$st NSAJIT_EXP_SEL_CHUNK=$ch NSAJIT_CACHE_DIR=$W/cache-$n timeout 100 python3 bench/bench_nsa.py --quick --T 64k --only "nsajit selected random [,nsajit selected local [" --no-compile-test --no-png --max-minutes 1.5 --out "$out/sel-$n.json" > "$out/sel-$n.log" 2>&1
  echo "== $n rc=$?"; grep -E "^\[" "$out/sel-$n.log" | grep -v ceiling | grep "fwd \.\.\." | cut -c1-100
done
for v in "s3c16:3:16" "s4c16:4:16"; do
  IFS=: read n st ch <<< "$v"
  NSAJIT_EXP_SEL_STAGES=$st NSAJIT_EXP_SEL_CHUNK=$ch NSAJIT_GPU_TEST_QUICK=1 NSAJIT_CACHE_DIR=$W/cache-t$n timeout 60 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-quick-$n.log" 2>&1
  echo "gpu fwd quick $n rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-quick-$n.log" | head -5 | cut -c1-200
done
