/*
 * nsajit.h: the stable C API of libnsajit.so.
 *
 * nsajit generates, caches and launches Native Sparse Attention (NSA) forward
 * and backward kernels for the configuration you describe (head dims, GQA
 * group, block sizes, window, dtype) on the GPU of a context.
 *
 * Conventions
 *  - Every function returns an nsajit_status, except nsajit_last_error(),
 *    nsajit_status_string(), nsajit_version(), nsajit_compiler_version() and
 *    nsajit_abi_version(). On failure nsajit_last_error() describes what is
 *    wrong and what is allowed; the text is thread-local and stays valid until
 *    the next nsajit call on the same thread. A successful call sets it to "".
 *  - Handles are opaque. Structs that may grow begin with `uint32_t struct_size`:
 *    set it to sizeof(the struct) (the *_init functions do), so a newer library
 *    can tell which fields an older caller knows.
 *  - Device memory is passed as CUdeviceptr values (uint64_t); streams as
 *    CUstream cast to void* (NULL = the legacy default stream). Launches are
 *    asynchronous on that stream, like any CUDA kernel launch.
 *  - No CUDA headers or libraries are needed to use this API. libnsajit.so
 *    loads the NVIDIA driver (libcuda.so.1) at run time; set NSAJIT_LIBCUDA to
 *    load another file instead.
 *
 * Environment
 *  - NSAJIT_CACHE_DIR: directory of the PTX disk cache (else
 *    $XDG_CACHE_HOME/nsajit, else $HOME/.cache/nsajit). "off" disables the disk
 *    cache. A directory that cannot be written degrades to an in-memory cache
 *    with a warning (see nsajit_set_log_callback); it never fails a launch.
 *  - NSAJIT_CACHE_MAX_MB: size limit of the disk cache (default 2048, 0 = none);
 *    the least recently used kernels are deleted past it.
 *  - NSAJIT_COMPILE_THREADS: kernels compiled at once (default: the hardware threads).
 *  - NSAJIT_TUNING=off: ignore the tuning database (see nsajit_tune).
 *  - NSAJIT_CHECK_POINTERS=0: skip the per-launch check that every tensor lies
 *    inside memory the driver knows (cuPointerGetAttribute/cuMemGetAddressRange).
 *  - NSAJIT_VERBOSE=1: also log informational messages (compiles, cache hits).
 *
 * Thread safety: all functions may be called from any thread. A context may be
 * used by several threads at once; destroying it while another thread uses it
 * is undefined.
 */
#ifndef NSAJIT_NSAJIT_H
#define NSAJIT_NSAJIT_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define NSAJIT_API
#else
#define NSAJIT_API __attribute__((visibility("default")))
#endif

#define NSAJIT_VERSION_MAJOR 0
#define NSAJIT_VERSION_MINOR 1
#define NSAJIT_VERSION_PATCH 0
#define NSAJIT_VERSION_STRING "0.1.0"
/* Bumped whenever a struct, enum or signature of this header changes
 * incompatibly. Compare with nsajit_abi_version() at run time. */
#define NSAJIT_ABI_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nsajit_status {
  NSAJIT_OK = 0,
  NSAJIT_ERROR_INVALID_ARGUMENT = 1, /* NULL/misaligned pointer, bad stride, bad size */
  NSAJIT_ERROR_UNSUPPORTED = 2,      /* valid request this build/GPU cannot run */
  NSAJIT_ERROR_NO_DEVICE = 3,        /* no NVIDIA driver or no CUDA device */
  NSAJIT_ERROR_DRIVER_ERROR = 4,     /* a CUDA driver call failed */
  NSAJIT_ERROR_COMPILE_ERROR = 5,    /* generating or JIT-loading the kernel failed */
  NSAJIT_ERROR_OUT_OF_MEMORY = 6,    /* host or device allocation failed */
  NSAJIT_ERROR_INTERNAL = 7          /* a bug in nsajit: please report it */
} nsajit_status;

typedef enum nsajit_dtype {
  NSAJIT_DTYPE_BF16 = 0,
  NSAJIT_DTYPE_FP16 = 1
} nsajit_dtype;

typedef enum nsajit_branch {
  NSAJIT_BRANCH_COMPRESSED = 0,
  NSAJIT_BRANCH_SELECTED = 1,
  NSAJIT_BRANCH_WINDOW = 2
} nsajit_branch;

/* The kernels of a branch: its forward, and the three kernels its backward
 * launches in this order (see nsajit_*_backward). */
