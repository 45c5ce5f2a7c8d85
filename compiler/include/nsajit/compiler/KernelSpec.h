// KernelSpec: everything that makes one generated kernel different from another.
// A plain value type (no MLIR here) so the runtime, the CPU reference and the
// tests can all use it. Hashable, printable, validated with messages that name
// the offending field and the allowed values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace nsajit {

enum class Branch : int { Compressed = 0, Selected = 1, Window = 2 };
enum class DType : int { BF16 = 0, FP16 = 1 };
enum class Arch : int { SM80 = 80, SM90a = 90 };
// Which kernel of a branch: the forward, or one of the three backward kernels
// (see KernelAbi.h for what each reads and writes).
// TopN is the fused block scoring + top-n selection, a kernel of the compressed
// branch (it reads its q, kc and lse; uses l', n and the forced-block counts).
// Compress / CompressBackward / CompressWeightGrad pool keys or values into
// compressed tokens (mean or weighted over blocks of l with stride d, compressed
// branch; the pooled tensor's head dim is headDimQK = headDimV).
// Combine is the gated sum of the three branch outputs (any branch's op stands
// for it; it uses the dtype and headDimV only).
enum class KernelPass : int {
  Forward = 0,
  BackwardPreprocess = 1,
  BackwardDQ = 2,
  BackwardDKDV = 3,
  TopN = 4,
  Compress = 5,
  CompressBackward = 6,
  CompressWeightGrad = 7,
  Combine = 8
};

const char *branchName(Branch b);    // "compressed" | "selected" | "window"
const char *dtypeName(DType t);      // "bf16" | "fp16"
const char *archName(Arch a);        // "sm_80" | "sm_90a"
const char *passName(KernelPass p); // "fwd" | "bwd_pre" | "bwd_dq" | "bwd_dkdv" | "topn" | "pool" | "pool_bwd" | "pool_dw" | "combine"
bool isCompressionPass(KernelPass p);
std::optional<Branch> parseBranch(const std::string &s);
std::optional<DType> parseDType(const std::string &s);
std::optional<Arch> parseArch(const std::string &s);

// Tile parameters: chosen by compiler/KernelConfig (defaults) or the tuner.
struct TileConfig {
  int warps = 0;          // warps per CTA; each warp owns 16 rows: query rows (query heads x
                          // tokens), or for BackwardDKDV 16 keys
  int tokensPerCta = 0;   // query tokens a CTA handles; selected forward: > 1 takes the union
                          // schedule (the CTA walks the distinct blocks its tokens selected),
                          // selected dQ: 1; TopN: tokens whose selections share each staged
                          // chunk of compressed keys (tokens x G <= warps x 16);
                          // BackwardDKDV: query tokens staged per inner-loop step
  int kvChunk = 0;        // keys staged in shared memory per inner-loop step; BackwardDKDV:
                          // keys a CTA owns (= warps x 16)
  bool operator==(const TileConfig &o) const = default;
};

struct KernelSpec {
  Branch branch = Branch::Selected;
  KernelPass pass = KernelPass::Forward;
  DType dtype = DType::BF16;
  Arch arch = Arch::SM90a;
  int headDimQK = 128;   // Dk
  int headDimV = 128;    // Dv (<= Dk)
  int group = 16;        // G: query heads per KV head
  int cmpBlock = 32;     // l  (compressed branch)
  int cmpStride = 16;    // d  (compressed branch)
  int slcBlock = 64;     // l' (selected branch)
  int slcCount = 16;     // n  (selected branch)
  int window = 512;      // w  (window branch)
  int slcInitial = 1;    // top-n: forced initial blocks 0 .. slcInitial-1
  int slcLocal = 2;      // top-n: forced local blocks (the query's block and the ones before it)
  bool cmpWeighted = false; // compression: a learned weight per block position (else the mean)
  float scale = 0.0f;    // softmax scale; 0 means 1/sqrt(Dk)
  TileConfig tile;       // zero fields are filled by defaultTileConfig()

  float effectiveScale() const;
  // Only the fields that matter for this branch take part in equality/hash/print.
  bool operator==(const KernelSpec &o) const;
  std::string str() const;        // human readable, stable (used in cache keys)
  std::uint64_t hash() const;     // FNV-1a over str()
  std::string kernelName() const; // e.g. nsa_selected_fwd, nsa_window_bwd_dq
};

// Returns an empty string when the spec is supported, otherwise a message that
// names the field and the allowed values.
std::string validate(const KernelSpec &spec);

// Fills the zero fields of spec.tile with defaults for the branch, dims and arch.
TileConfig defaultTileConfig(const KernelSpec &spec);
KernelSpec withDefaultTiles(KernelSpec spec);

