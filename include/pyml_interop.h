/*
 * pyml_interop.h — the C ABI of pyml_interop: ONNX inference and zero-copy tensor exchange.
 *
 * RULES THAT HOLD FOR EVERY FUNCTION (read once):
 *
 * Status and errors
 *   Every fallible function returns a pmi_status: PMI_OK (0) on success, a PMI_ERR_* code
 *   otherwise. On failure, pmi_last_error() returns a message naming what is at fault (which
 *   argument, tensor, input, node). The message is thread-local, borrowed, and valid until the
 *   next pmi_* call on the same thread (pmi_last_error and pmi_last_status excepted). Output
 *   pointers are left untouched on failure unless stated otherwise.
 *   No panic or C++ exception ever crosses this boundary: an internal panic becomes
 *   PMI_ERR_PANIC with the panic's message, and the library stays usable.
 *
 * Ownership
 *   Handles (pmi_tensor*, pmi_model*, pmi_session*, pmi_session_options*) returned through an
 *   out-parameter are owned by the caller and must be released exactly once with the matching
 *   pmi_*_release function. Every release function accepts NULL and does nothing.
 *   "Borrowed" returns (const char*, const int64_t*, data pointers) stay owned by the handle they
 *   come from and are valid until that handle is released, unless stated otherwise.
 *   Tensors are reference-counted views of shared data: pmi_tensor_clone and DLPack exports
 *   share data; the data lives until its last user is released.
 *
 * Thread safety
 *   Handles may be used from any thread. Reading a tensor (accessors, exports) is safe from
 *   several threads at once; writing through pmi_tensor_data_mut while others read is the
 *   caller's race to avoid. Models and sessions are immutable after creation: pmi_session_run
 *   may be called concurrently on one session.
 *
 * Versioning
 *   The ABI version is PMI_ABI_VERSION_MAJOR.PMI_ABI_VERSION_MINOR. A library is compatible with
 *   this header when its major version is equal and its minor version is greater or equal:
 *   check with pmi_abi_version() at start-up.
 */
#ifndef PYML_INTEROP_H
#define PYML_INTEROP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PMI_ABI_VERSION_MAJOR 1
#define PMI_ABI_VERSION_MINOR 1
/** (major << 16) | minor, comparable with pmi_abi_version(). */
#define PMI_ABI_VERSION ((PMI_ABI_VERSION_MAJOR << 16) | PMI_ABI_VERSION_MINOR)

/* ------------------------------------------------------------------------------------------ */
/* Status codes                                                                               */
/* ------------------------------------------------------------------------------------------ */

/** Result of every fallible call. Values are stable across minor versions. */
typedef enum pmi_status {
    PMI_OK = 0,
    PMI_ERR_INVALID_ARGUMENT = 1,    /**< an argument value is unacceptable (bad name, enum, option) */
    PMI_ERR_NULL_POINTER = 2,        /**< a required pointer argument was NULL */
    PMI_ERR_IO = 3,                  /**< a file could not be read or written */
    PMI_ERR_INVALID_MODEL = 4,       /**< malformed model or serialized tensor */
    PMI_ERR_UNSUPPORTED_OPERATOR = 5,/**< the model uses operators this engine lacks (all listed) */
    PMI_ERR_UNSUPPORTED_DTYPE = 6,   /**< element type not supported by this function */
    PMI_ERR_SHAPE_MISMATCH = 7,      /**< shapes disagree (wrong input shape, symbolic dim clash) */
    PMI_ERR_READ_ONLY = 8,           /**< write access requested to read-only data */
    PMI_ERR_VERSION_MISMATCH = 9,    /**< ABI, DLPack or ONNX IR version not supported */
    PMI_ERR_LIMIT_EXCEEDED = 10,     /**< out of memory or a size limit exceeded */
    PMI_ERR_PANIC = 11,              /**< internal panic caught at the boundary (a bug: report it) */
    PMI_ERR_INTERNAL = 12,           /**< internal invariant violated (a bug: report it) */
    PMI_ERR_RUNTIME = 13             /**< execution failed on the given values (e.g. index out of range) */
} pmi_status;

