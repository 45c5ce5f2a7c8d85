// nsajit: the command-line tool, a client of the public C API (libnsajit.so).
//   nsajit info                         versions, cache, GPU
//   nsajit compile [config] [--ptx]     generate the kernels of a configuration,
//                                       print their resources (and the PTX)
//   nsajit check [config] [--T n --B n] run each branch's forward and backward
//                                       and the fused top-n on the GPU against
//                                       the float64 CPU reference
//   nsajit prepare [config] [--T n]     compile and load every kernel of the
//                                       configuration in parallel (progress bar)
//   nsajit tune [config] [--T n --B n]  time every tile of each branch's forward
//                                       on the GPU and record the fastest in the
//                                       per-GPU tuning database (used by later runs);
//               [--backward]            also each backward's dK/dV split length
// Config flags: --branch all|compressed|selected|window --dtype bf16|fp16
//   --dk N --dv N --heads H --group G --l N --d N --lsel N --n N --w N
//   --arch sm_80|sm_90a (compile without a GPU)
#include "nsajit/nsajit.h"
#include "runtime/check/BackwardCheck.h"
#include "runtime/check/TopNCheck.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace {

struct Options {
  std::string command;
  std::string branch = "all";
  nsajit_config cfg{};
  int arch = 0; // 0: the GPU's, else 80/90
  bool printPtx = false;
  int T = 1000, B = 1;
  bool tSet = false;
  int repeats = 20;
  bool backward = false; // tune: the backward's split length too
  std::string indices = "valid"; // check: the selected branch's index lists
};

void usage(FILE *f) {
  std::fprintf(f,
               "usage: nsajit <info|compile|check|prepare|tune> [options]\n"
               "  --branch all|compressed|selected|window   (default all)\n"
               "  --dtype bf16|fp16 --dk N --dv N --heads H --group G\n"
               "  --l N --d N (compressed)  --lsel N --n N (selected)  --w N (window)\n"
               "  --arch sm_80|sm_90a   compile for this architecture (default: the GPU's, else sm_90a)\n"
               "  --tile-warps N --tile-tokens N --tile-kv-chunk N   compile/check: the forward's tile (0: default)\n"
               "  --ptx                 compile: print the PTX too\n"
               "  --T N --B N           check/tune: sequence length and batch (default 1000 / 16384, 1)\n"
               "  --indices valid|local|hostile   check: the selected branch's index lists (default valid)\n"
               "  --repeats N           tune: timed launches per tile (default 20)\n"
               "  --backward            tune: also each backward's dK/dV split length\n"
               "The defaults are the paper's: bf16, Dk=Dv=128, H=4, G=16, l=32, d=16, l'=64, n=16, w=512.\n");
}

