#!/usr/bin/env bash
# Session 8, run 7 (H100): softmax exponents in one fma (forward, dQ, dK/dV) on top of run 6's code:
# the quick GPU forward matrix, the GPU backward matrix, the Python NSA / gated tests, and the full
# T = 64k benchmark (nsajit, cuDNN, Flex, compile times).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NSAJIT_GPU_TEST_QUICK=1 timeout 100 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuForward.*' > "$out/gpu-fwd-quick.log" 2>&1
echo "gpu fwd quick rc=$?"; grep -E " FAIL |PASSED|FAILED|passed|cases" "$out/gpu-fwd-quick.log" | head -8 | cut -c1-220
timeout 120 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.Matrix*' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -E " FAIL |PASSED|FAILED|passed|cases" "$out/gpu-bwd.log" | head -8 | cut -c1-220
timeout 120 python3 -m pytest -q -rs python/tests -p no:cacheprovider -k "nsa_attention or gated" > "$out/pytest.log" 2>&1
echo "pytest rc=$?"; grep -E "FAILED|passed|failed" "$out/pytest.log" | tail -6 | cut -c1-250
timeout 330 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit,cudnn,flex,compile" --max-minutes 5 --out "$out/bench.json" --png "$out/bench.png" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[|MISS|MET|PASS|compile of" "$out/bench.log" | grep -v "fwd:" | cut -c1-150
grep -E "kernels: nsa_selected_bwd_dq 3|kernels: nsa_compressed_bwd_dkdv|kernels: nsa_selected_fwd 2" "$out/bench.log" | cut -c1-330
