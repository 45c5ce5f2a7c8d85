#!/usr/bin/env bash
# Session 8, run 6 (H100): the final code (ptxas assembly, 128-key dense dK/dV and 128-row Dk > 128
# dQ tiles): GPU backward matrix (automatic and forced split), the Python NSA / combine / top-n /
# prepare tests, the full T = 64k benchmark (nsajit, cuDNN, Flex, compile times), and an Nsight
# Compute profile of the paper's selected forward for the next step.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.Matrix*:GpuBackward.Split*' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -E " FAIL |PASSED|FAILED|passed|cases" "$out/gpu-bwd.log" | head -8 | cut -c1-220
timeout 150 python3 -m pytest -q -rs python/tests -p no:cacheprovider -k "nsa_attention or combine or topn or gated or prepare or cache" > "$out/pytest.log" 2>&1
echo "pytest rc=$?"; grep -E "FAILED|passed|failed" "$out/pytest.log" | tail -6 | cut -c1-250
timeout 330 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit,cudnn,flex,compile" --max-minutes 5 --out "$out/bench.json" --png "$out/bench.png" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[|MISS|MET|PASS|compile of" "$out/bench.log" | grep -v "fwd:" | cut -c1-150
grep -E "kernels: nsa_selected_bwd_dq 3|kernels: nsa_compressed_bwd_dkdv|kernels: nsa_selected_fwd 2" "$out/bench.log" | cut -c1-330
NCU=/usr/local/cuda/bin/ncu
timeout 90 $NCU --profile-from-start off --set full --kernel-name regex:selected_fwd -o "$W/sel" python3 bench/profile_nsa.py --shape paper > "$W/ncu.log" 2>&1; echo "ncu rc=$?"
$NCU -i "$W/sel.ncu-rep" --page details > "$out/ncu-selected-fwd-paper.txt" 2>&1
grep -E "Duration|Throughput|L2 Cache Throughput|Registers|Achieved Occupancy|Theoretical Occupancy" "$out/ncu-selected-fwd-paper.txt" | head -14
