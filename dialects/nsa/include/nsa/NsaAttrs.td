//===- NsaAttrs.td - nsa gather-pattern and tile attributes -*- tablegen -*-===//

#ifndef NSA_ATTRS_TD
#define NSA_ATTRS_TD

include "nsa/NsaDialect.td"
include "mlir/IR/AttrTypeBase.td"

class Nsa_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Nsa_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

// The parameters are deliberately not range-checked here: the attention ops
// verify them (with the op's context: G, Dk, branch), so IR built from C++
// gets the same diagnostics as parsed IR.

def Nsa_CompressedGatherAttr : Nsa_Attr<"CompressedGather", "compressed"> {
  let summary = "compressed-token gather: block length l, stride d";
  let description = [{
    Compressed token `i` summarises keys `[i*d, i*d + l)`; query `t` sees
    compressed token `i` when `i*d + l - 1 <= t`. The op takes the already
    compressed keys/values.

    Example: `#nsa.compressed<block = 32, stride = 16>`
  }];
  let parameters = (ins "int64_t":$block, "int64_t":$stride);
  let assemblyFormat = "`<` struct(params) `>`";
}

def Nsa_SelectedGatherAttr : Nsa_Attr<"SelectedGather", "selected"> {
  let summary = "selected-block gather: block length l', n blocks per query";
  let description = [{
    Each (query, KV head) attends the tokens of `count` selected blocks of
    `block` tokens, given by an indices operand (-1 = unused slot).

    Example: `#nsa.selected<block = 64, count = 16>`
  }];
  let parameters = (ins "int64_t":$block, "int64_t":$count);
  let assemblyFormat = "`<` struct(params) `>`";
}

def Nsa_WindowGatherAttr : Nsa_Attr<"WindowGather", "window"> {
  let summary = "sliding-window gather: query t sees keys max(0, t-w+1)..t";
  let description = [{
    Example: `#nsa.window<size = 512>`
  }];
  let parameters = (ins "int64_t":$size);
  let assemblyFormat = "`<` struct(params) `>`";
}

def Nsa_TileAttr : Nsa_Attr<"Tile", "tile"> {
  let summary = "kernel tile configuration chosen for a GPU";
  let description = [{
    `warps`: warps per program (CTA); `tokens`: query tokens per program
    (each brings its G query heads); `kv_chunk`: keys per inner-loop step.

    Example: `#nsa.tile<warps = 4, tokens = 4, kv_chunk = 64>`
  }];
  let parameters = (ins "int64_t":$warps, "int64_t":$tokens,
                        "int64_t":$kv_chunk);
  let assemblyFormat = "`<` struct(params) `>`";
}

#endif // NSA_ATTRS_TD
