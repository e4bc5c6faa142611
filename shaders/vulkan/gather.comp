// Row gathers with bounds checks: embedding (OP 0) and engram_lookup (OP 1).
// One invocation per result element; result row q (of D values) comes from table row
//   OP 0: ids[q]                      (slot 1: ids)
//   OP 1: offsets[q % H] + idx[q]     (slot 1: idx[T, H], slot 2: offsets[H])
// A row outside [0, R) is reported through the error record and clamped, so nothing outside
// the table is read. Slot 0: table (DT0), slot 5: result (DT5).
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"

layout(push_constant) uniform PC {
  uint n; // result elements
  uint D, H, R;
} pc;

void main() {
  uint i = vn_gid();
  if (i >= pc.n) return;
  uint q = i / pc.D, d = i % pc.D;
  int row = ldi1(q);
  if (OP == 1u) {
    int off = ldi2(q % pc.H);
    // Saturate instead of wrapping so that an overflowing sum is still reported as out of range.
    if (off > 0 && row > 0x7fffffff - off) row = 0x7fffffff;
    else if (off < 0 && row < int(0x80000000u) - off) row = int(0x80000000u);
    else row += off;
  }
  if (row < 0 || uint(row) >= pc.R) {
    if (d == 0u) vn_report(OP == 0u ? VN_ERR_ID : VN_ERR_ROW, row, pc.R, q);
    if (pc.R == 0u) {
      stf5(i, 0.0);
      return;
    }
    row = clamp(row, 0, int(pc.R) - 1);
  }
  stf5(i, ldf0(uint(row) * pc.D + d));
}
