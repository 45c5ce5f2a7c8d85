//===- NsaAttrs.cpp - nsa attributes ----------------------------*- C++ -*-===//

#include "nsa/NsaAttrs.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::nsa;

#define GET_ATTRDEF_CLASSES
#include "nsa/NsaAttrs.cpp.inc"

void NsaDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "nsa/NsaAttrs.cpp.inc"
      >();
}
