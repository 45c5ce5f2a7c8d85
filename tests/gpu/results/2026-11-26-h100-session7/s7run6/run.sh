#!/usr/bin/env bash
# Session 7, run 6 (H100): nsa_attention sums the branches' dq in one combine pass: the Python GPU tests of
# nsa_attention / the combine / the top-n, then the full T = 64k benchmark (nsajit, cuDNN, Flex, compile times).
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
timeout 150 python3 -m pytest -q -rs python/tests -p no:cacheprovider -k "nsa_attention or combine or topn or gated" > "$out/pytest.log" 2>&1
echo "pytest rc=$?"; grep -E "FAILED|passed|failed" "$out/pytest.log" | tail -6 | cut -c1-250
timeout 380 python3 bench/bench_nsa.py --quick --T 64k --profile --only "nsajit,cudnn,flex,compile" --max-minutes 6 --out "$out/bench.json" --png "$out/bench.png" > "$out/bench.log" 2>&1
echo "bench rc=$?"; grep -E "^\[|MISS|MET|PASS" "$out/bench.log" | cut -c1-160
grep -E "kernels: nsa_selected_bwd_dq 3|kernels: nsa_selected_fwd 2" "$out/bench.log" | cut -c1-400
