//===- NsaOps.h - nsa attention ops and helpers -----------------*- C++ -*-===//
//
// Ops: mlir::nsa::CompressedAttentionOp (nsa.compressed_attention)
//      mlir::nsa::SelectedAttentionOp   (nsa.selected_attention)
//      mlir::nsa::WindowAttentionOp     (nsa.window_attention)
// All three implement mlir::nsa::AttentionOpInterface.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Support/LLVM.h"

#include "nsa/NsaAttrs.h"
#include "nsa/NsaDialect.h"

#include "nsa/NsaInterfaces.h.inc"

#define GET_OP_CLASSES
#include "nsa/NsaOps.h.inc"

namespace mlir::nsa {

/// Static problem shape of an nsa attention op, for lowering passes.
/// q: [B, T, HQ, Dk], k: [B, Tk, H, Dk], v: [B, Tk, H, Dv]; G = HQ / H.
struct AttentionShape {
  int64_t HQ = 0;   ///< query heads
  int64_t H = 0;    ///< key/value heads
  int64_t G = 0;    ///< query heads per KV head (GQA group), HQ / H
  int64_t Dk = 0;   ///< q/k head dim
  int64_t Dv = 0;   ///< v/o head dim
  mlir::Type elementType; ///< bf16 or f16 (q, k, v, o)
};

/// The shape of an nsa attention op. Fails (without diagnostics) when `op` is
/// not an nsa attention op or its operands are not rank-4 tensors with static
/// heads/dims (i.e. ops that would not verify).
FailureOr<AttentionShape> getAttentionShape(Operation *op);

/// The gather attribute of an nsa attention op (CompressedGatherAttr,
/// SelectedGatherAttr or WindowGatherAttr); null for any other op.
Attribute getGatherAttr(Operation *op);

/// Checks `tile` against the op's shape and gather pattern with the rules the
/// op verifier uses (warps in 1..8, tokens >= 1, kv_chunk in {16,32,64,128},
/// tokens*G <= warps*16; selected: tokens == 1, block % kv_chunk == 0).
/// Returns an empty string when the tile is allowed, else the message
/// (naming the field and the allowed values). Meant for the tile tuner.
std::string checkTile(const AttentionShape &shape, Attribute gather,
                      TileAttr tile, bool keyCentric = false);

/// Discardable attribute naming which of the branch's kernels the op stands
/// for: the forward (default) or a backward kernel. "bwd_dkdv" tiles are
/// key-centric (checkTile's keyCentric rules).
inline constexpr const char *kKernelAttrName = "nsa.kernel";
inline constexpr llvm::StringLiteral kKernelNames[] = {
    "fwd", "bwd_pre", "bwd_dq", "bwd_dkdv", "topn", "pool", "pool_bwd", "pool_dw", "combine"};
/// On a compressed op with nsa.kernel = "pool" | "pool_bwd" | "pool_dw" (the
/// compression phi of its k): unit attribute for learned weighted pooling
/// (absent: mean pooling).
inline constexpr const char *kWeightedAttrName = "nsa.weighted";
/// On a compressed op with nsa.kernel = "topn" (the fused block scoring and
/// top-n selection from its q, k and lse): the selection blocks and count, and
/// optionally the forced [initial, local] block counts (default [1, 2]).
inline constexpr const char *kSelectAttrName = "nsa.select";
inline constexpr const char *kForcedAttrName = "nsa.forced";

/// Values the verifiers accept, for tools/tuners that enumerate configs.
inline constexpr int64_t kSupportedGroupSizes[] = {1, 2, 4, 8, 16, 32};
inline constexpr int64_t kSupportedHeadDims[] = {64, 128, 192, 256};
inline constexpr int64_t kSupportedSelectedBlocks[] = {16, 32, 64, 128};
inline constexpr int64_t kSupportedKvChunks[] = {16, 32, 64, 128};
inline constexpr int64_t kMaxCompressedBlock = 4096;
inline constexpr int64_t kMaxSelectedCount = 1024;
inline constexpr int64_t kMaxWindowSize = 16777216;
inline constexpr int64_t kMaxTileWarps = 8;
// Selected attention with tokens > 1 walks the union of the tokens' blocks;
// its per-CTA block lists grow as tokens^2 x n.
inline constexpr int64_t kMaxSelectedTileTokens = 16;

} // namespace mlir::nsa