typedef enum nsajit_kernel_pass {
  NSAJIT_PASS_FORWARD = 0,       /* nsa_<branch>_fwd */
  NSAJIT_PASS_BACKWARD_PRE = 1,  /* nsa_<branch>_bwd_pre: delta and dgate */
  NSAJIT_PASS_BACKWARD_DQ = 2,   /* nsa_<branch>_bwd_dq: dq */
  NSAJIT_PASS_BACKWARD_DKDV = 3, /* nsa_<branch>_bwd_dkdv: dk and dv */
  NSAJIT_PASS_TOPN = 4,          /* nsa_compressed_topn: fused block scoring + top-n (compressed branch) */
  NSAJIT_PASS_POOL = 5,          /* nsa_compressed_pool: compression of k or v (mean) */
  NSAJIT_PASS_POOL_BWD = 6,      /* nsa_compressed_pool_bwd: its dx */
  NSAJIT_PASS_POOL_DW = 7,       /* nsa_compressed_pool_dw: weighted pooling's weight gradient */
  NSAJIT_PASS_COMBINE = 8        /* nsa_window_combine: the gated sum of the branches (any branch names it) */
} nsajit_kernel_pass;

/* Opaque: one GPU (CUcontext) plus the kernels loaded into it. */
typedef struct nsajit_context nsajit_context;

/* The attention configuration. Fill with nsajit_config_init(), then change
 * fields. Fields a branch does not use are ignored by it. */
typedef struct nsajit_config {
  uint32_t struct_size; /* = sizeof(nsajit_config); set by nsajit_config_init */
  int32_t dtype;        /* nsajit_dtype of q, k, v and out (default bf16) */
  int32_t head_dim_qk;  /* Dk: 64, 128, 192, 256 (default 128) */
  int32_t head_dim_v;   /* Dv <= Dk: 64, 128, 192, 256 (default 128) */
  int32_t num_kv_heads; /* H: 1..65535 (default 4) */
  int32_t group;        /* G, query heads per KV head: 1, 2, 4, 8, 16, 32 (default 16) */
  int32_t cmp_block;    /* l, compressed block length (default 32) */
  int32_t cmp_stride;   /* d, compressed stride, d <= l, l % d == 0 (default 16) */
  int32_t slc_block;    /* l', selection block: 16, 32, 64, 128 (default 64) */
  int32_t slc_count;    /* n, selected blocks per query: 1..1024 (default 16) */
  int32_t window;       /* w, sliding window: 1..2^24 (default 512) */
  float scale;          /* softmax scale; 0 = 1/sqrt(Dk) (default 0) */
  /* Tile overrides of the forward kernels (0 = nsajit's default for the branch
   * and GPU). The backward kernels always use nsajit's default tiles. */
  int32_t tile_warps;    /* warps per CTA, 1..8 */
  int32_t tile_tokens;   /* query tokens per CTA; selected branch: 1 = each token walks
                            its own blocks, 2..16 = the CTA walks the union of its
                            tokens' blocks once (pays when neighbours share blocks) */
  int32_t tile_kv_chunk; /* keys per inner-loop step: 16, 32, 64, 128 */
  /* Top-n selection (nsajit_select_topn): forced blocks, counted in slc_count. */
  int32_t slc_initial;   /* initial blocks 0 .. slc_initial-1 always selected (default 1) */
  int32_t slc_local;     /* the query's block and the slc_local-1 before it (default 2) */
} nsajit_config;

/* A strided view of a device tensor [batch, token, head, dim] (or, for lse,
 * [batch, token, head]). Strides are in elements of the tensor's own type; the
 * innermost dimension (dim, or head for lse) is contiguous.
 * Rules checked before every launch:
 *  - data != 0, 16-byte aligned for bf16/fp16 tensors, 4-byte aligned for
 *    indices and the float32 tensors;
 *  - bf16/fp16 strides are multiples of 8 elements (16 bytes);
 *  - input strides are >= 0 (0 broadcasts), output strides > 0 and the
 *    output's elements must not overlap; the head stride of the float32
 *    [B, T, HQ] tensors (lse, gate, delta, dgate) must be 1;
 *  - an output must not share memory with another output or with an input of
 *    the same call (views interleaved in disjoint slots of a common stride,
 *    such as dq/dk/dv inside one packed gradient, are fine);
 *  - strides of dimensions of size 1 are ignored. */
typedef struct nsajit_tensor {
  uint64_t data; /* CUdeviceptr */
  int64_t stride_batch;
  int64_t stride_token;
  int64_t stride_head;
} nsajit_tensor;

