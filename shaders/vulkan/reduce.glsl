// Workgroup-wide sum and max of one float per invocation, for shaders whose workgroup is
// one-dimensional with WG (a power of two, common.glsl) invocations. Every invocation must call them
// (they contain barriers). VN_SG: subgroup arithmetic, then one shared slot per subgroup;
// otherwise a shared-memory tree. The result is returned to every invocation.

#if VN_SG
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

shared float vn_red[WG];

#if VN_SG
float vn_sum(float v) {
  v = subgroupAdd(v);
  if (subgroupElect()) vn_red[gl_SubgroupID] = v;
  barrier();
  float r = 0.0;
  for (uint i = 0u; i < gl_NumSubgroups; ++i) r += vn_red[i];
  barrier();
  return r;
}

float vn_max(float v) {
  v = subgroupMax(v);
  if (subgroupElect()) vn_red[gl_SubgroupID] = v;
  barrier();
  float r = vn_red[0];
  for (uint i = 1u; i < gl_NumSubgroups; ++i) r = max(r, vn_red[i]);
  barrier();
  return r;
}
#else
float vn_sum(float v) {
  uint l = gl_LocalInvocationID.x;
  vn_red[l] = v;
  barrier();
  for (uint s = uint(WG) / 2u; s > 0u; s >>= 1) {
    if (l < s) vn_red[l] += vn_red[l + s];
    barrier();
  }
  float r = vn_red[0];
  barrier();
  return r;
}

float vn_max(float v) {
  uint l = gl_LocalInvocationID.x;
  vn_red[l] = v;
  barrier();
  for (uint s = uint(WG) / 2u; s > 0u; s >>= 1) {
    if (l < s) vn_red[l] = max(vn_red[l], vn_red[l + s]);
    barrier();
  }
  float r = vn_red[0];
  barrier();
  return r;
}
#endif