/** The message of the last failed call on this thread, or "" if the last call succeeded.
 *  Never NULL. Borrowed: valid until the next pmi_* call on this thread. Thread-safe. */
const char* pmi_last_error(void);

/** The status of the last pmi_* call on this thread (PMI_OK if none). Thread-safe. */
pmi_status pmi_last_status(void);

/** A static, human-readable name of a status code ("PMI_ERR_IO"); "PMI_UNKNOWN" for others.
 *  Never NULL; never freed. */
const char* pmi_status_name(pmi_status status);

/* ------------------------------------------------------------------------------------------ */
/* Versions                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/** The library's ABI version: (major << 16) | minor. Compare with the PMI_ABI_VERSION_* macros. */
uint32_t pmi_abi_version(void);

/** The library's release version, e.g. "0.1.0". Static; never freed. */
const char* pmi_version_string(void);

/* ------------------------------------------------------------------------------------------ */
/* Element types — values equal ONNX TensorProto.DataType                                     */
/* ------------------------------------------------------------------------------------------ */

/** Element type codes (int32_t). Sub-byte types (INT4, UINT4, FLOAT4E2M1, INT2, UINT2) are held
 *  in memory one element per byte (low bits significant, signed ones sign-extended); BOOL is one
 *  byte, 0 or 1; STRING tensors have no flat buffer (see pmi_tensor_string_get). */
#define PMI_DTYPE_FLOAT 1
#define PMI_DTYPE_UINT8 2
#define PMI_DTYPE_INT8 3
#define PMI_DTYPE_UINT16 4
#define PMI_DTYPE_INT16 5
#define PMI_DTYPE_INT32 6
#define PMI_DTYPE_INT64 7
#define PMI_DTYPE_STRING 8
#define PMI_DTYPE_BOOL 9
#define PMI_DTYPE_FLOAT16 10
#define PMI_DTYPE_DOUBLE 11
#define PMI_DTYPE_UINT32 12
#define PMI_DTYPE_UINT64 13
#define PMI_DTYPE_COMPLEX64 14
#define PMI_DTYPE_COMPLEX128 15
#define PMI_DTYPE_BFLOAT16 16
#define PMI_DTYPE_FLOAT8E4M3FN 17
#define PMI_DTYPE_FLOAT8E4M3FNUZ 18
#define PMI_DTYPE_FLOAT8E5M2 19
#define PMI_DTYPE_FLOAT8E5M2FNUZ 20
#define PMI_DTYPE_UINT4 21
#define PMI_DTYPE_INT4 22
#define PMI_DTYPE_FLOAT4E2M1 23
#define PMI_DTYPE_FLOAT8E8M0 24
#define PMI_DTYPE_UINT2 25
#define PMI_DTYPE_INT2 26

/** Bytes one element occupies in memory (1 for sub-byte types, 0 for STRING), or 0 for an
 *  unknown code. Thread-safe, never fails. */
size_t pmi_dtype_size(int32_t dtype);

/** The ONNX name of a dtype ("float", "int64", "bfloat16"...), or NULL for an unknown code.
 *  Static; never freed. */
const char* pmi_dtype_name(int32_t dtype);

/* ------------------------------------------------------------------------------------------ */
/* DLPack (layout of dlpack.h v1.1; skipped if dlpack.h was included first)                  */
/* ------------------------------------------------------------------------------------------ */

#ifndef DLPACK_MAJOR_VERSION
/** DLPack ABI version carried by DLManagedTensorVersioned. */
typedef struct DLPackVersion {
    uint32_t major;
    uint32_t minor;
} DLPackVersion;

