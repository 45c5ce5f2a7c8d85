#!/usr/bin/env bash
# Session 8, run 3 (H100): kernels assembled by ptxas child processes (machine code cached).
# prepare cold/cached (CUDA toolkit ptxas, Triton's ptxas, none), GPU tests, Python tests, and
# the compile benchmark with two kernels' timings (expected back at s7run6's figures).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
TP=$(python3 -c "import importlib.util,os; s=importlib.util.find_spec('triton'); print(os.path.join(list(s.submodule_search_locations)[0],'backends/nvidia/bin/ptxas'))")
{ which ptxas; ptxas --version | tail -1; echo "triton: $TP"; $TP --version | tail -1; } > "$out/prepare.log" 2>&1
for mode in toolkit triton off; do
  case $mode in toolkit) P=/usr/local/cuda/bin/ptxas;; triton) P=$TP;; off) P=off;; esac
  for pass in cold cached; do
    echo "== NSAJIT_PTXAS=$mode $pass" >> "$out/prepare.log"
    ( time NSAJIT_PTXAS=$P NSAJIT_CACHE_DIR=$W/cache-$mode CUDA_CACHE_PATH=$W/cuda-$mode $W/nsajit/bin/nsajit prepare --dk 192 --dv 128 ) >> "$out/prepare.log" 2>&1
  done
done
grep -E "==|prepared|real|release" "$out/prepare.log"
timeout 100 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuTopN.*:GpuCompress.*' > "$out/gpu-tests.log" 2>&1
echo "gpu tests rc=$?"; grep -E " FAIL |PASSED|FAILED|tests ran" "$out/gpu-tests.log" | head -12 | cut -c1-220
timeout 150 $W/nsajit/bin/gpu_tests --gtest_color=no --gtest_filter='GpuBackward.Matrix*' > "$out/gpu-bwd.log" 2>&1
echo "gpu bwd rc=$?"; grep -E " FAIL |PASSED|FAILED|tests ran" "$out/gpu-bwd.log" | head -12 | cut -c1-220
timeout 150 python3 -m pytest -q -rs python/tests -p no:cacheprovider -k "prepare or cache or compile or nsa_attention" > "$out/pytest.log" 2>&1
echo "pytest rc=$?"; grep -E "FAILED|passed|failed" "$out/pytest.log" | tail -6 | cut -c1-250
timeout 200 python3 bench/bench_nsa.py --quick --T 64k --profile --only "compile,nsajit window [main],nsajit cmp64+top16 " --max-minutes 3 --out "$out/bench.json" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[|MISS|MET|compile of" "$out/bench.log" | cut -c1-200 | head -20
