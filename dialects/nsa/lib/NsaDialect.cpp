//===- NsaDialect.cpp - the nsa dialect -------------------------*- C++ -*-===//

#include "nsa/NsaDialect.h"
#include "nsa/NsaAttrs.h"
#include "nsa/NsaOps.h"

using namespace mlir;
using namespace mlir::nsa;

#include "nsa/NsaDialect.cpp.inc"

void NsaDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "nsa/NsaOps.cpp.inc"
      >();
  registerAttributes();
}
