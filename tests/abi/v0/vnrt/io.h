/* vnrt/io.h: reading and writing host tensors as numpy .npy files and safetensors weights.
 *
 * Conventions are those of vnrt.h: every fallible call returns a vnrt_status, out_* params are
 * cleared on entry, and the details of a failure (the file name and what is wrong with it) are
 * in vnrt_context_last_error(ctx). Malformed or truncated files fail with VNRT_ERROR_IO; the
 * readers never read outside the file, whatever it contains.
 *
 * Data types (docs/api.md, "Data types in files"): .npy files hold `<f4`, `<f2` or `<i4` (C
 * order, little-endian; format 1.0, 2.0 and 3.0), and quantized codes as byte arrays (`|u1`);
 * safetensors tensors are F32, F16, BF16, I32, F8_E4M3 (e4m3), F8_E8M0 (e8m0) or I8, which is
 * read as packed FP4: an I8 tensor [..., C2] is the e2m1 tensor [..., 2*C2] (DeepSeek's
 * float4_e2m1fn_x2). numpy has no bf16, so a bf16 tensor is widened to `<f4` when written as
 * .npy (docs/vnir.md, "npy binding"). Quantized tensors are never widened: they keep their
 * stored bytes.
 */
#ifndef VNRT_IO_H_
#define VNRT_IO_H_

#include <stddef.h>
#include <stdint.h>

#include "vnrt/vnrt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- numpy .npy ------------------------------------------------------------------------ */

/* Reads the .npy file at path. On success *out_type is its type and *out_data holds
 * vnrt_tensor_type_bytes(out_type) bytes (never NULL, even for zero elements), allocated with
 * the context's allocator: the caller takes it and frees it with vnrt_free(ctx, data). */
VNRT_API vnrt_status vnrt_npy_read(vnrt_context *ctx, const char *path, vnrt_tensor_type *out_type,
                                   void **out_data);

/* The same as vnrt_npy_read for a .npy image already in memory (size bytes at bytes, borrowed).
 * name is used in messages only and may be NULL. */
VNRT_API vnrt_status vnrt_npy_read_memory(vnrt_context *ctx, const void *bytes, size_t size,
                                          const char *name, vnrt_tensor_type *out_type,
                                          void **out_data);

/* Like vnrt_npy_read and vnrt_npy_read_memory, for a caller that knows the dtype it wants. A
 * byte array (`|u1`, also `|i1`) holds quantized codes, which its descr alone cannot name: it
 * is read as dtype, which must then be VNRT_E4M3 or VNRT_E8M0 (one code per byte, the same
 * dims) or VNRT_E2M1 (two codes per byte, even index in the low nibble: a [..., C2] array is
 * the e2m1 tensor [..., 2*C2]); for another dtype such a file fails with VNRT_ERROR_IO. A file
 * of any other descr is read exactly as vnrt_npy_read reads it, whatever dtype is: the caller
 * compares *out_type with the type it wants. vnrt_npy_read itself rejects byte arrays. */
VNRT_API vnrt_status vnrt_npy_read_as(vnrt_context *ctx, const char *path, vnrt_dtype dtype,
                                      vnrt_tensor_type *out_type, void **out_data);
VNRT_API vnrt_status vnrt_npy_read_memory_as(vnrt_context *ctx, const void *bytes, size_t size,
                                             const char *name, vnrt_dtype dtype,
                                             vnrt_tensor_type *out_type, void **out_data);

/* Writes a tensor of the given type (data: vnrt_tensor_type_bytes(type) bytes, borrowed) as a
 * format 1.0 .npy file, replacing path. f32, f16 and i32 are written as `<f4`, `<f2` and `<i4`;
 * bf16 is widened to `<f4` (exactly: every bf16 value is an f32 value). e4m3 and e8m0 codes are
 * written as `|u1` of the same dims, e2m1 as `|u1` with the last dim halved (its bytes; the last
 * dim must be even): read them back with vnrt_npy_read_as. */
VNRT_API vnrt_status vnrt_npy_write(vnrt_context *ctx, const char *path,
                                    const vnrt_tensor_type *type, const void *data);

/* The same as vnrt_npy_write into a new buffer: *out_bytes (*out_size bytes) is taken by the
 * caller and freed with vnrt_free(ctx, bytes). */
VNRT_API vnrt_status vnrt_npy_write_memory(vnrt_context *ctx, const vnrt_tensor_type *type,
                                           const void *data, void **out_bytes, size_t *out_size);

/* ---- safetensors ----------------------------------------------------------------------- */

/* An open safetensors file: mapped read-only; tensor data is read from the mapping in place. */
typedef struct vnrt_safetensors vnrt_safetensors;

/* Opens and memory-maps path, and checks its whole header: valid JSON of the safetensors
 * schema, no duplicate names, every tensor's data_offsets inside the file and of exactly
 * shape x dtype bytes, the data buffer covered without holes or overlaps. Tensors of a dtype
 * that safetensors defines but vnrt cannot compute with (F64, I64, U8, BOOL, ...) or of more
 * than VNRT_MAX_DIMS dimensions do not fail the open; vnrt_safetensors_find reports them. The
 * file handle keeps ctx (borrowed) for its messages and must be closed before ctx is
 * destroyed. */
VNRT_API vnrt_status vnrt_safetensors_open(vnrt_context *ctx, const char *path,
                                           vnrt_safetensors **out_file);

/* Unmaps the file; pointers returned by vnrt_safetensors_find become invalid. NULL is a no-op. */
VNRT_API void vnrt_safetensors_close(vnrt_safetensors *file);