/** Device of a DLTensor: device_type 1 is CPU (kDLCPU); 3 (CUDA host) and 11 (ROCm host) are
 *  CPU-accessible and accepted too. */
typedef struct DLDevice {
    int32_t device_type;
    int32_t device_id;
} DLDevice;

/** Element type of a DLTensor: code (0 int, 1 uint, 2 float, 4 bfloat, 5 complex, 6 bool,
 *  10..14 float8 variants, 17 float4_e2m1fn), bits per element, lanes (must be 1). */
typedef struct DLDataType {
    uint8_t code;
    uint8_t bits;
    uint16_t lanes;
} DLDataType;

/** A strided view of memory. shape and strides are in elements (not bytes); strides NULL means
 *  row-major contiguous; the first element is at (char*)data + byte_offset. */
typedef struct DLTensor {
    void* data;
    DLDevice device;
    int32_t ndim;
    DLDataType dtype;
    int64_t* shape;
    int64_t* strides;
    uint64_t byte_offset;
} DLTensor;

/** Legacy (pre-1.0) managed tensor: the consumer calls deleter(self) exactly once when done. */
typedef struct DLManagedTensor {
    DLTensor dl_tensor;
    void* manager_ctx;
    void (*deleter)(struct DLManagedTensor* self);
} DLManagedTensor;

/** DLPack 1.x managed tensor. flags: bit 0 read-only, bit 1 is-copied, bit 2 sub-byte types
 *  padded to one byte per element. The consumer calls deleter(self) exactly once when done. */
typedef struct DLManagedTensorVersioned {
    DLPackVersion version;
    void* manager_ctx;
    void (*deleter)(struct DLManagedTensorVersioned* self);
    uint64_t flags;
    DLTensor dl_tensor;
} DLManagedTensorVersioned;
#endif

/* ------------------------------------------------------------------------------------------ */
/* Tensors                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/** An opaque, reference-counted, row-major tensor. Released with pmi_tensor_release. */
typedef struct pmi_tensor pmi_tensor;

/** Called exactly once with `ctx` when the library no longer needs a caller's buffer; may be
 *  called from any thread, and from inside any pmi_* call that drops the last reference. */
typedef void (*pmi_release_fn)(void* ctx);

/** Largest rank accepted by any function. */
#define PMI_MAX_RANK 64

/** Flag for the DLPack import functions: copy non-contiguous (strided) data instead of failing. */
#define PMI_DLPACK_ALLOW_COPY 1

/** A new tensor with every byte zero (empty strings for STRING), 64-byte aligned, writable.
 *  shape: `rank` non-negative dims (may be NULL when rank is 0). Caller owns *out.
 *  Errors: NULL_POINTER (out, or shape with rank > 0), INVALID_ARGUMENT (negative dim),
 *  UNSUPPORTED_DTYPE (unknown code), LIMIT_EXCEEDED (rank > PMI_MAX_RANK, size overflow, OOM). */
pmi_status pmi_tensor_zeros(int32_t dtype, const int64_t* shape, size_t rank, pmi_tensor** out);

/** A new tensor holding a copy of `nbytes` bytes at `data` (row-major, in-memory layout of the
 *  dtype). nbytes must equal element count x pmi_dtype_size(dtype). The caller keeps `data`.
 *  Errors: as pmi_tensor_zeros, plus SHAPE_MISMATCH (nbytes wrong), UNSUPPORTED_DTYPE (STRING:
 *  use pmi_tensor_from_strings). */
pmi_status pmi_tensor_from_copy(int32_t dtype, const int64_t* shape, size_t rank,
                                const void* data, size_t nbytes, pmi_tensor** out);

/** A new tensor that WRAPS the caller's buffer without copying. The library calls
 *  release(release_ctx) exactly once when the last tensor sharing the buffer is released — also
 *  if this function fails after validating its pointers (so the caller never frees twice).
 *  release may be NULL (the caller then keeps the buffer alive for as long as any tensor uses
 *  it). `data` must be aligned to the element size and valid for `nbytes` bytes until release.
 *  writable = 0 makes the tensor read-only (pmi_tensor_data_mut fails with READ_ONLY).
 *  Errors: as pmi_tensor_from_copy, plus INVALID_ARGUMENT (misaligned data). */
