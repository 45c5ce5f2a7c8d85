#!/usr/bin/env bash
# Session 15, run 9 (H100): the final code (commit in BUILD_INFO): the NSA [paper] local-indices row
# and its cuDNN reference only, 10 timed repetitions each (the full benchmark takes 3 for the NSA
# forward + backward, which varied by 11 ms in s15run8), twice.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
export NSAJIT_GIT_COMMIT="$(sed -n 's/^commit: //p' "$W/nsajit/BUILD_INFO")"
for i in 1 2; do
  timeout 200 python3 bench/bench_nsa.py --quick --T 64k --only "nsajit nsa local,sdpa-cudnn dense [paper]" \
    --min-reps 10 --max-reps 10 --no-compile-test --max-minutes 3 --out "$out/bench-$i.json" --no-png > "$out/bench-$i.log" 2>&1
  echo "bench $i rc=$?"; grep -E "nsa local|cudnn dense \[paper\]|local indices" $out/bench-$i.log | tail -6
done