typedef struct nsajit_cache_counters {
  uint32_t struct_size;    /* = sizeof(nsajit_cache_counters) */
  uint64_t kernel_hits;    /* kernel already loaded in the context */
  uint64_t ptx_memory_hits;/* PTX found in the process-wide memory cache */
  uint64_t disk_hits;      /* kernels read from the disk cache (machine code or PTX) */
  uint64_t compiles;       /* PTX generated by the compiler */
  uint64_t modules_loaded; /* modules loaded into the context (machine code or PTX) */
  uint64_t disk_writes;    /* files written to the disk cache (PTX and machine code) */
  uint64_t disk_rejects;   /* cache files rejected (corrupt, truncated, other key) */
  /* Appended fields (a caller's smaller struct_size receives only those before them): */
  uint64_t machine_code_disk_hits; /* of disk_hits: machine code, loaded with no assembly */
  uint64_t ptxas_runs;     /* PTX assembled by ptxas (in parallel; the others: the driver's JIT) */
} nsajit_cache_counters;

/* What a kernel needs; registers and local memory are known only once it is
 * loaded into a context (-1 otherwise). */
typedef struct nsajit_kernel_info {
  uint32_t struct_size;        /* = sizeof(nsajit_kernel_info) */
  int32_t arch;                /* 80 (sm_80) or 90 (sm_90a) */
  int32_t threads_per_cta;
  int32_t shared_memory_bytes; /* dynamic shared memory per CTA */
  int32_t tile_warps;
  int32_t tile_tokens;         /* query tokens per CTA (grid x = ceil(T / tile_tokens));
                                  bwd_dkdv: query tokens staged per inner-loop step */
  int32_t tile_kv_chunk;       /* keys per inner-loop step; bwd_dkdv: keys per CTA
                                  (grid x = ceil(Tkv / tile_kv_chunk)) */
  int32_t num_regs;            /* per thread; -1 if unknown */
  int32_t local_bytes;         /* local memory (spills) per thread; -1 if unknown */
  char kernel_name[64];
  char spec[256];              /* the kernel spec as text (part of the cache key) */
} nsajit_kernel_info;

/* ---- errors and versions ------------------------------------------------ */

NSAJIT_API const char *nsajit_last_error(void);
NSAJIT_API const char *nsajit_status_string(nsajit_status status); /* "NSAJIT_ERROR_NO_DEVICE" */
NSAJIT_API const char *nsajit_version(void);          /* "0.1.0" */
NSAJIT_API const char *nsajit_compiler_version(void); /* the kernel compiler, part of every cache key */
NSAJIT_API uint32_t nsajit_abi_version(void);         /* NSAJIT_ABI_VERSION of the library */

/* Log sink for warnings (e.g. a cache directory that cannot be written) and,
 * with NSAJIT_VERBOSE=1, information. Default: warnings go to stderr.
 * fn = NULL restores the default. The callback may be called from any thread. */
typedef enum nsajit_log_level { NSAJIT_LOG_WARNING = 1, NSAJIT_LOG_INFO = 2 } nsajit_log_level;
typedef void (*nsajit_log_fn)(int level, const char *message, void *user_data);
NSAJIT_API nsajit_status nsajit_set_log_callback(nsajit_log_fn fn, void *user_data);

/* ---- configuration ------------------------------------------------------ */

/* Fills the paper's defaults: bf16, Dk = Dv = 128, H = 4, G = 16, l = 32, d = 16,
 * l' = 64, n = 16, w = 512, scale 1/sqrt(Dk), default tiles. */
NSAJIT_API nsajit_status nsajit_config_init(nsajit_config *config);

/* ---- contexts ----------------------------------------------------------- */

/* Binds to GPU `device_ordinal` (-1: the device of the calling thread's current
 * CUDA context, or 0 if there is none). Uses the calling thread's current
 * context if it belongs to that device, else the device's primary context
 * (retained until nsajit_context_destroy). */
NSAJIT_API nsajit_status nsajit_context_create(nsajit_context **out, int device_ordinal);
/* Unloads the context's kernels. NULL is ignored. */
NSAJIT_API nsajit_status nsajit_context_destroy(nsajit_context *ctx);
/* Forces the kernel architecture: 80 (sm_80 PTX, runs on any GPU >= 8.0) or
 * 90 (sm_90a, compute capability 9.0 only: the compressed and window forward
 * kernels of whole-warpgroup tiles use wgmma); 0 restores the automatic choice
 * (sm_90a on compute capability 9.0, else sm_80). */
