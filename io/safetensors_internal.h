/* The safetensors reader's private parts, shared by safetensors.c (open, validation, lookup),
 * safetensors_header.c (the header's JSON) and safetensors_write.c (the writer). */
#ifndef VN_SAFETENSORS_INTERNAL_H_
#define VN_SAFETENSORS_INTERNAL_H_

#include "core.h"
#include "vnrt/io.h"

/* What an I8 tensor is, the one switch for it (docs/api.md, "Data types in files"): DeepSeek
 * stores FP4 weights (torch float4_e2m1fn_x2, two e2m1 codes per byte, the even column in the
 * low nibble) as I8, and vnrt has no int8 dtype, so an I8 tensor [..., C2] reads as the packed
 * e2m1 tensor [..., 2*C2] and an e2m1 tensor is written as I8 with its last dim halved. Define
 * it as VNRT_DTYPE_INVALID to make I8 an unsupported dtype again (and e2m1 unwritable). */
#define VN_ST_I8_DTYPE VNRT_E2M1

/* Every dtype the safetensors format defines, with its element size in the file, so that a
 * file holding tensors vnrt cannot compute with (an I64 position table, say) still opens and
 * is fully bounds-checked. vnrt maps those it holds; a dtype appears at most once as a
 * vnrt_dtype, which is also the writer's name for it. */
static const struct {
  const char *name;
  uint32_t size;
  vnrt_dtype dtype;
} kDtypes[] = {
    {"F32", 4, VNRT_F32},
    {"F16", 2, VNRT_F16},
    {"BF16", 2, VNRT_BF16},
    {"I32", 4, VNRT_I32},
    {"F64", 8, VNRT_DTYPE_INVALID},
    {"I64", 8, VNRT_DTYPE_INVALID},
    {"I16", 2, VNRT_DTYPE_INVALID},
    {"I8", 1, VN_ST_I8_DTYPE},
    {"U64", 8, VNRT_DTYPE_INVALID},
    {"U32", 4, VNRT_DTYPE_INVALID},
    {"U16", 2, VNRT_DTYPE_INVALID},
    {"U8", 1, VNRT_DTYPE_INVALID},
    {"BOOL", 1, VNRT_DTYPE_INVALID},
    {"F8_E4M3", 1, VNRT_E4M3},
    {"F8_E8M0", 1, VNRT_E8M0},
    {"F8_E5M2", 1, VNRT_DTYPE_INVALID},
};

typedef struct st_tensor {
  char *name;
  char dtype_name[12];
  vnrt_dtype dtype;            /* VNRT_DTYPE_INVALID for a dtype vnrt does not compute with */
  int32_t rank;                /* may exceed VNRT_MAX_DIMS; then only the first dims are kept */
  int64_t dims[VNRT_MAX_DIMS]; /* as stored: an I8 tensor's bytes, not its e2m1 codes */
  uint64_t numel;              /* over all dims */
  bool numel_overflow;
  uint64_t begin, end; /* data_offsets, relative to the data buffer */
} st_tensor;

struct vnrt_safetensors {
  vnrt_context *ctx;
  char *path;
  const uint8_t *map;
  size_t map_size;
  const uint8_t *data; /* the data buffer, after the header */
  uint64_t data_size;
  st_tensor *tensors; /* in header order */
  int32_t count, cap;
  st_tensor **by_name;          /* sorted by name, for lookup and duplicate detection */
  char **meta;                  /* key, value, key, value, ... */
  int32_t meta_count, meta_cap; /* in strings */
};

/* Parses the JSON header (text, len bytes) into f's tensors and metadata
 * (safetensors_header.c); the caller validates them. */
vnrt_status vn_st_parse_header(vnrt_safetensors *f, const char *text, size_t len);

#endif /* VN_SAFETENSORS_INTERNAL_H_ */
