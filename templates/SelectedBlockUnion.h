// The locality-aware schedule of the selected branch: a CTA of neighbouring
// query tokens walks the union of their selected blocks, each distinct block
// staged once, instead of every token streaming its own n blocks. Neighbouring
// tokens share the initial and local blocks and, in trained models, most of the
// rest, so the union is far smaller than tokens x n.
#pragma once

#include "IRBuilderHelpers.h"
#include "KernelCommon.h"

#include "nsajit/compiler/KernelSpec.h"

#include <array>
#include <functional>
#include <utility>

namespace nsajit::tpl {

class SelectedBlockUnion {
public:
  // `byteBase`: where the union's shared scratch starts (16-byte aligned); the
  // scratch takes selectedUnionSharedBytes(tokens, n) bytes (KernelSpec.h).
  // `threads` threads numbered by ids.tid build it; `barrier` makes them meet
  // (the CTA's barrier unless given: a producer warpgroup builds alone).
  SelectedBlockUnion(IRBuilderHelpers &h, const ThreadIds &ids, int threads, mlir::Value smem, mlir::Value byteBase,
                     const KernelSpec &spec, int tokens, std::function<void()> barrier = {});

  // Reads the index lists of tokens t0 .. t0 + tokens - 1 and builds, in shared
  // memory, the ascending distinct valid blocks and every token's multiplicity
  // of each. An entry counts when 0 <= j, j * l' < kvLen and j * l' <= t (the
  // reference's rule; a token sees at least key 0 of its own block). All
  // `threads` threads must call it; it ends with a barrier. With `limit` (i32),
  // a union of more distinct blocks than that is only counted: count() holds
  // its size, block() and multiplicity() nothing. With `bitmap` (the byte
  // offset of kUnionBitmapBytes of shared scratch; 128 threads) the union is
  // built in a bitmap of blocks where the tile's fit it: a few steps a thread
  // instead of the pairwise compares' O(N). Every path passes its barriers
  // uniformly. `counted` runs (uniformly, every thread) once the count is
  // known, before the list is built.
  void build(BranchKeys::IndexInput idx, mlir::Value batch, mlir::Value kvHead, mlir::Value t0,
             mlir::Value seqLen, mlir::Value kvLen, mlir::Value limit = {}, mlir::Value bitmap = {},
             const std::function<void(mlir::Value)> &counted = {});

  mlir::Value count();                                   // distinct blocks (uniform across the CTA)
  mlir::Value block(mlir::Value u);                      // the u-th smallest, 0 <= u < count()
  mlir::Value multiplicity(mlir::Value u, mlir::Value tokenInCta); // how often that token lists it
  // For a thread's two fragment rows (rowInWarp: row 16 warp + group (+8) of the
  // CTA tile, token row / G): each row's log2 multiplicity of block u, the bias
  // its scores take (-inf where its token did not select the block), and
  // whether any row of the warp selected it (warp-uniform, a vote).
  std::pair<std::array<mlir::Value, 2>, mlir::Value> rowBias(mlir::Value u, const mlir::Value rowInWarp[2], int group);

private:
  mlir::Value at(int region, mlir::Value i); // i32 pointer into a scratch region
  mlir::Value ld(int region, mlir::Value i) { return h.load(h.i32(), at(region, i), 4); }
  void st(int region, mlir::Value i, mlir::Value v) { h.store(v, at(region, i), 4); }
  void forItems(int count, const std::function<void(mlir::Value)> &body);
  void firstOccurrences();           // step 2 of build: the first occurrences and the count
  void buildList();                  // step 3 of build: the list and the multiplicities
  // The bitmap's regions: the words, each word's rank (set bits below it), the warps' totals.
  mlir::Value bitmapWord(mlir::Value w, int region = 0) {
    return h.gep(h.gep(smem, h.b.getI8Type(), bitmap), h.i32(), h.add(w, h.c32(region * kUnionBitmapWords)));
  }
  void buildFromBitmap(mlir::Value limit); // the union of the raw lists, through the bitmap
  // count of j in [lo, hi) with pred(j, raw[j]); an scf.for carrying the count.
  mlir::Value countIf(mlir::Value lo, mlir::Value hi, const std::function<mlir::Value(mlir::Value, mlir::Value)> &pred);

  IRBuilderHelpers &h;
  const ThreadIds &ids;
  const int threads;
  mlir::Value smem, base;
  const int T, n, N, blockSize;
  std::function<void()> barrier;
  mlir::Value bitmap; // build's, while it runs
  std::function<void(mlir::Value)> afterCount;
  int rawOff, firstOff, listOff, multOff, countOff; // byte offsets from base
};

} // namespace nsajit::tpl