NSAJIT_API nsajit_status nsajit_context_set_arch(nsajit_context *ctx, int arch);
/* The backward's dK/dV kernel walks, for each chunk of keys, the query tokens
 * that see them; a long walk (the first compressed keys, a block every token
 * selects) is split over several CTAs that add their partial sums in a fixed
 * order (deterministic) in a scratch buffer the context keeps per stream
 * (freed by nsajit_context_destroy). `tokens`: the most query tokens one CTA
 * walks; 0 (the default) chooses automatically (1024 for the compressed branch, 2048 for the
 * window; for the selected one, about the tokens a resident CTA walks on
 * average: 4 splits at B = 1, H = 4, n = 16 on an H100; at most 64 CTAs a
 * chunk). */
NSAJIT_API nsajit_status nsajit_context_set_backward_split(nsajit_context *ctx, int tokens);
/* The selected branch's backward marks, per selection block, the query tokens
 * that selected it (a bitmap of B x H x ceil(T / l') x ceil(T / 32) words in
 * the context's per-stream workspace: 8 MiB per batch and KV head at T = 64k,
 * l' = 64) so that bwd_dkdv visits only those tokens. `bytes`: the largest map
 * allowed (default 512 MiB); above it, or with 0, bwd_dkdv scans every later
 * token's index list instead (slower, no extra memory). Results are the same. */
NSAJIT_API nsajit_status nsajit_context_set_selection_map_limit(nsajit_context *ctx, size_t bytes);
/* "device 0: NVIDIA H100 80GB HBM3, compute capability 9.0 (kernels: sm_90a), ..." */
NSAJIT_API nsajit_status nsajit_device_info(nsajit_context *ctx, char *buf, size_t len);

/* ---- forward kernels -----------------------------------------------------
 * q   [B, T, H*G, Dk]           dtype           (B = batch, T = seq_len)
 * out [B, T, H*G, Dv]           dtype, written
 * lse [B, T, H*G]               float32, written: natural-log sum-exp of the
 *                               scaled scores; -inf (and out = 0) for a query
 *                               that sees no key.
 * batch: 1..65535; seq_len: >= 1.
 */

/* Compressed branch: k_cmp [B, Tc, H, Dk], v_cmp [B, Tc, H, Dv] with
 * Tc = seq_len >= l ? (seq_len - l) / d + 1 : 0 (when Tc == 0 their data may
 * be 0). Query t attends compressed token i when i*d + l - 1 <= t. */
NSAJIT_API nsajit_status nsajit_compressed_forward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                                   int seq_len, const nsajit_tensor *q,
                                                   const nsajit_tensor *k_cmp, const nsajit_tensor *v_cmp,
                                                   const nsajit_tensor *out, const nsajit_tensor *lse,
                                                   void *stream);

/* Selected branch: k [B, T, H, Dk], v [B, T, H, Dv], indices int32 [B, T, H, n]:
 * the selection blocks of each query token and KV head (block j = keys
 * j*l' .. j*l'+l'-1, causally masked). An index that is -1, negative, or whose
 * block starts after the query token contributes nothing; a repeated index is
 * attended as often as it is listed. */
NSAJIT_API nsajit_status nsajit_selected_forward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                                 int seq_len, const nsajit_tensor *q, const nsajit_tensor *k,
                                                 const nsajit_tensor *v, const nsajit_tensor *indices,
                                                 const nsajit_tensor *out, const nsajit_tensor *lse,
                                                 void *stream);

/* Sliding-window branch: k [B, T, H, Dk], v [B, T, H, Dv]; query t attends keys
 * max(0, t - w + 1) .. t. */
NSAJIT_API nsajit_status nsajit_window_forward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                               int seq_len, const nsajit_tensor *q, const nsajit_tensor *k,
                                               const nsajit_tensor *v, const nsajit_tensor *out,
                                               const nsajit_tensor *lse, void *stream);

/* ---- compression (NSA's phi for the compressed branch) ------------------
 * Pools keys or values x [B, T, H, dim] (H = config->num_kv_heads, dim in
 * 64, 128, 192, 256) over blocks of l = cmp_block tokens with stride
 * d = cmp_stride into out [B, Tc, H, dim], Tc = T >= l ? (T - l) / d + 1 : 0:
 * out[i] = sum_p w[p] x[i*d + p], with w = 1/l (mean pooling, weights = 0) or
 * the learned weights (a device pointer to l float32 values). Other learned
 * phi (MLPs) stay in the model: pass their output as k_cmp / v_cmp. */
