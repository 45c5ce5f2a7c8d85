//===- NsaDialect.td - The nsa dialect ---------------------*- tablegen -*-===//
//
// The `nsa` dialect: one op per Native Sparse Attention branch, the gather
// pattern of the branch carried as an attribute (see docs/ARCHITECTURE.md and
// /docs/NSA.md for the math).
//
//===----------------------------------------------------------------------===//

#ifndef NSA_DIALECT_TD
#define NSA_DIALECT_TD

include "mlir/IR/OpBase.td"

def Nsa_Dialect : Dialect {
  let name = "nsa";
  let cppNamespace = "::mlir::nsa";
  let summary = "Native Sparse Attention ops and gather-pattern attributes";
  let description = [{
    Ops of this dialect compute one attention branch of Native Sparse
    Attention (compressed, selected, sliding window) on ranked tensors
    `q: [B, T, HQ, Dk]`, `k: [B, Tk, H, Dk]`, `v: [B, Tk, H, Dv]` and produce
    the branch output `o: [B, T, HQ, Dv]` and the per-head log-sum-exp
    `lse: [B, T, HQ]` (f32). The gather pattern (which keys a query sees) is
    an attribute; the tile configuration chosen for a GPU is the optional
    `tile` attribute.
  }];
  let useDefaultAttributePrinterParser = 1;
  let extraClassDeclaration = [{
  private:
    void registerAttributes();
  public:
  }];
}

class Nsa_Op<string mnemonic, list<Trait> traits = []>
    : Op<Nsa_Dialect, mnemonic, traits>;

#endif // NSA_DIALECT_TD
