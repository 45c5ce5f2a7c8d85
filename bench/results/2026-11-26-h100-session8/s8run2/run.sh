#!/usr/bin/env bash
# Session 8, run 2 (H100): kernels JIT-compiled through cuLink* on the prepare pool, machine code in
# the disk cache. GPU forward + top-n tests, the Python cache/prepare tests, the compile benchmark
# (cold, cached) and two kernels' timings (same SASS expected).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
( time $W/nsajit/bin/nsajit prepare --dk 192 --dv 128 ) > "$out/prepare.log" 2>&1
( time $W/nsajit/bin/nsajit prepare --dk 192 --dv 128 ) >> "$out/prepare.log" 2>&1
grep -E "prepared|real" "$out/prepare.log"
timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*:GpuTopN.*:GpuCompress.*' > "$out/gpu-tests.log" 2>&1
echo "gpu tests rc=$?"; grep -E " FAIL |PASSED|FAILED|tests ran" "$out/gpu-tests.log" | head -12 | cut -c1-220
timeout 120 python3 -m pytest -q -rs python/tests -p no:cacheprovider -k "prepare or cache or compile or gpu_matches" > "$out/pytest.log" 2>&1
echo "pytest rc=$?"; grep -E "FAILED|passed|failed" "$out/pytest.log" | tail -6 | cut -c1-250
timeout 200 python3 bench/bench_nsa.py --quick --T 64k --profile --only "compile,nsajit window [main],nsajit cmp64+top16 " --max-minutes 3 --out "$out/bench.json" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[|MISS|MET|compile of" "$out/bench.log" | cut -c1-200 | head -20