bool parse(int argc, char **argv, Options &o) {
  if (argc < 2) return false;
  o.command = argv[1];
  nsajit_config_init(&o.cfg);
  std::map<std::string, int32_t *> ints = {
      {"--dk", &o.cfg.head_dim_qk}, {"--dv", &o.cfg.head_dim_v}, {"--heads", &o.cfg.num_kv_heads},
      {"--group", &o.cfg.group},    {"--l", &o.cfg.cmp_block},    {"--d", &o.cfg.cmp_stride},
      {"--lsel", &o.cfg.slc_block}, {"--n", &o.cfg.slc_count},    {"--w", &o.cfg.window},
      {"--tile-warps", &o.cfg.tile_warps}, {"--tile-tokens", &o.cfg.tile_tokens},
      {"--tile-kv-chunk", &o.cfg.tile_kv_chunk}};
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char * { return i + 1 < argc ? argv[++i] : nullptr; };
    if (ints.count(a)) {
      const char *v = value();
      if (!v) return false;
      *ints[a] = std::atoi(v);
    } else if (a == "--branch") {
      const char *v = value();
      if (!v) return false;
      o.branch = v;
    } else if (a == "--dtype") {
      const char *v = value();
      if (!v) return false;
      if (!std::strcmp(v, "bf16")) o.cfg.dtype = NSAJIT_DTYPE_BF16;
      else if (!std::strcmp(v, "fp16")) o.cfg.dtype = NSAJIT_DTYPE_FP16;
      else {
        std::fprintf(stderr, "nsajit: --dtype %s is not supported; allowed: bf16, fp16\n", v);
        return false;
      }
    } else if (a == "--arch") {
      const char *v = value();
      if (!v) return false;
      if (!std::strcmp(v, "sm_80")) o.arch = 80;
      else if (!std::strcmp(v, "sm_90a")) o.arch = 90;
      else {
        std::fprintf(stderr, "nsajit: --arch %s is not supported; allowed: sm_80, sm_90a\n", v);
        return false;
      }
    } else if (a == "--backward") {
      o.backward = true;
    } else if (a == "--ptx") {
      o.printPtx = true;
    } else if (a == "--T" || a == "--B") {
      const char *v = value();
      if (!v) return false;
      (a == "--T" ? o.T : o.B) = std::atoi(v);
      o.tSet = o.tSet || a == "--T";
    } else if (a == "--indices") {
      const char *v = value();
      if (!v) return false;
      o.indices = v;
      if (o.indices != "valid" && o.indices != "local" && o.indices != "hostile") {
        std::fprintf(stderr, "nsajit: --indices %s is not supported; allowed: valid, local, hostile\n", v);
        return false;
      }
    } else if (a == "--repeats") {
      const char *v = value();
      if (!v) return false;
      o.repeats = std::atoi(v);
    } else {
      std::fprintf(stderr, "nsajit: unknown option '%s'\n", a.c_str());
      return false;
    }
  }
  return true;
}

std::vector<std::pair<nsajit_branch, const char *>> branches(const std::string &which, bool &ok) {
  std::vector<std::pair<nsajit_branch, const char *>> all = {{NSAJIT_BRANCH_COMPRESSED, "compressed"},
                                                             {NSAJIT_BRANCH_SELECTED, "selected"},
                                                             {NSAJIT_BRANCH_WINDOW, "window"}};
  ok = true;
  if (which == "all") return all;
  for (auto &b : all)
    if (which == b.second) return {b};
  std::fprintf(stderr, "nsajit: --branch %s is not supported; allowed: all, compressed, selected, window\n",
               which.c_str());
  ok = false;
  return {};
}