pmi_status pmi_tensor_wrap(int32_t dtype, const int64_t* shape, size_t rank, void* data,
                           size_t nbytes, int writable, pmi_release_fn release, void* release_ctx,
                           pmi_tensor** out);

/** A new STRING tensor copying `count` byte strings (strings[i] of lengths[i] bytes, any bytes,
 *  not NUL-terminated; lengths NULL means NUL-terminated strings). count must equal the element
 *  count of shape. Errors: NULL_POINTER, SHAPE_MISMATCH, LIMIT_EXCEEDED. */
pmi_status pmi_tensor_from_strings(const int64_t* shape, size_t rank, const char* const* strings,
                                   const size_t* lengths, size_t count, pmi_tensor** out);

/** Import a DLPack 1.x tensor WITHOUT copying (unless strided and PMI_DLPACK_ALLOW_COPY is set).
 *  Ownership of `managed` passes to the library on every call where managed is not NULL: its
 *  deleter is called exactly once — on error before returning, or when the last tensor sharing
 *  the data is released. The read-only flag is honoured. Sub-byte dtypes need the padded flag.
 *  Errors: NULL_POINTER, VERSION_MISMATCH (major != 1), INVALID_ARGUMENT (non-CPU device,
 *  misaligned data, negative dims, strided without ALLOW_COPY), UNSUPPORTED_DTYPE (lanes != 1,
 *  unknown code). */
pmi_status pmi_tensor_from_dlpack_versioned(DLManagedTensorVersioned* managed, uint32_t flags,
                                            pmi_tensor** out);

/** Import a legacy DLManagedTensor, as pmi_tensor_from_dlpack_versioned (the data is treated as
 *  writable: legacy DLPack has no read-only flag). */
pmi_status pmi_tensor_from_dlpack(DLManagedTensor* managed, uint32_t flags, pmi_tensor** out);

/** Export a tensor as a DLPack 1.x managed tensor sharing its data (no copy). The consumer owns
 *  *out and must call (*out)->deleter(*out) exactly once; the tensor may be released before that.
 *  Read-only tensors carry the read-only flag. Errors: NULL_POINTER, UNSUPPORTED_DTYPE (STRING). */
pmi_status pmi_tensor_to_dlpack_versioned(const pmi_tensor* tensor, DLManagedTensorVersioned** out);

/** Export as a legacy DLManagedTensor sharing data (no copy); the consumer calls the deleter once.
 *  Errors: as above, plus READ_ONLY (legacy DLPack cannot mark read-only data) and
 *  UNSUPPORTED_DTYPE for sub-byte types. */
pmi_status pmi_tensor_to_dlpack(const pmi_tensor* tensor, DLManagedTensor** out);

/** A new handle sharing the tensor's data (no copy). Caller owns *out. Errors: NULL_POINTER. */
pmi_status pmi_tensor_clone(const pmi_tensor* tensor, pmi_tensor** out);

/** A new tensor with a deep, writable copy of the data. Caller owns *out. */
pmi_status pmi_tensor_copy(const pmi_tensor* tensor, pmi_tensor** out);

/** Release a tensor handle. NULL is ignored. Thread-safe. */
void pmi_tensor_release(pmi_tensor* tensor);

/** Element type code of the tensor. Errors: NULL_POINTER. */
pmi_status pmi_tensor_dtype(const pmi_tensor* tensor, int32_t* out);

/** Number of dimensions. Errors: NULL_POINTER. */
pmi_status pmi_tensor_rank(const pmi_tensor* tensor, size_t* out);

