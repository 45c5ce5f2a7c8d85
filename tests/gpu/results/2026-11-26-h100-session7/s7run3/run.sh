#!/usr/bin/env bash
# Session 7, run 3 (H100): the sm_90a top-n (S^T = K Q^T, ballot merge): GPU top-n tests, the Python
# top-n / NSA tests, the cmp+top-n and NSA [paper] timings with cuDNN, and an ncu profile of the paper top-n.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_JSON_TOPN=$out/gpu-topn.jsonl timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuTopN.*' > "$out/gpu-topn.log" 2>&1
echo "gpu topn rc=$?"; grep -E " FAIL |passed|failed|cases" "$out/gpu-topn.log" | head -12 | cut -c1-220
timeout 150 python3 -m pytest -q -rs python/tests -p no:cacheprovider -k "topn" > "$out/pytest-topn.log" 2>&1
echo "pytest rc=$?"; grep -E "FAILED|passed|failed" "$out/pytest-topn.log" | tail -6 | cut -c1-250
timeout 200 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit cmp64+top16 ,nsajit cmp32/16,nsajit nsa fused,sdpa-cudnn dense [paper]" --max-minutes 3 --out "$out/bench.json" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[|MISS|MET" "$out/bench.log" | cut -c1-160 | head -40
NCU=/usr/local/cuda/bin/ncu
timeout 80 $NCU --profile-from-start off --set full --kernel-name regex:topn -o "$out/topn_paper" python3 bench/profile_nsa.py --shape paper --part topn > "$out/ncu.log" 2>&1; echo "ncu rc=$?"
$NCU -i "$out/topn_paper.ncu-rep" --page details > "$out/topn_paper.details.txt" 2>&1
$NCU -i "$out/topn_paper.ncu-rep" --page source --csv --print-source sass > "$out/topn_paper.sass.csv" 2>&1
rm -f "$out/topn_paper.ncu-rep"
grep -E "Duration|Executed Ipc A|Issued Instructions  |Registers Per|Achieved Occ" "$out/topn_paper.details.txt"
rm -f "$out/bench.png" "$out/ncu.log"; ls "$out"
