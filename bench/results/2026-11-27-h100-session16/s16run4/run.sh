#!/usr/bin/env bash
# Session 16, run 4 (H100): the final code (commit in BUILD_INFO): the backward matrices, the
# NSA [paper] local row (10 repetitions, twice) with its cuDNN reference.
out="$1"; mkdir -p "$out/logs"
W=/tmp/nsajit; mkdir -p $W; tar -C $W -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
timeout 300 $W/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.*' > $out/logs/bwd.log 2>&1
echo "bwd rc=$?"; grep -c "\] PASS" $out/logs/bwd.log; grep "\] FAIL" $out/logs/bwd.log | head; grep -E "^\[  (PASSED|FAILED)" $out/logs/bwd.log
for i in 1 2; do
  timeout 150 python3 bench/bench_nsa.py --quick --T 64k --only "nsajit nsa local,sdpa-cudnn dense [paper]" \
    --min-reps 10 --max-reps 10 --no-compile-test --max-minutes 2 --out "$out/logs/row-$i.json" --no-png > "$out/logs/row-$i.log" 2>&1
  echo "row $i rc=$?"; grep -E "fwdbwd \.\.\.|MISS|PASS" $out/logs/row-$i.log | tail -4
done
tar -C $out -czf $out/logs.tgz logs && rm -rf $out/logs
