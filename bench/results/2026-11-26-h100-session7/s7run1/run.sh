#!/usr/bin/env bash
# Session 7, run 1 (H100): Nsight Compute profile of every NSA [paper] kernel (fwd+bwd) and of the [main] top-n.
out="$1"; mkdir -p "$out"
W=$(mktemp -d); tar -C "$W" -xJf .carry/nsajit-gpu.tar.xz
export NSAJIT_LIBRARY=$W/nsajit/lib/libnsajit.so NSAJIT_CACHE_DIR=$W/cache PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD/python
cat $W/nsajit/BUILD_INFO; nvidia-smi --query-gpu=name --format=csv,noheader
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu); echo "ncu: $NCU"
timeout 300 $NCU --profile-from-start off --set full --import-source no -o "$out/paper" python3 bench/profile_nsa.py --shape paper > "$out/ncu_paper.log" 2>&1; echo "paper rc=$?"
timeout 120 $NCU --profile-from-start off --set full -o "$out/main_topn" python3 bench/profile_nsa.py --shape main --part topn > "$out/ncu_main.log" 2>&1; echo "main rc=$?"
tail -5 "$out/ncu_paper.log"
for r in paper main_topn; do
  $NCU -i "$out/$r.ncu-rep" --page details > "$out/$r.details.txt" 2>&1
  $NCU -i "$out/$r.ncu-rep" --page raw --csv --metrics gpu__time_duration.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,launch__registers_per_thread > "$out/$r.summary.csv" 2>&1
  $NCU -i "$out/$r.ncu-rep" --page source --csv --print-source sass --kernel-name regex:topn > "$out/$r.topn_sass.csv" 2>&1 || true
done
ls -la "$out"; cat "$out/paper.summary.csv" | cut -c1-250
