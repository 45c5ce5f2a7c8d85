// The runtime tests run without ptxas unless a test installs the fake one (FakePtxas in
// TestUtil.h): a real ptxas would assemble machine code the fake driver cannot load.
#include "Ptxas.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace {
class PtxasOff : public ::testing::Environment {
public:
  void SetUp() override {
    ::setenv("NSAJIT_PTXAS", "off", 1);
    nsajit::rt::Ptxas::resetForTesting();
  }
};
const ::testing::Environment *const kPtxasOff = ::testing::AddGlobalTestEnvironment(new PtxasOff);
} // namespace
