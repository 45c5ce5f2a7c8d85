// GPU tests of the compression kernels (mean and weighted pooling of k or v
// into compressed tokens, and their backward: dx and the weight gradient)
// against the float64 reference. Skips without a GPU.
#include "runtime/check/ForwardCheck.h"
#include "runtime/reference/Reference.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <vector>

using namespace nsajit;
using namespace nsajit::check;

TEST(GpuCompress, PoolingAndBackwardAgainstReference) {
  std::string why;
  Device *dev = Device::open(why);
  if (!dev) GTEST_SKIP() << why << ": GPU compression tests skipped";
  nsajit_context *ctx = nullptr;
  ASSERT_EQ(nsajit_context_create(&ctx, 0), NSAJIT_OK) << nsajit_last_error();
  int passed = 0, failed = 0;
  struct Shape { int l, d, T, D; bool weighted, padded; };
  const Shape shapes[] = {{32, 16, 1000, 128, false, false}, {32, 16, 333, 192, true, true},
                          {64, 64, 4096, 64, false, true},   {64, 64, 50, 128, true, false},
                          {16, 8, 777, 256, true, false},    {32, 16, 31, 128, false, false}};
  for (const Shape &s : shapes) {
    const int B = 2, H = 2, Tc = ref::numCompressed(s.T, s.l, s.d);
    std::mt19937 rng(s.T * 31 + s.l);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    HostTensor x, y, dy, dx;
    x.shape(B, s.T, H, s.D, s.padded);
    y.shape(B, Tc, H, s.D, s.padded);
    dy.shape(B, Tc, H, s.D, s.padded);
    dx.shape(B, s.T, H, s.D, s.padded);
    for (float &v : x.values) v = ref::roundToBf16(dist(rng));
    for (float &v : dy.values) v = ref::roundToBf16(dist(rng));
    std::vector<float> w(s.l);
    for (float &v : w) v = dist(rng);
    std::vector<float> refY;
    std::vector<double> refDx, refDw;
    if (s.weighted) {
      ref::compressWeighted(B, s.T, H, s.D, s.l, s.d, w, x.values, refY);
      ref::compressWeightedBackward(B, s.T, H, s.D, s.l, s.d, w, x.values, dy.values, refDx, refDw);
    } else {
      ref::compressMeanPool(B, s.T, H, s.D, s.l, s.d, x.values, refY);
      ref::compressMeanPoolBackward(B, s.T, H, s.D, s.l, s.d, dy.values, refDx);
    }
    Buffer xb(*dev, x.storageElems() * 2), yb(*dev, y.storageElems() * 2), dyb(*dev, dy.storageElems() * 2),
        dxb(*dev, dx.storageElems() * 2), wb(*dev, s.l * 4), dwb(*dev, s.l * 4);
    xb.upload(x.pack(false)), dyb.upload(dy.pack(false)), wb.upload(w);
    for (Buffer *b : {&yb, &dxb, &dwb}) dev->fill(b->ptr, 0xFF, b->bytes);
    nsajit_config cfg;
    nsajit_config_init(&cfg);
    cfg.num_kv_heads = H, cfg.cmp_block = s.l, cfg.cmp_stride = s.d;
    nsajit_tensor tx = x.view(xb.ptr), ty = y.view(yb.ptr), tdy = dy.view(dyb.ptr), tdx = dx.view(dxb.ptr);
    std::uint64_t wptr = s.weighted ? wb.ptr : 0, dwptr = s.weighted ? dwb.ptr : 0;
    ASSERT_EQ(nsajit_compress_forward(ctx, &cfg, B, s.T, s.D, &tx, wptr, &ty, nullptr), NSAJIT_OK) << nsajit_last_error();
    ASSERT_EQ(nsajit_compress_backward(ctx, &cfg, B, s.T, s.D, &tx, wptr, &tdy, &tdx, dwptr, nullptr), NSAJIT_OK)
        << nsajit_last_error();
    dev->synchronize();
    std::vector<double> refYd(refY.begin(), refY.end());
    double eY = relativeErrorOrAbs(y.unpack(yb.download<std::uint16_t>(y.storageElems()), false), refYd);
    double eDx = relativeErrorOrAbs(dx.unpack(dxb.download<std::uint16_t>(dx.storageElems()), false), refDx);
    double eDw = s.weighted ? relativeErrorOrAbs(dwb.download<float>(s.l), refDw) : 0.0;
    bool ok = std::isfinite(eY) && eY < 2e-2 && std::isfinite(eDx) && eDx < 2e-2 && std::isfinite(eDw) && eDw < 2e-2;
    (ok ? passed : failed)++;
    std::printf("%s pool %s l=%d d=%d T=%d D=%d%s  rel_err out=%.2e dx=%.2e dw=%.2e\n", ok ? "PASS" : "FAIL",
                s.weighted ? "weighted" : "mean", s.l, s.d, s.T, s.D, s.padded ? " strided" : "", eY, eDx, eDw);
    EXPECT_TRUE(ok);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  nsajit_context_destroy(ctx);
}
