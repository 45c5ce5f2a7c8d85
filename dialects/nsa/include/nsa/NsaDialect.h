//===- NsaDialect.h - the nsa dialect ---------------------------*- C++ -*-===//
#pragma once

#include "mlir/IR/Dialect.h"

#include "nsa/NsaDialect.h.inc"