/** The dims, borrowed: `*out` points to `rank` int64 values owned by the tensor handle, valid
 *  until it is released (NULL-free but possibly dangling-and-unused when rank is 0). */
pmi_status pmi_tensor_shape(const pmi_tensor* tensor, const int64_t** out);

/** Number of elements (product of dims; 1 for rank 0). */
pmi_status pmi_tensor_numel(const pmi_tensor* tensor, size_t* out);

/** Size of the flat data in bytes (0 for STRING tensors). */
pmi_status pmi_tensor_nbytes(const pmi_tensor* tensor, size_t* out);

/** 1 if pmi_tensor_data_mut may be used, else 0. */
pmi_status pmi_tensor_is_writable(const pmi_tensor* tensor, int* out);

/** Pointer to the first byte of the data, borrowed (valid while any tensor sharing the data
 *  lives). Errors: NULL_POINTER, UNSUPPORTED_DTYPE (STRING). */
pmi_status pmi_tensor_data(const pmi_tensor* tensor, const void** out);

/** Mutable pointer to the data. Writes are seen by every tensor sharing the data.
 *  Errors: NULL_POINTER, UNSUPPORTED_DTYPE (STRING), READ_ONLY (read-only data: weights,
 *  read-only DLPack imports, non-writable wraps). */
pmi_status pmi_tensor_data_mut(pmi_tensor* tensor, void** out);

/** Borrow string element `index` (flat row-major index) of a STRING tensor: *data points to
 *  *length bytes (not NUL-terminated), valid until the tensor is released.
 *  Errors: NULL_POINTER, UNSUPPORTED_DTYPE (not STRING), INVALID_ARGUMENT (index out of range). */
pmi_status pmi_tensor_string_get(const pmi_tensor* tensor, size_t index, const char** data,
                                 size_t* length);

/* Files. Paths are UTF-8, NUL-terminated. */

/** Read a numpy .npy file (bool, ints, float16/32/64, complex, unicode strings; either byte
 *  order; C or Fortran order) into a new tensor. Caller owns *out.
 *  Errors: NULL_POINTER, IO, INVALID_ARGUMENT (not .npy / truncated), UNSUPPORTED_DTYPE. */
pmi_status pmi_tensor_load_npy(const char* path, pmi_tensor** out);

/** Write a tensor as a .npy file (format 1.0). Types with no numpy code (bfloat16, float8,
 *  int4...) fail with UNSUPPORTED_DTYPE: use pmi_tensor_save_pb. Errors: NULL_POINTER, IO. */
pmi_status pmi_tensor_save_npy(const pmi_tensor* tensor, const char* path);

/** Read a serialized ONNX TensorProto file (the ONNX test suite's input_0.pb), any dtype.
 *  Errors: NULL_POINTER, IO, INVALID_MODEL (malformed). */
pmi_status pmi_tensor_load_pb(const char* path, pmi_tensor** out);

/** Write a tensor as a serialized ONNX TensorProto, any dtype. Errors: NULL_POINTER, IO. */
pmi_status pmi_tensor_save_pb(const pmi_tensor* tensor, const char* path);

/* ------------------------------------------------------------------------------------------ */
/* Models                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/** An opaque, immutable, validated ONNX model. Released with pmi_model_release. Thread-safe. */
typedef struct pmi_model pmi_model;

/** Declared type of a model or session input/output. Every pointer is borrowed from the model
 *  (or session) handle it came from and is valid until that handle is released.
 *  name: the value's name. dtype: PMI_DTYPE_* code, 0 if not a tensor or unknown.
 *  rank: number of dims, or -1 if the shape is unknown. dims: `rank` entries, -1 where the dim
 *  is symbolic or unknown. dim_names: `rank` entries, the symbol (dim_param, e.g. "batch") or
 *  NULL. type_string: the ONNX type as onnxruntime prints it, e.g. "tensor(float)". */
