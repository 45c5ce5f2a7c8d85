#!/usr/bin/env bash
# Session 14, run 5 (H100): the final code (commit in BUILD_INFO): the backward matrices (automatic
# and split walks), the benchmark's rows against the targets (part 1), then the Python GPU tests
# and the compile rows once more (part 2): run.sh OUT 1|2.
out="$1"; part="$2"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
if [ "$part" = 1 ]; then
timeout 300 $W/nsajit/bin/gpu_tests --gtest_filter='GpuBackward.MatrixAgainstReference:GpuBackward.SplitWalksAgainstReference' > $out/bwd.log 2>&1
echo "bwd rc=$?"; grep -c "\] PASS" $out/bwd.log; grep "\] FAIL" $out/bwd.log | head; grep -E "^\[  (PASSED|FAILED)" $out/bwd.log
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
timeout 250 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit,cudnn,compile" --max-minutes 4 --out "$out/bench.json" --png "$out/bench.png" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "PASS|MISS|not measured" $out/bench.log | tail -14
fi
if [ "$part" = 2 ]; then
timeout 400 python3 -m pytest -q -x python/tests > $out/pytest_gpu.log 2>&1; echo "pytest rc=$?"; tail -2 $out/pytest_gpu.log
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
timeout 100 python3 bench/bench_nsa.py --quick --T 64k --only compile --out "$out/bench-compile.json" > "$out/bench-compile.log" 2>&1
echo "compile rc=$?"; grep -E "compile (cold|cached)" $out/bench-compile.log
fi
