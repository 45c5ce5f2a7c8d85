// Environment every runtime unit test starts from (the ctest ENVIRONMENT
// property that gtest_discover_tests sets keeps only the first variable of a
// list, so these are set here, before main; a test may still change them).
#include <cstdlib>

namespace {
const bool kEnvironmentSet = [] {
  ::setenv("NSAJIT_PTXAS", "off", /*overwrite=*/0); // the tests of ptxas name their own
  // The tests count one kernel a forward launch: the selected forward's
  // two-kernel schedule (sm_90a) is off but where a test turns it on.
  ::setenv("NSAJIT_SELECTED_TWO_KERNEL", "0", /*overwrite=*/0);
  return true;
}();
} // namespace