typedef struct pmi_value_info {
    const char* name;
    int32_t dtype;
    int64_t rank;
    const int64_t* dims;
    const char* const* dim_names;
    const char* type_string;
} pmi_value_info;

/** Load and validate an ONNX model file. The file is memory-mapped (weights are not copied when
 *  aligned); external data files are resolved relative to the model's directory and must stay
 *  inside it. Caller owns *out. Errors: NULL_POINTER, IO (unreadable file or external data),
 *  INVALID_MODEL (malformed protobuf, cycles, undefined inputs, unknown opset domain... the
 *  message names the field or node), VERSION_MISMATCH (IR version too new),
 *  LIMIT_EXCEEDED (absurd sizes). Operators are checked when a session is created. */
pmi_status pmi_model_load_file(const char* path, pmi_model** out);

/** Load a model from `len` serialized bytes (copied; the caller keeps `data`). Models with
 *  external data cannot be loaded from bytes (INVALID_MODEL naming the tensor). */
pmi_status pmi_model_load_bytes(const void* data, size_t len, pmi_model** out);

/** Release a model. NULL is ignored. Sessions created from it stay valid. */
void pmi_model_release(pmi_model* model);

/** Write the model as a self-contained ONNX file (external data inlined). Errors: NULL_POINTER, IO. */
pmi_status pmi_model_save_file(const pmi_model* model, const char* path);

/** Serialize the model. On success *data points to *len bytes owned by the caller, to be freed
 *  with pmi_bytes_free(*data, *len). Errors: NULL_POINTER, LIMIT_EXCEEDED. */
pmi_status pmi_model_to_bytes(const pmi_model* model, uint8_t** data, size_t* len);

/** Free bytes returned by pmi_model_to_bytes. NULL is ignored. */
void pmi_bytes_free(uint8_t* data, size_t len);

/** Number of inputs a caller feeds (initializers excluded). */
pmi_status pmi_model_input_count(const pmi_model* model, size_t* out);
/** Number of outputs. */
pmi_status pmi_model_output_count(const pmi_model* model, size_t* out);
/** Describe input `index` (see pmi_value_info). Errors: NULL_POINTER, INVALID_ARGUMENT (index). */
pmi_status pmi_model_input_info(const pmi_model* model, size_t index, pmi_value_info* out);
/** Describe output `index`. Errors: NULL_POINTER, INVALID_ARGUMENT (index). */
pmi_status pmi_model_output_info(const pmi_model* model, size_t index, pmi_value_info* out);
/** The model's ONNX IR version. */
pmi_status pmi_model_ir_version(const pmi_model* model, int64_t* out);
/** Producer name and version (borrowed, possibly ""). */
pmi_status pmi_model_producer(const pmi_model* model, const char** name, const char** version);
/** Number of imported opsets. */
pmi_status pmi_model_opset_count(const pmi_model* model, size_t* out);
/** Opset `index`: domain (borrowed; "ai.onnx" for the default domain) and version. */
pmi_status pmi_model_opset(const pmi_model* model, size_t index, const char** domain, int64_t* version);
/** Number of metadata_props entries. */
pmi_status pmi_model_metadata_count(const pmi_model* model, size_t* out);
/** Metadata entry `index` (borrowed key and value). */
pmi_status pmi_model_metadata(const pmi_model* model, size_t index, const char** key, const char** value);
/** Number of distinct op types (main graph and subgraphs). */
pmi_status pmi_model_op_type_count(const pmi_model* model, size_t* out);
/** Op type `index` (most frequent first) and its node count (borrowed name). */
pmi_status pmi_model_op_type(const pmi_model* model, size_t index, const char** op_type, size_t* count);
/** Number of initializers of the main graph and their total size in bytes. */
pmi_status pmi_model_initializer_stats(const pmi_model* model, size_t* count, size_t* nbytes);

/* ------------------------------------------------------------------------------------------ */
/* Sessions                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/** Options for pmi_session_create. Not thread-safe to modify; copied by pmi_session_create. */
typedef struct pmi_session_options pmi_session_options;

