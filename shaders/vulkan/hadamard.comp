// hadamard (docs/ops.md): each row x[D] (D a power of 2, at most DMAX) becomes
// H_D·x·D^-1/2, H_D the Sylvester-order Walsh–Hadamard matrix. A workgroup per row: the row is
// loaded into shared memory as f32, the butterflies (u, v) -> (u + v, u - v) run with stride
// h = 1, 2, 4, ... (a barrier between strides), then every element is multiplied by the
// host's f32 D^-1/2 and stored in the output dtype. These are the f32 operations of
// cpu_ref_hadamard in the same order, so the results are the same.
// Slot 0: x, slot 5: result (any float dtype each).
#version 450
#extension GL_GOOGLE_include_directive : require
#define WG 128
#include "common.glsl"

#define DMAX 4096u // keep in step with HD_DMAX in vk_ops_basic.c (16 KiB of shared memory)

layout(push_constant) uniform PC {
  uint rows, D;
  float scale; // D^-1/2 rounded to f32
} pc;

shared float row[DMAX];

void main() {
  uint r = vn_group();
  if (r >= pc.rows) return; // uniform across the workgroup
  uint D = pc.D, base = r * D, l = gl_LocalInvocationID.x;
  for (uint i = l; i < D; i += WG) row[i] = ldf0(base + i);
  memoryBarrierShared();
  barrier();
  for (uint h = 1u; h < D; h <<= 1) {
    // Butterfly p of D/2 pairs: j in the lower half of its block of 2h, partner j + h.
    for (uint p = l; p < D / 2u; p += WG) {
      uint j = (p / h) * 2u * h + (p % h);
      float u = row[j], v = row[j + h];
      row[j] = u + v;
      row[j + h] = u - v;
    }
    memoryBarrierShared();
    barrier();
  }
  for (uint i = l; i < D; i += WG) stf5(base + i, row[i] * pc.scale);
}
