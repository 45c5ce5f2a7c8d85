#include "SharedBarrier.h"

using namespace mlir;

namespace nsajit::tpl {

SharedBarrier::SharedBarrier(IRBuilderHelpers &h, Value smem, Value byteOffset) : h(h) {
  Value at = h.gep(smem, h.b.getI8Type(), byteOffset);
  address = LLVM::PtrToIntOp::create(h.b, h.loc, h.i32(), at);
}

void SharedBarrier::init(int count) {
  h.inlineAsm({}, {address, h.c32(count)}, "mbarrier.init.shared::cta.b64 [$0], $1;", "r,r");
}

void SharedBarrier::arrive() {
  h.inlineAsm({}, {address}, "mbarrier.arrive.shared::cta.b64 _, [$0];", "r");
}

void SharedBarrier::arriveWhenCopiesLand() {
  h.inlineAsm({}, {address}, "cp.async.mbarrier.arrive.noinc.shared::cta.b64 [$0];", "r");
}

void SharedBarrier::wait(Value parity) {
  // try_wait suspends the thread for a while before it reports false; the
  // labels are local to the braces, so the loop may be emitted many times.
  h.inlineAsm({}, {address, parity},
              "{\n.reg .pred done;\nwait_again:\n"
              "mbarrier.try_wait.parity.shared::cta.b64 done, [$0], $1;\n"
              "@!done bra wait_again;\n}",
              "r,r");
}

} // namespace nsajit::tpl