/** A model compiled for execution. Immutable: pmi_session_run may be called concurrently from
 *  several threads on one session (each run has its own intermediate buffers). */
typedef struct pmi_session pmi_session;

/** New options with defaults (threads = one per available core). Caller owns *out. */
pmi_status pmi_session_options_create(pmi_session_options** out);
/** Threads for intra-op parallelism; 0 = one per available core. The session's threads - 1
 *  workers poll for work while one of its runs is in progress (and 50 us after), then sleep:
 *  an idle session uses no CPU. Errors: NULL_POINTER, INVALID_ARGUMENT (more than 1024). */
pmi_status pmi_session_options_set_intra_op_threads(pmi_session_options* options, size_t threads);
/** Release options. NULL is ignored. */
void pmi_session_options_release(pmi_session_options* options);

/** Compile `model` (options may be NULL for defaults): functions inlined, every operator built,
 *  weights pre-packed, memory planned. The session keeps what it needs of the model: the model
 *  may be released right after. Caller owns *out.
 *  Errors: NULL_POINTER, UNSUPPORTED_OPERATOR (lists every unsupported operator with domain,
 *  opset and node names), INVALID_MODEL (bad attributes, naming the node). */
pmi_status pmi_session_create(const pmi_model* model, const pmi_session_options* options,
                              pmi_session** out);

/** Release a session. NULL is ignored. Must not race with a pmi_session_run on it. */
void pmi_session_release(pmi_session* session);

/** Number of inputs the caller feeds. */
pmi_status pmi_session_input_count(const pmi_session* session, size_t* out);
/** Number of outputs. */
pmi_status pmi_session_output_count(const pmi_session* session, size_t* out);
/** Describe input `index` (borrowed from the session). */
pmi_status pmi_session_input_info(const pmi_session* session, size_t index, pmi_value_info* out);
/** Describe output `index` (borrowed from the session). */
pmi_status pmi_session_output_info(const pmi_session* session, size_t index, pmi_value_info* out);

/** Run the model. Inputs: n_inputs pairs (input_names[i], inputs[i]); the tensors are only read
 *  (shared, never copied) and stay owned by the caller. Outputs: output_names[0..n_outputs]
 *  selects outputs in any order; output_names NULL means all outputs in model order (n_outputs
 *  must then equal the output count). On success outputs[i] receives a NEW tensor owned by the
 *  caller (release each with pmi_tensor_release); on failure nothing is written to outputs.
 *  Thread-safe: concurrent runs on one session are allowed.
 *  Errors: NULL_POINTER, INVALID_ARGUMENT (unknown/missing/duplicate input name, unknown output
 *  name), UNSUPPORTED_DTYPE (input dtype differs from the model's), SHAPE_MISMATCH (wrong rank
 *  or fixed dim, symbolic dim bound inconsistently, naming the symbol and inputs), RUNTIME (an
 *  operator failed on the given values, naming the node). */
pmi_status pmi_session_run(const pmi_session* session, const char* const* input_names,
                           const pmi_tensor* const* inputs, size_t n_inputs,
                           const char* const* output_names, size_t n_outputs,
                           pmi_tensor** outputs);

/** Position of the input `name` in pmi_session_input_info order, for pmi_input_buffer.index.
 *  Errors: NULL_POINTER, INVALID_ARGUMENT (unknown name, listing the inputs). Since ABI 1.1. */
pmi_status pmi_session_input_index(const pmi_session* session, const char* name, size_t* out);

/** Position of the output `name` in pmi_session_output_info order, for the output_indices of
 *  pmi_session_run_buffers. Errors: NULL_POINTER, INVALID_ARGUMENT (unknown name). Since ABI 1.1. */
pmi_status pmi_session_output_index(const pmi_session* session, const char* name, size_t* out);