// Resource needs implied by a spec (after defaults): used by the launcher.
int threadsPerCta(const KernelSpec &spec);
int sharedMemoryBytes(const KernelSpec &spec);
// Whether a backward kernel (its tile filled in) uses sm_90a's wgmma: whole
// warpgroups, dK/dV accumulators of at most Dk + Dv = 320 columns (wider ones,
// with the step's scores, would not fit the registers), and of the selected dQ
// kernels only selectedDqWarpgroupTile's. Its shared tiles are then unpadded
// swizzled panels.
bool backwardUsesWarpgroupMma(const KernelSpec &spec);
// The dK/dV kernel's ring of step buffers (Q and dO rows of a step, and their
// scalars): 3 for the window branch on wgmma where the CTAs an SM still fit
// (the step's copies then go into the buffer of two steps back, which every
// warp left before the step's one barrier), else 2 (and a second barrier a
// step). Three made the compressed [paper] and selected kernels slower.
int dkdvStepBuffers(const KernelSpec &spec);
// Whether a selected dQ tile (filled in) is a wgmma union tile: sm_90a, whole
// warpgroups whose rows are all tokens' (tokens x G = warps x 16, 2 tokens or more).
bool selectedDqWarpgroupTile(const KernelSpec &spec);
// The first kernel of the selected dQ kernels' two-kernel schedule (KernelAbi.h,
// BackwardKernelArgs::tokenDone) for the dQ spec `spec`: a wgmma union tile of
// one warpgroup (64 / G tokens, the dQ default's chunk), or all zeros where none applies.
TileConfig selectedDqUnionTile(const KernelSpec &spec);
// The first kernel's tile of either two-kernel schedule (the forward's or the
// dQ kernels'), for the forward or dQ spec `spec`; all zeros where none applies.
TileConfig selectedFirstTile(const KernelSpec &spec);
// Whether the top-n kernel (its tile filled in) scores with wgmma: sm_90a and whole warpgroups.
bool topNUsesWarpgroupMma(const KernelSpec &spec);
// Whether the forward kernel (its tile filled in) uses wgmma: sm_90a, whole
// warpgroups, a dense branch (compressed or window), or the selected branch's
// warp-specialised union tiles. Its shared tiles are then unpadded swizzled
// panels in a ring of forwardStages() K/V chunk buffers.
bool forwardUsesWarpgroupMma(const KernelSpec &spec);
// The wgmma forward with a producer warpgroup: warps `warps`.. stage Q and the
// K/V chunks and hand them to two consumer warpgroups through mbarriers (one CTA
// an SM). The dense branches where it fits; the selected branch for union tiles
// of 8 warps whose tokens fill the 128 rows (e.g. 8 tokens of G = 16).
bool forwardWarpSpecialised(const KernelSpec &spec);
// Its producer threads: one warp, or a warpgroup that gives registers to the
// consumers (setmaxnreg).
int forwardProducerThreads(const KernelSpec &spec);
// Token tiles a CTA walks in turn (1 unless warp-specialised).
int forwardTilesPerCta(const KernelSpec &spec);
int forwardStages(const KernelSpec &spec);
// The CTAs an SM the forward kernel asks ptxas to leave registers for
// (nvvm.minctasm; 0: no bound): those that fill the register file at 128
// registers a thread (2 of 256 threads, 4 of 128), where their shared memory
// fits an SM, so that a few registers more do not cost a CTA.
int forwardMinCtasPerSm(const KernelSpec &spec);
int queryRowsPerCta(const KernelSpec &spec);  // = warps * 16

// The selected forward's union schedule: at most this many tokens per CTA (its
// per-CTA block lists grow as tokens^2 x n), and the shared bytes of those lists.
inline constexpr int kMaxUnionTokens = 16;
// The warp-specialised union kernel builds a tile's union in a bitmap of this
// many 32-bit words (blocks 0 .. 8191; past them by pairwise compares), with
// each word's rank and 32 words of warp totals: kUnionBitmapBytes of scratch.
inline constexpr int kUnionBitmapWords = 256;
inline constexpr int kUnionBitmapBytes = 4 * (2 * kUnionBitmapWords + 32);
int selectedUnionSharedBytes(int tokens, int n);
// The selected forward's two-kernel schedule on sm_90a (runtime/src/Context.cpp):
// the warp-specialised union tile of the spec's shape (8 warps, 128 / G tokens,
// 64-key chunks), or a tile of 0 warps where it does not apply (G not dividing
// 128 into 2..16 tokens, l' not a multiple of 64, shared memory).
TileConfig selectedSpecialisedTile(const KernelSpec &spec);
// The distinct blocks above which the union kernel leaves a tile to the
// kernel launched after it (KernelAbi.h, tokenDone).
int selectedUnionLimit(const KernelSpec &spec);

// The top-n kernel scores selection blocks a window at a time. With
// a = l'/d and b = l/d, block j sums compressed tokens a*j - s for
// s in 0..reach (eq. 9, reach = a + b - 2). The CTA's tokens share a budget
// of compressed-token scores, so more tokens per CTA mean shorter windows.
struct TopNWindow {
  int blocks = 0;       // selection blocks per window
  int reach = 0;        // a + b - 2
  int cmpCapacity = 0;  // compressed-token scores a window needs, per token
};
TopNWindow topNWindow(const KernelSpec &spec);

} // namespace nsajit
