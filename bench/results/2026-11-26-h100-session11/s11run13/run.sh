#!/usr/bin/env bash
# Session 11, run 13 (H100): the forward's row maxima and sums as tree reductions (commit in
# BUILD_INFO) against the build before it (98635c1): dense forward timings of both in one run, the
# quick GPU forward matrix, then the benchmark at T = 64k.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); B=$(mktemp -d)
tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz; tar -C "$B" -xJf .carry/nsajit-gpu-base.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO $B/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
R=$W/ref; mkdir -p $R
for v in "ref $B" "tree $W" "base2 $B" "tree2 $W"; do set -- $v
  NSAJIT_LIBRARY=$2/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$2/cache timeout 100 python3 .carry/fwd_variants.py $1 $R fwd 2>&1 | grep -v "^JSON" | tee -a "$out/variants.log"
done
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
NSAJIT_GPU_TEST_QUICK=1 timeout 120 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-quick.log" 2>&1
echo "gpu fwd quick rc=$?"; grep -E " FAIL |PASSED|FAILED|cases" "$out/gpu-fwd-quick.log" | head -5 | cut -c1-200
timeout 330 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit,cudnn,flex,compile" --max-minutes 5 --out "$out/bench.json" --png "$out/bench.png" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "MISS|MET|PASS" "$out/bench.log" | cut -c1-150