/** An input of pmi_session_run_buffers: a caller's dense, row-major buffer, read in place. */
typedef struct pmi_input_buffer {
    size_t index;          /**< the input's position in pmi_session_input_info order */
    int32_t dtype;         /**< PMI_DTYPE_* code; not STRING */
    int32_t writable;      /**< nonzero: an output aliasing this buffer may be written through */
    const int64_t* shape;  /**< `rank` non-negative dims; may be NULL when rank is 0 */
    size_t rank;
    const void* data;      /**< aligned to the element size; may be NULL when nbytes is 0 */
    size_t nbytes;         /**< element count x pmi_dtype_size(dtype) */
} pmi_input_buffer;

/** An output of pmi_session_run_buffers, written by the library. Everything but `tensor` is
 *  borrowed from `tensor` and valid until it is released (data: while any tensor sharing the
 *  data lives, as for pmi_tensor_data). */
typedef struct pmi_output_buffer {
    pmi_tensor* tensor;    /**< NEW handle owned by the caller: release with pmi_tensor_release */
    int32_t dtype;         /**< PMI_DTYPE_* code */
    int32_t writable;      /**< 1 if `data` may be written (0 for weights and read-only inputs) */
    const int64_t* shape;  /**< `rank` dims */
    size_t rank;
    void* data;            /**< first byte of the data; NULL for STRING (see pmi_tensor_string_get) */
    size_t nbytes;         /**< size of the data in bytes (0 for STRING) */
    int64_t aliased_input; /**< -1, or the position in `inputs` of the input buffer that `data`
                                points into (Identity, Reshape... share their input: no copy) */
} pmi_output_buffer;

/** Run the model on raw buffers: the per-call fast path of pmi_session_run, with no tensor
 *  handle per input and the outputs described in one call.
 *  Inputs: n_inputs buffers, each naming its input by position (each at most once; inputs not
 *  given must have an initializer default). The library reads them during the call and keeps
 *  no pointer to them afterwards, EXCEPT through outputs whose aliased_input is >= 0: such an
 *  output's data lies in that input's buffer, which the caller must then keep alive (and see
 *  changes of) for as long as it uses the output. Use pmi_session_run with pmi_tensor_wrap and a
 *  release callback for exact lifetime tracking instead.
 *  Outputs: output_indices[0..n_outputs] selects outputs by position (pmi_session_output_index),
 *  in any order; NULL means all outputs in model order (n_outputs must then equal the output
 *  count). On success outputs[0..n_outputs] are filled and each .tensor is owned by the caller;
 *  on failure nothing is written to outputs.
 *  Thread-safe: concurrent runs on one session are allowed (each with its own arrays).
 *  Errors: those of pmi_session_run (the same checks and messages, naming the input), plus
 *  INVALID_ARGUMENT (index out of range, misaligned data, negative dim), SHAPE_MISMATCH (nbytes
 *  disagrees with dtype and shape), UNSUPPORTED_DTYPE (unknown code or STRING), LIMIT_EXCEEDED
 *  (rank > PMI_MAX_RANK); messages about a buffer name it as inputs[i]. Since ABI 1.1. */
pmi_status pmi_session_run_buffers(const pmi_session* session, const pmi_input_buffer* inputs,
                                   size_t n_inputs, const size_t* output_indices, size_t n_outputs,
                                   pmi_output_buffer* outputs);

/* ------------------------------------------------------------------------------------------ */
/* Testing hooks                                                                              */
/* ------------------------------------------------------------------------------------------ */

/** Panics inside the library on purpose, to test that panics become PMI_ERR_PANIC with
 *  `message` (or a default text when NULL) in pmi_last_error(). Always returns PMI_ERR_PANIC.
 *  The panic message is also printed to stderr by Rust's default panic hook. Test use only. */
pmi_status pmi_debug_panic(const char* message);

#ifdef __cplusplus
}
#endif

#endif /* PYML_INTEROP_H */