/* Tensors in the order the header lists them; vnrt_safetensors_name returns NULL when i is out
 * of range. Names are borrowed from the file handle. */
VNRT_API int32_t vnrt_safetensors_count(const vnrt_safetensors *file);
VNRT_API const char *vnrt_safetensors_name(const vnrt_safetensors *file, int32_t i);

/* Looks a tensor up by exact name. On success *out_type is its type and *out_data points at its
 * *out_bytes bytes inside the read-only mapping (borrowed until close; aligned only as the file
 * aligns it, so copy or memcpy rather than dereference as float). out_data and out_bytes may be
 * NULL. Fails with VNRT_ERROR_NOT_FOUND for an unknown name and VNRT_ERROR_UNSUPPORTED for a
 * dtype or rank vnrt cannot hold (the message names it). */
VNRT_API vnrt_status vnrt_safetensors_find(vnrt_safetensors *file, const char *name,
                                           vnrt_tensor_type *out_type, const void **out_data,
                                           size_t *out_bytes);

/* A tensor as the file stores it, whatever its dtype: *out_dtype is the file's dtype string
 * ("I64", "I8", "F8_E4M3", ...; borrowed until close), *out_rank its rank and out_dims (room for
 * VNRT_MAX_DIMS) its stored dims (an I8 tensor's last dim counts bytes); *out_data and
 * *out_bytes as vnrt_safetensors_find gives them. For dtypes vnrt cannot compute with (an I64
 * table, say) this is the only way to their bytes. Fails with VNRT_ERROR_NOT_FOUND for an
 * unknown name and VNRT_ERROR_UNSUPPORTED for a rank above VNRT_MAX_DIMS. Every out parameter
 * may be NULL. */
VNRT_API vnrt_status vnrt_safetensors_find_stored(vnrt_safetensors *file, const char *name,
                                                  const char **out_dtype, int32_t *out_rank,
                                                  int64_t *out_dims, const void **out_data,
                                                  size_t *out_bytes);

/* The value of a "__metadata__" entry, or NULL if the file has no such key. Borrowed. */
VNRT_API const char *vnrt_safetensors_metadata(const vnrt_safetensors *file, const char *key);
/* The "__metadata__" keys in the order the header lists them; vnrt_safetensors_metadata_key
 * returns NULL when i is out of range. Borrowed. */
VNRT_API int32_t vnrt_safetensors_metadata_count(const vnrt_safetensors *file);
VNRT_API const char *vnrt_safetensors_metadata_key(const vnrt_safetensors *file, int32_t i);

/* Writes count tensors (names[i] of types[i], with vnrt_tensor_type_bytes(&types[i]) bytes at
 * datas[i]; all borrowed) as a safetensors file replacing path, in the given order, with the
 * header padded to a multiple of 8 bytes so that the data of each tensor is 8-byte aligned
 * whenever the earlier tensors' sizes are. Names must be non-empty and unique. e4m3 and e8m0
 * tensors are written as F8_E4M3 and F8_E8M0, e2m1 as I8 with the last dim halved (its bytes;
 * the last dim must be even). */
VNRT_API vnrt_status vnrt_safetensors_write(vnrt_context *ctx, const char *path,
                                            const char *const *names, const vnrt_tensor_type *types,
                                            const void *const *datas, int32_t count);

/* The same file written one tensor at a time, so that a converter holds one tensor in memory:
 * vnrt_safetensors_writer_open checks the entries as vnrt_safetensors_write does, creates path
 * and writes the header, with meta_count "__metadata__" entries (meta: key, value, key, value,
 * ...; may be NULL when meta_count is 0; keys unique). Each vnrt_safetensors_writer_put then
 * writes the next tensor's data in the order of names (bytes must be its type's byte size).
 * vnrt_safetensors_writer_close finishes the file and frees the writer; unless every tensor was
 * put without error it removes the file and fails (with the first put's error, if one failed),
 * which is also how to abandon a file. Closing NULL is a no-op. */
typedef struct vnrt_safetensors_writer vnrt_safetensors_writer;
VNRT_API vnrt_status vnrt_safetensors_writer_open(vnrt_context *ctx, const char *path,
                                                  const char *const *names,
                                                  const vnrt_tensor_type *types, int32_t count,
                                                  const char *const *meta, int32_t meta_count,
                                                  vnrt_safetensors_writer **out_writer);
/* vnrt_safetensors_writer_open for tensors given as stored, of any dtype the format defines
 * (I64, U8, ...): dtypes[i] is the file's dtype string and dims[i][0..ranks[i]) the stored
 * dims (an I8 tensor's last dim counts bytes; ranks[i] <= VNRT_MAX_DIMS). Each put then
 * takes numel x the dtype's element size bytes. */
VNRT_API vnrt_status vnrt_safetensors_writer_open_stored(
    vnrt_context *ctx, const char *path, const char *const *names, const char *const *dtypes,
    const int32_t *ranks, const int64_t *const *dims, int32_t count, const char *const *meta,
    int32_t meta_count, vnrt_safetensors_writer **out_writer);
VNRT_API vnrt_status vnrt_safetensors_writer_put(vnrt_safetensors_writer *writer, const void *data,
                                                 size_t bytes);
VNRT_API vnrt_status vnrt_safetensors_writer_close(vnrt_safetensors_writer *writer);

#ifdef __cplusplus
}
#endif
#endif /* VNRT_IO_H_ */
