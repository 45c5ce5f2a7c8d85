// nsajit-emit-ptx: compiles the forward kernels of a configuration matrix and
// writes one .ptx file per kernel, so CI can assemble every one with ptxas.
//   nsajit-emit-ptx --out DIR [--arch sm_80|sm_90a|all] [--quick]
#include "nsajit/compiler/Compiler.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <string>
#include <vector>

using namespace nsajit;

static std::vector<KernelSpec> matrix(bool quick) {
  std::vector<KernelSpec> specs;
  const std::vector<std::pair<int, int>> dims = quick ? std::vector<std::pair<int, int>>{{128, 128}, {192, 128}}
                                                      : std::vector<std::pair<int, int>>{
                                                            {64, 64}, {128, 64}, {128, 128}, {192, 128}, {192, 192},
                                                            {256, 128}, {256, 256}};
  const std::vector<int> groups = quick ? std::vector<int>{1, 16} : std::vector<int>{1, 2, 4, 8, 16, 32};
  for (DType dt : {DType::BF16, DType::FP16})
    for (auto [dk, dv] : dims)
      for (int g : groups) {
        KernelSpec s;
        s.dtype = dt, s.headDimQK = dk, s.headDimV = dv, s.group = g;
        s.branch = Branch::Compressed, s.cmpBlock = 32, s.cmpStride = 16;
        specs.push_back(s);
        s.branch = Branch::Window, s.window = 512;
        specs.push_back(s);
        for (int lsel : quick ? std::vector<int>{64} : std::vector<int>{16, 32, 64, 128}) {
          s.branch = Branch::Selected, s.slcBlock = lsel, s.slcCount = 16;
          specs.push_back(s);
        }
      }
  return specs;
}

int main(int argc, char **argv) {
  std::string out, arch = "all";
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
    else if (!std::strcmp(argv[i], "--arch") && i + 1 < argc) arch = argv[++i];
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else {
      fmt::print(stderr, "usage: nsajit-emit-ptx --out DIR [--arch sm_80|sm_90a|all] [--quick]\n");
      return 2;
    }
  }
  if (out.empty()) {
    fmt::print(stderr, "nsajit-emit-ptx: --out DIR is required\n");
    return 2;
  }
  std::filesystem::create_directories(out);
  std::vector<Arch> arches;
  if (arch == "all") arches = {Arch::SM80, Arch::SM90a};
  else if (auto a = parseArch(arch)) arches = {*a};
  else {
    fmt::print(stderr, "nsajit-emit-ptx: --arch {} is not supported; allowed: sm_80, sm_90a, all\n", arch);
    return 2;
  }
  // Every kernel of every configuration: the forward and the three backward kernels.
  std::vector<KernelSpec> specs;
  for (const KernelSpec &s : matrix(quick))
    for (KernelPass pass : {KernelPass::Forward, KernelPass::BackwardPreprocess, KernelPass::BackwardDQ,
                            KernelPass::BackwardDKDV}) {
      KernelSpec withPass = s;
      withPass.pass = pass;
      specs.push_back(withPass);
      if ((pass == KernelPass::Forward || pass == KernelPass::BackwardDQ) && s.branch == Branch::Selected) {
        // The union schedule: several tokens per CTA (up to 8 warps of rows); the dQ kernel's per token.
        withPass.tile.tokensPerCta =
            pass == KernelPass::Forward ? std::min(kMaxUnionTokens, std::max(2, 128 / s.group)) : 1;
        specs.push_back(withPass);
        if (pass == KernelPass::BackwardDQ) {
          // The dQ schedule's first kernel where it applies (its tile; compiled for every arch).
          withPass.tile = selectedDqUnionTile(withPass);
          if (withPass.tile.warps)
            specs.push_back(withPass);
        }
        withPass.tile = {};
      }
      if (pass == KernelPass::Forward && s.branch == Branch::Window) {
        // The gated combination of the branches (the window's op names it).
        withPass.pass = KernelPass::Combine;
        specs.push_back(withPass);
        withPass.pass = pass;
      }
      if (pass == KernelPass::Forward && s.branch == Branch::Compressed) {
        withPass.pass = KernelPass::TopN;
        specs.push_back(withPass);
        // Non-default top-n tiles: one token per CTA, and 3 tokens (idle rows).
        if (s.dtype == DType::BF16) {
          KernelSpec t = withPass;
          t.tile = {std::max(1, s.group / 16), 1, 0};
          specs.push_back(t);
          if (s.group <= 16) {
            t.tile = {4, 3, 32};
            specs.push_back(t);
          }
        }
        // The pooling kernels of k (D = Dk), mean and weighted.
        for (KernelPass pool : {KernelPass::Compress, KernelPass::CompressBackward, KernelPass::CompressWeightGrad})
          for (bool weighted : {false, true}) {
            if (pool == KernelPass::CompressWeightGrad && !weighted) continue;
            KernelSpec p = s;
            p.pass = pool, p.cmpWeighted = weighted, p.headDimV = p.headDimQK;
            specs.push_back(p);
          }
      }
    }
  int done = 0, failed = 0, total = static_cast<int>(specs.size() * arches.size());
  for (Arch a : arches)
    for (KernelSpec s : specs) {
      s.arch = a;
      CompileResult r;
      std::string err = compileKernel(s, r);
      ++done;
      if (!err.empty()) {
        ++failed;
        fmt::print(stderr, "\nFAILED {}: {}\n", s.str(), err);
        continue;
      }
      std::string name = fmt::format("{}_{}_{}_dk{}_dv{}_g{}_{:016x}.ptx", s.kernelName(), archName(a),
                                     dtypeName(s.dtype), s.headDimQK, s.headDimV, s.group, r.spec.hash());
      std::ofstream(std::filesystem::path(out) / name) << r.ptx;
      fmt::print(stderr, "\r[{}/{}] {:<80.80}", done, total, s.str());
    }
  fmt::print(stderr, "\n{} kernels written to {}, {} failed\n", done - failed, out, failed);
  return failed ? 1 : 0;
}
