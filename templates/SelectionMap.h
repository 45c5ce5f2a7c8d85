// The selected branch's selection map (KernelAbi.h): a bit per query token in
// a row per (batch, KV head, selection block), at the start of the backward
// workspace. The branch's bwd_pre sets the bits of the blocks its tokens list;
// its dK/dV kernel walks, for its block, only the tokens whose bit is set,
// window by window, compacted into a token list in shared memory in token
// order (so the sums do not depend on timing). Without a map (a row of 0
// words: the map would pass the context's limit) the walk takes each word's
// bits from its 32 tokens' index lists instead.
#pragma once

#include "IRBuilderHelpers.h"
#include "KernelCommon.h"

#include "nsajit/compiler/KernelSpec.h"

#include <functional>

namespace nsajit::tpl {

class SelectionMap {
public:
  // The backward workspace (the map at its start), the words of a row (0: no
  // map), T, Tkv, and the CTA's batch and KV head.
  struct Params {
    mlir::Value workspace, words, seqLen, kvLen, batch, kvHead;
  };
  // Entry i of token tok's index list; how often token tok lists block blk.
  using IndexFn = std::function<mlir::Value(mlir::Value tok, mlir::Value i)>;
  using ListedFn = std::function<mlir::Value(mlir::Value tok, mlir::Value blk)>;
  // body(count, firstToken, sums) -> sums: walks a window's `count` tokens, the
  // list's 16-bit entries being offsets from `firstToken`.
  using WindowBody =
      std::function<llvm::SmallVector<mlir::Value>(mlir::Value count, mlir::Value firstToken, mlir::ValueRange acc)>;

  SelectionMap(IRBuilderHelpers &h, const ThreadIds &ids, int threads, const KernelSpec &spec, Params p)
      : h(h), ids(ids), threads(threads), spec(spec), p(p) {}

  // The map's 32-bit words (i64, a 256-byte multiple): where the split walk's state starts.
  mlir::Value wordsTotal();
  // bwd_pre: sets the bits of tokens t0 .. t0 + tokens - 1 (entry e = tid, tid +
  // threads, ... is index e % n of token t0 + e / n) for every visible block
  // (0 <= blk <= t / l') they list, by an atomic or (order-free).
  void mark(mlir::Value t0, int tokens, const IndexFn &indexAt);
  // bwd_dkdv: the tokens tLo .. tHi that list block blk, in windows of
  // `threads` words (a thread a word). `warpTotals` (one i32 a warp) and `list`
  // (32 x threads 16-bit entries) are shared memory. Returns the sums and
  // whether any token was found (1.0 or 0.0).
  llvm::SmallVector<mlir::Value> walk(mlir::Value blk, mlir::Value tLo, mlir::Value tHi, mlir::Value warpTotals,
                                      mlir::Value list, mlir::ValueRange init, const ListedFn &timesListed,
                                      const WindowBody &body);

  // How many of a window's `count` listed tokens (entries: offsets from
  // `firstToken`, ascending) come before `token`: a binary search of the list.
  mlir::Value entriesBefore(mlir::Value list, mlir::Value count, mlir::Value firstToken, mlir::Value token);

private:
  mlir::Value word(mlir::Value blk, mlir::Value w); // pointer to word w of block blk's row
  // A window word's bits: from the map, or from its 32 tokens' index lists.
  mlir::Value wordBits(mlir::Value blk, mlir::Value w, const ListedFn &timesListed);

  IRBuilderHelpers &h;
  const ThreadIds &ids;
  const int threads;
  const KernelSpec &spec;
  Params p;
};

} // namespace nsajit::tpl
