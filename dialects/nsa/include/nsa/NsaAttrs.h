//===- NsaAttrs.h - nsa gather-pattern and tile attributes ------*- C++ -*-===//
//
// mlir::nsa::CompressedGatherAttr  #nsa.compressed<block = l, stride = d>
// mlir::nsa::SelectedGatherAttr    #nsa.selected<block = l', count = n>
// mlir::nsa::WindowGatherAttr      #nsa.window<size = w>
// mlir::nsa::TileAttr              #nsa.tile<warps = , tokens = , kv_chunk = >
//
//===----------------------------------------------------------------------===//
#pragma once

#include "mlir/IR/Attributes.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectImplementation.h"

#include "nsa/NsaDialect.h"

#define GET_ATTRDEF_CLASSES
#include "nsa/NsaAttrs.h.inc"