NSAJIT_API nsajit_status nsajit_compress_forward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                                 int seq_len, int dim, const nsajit_tensor *x, uint64_t weights,
                                                 const nsajit_tensor *out, void *stream);
/* dx [B, T, H, dim] (written, zeros where no block covers a token) and, with
 * weights, dweights (l float32 values, written; required exactly then), from
 * dout [B, Tc, H, dim]. Deterministic: no atomics. */
NSAJIT_API nsajit_status nsajit_compress_backward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                                  int seq_len, int dim, const nsajit_tensor *x, uint64_t weights,
                                                  const nsajit_tensor *dout, const nsajit_tensor *dx,
                                                  uint64_t dweights, void *stream);

/* ---- gated combination of the three branches -----------------------------
 * out = sum over c in (cmp, slc, swa) of g_c * o_c (NSA eq. 5), formed as
 * nsajit.torch's reference does: each gated term rounded to the dtype, the
 * sum in float32 (compressed + selected + window, in that order) rounded once.
 * One pass over the outputs, no float32 temporaries.
 *   o_cmp, o_slc, o_swa [B, T, H*G, Dv]  dtype (rows 16-byte aligned: data 16-byte
 *                                        aligned, strides multiples of 8)
 *   g_cmp, g_slc, g_swa [B, T, H*G]      float32, or NULL for a gate of 1
 *   out                 [B, T, H*G, Dv]  dtype, written (must not overlap the inputs)
 * config: dtype, H, G and Dv (one kernel serves every configuration with the
 * same dtype and Dv). The backward needs no kernel of its own: each branch's
 * backward takes its gate (dout unchanged) and returns its gate's gradient. */
NSAJIT_API nsajit_status nsajit_gated_combine(nsajit_context *ctx, const nsajit_config *config, int batch,
                                              int seq_len, const nsajit_tensor *o_cmp, const nsajit_tensor *g_cmp,
                                              const nsajit_tensor *o_slc, const nsajit_tensor *g_slc,
                                              const nsajit_tensor *o_swa, const nsajit_tensor *g_swa,
                                              const nsajit_tensor *out, void *stream);

/* ---- fused block scoring + top-n selection ------------------------------
 * For each query token t and KV head: p_cmp = softmax(scale q k_cmp^T) over
 * the visible compressed tokens (recomputed from the compressed forward's lse,
 * never stored), summed over the G query heads of the group, mapped to
 * selection blocks of l' tokens (NSA eq. 9), then the slc_count best visible
 * blocks (j * l' <= t), with the slc_initial first blocks and the slc_local
 * blocks ending at t's own always selected; ties go to the lower index.
 * indices [B, T, H, n] int32 is written: ascending block indices, then -1.
 * q [B, T, HQ, Dk], k_cmp [B, Tc, H, Dk], lse_cmp [B, T, HQ] fp32 (from
 * nsajit_compressed_forward with the same q and k_cmp). */
NSAJIT_API nsajit_status nsajit_select_topn(nsajit_context *ctx, const nsajit_config *config, int batch,
                                            int seq_len, const nsajit_tensor *q, const nsajit_tensor *k_cmp,
                                            const nsajit_tensor *lse_cmp, const nsajit_tensor *indices,
                                            void *stream);

/* ---- backward kernels ----------------------------------------------------
 * The gradient of one branch c of the gated sum o = sum_c gate_c * o_c: call
 * it once per branch, with that branch's gate and forward results.
 * Inputs:
 *   q, k/v (k_cmp/v_cmp), indices: as given to the branch's forward;
 *   o     [B, T, H*G, Dv]  dtype    the branch's forward output o_c;
 *   lse   [B, T, H*G]      float32  the branch's forward lse (P is recomputed from it);
 *   dout  [B, T, H*G, Dv]  dtype    the gradient of the gated sum o;
 *   gate  [B, T, H*G]      float32  the branch's gate, or NULL: all gates 1.
 * Outputs (overwritten, not accumulated: the gradient of q is the sum of the
 * three branches' dq, and with K/V shared between branches add their dk/dv
 * too). Every element is written exactly once, and partial sums (of a split
 * dK/dV walk, nsajit_context_set_backward_split) are added in one fixed
 * order without floating-point atomics, so the results are deterministic:
 *   delta [B, T, H*G]      float32  scratch the call needs; it receives
 *                                   rowsum(gate * dout * o_c);
 *   dq    [B, T, H*G, Dk]  dtype;   0 for a query that sees no key;
 *   dk    [B, Tkv, H, Dk]  dtype    (Tkv = Tc for the compressed branch, else T);
 *   dv    [B, Tkv, H, Dv]  dtype;
 *   dgate [B, T, H*G]      float32  rowsum(dout * o_c): required when gate is
 *                                   given, and must be NULL when it is not.
 * The call launches three kernels in order on `stream`: bwd_pre (delta,
 * dgate), bwd_dq (dq), bwd_dkdv (dk, dv); all three are loaded (compiled if
 * needed) before the first launch. The compressed branch with Tc == 0 launches
 * no bwd_dkdv (dk and dv are empty; their data may be 0).
 * batch: 1..65535; seq_len: >= 1. The tensor rules are those of nsajit_tensor.
 */
