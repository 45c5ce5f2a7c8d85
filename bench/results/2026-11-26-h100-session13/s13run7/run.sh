#!/usr/bin/env bash
# Session 13, run 7 (H100): the dQ schedule's first kernel with the dQ default's chunk (commit in
# BUILD_INFO): the backward matrix, each kernel launch of the default selected forward + backward
# ([paper] and [main], random and local), then the benchmark's NSA rows.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 200 $W/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.MatrixAgainstReference' > $out/bwd.log 2>&1
echo "bwd rc=$?"; grep -c "\] PASS" $out/bwd.log; grep "\] FAIL" $out/bwd.log | head; tail -2 $out/bwd.log
for dk in 192 128; do
  timeout 60 python3 bench/sweep_tiles.py --branch selected --T 65536 --dk $dk --backward --kernels --tiles 0x0x0 2>&1 | grep -v -i warn | sed "s/^/dk=$dk /" | tee -a $out/sweep.log
done
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
timeout 250 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit,cudnn,compile" --max-minutes 4 --out "$out/bench.json" --png "$out/bench.png" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "PASS|MISS|not measured" $out/bench.log | tail -14