// Registers and spills from ptxas -v when a CUDA toolkit is installed (optional).
std::string ptxasSummary(const std::string &ptx, int arch) {
  const char *candidates[] = {"/usr/local/cuda/bin/ptxas", "/usr/bin/ptxas"};
  const char *ptxas = nullptr;
  for (const char *c : candidates)
    if (std::filesystem::exists(c)) ptxas = c;
  if (!ptxas) return "";
  auto dir = std::filesystem::temp_directory_path();
  std::string in = (dir / ("nsajit-" + std::to_string(::getpid()) + ".ptx")).string();
  std::ofstream(in) << ptx;
  std::string cmd = std::string(ptxas) + " -v -arch=" + (arch == 80 ? "sm_80" : "sm_90a") + " " + in +
                    " -o /dev/null 2>&1";
  std::string out;
  if (FILE *p = popen(cmd.c_str(), "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, p))
      if (std::strstr(line, "Used") || std::strstr(line, "spill") || std::strstr(line, "error"))
        out += std::string("    ptxas: ") + line;
    pclose(p);
  }
  std::filesystem::remove(in);
  return out;
}

int cmdInfo() {
  std::printf("nsajit %s (C ABI %u)\ncompiler: %s\n", nsajit_version(), nsajit_abi_version(),
              nsajit_compiler_version());
  char buf[1024];
  if (nsajit_cache_info(buf, sizeof buf) == NSAJIT_OK) std::printf("%s\n", buf);
  nsajit_context *ctx = nullptr;
  if (nsajit_context_create(&ctx, 0) != NSAJIT_OK) {
    std::printf("gpu: none (%s)\n", nsajit_last_error());
    return 0;
  }
  if (nsajit_device_info(ctx, buf, sizeof buf) == NSAJIT_OK) std::printf("gpu: %s\n", buf);
  nsajit_context_destroy(ctx);
  return 0;
}

int cmdCompile(const Options &o) {
  bool ok;
  auto list = branches(o.branch, ok);
  if (!ok) return 2;
  nsajit_context *ctx = nullptr;
  if (o.arch == 0 && nsajit_context_create(&ctx, 0) != NSAJIT_OK) {
    std::printf("no CUDA device (%s): compiling for sm_90a without loading\n", nsajit_last_error());
    ctx = nullptr;
  }
  int arch = o.arch ? o.arch : 90;
  int failures = 0;
  for (auto [branch, name] : list) {
    nsajit_kernel_info info{};
    info.struct_size = sizeof info;
    if (nsajit_kernel_query(ctx, &o.cfg, branch, arch, &info) != NSAJIT_OK) {
      std::fprintf(stderr, "nsajit compile %s: %s\n", name, nsajit_last_error());
      ++failures;
      continue;
    }
    size_t len = 0;
    nsajit_compile_ptx(&o.cfg, branch, info.arch, nullptr, 0, &len);
    std::string ptx(len + 1, '\0');
    if (nsajit_compile_ptx(&o.cfg, branch, info.arch, ptx.data(), ptx.size(), &len) != NSAJIT_OK) {
      std::fprintf(stderr, "nsajit compile %s: %s\n", name, nsajit_last_error());
      ++failures;
      continue;
    }
    ptx.resize(len);
    std::printf("%s: kernel %s for sm_%d%s\n  spec: %s\n  CTA: %d threads, %d bytes dynamic shared memory; tile: "
                "%d warps, %d query tokens, %d-key chunks\n",
                name, info.kernel_name, info.arch, info.arch == 90 ? "a" : "", info.spec, info.threads_per_cta,
                info.shared_memory_bytes, info.tile_warps, info.tile_tokens, info.tile_kv_chunk);
    if (info.num_regs >= 0)
      std::printf("  loaded on the GPU: %d registers/thread, %d bytes local memory/thread\n", info.num_regs,
                  info.local_bytes);
    std::printf("  PTX: %zu bytes\n%s", ptx.size(), ptxasSummary(ptx, info.arch).c_str());
    if (o.printPtx) std::printf("%s\n", ptx.c_str());
  }
  if (ctx) nsajit_context_destroy(ctx);
  return failures ? 1 : 0;
}

int cmdCheck(const Options &o) {
  using namespace nsajit::check;
  bool ok;
  auto list = branches(o.branch, ok);
  if (!ok) return 2;
  std::string why;
  Device *dev = Device::open(why);
  if (!dev) {
    std::printf("nsajit check: %s: skipped (the GPU check needs an NVIDIA GPU)\n", why.c_str());
    return 0;
  }
  nsajit_context *ctx = nullptr;
  if (nsajit_context_create(&ctx, 0) != NSAJIT_OK) {
    std::fprintf(stderr, "nsajit check: %s\n", nsajit_last_error());
    return 1;
  }
  int failures = 0;
  for (auto [branch, name] : list) {
    Case c{branch == NSAJIT_BRANCH_COMPRESSED ? Br::Cmp : branch == NSAJIT_BRANCH_SELECTED ? Br::Slc : Br::Swa,
           o.cfg.dtype == NSAJIT_DTYPE_FP16, o.cfg.head_dim_qk, o.cfg.head_dim_v, o.cfg.group, o.cfg.num_kv_heads,
           o.B, o.T};
    c.l = o.cfg.cmp_block, c.d = o.cfg.cmp_stride, c.lsel = o.cfg.slc_block, c.n = o.cfg.slc_count;
    c.w = o.cfg.window, c.seed = 12345;
    c.tileWarps = o.cfg.tile_warps, c.tileTokens = o.cfg.tile_tokens, c.tileKvChunk = o.cfg.tile_kv_chunk;
    c.indices = o.indices == "local" ? IndexMode::Local : o.indices == "hostile" ? IndexMode::Hostile : IndexMode::Valid;
    std::printf("%-10s computing the float64 reference...\r", name);
    std::fflush(stdout);
    Outcome r;
    try {
      r = runOnGpu(*dev, ctx, prepare(c));
    } catch (const std::exception &e) {
      r.error = e.what();
    }
    std::printf("%s forward  %s  rel_err=%.3e lse_abs_err=%.3e %s\n", r.ok ? "PASS" : "FAIL", c.label().c_str(),
                r.relErr, r.lseErr, r.error.c_str());
    failures += !r.ok;

    // Backward with a random gate: dq, dk, dv, dgate.
    BackwardOutcome rb;
    try {
      rb = runBackwardOnGpu(*dev, ctx, prepareBackward(c, /*gated=*/true));
    } catch (const std::exception &e) {
      rb.error = e.what();
    }
    std::printf("%s backward %s  rel_err dq=%.3e dk=%.3e dv=%.3e dgate=%.3e %s\n", rb.ok ? "PASS" : "FAIL",
                c.label().c_str(), rb.errDq, rb.errDk, rb.errDv, rb.errDgate, rb.error.c_str());
    failures += !rb.ok;

    // The compressed branch also drives the selection: the fused top-n.
    if (c.branch == Br::Cmp) {
      TopNOutcome rt;
      try {
        rt = runTopNOnGpu(*dev, ctx, prepareTopN(c, o.cfg.slc_initial, o.cfg.slc_local));
      } catch (const std::exception &e) {
        rt.error = e.what();
      }
      std::printf("%s top-n    %s l'=%d n=%d  rows differing from the reference: %ld (float near ties: %ld) %s\n",
                  rt.ok ? "PASS" : "FAIL", c.label().c_str(), c.lsel, c.n, rt.mismatches, rt.nearTies,
                  rt.error.c_str());
      failures += !rt.ok;
    }
  }
  nsajit_context_destroy(ctx);
  return failures ? 1 : 0;
}

// One progress line on stderr, redrawn in place: "  label [#####.....] 12/20 item value".
void progressLine(const char *label, int done, int total, const std::string &item, const std::string &value) {
  constexpr int kWidth = 24;
  std::string bar(total ? done * kWidth / total : kWidth, '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "\r  %-10s [%s] %2d/%-2d %-60.60s %s", label, bar.c_str(), done, total, item.c_str(),
               value.c_str());
  if (done == total)
    std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

void tuneProgress(int done, int total, const char *tile, double ms, void *user) {
  char value[32] = "   failed";
  if (ms >= 0)
    std::snprintf(value, sizeof value, "%9.4f ms", ms);
  progressLine(static_cast<const char *>(user), done, total, tile, value);
}

void prepareProgress(int done, int total, const char *kernel, double seconds, void *) {
  char value[32] = "FAILED";
  if (seconds >= 0)
    std::snprintf(value, sizeof value, "%6.2f s", seconds);
  progressLine("preparing", done, total, kernel, value);
}

int cmdPrepare(const Options &o) {
  nsajit_context *ctx = nullptr;
  if (nsajit_context_create(&ctx, 0) != NSAJIT_OK) {
    std::fprintf(stderr, "nsajit prepare: %s (loading kernels needs an NVIDIA GPU; `nsajit compile` works without)\n",
                 nsajit_last_error());
    return 1;
  }
  auto t0 = std::chrono::steady_clock::now();
  int n = 0;
  nsajit_status st = nsajit_prepare(ctx, &o.cfg, NSAJIT_PREPARE_ALL, o.B, o.tSet ? o.T : 0, prepareProgress, nullptr, &n);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (st != NSAJIT_OK) {
    std::fprintf(stderr, "\nnsajit prepare: %s\n", nsajit_last_error());
    nsajit_context_destroy(ctx);
    return 1;
  }
  nsajit_cache_counters c{};
  c.struct_size = sizeof c;
  nsajit_cache_stats(ctx, &c);
  std::printf("prepared %d kernels in %.3f s (compiled %llu, from the disk cache %llu)\n", n, s,
              static_cast<unsigned long long>(c.compiles), static_cast<unsigned long long>(c.disk_hits));
  nsajit_context_destroy(ctx);
  return 0;
}

int cmdTune(const Options &o) {
  bool ok;
  auto list = branches(o.branch, ok);
  if (!ok) return 2;
  nsajit_context *ctx = nullptr;
  if (nsajit_context_create(&ctx, 0) != NSAJIT_OK) {
    std::fprintf(stderr, "nsajit tune: %s (tuning needs an NVIDIA GPU)\n", nsajit_last_error());
    return 1;
  }
  const int T = o.tSet ? o.T : 16384;
  std::printf("tuning the forward kernels%s at B = %d, T = %d, %d timed launches per candidate\n",
              o.backward ? " and the backward's split" : "", o.B, T, o.repeats);
  int failures = 0;
  for (auto [branch, name] : list) {
    nsajit_tune_result r{};
    r.struct_size = sizeof r;
    if (nsajit_tune(ctx, &o.cfg, branch, o.B, T, o.repeats, tuneProgress, const_cast<char *>(name), &r) !=
        NSAJIT_OK) {
      std::fprintf(stderr, "\nnsajit tune %s: %s\n", name, nsajit_last_error());
      ++failures;
      continue;
    }
    std::printf("%-10s best w%d t%d c%d %.4f ms; default w%d t%d c%d %.4f ms (%.2fx); %d tiles, %d failed\n", name,
                r.tile_warps, r.tile_tokens, r.tile_kv_chunk, r.best_ms, r.default_warps, r.default_tokens,
                r.default_kv_chunk, r.default_ms, r.default_ms > 0 ? r.default_ms / r.best_ms : 0.0, r.candidates,
                r.failed);
    std::printf("           recorded in %s\n", r.database[0] ? r.database : "memory only (no cache directory)");
    if (!o.backward)
      continue;
    std::string label = std::string(name) + " backward";
    nsajit_tune_backward_result b{};
    b.struct_size = sizeof b;
    if (nsajit_tune_backward(ctx, &o.cfg, branch, o.B, T, o.repeats, tuneProgress, label.data(), &b) != NSAJIT_OK) {
      std::fprintf(stderr, "\nnsajit tune %s: %s\n", label.c_str(), nsajit_last_error());
      ++failures;
      continue;
    }
    std::printf("%-10s backward best split %s (%d CTAs a key chunk) %.4f ms; automatic (%d) %.4f ms (%.2fx); "
                "%d lengths, %d failed\n",
                name, b.split_tokens ? std::to_string(b.split_tokens).c_str() : "auto", b.splits, b.best_ms,
                b.default_splits, b.default_ms, b.default_ms > 0 ? b.default_ms / b.best_ms : 0.0, b.candidates,
                b.failed);
  }
  nsajit_context_destroy(ctx);
  return failures ? 1 : 0;
}

} // namespace

int main(int argc, char **argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    usage(stderr);
    return 2;
  }
  if (o.command == "info") return cmdInfo();
  if (o.command == "compile") return cmdCompile(o);
  if (o.command == "check") return cmdCheck(o);
  if (o.command == "tune") return cmdTune(o);
  if (o.command == "prepare") return cmdPrepare(o);
  if (o.command == "help" || o.command == "--help") {
    usage(stdout);
    return 0;
  }
  std::fprintf(stderr, "nsajit: unknown command '%s'\n", o.command.c_str());
  usage(stderr);
  return 2;
}