NSAJIT_API nsajit_status nsajit_compressed_backward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                                    int seq_len, const nsajit_tensor *q,
                                                    const nsajit_tensor *k_cmp, const nsajit_tensor *v_cmp,
                                                    const nsajit_tensor *o, const nsajit_tensor *lse,
                                                    const nsajit_tensor *dout, const nsajit_tensor *gate,
                                                    const nsajit_tensor *delta, const nsajit_tensor *dq,
                                                    const nsajit_tensor *dk, const nsajit_tensor *dv,
                                                    const nsajit_tensor *dgate, void *stream);

/* Selected branch: the gradient flows to the keys and values of the selected
 * blocks only; indices are not differentiated. */
NSAJIT_API nsajit_status nsajit_selected_backward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                                  int seq_len, const nsajit_tensor *q, const nsajit_tensor *k,
                                                  const nsajit_tensor *v, const nsajit_tensor *indices,
                                                  const nsajit_tensor *o, const nsajit_tensor *lse,
                                                  const nsajit_tensor *dout, const nsajit_tensor *gate,
                                                  const nsajit_tensor *delta, const nsajit_tensor *dq,
                                                  const nsajit_tensor *dk, const nsajit_tensor *dv,
                                                  const nsajit_tensor *dgate, void *stream);

NSAJIT_API nsajit_status nsajit_window_backward(nsajit_context *ctx, const nsajit_config *config, int batch,
                                                int seq_len, const nsajit_tensor *q, const nsajit_tensor *k,
                                                const nsajit_tensor *v, const nsajit_tensor *o,
                                                const nsajit_tensor *lse, const nsajit_tensor *dout,
                                                const nsajit_tensor *gate, const nsajit_tensor *delta,
                                                const nsajit_tensor *dq, const nsajit_tensor *dk,
                                                const nsajit_tensor *dv, const nsajit_tensor *dgate, void *stream);

/* Debug helper: waits for `stream`, copies the indices to the host and fails
 * with NSAJIT_ERROR_INVALID_ARGUMENT naming the first index that is neither -1
 * nor a block j >= 0 with j*l' <= t. (The kernel tolerates such indices; this
 * finds bugs in the code that produced them.) */
NSAJIT_API nsajit_status nsajit_check_indices(nsajit_context *ctx, const nsajit_config *config, int batch,
                                              int seq_len, const nsajit_tensor *indices, void *stream);

/* ---- kernels, PTX and the cache ----------------------------------------- */

/* Generates (or finds in the cache) and loads the kernel of `branch` for the
 * context's GPU; *ptx_out points to its PTX, owned by ctx (valid until
 * nsajit_context_destroy). */
NSAJIT_API nsajit_status nsajit_compile(nsajit_context *ctx, const nsajit_config *config, nsajit_branch branch,
                                        const char **ptx_out);

/* Without a GPU: PTX for arch 80 (sm_80) or 90 (sm_90a). Writes at most
 * buf_len bytes including the terminating NUL; *ptx_len (if not NULL) gets
 * strlen of the whole PTX. buf may be NULL (with buf_len 0) to ask the size.
 * A buffer that is too small gives NSAJIT_ERROR_INVALID_ARGUMENT. */
NSAJIT_API nsajit_status nsajit_compile_ptx(const nsajit_config *config, nsajit_branch branch, int arch, char *buf,
                                            size_t buf_len, size_t *ptx_len);

/* Resources of the kernel for `branch`. ctx may be NULL: then `arch` (80 or
 * 90) is used and num_regs/local_bytes are -1; with a ctx the kernel is loaded
 * (compiled if needed) and `arch` is ignored. */
