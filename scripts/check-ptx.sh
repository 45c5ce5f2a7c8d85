#!/usr/bin/env bash
# Generates the PTX of the whole configuration matrix for sm_80 and sm_90a and
# assembles every file with ptxas (from a CUDA toolkit). Fails on any error.
#   scripts/check-ptx.sh BUILD_DIR
set -euo pipefail
build="${1:?usage: check-ptx.sh BUILD_DIR}"
ptxas="$(command -v ptxas || true)"
[ -n "$ptxas" ] || ptxas="${CUDA_HOME:-/usr/local/cuda}/bin/ptxas"
if [ ! -x "$ptxas" ]; then
  echo "check-ptx: ptxas not found (CUDA toolkit): cannot assemble the generated PTX" >&2
  exit 1
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# One generator per architecture, in parallel (each compiles sequentially).
"$build/compiler/tools/nsajit-emit-ptx" --out "$out" --arch sm_80 2>"$out/sm_80.log" &
p80=$!
"$build/compiler/tools/nsajit-emit-ptx" --out "$out" --arch sm_90a 2>"$out/sm_90a.log" &
p90=$!
fail=0
wait $p80 || fail=1
wait $p90 || fail=1
tail -n 1 "$out/sm_80.log" "$out/sm_90a.log" | grep -v "^$" || true
if [ $fail -ne 0 ]; then
  echo "check-ptx: generating PTX failed:"; grep -h FAILED -A2 "$out"/sm_*.log; exit 1
fi
count=$(ls "$out"/*.ptx | wc -l)
echo "check-ptx: assembling $count kernels with $ptxas"
assemble() {
  f="$1"; arch=sm_90a
  case "$f" in *_sm_80_*) arch=sm_80 ;; esac
  if ! "$ptxas" -arch="$arch" "$f" -o /dev/null 2>"$f.err"; then
    echo "ptxas FAILED for $(basename "$f") ($arch):"; cat "$f.err"; return 1
  fi
}
export -f assemble
export ptxas
ls "$out"/*.ptx | xargs -P "$(nproc)" -I{} bash -c 'assemble "$@"' _ {}
echo "check-ptx: $count passed, 0 failed"
