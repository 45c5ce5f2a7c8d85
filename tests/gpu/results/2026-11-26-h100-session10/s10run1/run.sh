#!/usr/bin/env bash
# Session 10, run 1 (H100): the top-n on one stream of key chunks across its windows (commit in
# BUILD_INFO): GPU top-n / compression suites, the compression + top-n and NSA forward timings,
# then Nsight Compute source counters (SASS) of the paper's top-n.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 120 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuTopN.*:GpuCompress.*' > "$out/gpu-topn-compress.log" 2>&1
echo "gpu topn/compress rc=$?"; grep -E " FAIL |PASSED|FAILED|cases|OK \]" "$out/gpu-topn-compress.log" | head -8 | cut -c1-200
timeout 200 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit cmp,nsajit nsa fused" --no-compile-test --no-png --max-minutes 3 --out "$out/bench.json" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[|topn|selected_fwd|compressed_fwd" "$out/bench.log" | grep -v ceiling | cut -c1-130 | head -40
NCU=/usr/local/cuda/bin/ncu
timeout 150 $NCU --profile-from-start off --set full --import-source no --kernel-name regex:"compressed_topn" -o "$W/topn" python3 bench/profile_nsa.py --shape paper --part topn > "$out/ncu-run.log" 2>&1; echo "ncu rc=$?"
$NCU -i "$W/topn.ncu-rep" --page details > "$out/ncu-topn-paper.txt" 2>&1
$NCU -i "$W/topn.ncu-rep" --page source --csv --print-source sass > "$out/ncu-topn-sass.csv" 2>&1 || echo "source page failed"
wc -c "$out"/*; grep -E "Duration|Issue Slots Busy|Registers Per|Executed Instructions  " "$out/ncu-topn-paper.txt" | head
head -3 "$out/ncu-topn-sass.csv" | cut -c1-600