NSAJIT_API nsajit_status nsajit_kernel_query(nsajit_context *ctx, const nsajit_config *config,
                                             nsajit_branch branch, int arch, nsajit_kernel_info *info);

/* The same three functions for any kernel of a branch: `pass` is an
 * nsajit_kernel_pass (NSAJIT_PASS_FORWARD gives the functions above). */
NSAJIT_API nsajit_status nsajit_compile2(nsajit_context *ctx, const nsajit_config *config, nsajit_branch branch,
                                         nsajit_kernel_pass pass, const char **ptx_out);
NSAJIT_API nsajit_status nsajit_compile_ptx2(const nsajit_config *config, nsajit_branch branch,
                                             nsajit_kernel_pass pass, int arch, char *buf, size_t buf_len,
                                             size_t *ptx_len);
NSAJIT_API nsajit_status nsajit_kernel_query2(nsajit_context *ctx, const nsajit_config *config,
                                              nsajit_branch branch, nsajit_kernel_pass pass, int arch,
                                              nsajit_kernel_info *info);

/* Cache counters of ctx, or of the whole process when ctx is NULL.
 * Set stats->struct_size = sizeof(nsajit_cache_counters) first. */
NSAJIT_API nsajit_status nsajit_cache_stats(nsajit_context *ctx, nsajit_cache_counters *stats);

/* "disk cache: /home/u/.cache/nsajit (read-write, at most 2048 MB)" (or the reason it is off),
 * then what turns PTX into machine code: "; machine code: ptxas /usr/local/cuda/bin/ptxas (Cuda
 * compilation tools, release 13.0, V13.0.88)" or "; machine code: the driver's JIT (no ptxas)". */
NSAJIT_API nsajit_status nsajit_cache_info(char *buf, size_t len);

/* ---- preparing a configuration ------------------------------------------
 * nsajit_prepare generates (or finds in the caches) and loads every kernel a
 * configuration needs, several at once on a thread pool (NSAJIT_COMPILE_THREADS
 * threads, default: the hardware threads), so a new configuration costs about
 * its slowest kernel, not the sum, and later calls never stop to compile.
 * `flags` picks the kernels: the forward of each branch (with the tuned tile at
 * batch x seq_len if there is one; seq_len 0: default tiles) and the gated
 * combination (Dv wide), their backward passes and the combination Dk wide
 * (nsa_attention's sum of the branches' dq), the fused top-n, the mean pooling kernels for Dk and Dv, and (flag
 * NSAJIT_PREPARE_WEIGHTED_POOL) the learned weighted pooling kernels. `progress`
 * (may be NULL) is called after each kernel, from whichever thread loaded it,
 * one call at a time: done of total, the kernel's spec, its seconds (< 0: it
 * failed). *kernels_out (may be NULL) gets the number of kernels. The first
 * failure is returned after every kernel was tried. */
typedef enum nsajit_prepare_flags {
  NSAJIT_PREPARE_FORWARD = 1,
  NSAJIT_PREPARE_BACKWARD = 2,
  NSAJIT_PREPARE_SELECTION = 4,
  NSAJIT_PREPARE_COMPRESSION = 8,
  NSAJIT_PREPARE_ALL = 15,          /* everything nsa_attention needs with mean pooling */
  NSAJIT_PREPARE_WEIGHTED_POOL = 16 /* the weighted pooling kernels (pool, pool_bwd, pool_dw) */
} nsajit_prepare_flags;

typedef void (*nsajit_prepare_progress_fn)(int done, int total, const char *kernel, double seconds, void *user);

NSAJIT_API nsajit_status nsajit_prepare(nsajit_context *ctx, const nsajit_config *config, unsigned flags, int batch,
                                        int seq_len, nsajit_prepare_progress_fn progress, void *user,
                                        int *kernels_out);

/* ---- autotuning ----------------------------------------------------------
 * nsajit_tune times every legal tile (warps, query tokens per CTA, kv chunk) of
 * the forward kernel of `branch` for `config` (its tile_* fields are ignored) on
 * the context's GPU, with random inputs of batch x seq_len tokens and `repeats`
 * timed launches per tile (median; CUDA events on the default stream; the
 * selected branch's time is the sum over uniformly random block indices and
 * local ones, as trained models select them), and
 * records the fastest in the per-GPU tuning database in the cache directory
 * (<cache dir>/tuning/<GPU name>-sm<cc>.tsv). Forward launches whose config has
 * all tile_* fields 0 then use the tuned tile (of the entry nearest in
 * batch x seq_len) without being asked; NSAJIT_TUNING=off ignores the database.
 * The default tile wins unless another is more than 2% faster. `progress` (may
 * be NULL) is called after each tile: done of total, the tile as
 * "w<warps> t<tokens> c<kv_chunk>", its time in ms (< 0: the tile failed).
 * Takes seconds (each tile is compiled once, then cached). */
typedef void (*nsajit_tune_progress_fn)(int done, int total, const char *tile, double ms, void *user);

typedef struct nsajit_tune_result {
  uint32_t struct_size;  /* = sizeof(nsajit_tune_result) */
  int32_t tile_warps;    /* the fastest tile */
  int32_t tile_tokens;
  int32_t tile_kv_chunk;
  double best_ms;
  int32_t default_warps; /* nsajit's default tile, for comparison */
  int32_t default_tokens;
  int32_t default_kv_chunk;
  double default_ms;     /* < 0 if the default tile failed */
  int32_t candidates;    /* tiles tried */
  int32_t failed;        /* of which failed (compile, resources or launch) */
  char database[512];    /* the file the result was recorded in ("" = memory only) */
} nsajit_tune_result;

NSAJIT_API nsajit_status nsajit_tune(nsajit_context *ctx, const nsajit_config *config, nsajit_branch branch,
                                     int batch, int seq_len, int repeats, nsajit_tune_progress_fn progress,
                                     void *user, nsajit_tune_result *result);

/* The tile a forward launch of `branch` with default tiles would use at
 * batch x seq_len: the tuned one (*tuned = 1) or nsajit's default (*tuned = 0). */
NSAJIT_API nsajit_status nsajit_tuned_tile(nsajit_context *ctx, const nsajit_config *config, nsajit_branch branch,
                                           int batch, int seq_len, int32_t *warps, int32_t *tokens,
                                           int32_t *kv_chunk, int *tuned);

/* nsajit_tune_backward tunes the backward of `branch` for `config`: the split
 * length of the bwd_dkdv token walk (the most query tokens one dK/dV CTA walks,
 * nsajit_context_set_backward_split), the backward choice that moves its time
 * most at long sequences. It times the whole backward (bwd_pre, bwd_dq,
 * bwd_dkdv; after one forward for o and lse) on random inputs of batch x
 * seq_len tokens, `repeats` timed launches per candidate (median; CUDA events
 * on the default stream; the selected branch: the sum over random and local
 * block indices, as nsajit_tune), for nsajit's automatic length and for 256, 512, ...,
 * 32768 tokens and no split, each only where it gives another number of splits
 * at this size. The fastest is recorded in the tuning database under the
 * bwd_dkdv kernel's spec; backward launches of a context whose split is 0
 * (automatic, the default) then use it (the entry nearest in batch x seq_len).
 * The automatic length wins unless another is more than 2% faster. `progress`
 * (may be NULL) is called after each candidate with "split <tokens> (<n>
 * CTAs a key chunk)" or "split auto (<n> ...)" and its time in ms (< 0: it failed). */
typedef struct nsajit_tune_backward_result {
  uint32_t struct_size;   /* = sizeof(nsajit_tune_backward_result) */
  int32_t split_tokens;   /* the fastest split length (0: the automatic one) */
  int32_t splits;         /* the CTAs a key chunk's walk is split over with it, at batch x seq_len */
  double best_ms;         /* the whole backward */
  int32_t default_splits; /* the automatic length's splits */
  double default_ms;      /* < 0 if it failed */
  int32_t candidates;     /* lengths tried */
  int32_t failed;
  char database[512];     /* the file the result was recorded in ("" = memory only) */
} nsajit_tune_backward_result;

NSAJIT_API nsajit_status nsajit_tune_backward(nsajit_context *ctx, const nsajit_config *config, nsajit_branch branch,
                                              int batch, int seq_len, int repeats, nsajit_tune_progress_fn progress,
                                              void *user, nsajit_tune_backward_result *result);

/* The split length a backward of `branch` would take from the tuning database
 * at batch x seq_len: *split_tokens the tuned length (*tuned = 1; 0 is the
 * automatic one), else 0 (*tuned = 0). A context split set by
 * nsajit_context_set_backward_split takes precedence over both. */
NSAJIT_API nsajit_status nsajit_tuned_backward_split(nsajit_context *ctx, const nsajit_config *config,
                                                     nsajit_branch branch, int batch, int seq_len,
                                                     int32_t *split_tokens, int *tuned);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* NSAJIT_NSAJIT_H */
