/*
 * A C consumer of pyml_interop.h exercising every tensor function: error statuses and messages,
 * ownership (release callbacks and DLPack deleters called exactly once, on success and error
 * paths), DLPack in both directions, read-only data, strings, .npy files, thread-local errors
 * and the panic guard; and sessions run on raw buffers (pmi_session_run_buffers). Built with -std=c99 -Wall -Wextra -Werror -pedantic and run under
 * AddressSanitizer (and valgrind) by tests/c/run.sh.
 *
 * Prints one line per test and a closing "N passed, M failed"; exits non-zero on failure.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pyml_interop.h"

/* ------------------------------------------------------------------------------------------ */
/* A tiny test harness                                                                        */
/* ------------------------------------------------------------------------------------------ */

static int g_current_failed;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed; last error: \"%s\"\n", __FILE__,       \
                    __LINE__, #cond, pmi_last_error());                                        \
            g_current_failed = 1;                                                              \
        }                                                                                      \
    } while (0)

#define CHECK_OK(call) CHECK((call) == PMI_OK)

/* The call fails with `status` and pmi_last_error() contains `substring`. */
#define CHECK_ERR(call, status, substring)                                                     \
    do {                                                                                       \
        pmi_status s_ = (call);                                                                \
        if (s_ != (status) || strstr(pmi_last_error(), (substring)) == NULL) {                 \
            fprintf(stderr, "  %s:%d: %s returned %s (\"%s\"), expected %s containing \"%s\"\n", \
                    __FILE__, __LINE__, #call, pmi_status_name(s_), pmi_last_error(),          \
                    pmi_status_name(status), (substring));                                     \
            g_current_failed = 1;                                                              \
        }                                                                                      \
    } while (0)

static int g_passed, g_failed;

static void run(const char* name, void (*test)(void)) {
    g_current_failed = 0;
    test();
    if (g_current_failed) {
        g_failed++;
        printf("FAIL %s\n", name);
    } else {
        g_passed++;
        printf("ok   %s\n", name);
    }
    fflush(stdout);
}

#define RUN(test) run(#test, test)

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static size_t tensor_numel(const pmi_tensor* t) {
    size_t n = 0;
    CHECK_OK(pmi_tensor_numel(t, &n));
    return n;
}

static const void* tensor_data(const pmi_tensor* t) {
    const void* p = NULL;
    CHECK_OK(pmi_tensor_data(t, &p));
    return p;
}

static int tensor_writable(const pmi_tensor* t) {
    int w = -1;
    CHECK_OK(pmi_tensor_is_writable(t, &w));
    return w;
}

/* A counted release callback for pmi_tensor_wrap. */
static int g_release_calls;
static void* g_release_ctx;
static void count_release(void* ctx) {
    g_release_calls++;
    g_release_ctx = ctx;
}

/* A C-side DLPack producer: the managed tensor lives in a heap block with its shape and strides;
 * the deleter counts calls and frees the block (ASan reports a second call as a double free). */
typedef struct producer {
    DLManagedTensorVersioned versioned;
    DLManagedTensor legacy;
    int64_t shape[4];
    int64_t strides[4];
    int* deleted; /* incremented by the deleter */
} producer;

static void producer_delete_versioned(DLManagedTensorVersioned* self) {
    producer* p = (producer*)self->manager_ctx;
    (*p->deleted)++;
    free(p);
}

static void producer_delete_legacy(DLManagedTensor* self) {
    producer* p = (producer*)self->manager_ctx;
    (*p->deleted)++;
    free(p);
}

/* A float32 producer over `data` with `ndim` dims; strides NULL (row-major) unless given. */
static producer* producer_new(float* data, int32_t ndim, const int64_t* shape, const int64_t* strides,
                              int* deleted) {
    producer* p = (producer*)calloc(1, sizeof *p);
    DLTensor* dl;
    int32_t i;
    p->deleted = deleted;
    for (i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->strides[i] = strides ? strides[i] : 0;
    }
    p->versioned.version.major = 1;
    p->versioned.version.minor = 0;
    p->versioned.manager_ctx = p;
    p->versioned.deleter = producer_delete_versioned;
    p->versioned.flags = 0;
    dl = &p->versioned.dl_tensor;
    dl->data = data;
    dl->device.device_type = 1;
    dl->device.device_id = 0;
    dl->ndim = ndim;
    dl->dtype.code = 2; /* kDLFloat */
    dl->dtype.bits = 32;
    dl->dtype.lanes = 1;
    dl->shape = p->shape;
    dl->strides = strides ? p->strides : NULL;
    dl->byte_offset = 0;
    p->legacy.dl_tensor = *dl;
    p->legacy.manager_ctx = p;
    p->legacy.deleter = producer_delete_legacy;
    return p;
}

/* ------------------------------------------------------------------------------------------ */
/* Tests                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static void test_versions_status_names_dtypes(void) {
    uint32_t v = pmi_abi_version();
    int32_t code;
    CHECK((v >> 16) == PMI_ABI_VERSION_MAJOR);
    /* signed: with PMI_ABI_VERSION_MINOR == 0 an unsigned ">= 0" trips -Wtype-limits */
    CHECK((long)(v & 0xFFFFu) >= (long)PMI_ABI_VERSION_MINOR);
    CHECK(strlen(pmi_version_string()) > 0);
    CHECK(strcmp(pmi_status_name(PMI_OK), "PMI_OK") == 0);
    CHECK(strcmp(pmi_status_name(PMI_ERR_IO), "PMI_ERR_IO") == 0);
    CHECK(strcmp(pmi_status_name(PMI_ERR_RUNTIME), "PMI_ERR_RUNTIME") == 0);
    CHECK(strcmp(pmi_status_name((pmi_status)99), "PMI_UNKNOWN") == 0);
    CHECK(pmi_dtype_size(PMI_DTYPE_FLOAT) == 4);
    CHECK(pmi_dtype_size(PMI_DTYPE_COMPLEX128) == 16);
    CHECK(pmi_dtype_size(PMI_DTYPE_INT4) == 1);
    CHECK(pmi_dtype_size(PMI_DTYPE_STRING) == 0);
    CHECK(pmi_dtype_size(0) == 0 && pmi_dtype_size(99) == 0);
    CHECK(strcmp(pmi_dtype_name(PMI_DTYPE_FLOAT), "float") == 0);
    CHECK(strcmp(pmi_dtype_name(PMI_DTYPE_BFLOAT16), "bfloat16") == 0);
    CHECK(pmi_dtype_name(0) == NULL && pmi_dtype_name(27) == NULL);
    for (code = PMI_DTYPE_FLOAT; code <= PMI_DTYPE_INT2; code++) {
        CHECK(pmi_dtype_name(code) != NULL);
    }
}

static void test_zeros_and_accessors(void) {
    int64_t dims[3] = {2, 3, 4};
    int64_t empty_dims[2] = {5, 0};
    pmi_tensor* t = NULL;
    int32_t dtype = 0;
    size_t rank = 0, n = 0, nbytes = 0, i;
    const int64_t* shape = NULL;
    const float* data;

    CHECK_OK(pmi_tensor_zeros(PMI_DTYPE_FLOAT, dims, 3, &t));
    CHECK(pmi_last_status() == PMI_OK && strcmp(pmi_last_error(), "") == 0);
    CHECK_OK(pmi_tensor_dtype(t, &dtype));
    CHECK(dtype == PMI_DTYPE_FLOAT);
    CHECK_OK(pmi_tensor_rank(t, &rank));
    CHECK(rank == 3);
    CHECK_OK(pmi_tensor_shape(t, &shape));
    CHECK(shape[0] == 2 && shape[1] == 3 && shape[2] == 4);
    CHECK_OK(pmi_tensor_numel(t, &n));
    CHECK(n == 24);
    CHECK_OK(pmi_tensor_nbytes(t, &nbytes));
    CHECK(nbytes == 96);
    CHECK(tensor_writable(t) == 1);
    data = (const float*)tensor_data(t);
    CHECK(((uintptr_t)data % 64) == 0); /* 64-byte aligned */
    for (i = 0; i < n; i++) CHECK(data[i] == 0.0f);
    pmi_tensor_release(t);

    t = NULL; /* rank 0: shape may be NULL */
    CHECK_OK(pmi_tensor_zeros(PMI_DTYPE_INT64, NULL, 0, &t));
    CHECK(tensor_numel(t) == 1);
    CHECK(*(const int64_t*)tensor_data(t) == 0);
    pmi_tensor_release(t);

    t = NULL; /* a zero-size dim */
    CHECK_OK(pmi_tensor_zeros(PMI_DTYPE_DOUBLE, empty_dims, 2, &t));
    CHECK(tensor_numel(t) == 0);
    CHECK_OK(pmi_tensor_nbytes(t, &nbytes));
    CHECK(nbytes == 0);
    pmi_tensor_release(t);

    t = NULL; /* strings: empty strings, no flat buffer */
    CHECK_OK(pmi_tensor_zeros(PMI_DTYPE_STRING, dims, 2, &t));
    {
        const char* s = NULL;
        size_t len = 99;
        const void* p = NULL;
        CHECK_OK(pmi_tensor_string_get(t, 5, &s, &len));
        CHECK(len == 0);
        CHECK_ERR(pmi_tensor_data(t, &p), PMI_ERR_UNSUPPORTED_DTYPE, "string");
    }
    pmi_tensor_release(t);

    pmi_tensor_release(NULL); /* accepted */
}

static void test_argument_errors(void) {
    int64_t dims[2] = {2, 3};
    int64_t negative[2] = {2, -3};
    int64_t huge[2] = {INT64_C(1) << 40, INT64_C(1) << 40};
    int64_t big[1] = {INT64_C(1) << 62};
    int64_t ones[PMI_MAX_RANK + 1];
    pmi_tensor* t = NULL;
    int32_t dtype;
    size_t i;
    for (i = 0; i < PMI_MAX_RANK + 1; i++) ones[i] = 1;

    CHECK_ERR(pmi_tensor_zeros(PMI_DTYPE_FLOAT, dims, 2, NULL), PMI_ERR_NULL_POINTER, "'out' is NULL");
    CHECK_ERR(pmi_tensor_zeros(PMI_DTYPE_FLOAT, NULL, 2, &t), PMI_ERR_NULL_POINTER, "'shape' is NULL");
    CHECK_ERR(pmi_tensor_zeros(PMI_DTYPE_FLOAT, negative, 2, &t), PMI_ERR_INVALID_ARGUMENT,
              "shape[1] is negative (-3)");
    CHECK_ERR(pmi_tensor_zeros(0, dims, 2, &t), PMI_ERR_UNSUPPORTED_DTYPE, "unknown element type code 0");
    CHECK_ERR(pmi_tensor_zeros(99, dims, 2, &t), PMI_ERR_UNSUPPORTED_DTYPE, "code 99");
    CHECK_ERR(pmi_tensor_zeros(PMI_DTYPE_FLOAT, huge, 2, &t), PMI_ERR_LIMIT_EXCEEDED, "more elements");
    CHECK_ERR(pmi_tensor_zeros(PMI_DTYPE_FLOAT, big, 1, &t), PMI_ERR_LIMIT_EXCEEDED, "too large");
    CHECK_ERR(pmi_tensor_zeros(PMI_DTYPE_FLOAT, ones, PMI_MAX_RANK + 1, &t), PMI_ERR_LIMIT_EXCEEDED,
              "exceeds PMI_MAX_RANK");
    CHECK(t == NULL); /* outputs untouched on failure */
    CHECK(pmi_last_status() == PMI_ERR_LIMIT_EXCEEDED);

    CHECK_ERR(pmi_tensor_dtype(NULL, &dtype), PMI_ERR_NULL_POINTER, "'tensor' is NULL");
    CHECK_OK(pmi_tensor_zeros(PMI_DTYPE_FLOAT, dims, 2, &t));
    CHECK_ERR(pmi_tensor_dtype(t, NULL), PMI_ERR_NULL_POINTER, "'out' is NULL");
    CHECK_ERR(pmi_tensor_rank(t, NULL), PMI_ERR_NULL_POINTER, "'out' is NULL");
    CHECK_ERR(pmi_tensor_shape(t, NULL), PMI_ERR_NULL_POINTER, "'out' is NULL");
    CHECK_ERR(pmi_tensor_numel(t, NULL), PMI_ERR_NULL_POINTER, "'out' is NULL");
    CHECK_ERR(pmi_tensor_nbytes(t, NULL), PMI_ERR_NULL_POINTER, "'out' is NULL");
    CHECK_ERR(pmi_tensor_is_writable(t, NULL), PMI_ERR_NULL_POINTER, "'out' is NULL");
    CHECK_ERR(pmi_tensor_data(t, NULL), PMI_ERR_NULL_POINTER, "'out' is NULL");
    CHECK_ERR(pmi_tensor_data_mut(t, NULL), PMI_ERR_NULL_POINTER, "'out' is NULL");
    CHECK_ERR(pmi_tensor_clone(t, NULL), PMI_ERR_NULL_POINTER, "'out' is NULL");
    CHECK_ERR(pmi_tensor_copy(t, NULL), PMI_ERR_NULL_POINTER, "'out' is NULL");
    pmi_tensor_release(t);
}

static void test_from_copy(void) {
    int64_t dims[2] = {2, 2};
    int32_t src[4] = {1, 2, 3, 4};
    pmi_tensor* t = NULL;
    const int32_t* data;

    CHECK_OK(pmi_tensor_from_copy(PMI_DTYPE_INT32, dims, 2, src, sizeof src, &t));
    src[0] = 100; /* the tensor holds a copy */
    data = (const int32_t*)tensor_data(t);
    CHECK(data != src && data[0] == 1 && data[3] == 4);
    CHECK(tensor_writable(t) == 1);
    pmi_tensor_release(t);

    t = NULL;
    CHECK_ERR(pmi_tensor_from_copy(PMI_DTYPE_INT32, dims, 2, src, 12, &t), PMI_ERR_SHAPE_MISMATCH,
              "12 bytes given");
    CHECK_ERR(pmi_tensor_from_copy(PMI_DTYPE_INT32, dims, 2, NULL, 16, &t), PMI_ERR_NULL_POINTER,
              "'data' is NULL");
    CHECK_ERR(pmi_tensor_from_copy(PMI_DTYPE_STRING, dims, 2, src, 16, &t), PMI_ERR_UNSUPPORTED_DTYPE,
              "string");
    CHECK(t == NULL);
    {
        int64_t empty[1] = {0};
        CHECK_OK(pmi_tensor_from_copy(PMI_DTYPE_FLOAT, empty, 1, NULL, 0, &t));
        CHECK(tensor_numel(t) == 0);
        pmi_tensor_release(t);
    }
}

static void test_wrap_release_called_once(void) {
    int64_t dims[1] = {4};
    int64_t negative[1] = {-4};
    float buf[4] = {1, 2, 3, 4};
    char bytes[9];
    pmi_tensor* t = NULL;
    pmi_tensor* clone = NULL;
    void* mut = NULL;

    /* success: released when the last sharing tensor goes */
    g_release_calls = 0;
    CHECK_OK(pmi_tensor_wrap(PMI_DTYPE_FLOAT, dims, 1, buf, sizeof buf, 1, count_release, buf, &t));
    CHECK(tensor_data(t) == (const void*)buf); /* no copy */
    CHECK_OK(pmi_tensor_data_mut(t, &mut));
    ((float*)mut)[0] = 10.0f;
    CHECK(buf[0] == 10.0f);
    CHECK_OK(pmi_tensor_clone(t, &clone));
    CHECK(tensor_data(clone) == (const void*)buf);
    pmi_tensor_release(t);
    CHECK(g_release_calls == 0);
    pmi_tensor_release(clone);
    CHECK(g_release_calls == 1 && g_release_ctx == buf);

    /* read-only wrap */
    g_release_calls = 0;
    t = NULL;
    CHECK_OK(pmi_tensor_wrap(PMI_DTYPE_FLOAT, dims, 1, buf, sizeof buf, 0, count_release, NULL, &t));
    CHECK(tensor_writable(t) == 0);
    CHECK_ERR(pmi_tensor_data_mut(t, &mut), PMI_ERR_READ_ONLY, "read-only");
    pmi_tensor_release(t);
    CHECK(g_release_calls == 1);

    /* error paths after the pointers were validated: released exactly once, before returning */
    g_release_calls = 0;
    t = NULL;
    CHECK_ERR(pmi_tensor_wrap(99, dims, 1, buf, sizeof buf, 1, count_release, NULL, &t),
              PMI_ERR_UNSUPPORTED_DTYPE, "99");
    CHECK(g_release_calls == 1);
    CHECK_ERR(pmi_tensor_wrap(PMI_DTYPE_FLOAT, negative, 1, buf, sizeof buf, 1, count_release, NULL, &t),
              PMI_ERR_INVALID_ARGUMENT, "negative");
    CHECK(g_release_calls == 2);
    CHECK_ERR(pmi_tensor_wrap(PMI_DTYPE_FLOAT, dims, 1, buf, 12, 1, count_release, NULL, &t),
              PMI_ERR_SHAPE_MISMATCH, "12 bytes");
    CHECK(g_release_calls == 3);
    CHECK_ERR(pmi_tensor_wrap(PMI_DTYPE_STRING, dims, 1, buf, sizeof buf, 1, count_release, NULL, &t),
              PMI_ERR_UNSUPPORTED_DTYPE, "pmi_tensor_from_strings");
    CHECK(g_release_calls == 4);
    /* misaligned: int32 at an odd address */
    {
        char* odd = bytes + ((uintptr_t)bytes % 2 == 0 ? 1 : 0);
        int64_t two[1] = {2};
        CHECK_ERR(pmi_tensor_wrap(PMI_DTYPE_INT32, two, 1, odd, 8, 1, count_release, NULL, &t),
                  PMI_ERR_INVALID_ARGUMENT, "not aligned");
        CHECK(g_release_calls == 5);
    }
    CHECK(t == NULL);
    /* NULL out / NULL data: rejected before ownership passes, the callback is not called */
    CHECK_ERR(pmi_tensor_wrap(PMI_DTYPE_FLOAT, dims, 1, buf, sizeof buf, 1, count_release, NULL, NULL),
              PMI_ERR_NULL_POINTER, "'out' is NULL");
    CHECK_ERR(pmi_tensor_wrap(PMI_DTYPE_FLOAT, dims, 1, NULL, 16, 1, count_release, NULL, &t),
              PMI_ERR_NULL_POINTER, "'data' is NULL");
    CHECK(g_release_calls == 5);

    /* NULL release: the caller keeps the buffer */
    CHECK_OK(pmi_tensor_wrap(PMI_DTYPE_FLOAT, dims, 1, buf, sizeof buf, 1, NULL, NULL, &t));
    pmi_tensor_release(t);
}

static void test_strings(void) {
    int64_t dims[2] = {2, 2};
    const char* texts[4] = {"alpha", "", "b\0c", "\xc3\xa9t\xc3\xa9"};
    size_t lengths[4] = {5, 0, 3, 6};
    const char* nul_terminated[2] = {"x", "yz"};
    int64_t two[1] = {2};
    pmi_tensor* t = NULL;
    pmi_tensor* copy = NULL;
    const char* s = NULL;
    size_t len = 0, nbytes = 99;
    DLManagedTensorVersioned* mt = NULL;

    CHECK_OK(pmi_tensor_from_strings(dims, 2, texts, lengths, 4, &t));
    CHECK_OK(pmi_tensor_string_get(t, 2, &s, &len));
    CHECK(len == 3 && memcmp(s, "b\0c", 3) == 0); /* embedded NUL kept */
    CHECK_OK(pmi_tensor_string_get(t, 3, &s, &len));
    CHECK(len == 6 && memcmp(s, "\xc3\xa9t\xc3\xa9", 6) == 0);
    CHECK_OK(pmi_tensor_nbytes(t, &nbytes));
    CHECK(nbytes == 0);
    CHECK_ERR(pmi_tensor_string_get(t, 4, &s, &len), PMI_ERR_INVALID_ARGUMENT, "index 4 out of range");
    CHECK_ERR(pmi_tensor_string_get(t, 0, NULL, &len), PMI_ERR_NULL_POINTER, "NULL");
    CHECK_ERR(pmi_tensor_to_dlpack_versioned(t, &mt), PMI_ERR_UNSUPPORTED_DTYPE, "string");
    CHECK_OK(pmi_tensor_copy(t, &copy));
    pmi_tensor_release(t);
    CHECK_OK(pmi_tensor_string_get(copy, 0, &s, &len)); /* the copy is independent */
    CHECK(len == 5 && memcmp(s, "alpha", 5) == 0);
    pmi_tensor_release(copy);

    t = NULL;
    CHECK_OK(pmi_tensor_from_strings(two, 1, nul_terminated, NULL, 2, &t));
    CHECK_OK(pmi_tensor_string_get(t, 1, &s, &len));
    CHECK(len == 2 && memcmp(s, "yz", 2) == 0);
    pmi_tensor_release(t);

    t = NULL;
    CHECK_ERR(pmi_tensor_from_strings(dims, 2, texts, lengths, 3, &t), PMI_ERR_SHAPE_MISMATCH, "3 strings");
    CHECK_ERR(pmi_tensor_from_strings(dims, 2, NULL, NULL, 4, &t), PMI_ERR_NULL_POINTER, "'strings'");
    {
        const char* with_null[2] = {"ok", NULL};
        CHECK_ERR(pmi_tensor_from_strings(two, 1, with_null, NULL, 2, &t), PMI_ERR_NULL_POINTER,
                  "strings[1] is NULL");
    }
    {
        pmi_tensor* num = NULL;
        CHECK_OK(pmi_tensor_zeros(PMI_DTYPE_INT32, two, 1, &num));
        CHECK_ERR(pmi_tensor_string_get(num, 0, &s, &len), PMI_ERR_UNSUPPORTED_DTYPE, "not string");
        pmi_tensor_release(num);
    }
    CHECK(t == NULL);
}

static void test_dlpack_versioned_import(void) {
    float data[6] = {0, 1, 2, 3, 4, 5};
    int64_t shape[2] = {2, 3};
    int deleted = 0;
    producer* p;
    pmi_tensor* t = NULL;
    pmi_tensor* clone = NULL;
    void* mut = NULL;

    /* success: shares the buffer, deleter runs once when the last tensor goes */
    p = producer_new(data, 2, shape, NULL, &deleted);
    CHECK_OK(pmi_tensor_from_dlpack_versioned(&p->versioned, 0, &t));
    CHECK(tensor_data(t) == (const void*)data);
    CHECK(tensor_writable(t) == 1);
    CHECK_OK(pmi_tensor_clone(t, &clone));
    pmi_tensor_release(t);
    CHECK(deleted == 0);
    CHECK(((const float*)tensor_data(clone))[5] == 5.0f);
    pmi_tensor_release(clone);
    CHECK(deleted == 1);

    /* read-only flag honoured */
    deleted = 0;
    p = producer_new(data, 2, shape, NULL, &deleted);
    p->versioned.flags = 1;
    CHECK_OK(pmi_tensor_from_dlpack_versioned(&p->versioned, 0, &t));
    CHECK(tensor_writable(t) == 0);
    CHECK_ERR(pmi_tensor_data_mut(t, &mut), PMI_ERR_READ_ONLY, "read-only");
    pmi_tensor_release(t);
    CHECK(deleted == 1);

    /* byte_offset honoured */
    deleted = 0;
    {
        int64_t four[1] = {4};
        p = producer_new(data, 1, four, NULL, &deleted);
        p->versioned.dl_tensor.byte_offset = 2 * sizeof(float);
        CHECK_OK(pmi_tensor_from_dlpack_versioned(&p->versioned, 0, &t));
        CHECK(tensor_data(t) == (const void*)(data + 2));
        pmi_tensor_release(t);
        CHECK(deleted == 1);
    }

    /* strided: refused without the flag, gathered with it; the deleter runs once either way */
    deleted = 0;
    {
        int64_t transposed[2] = {1, 3}; /* a (3, 2) view of the (2, 3) buffer, transposed */
        int64_t tshape[2] = {3, 2};
        const float* g;
        p = producer_new(data, 2, tshape, transposed, &deleted);
        t = NULL;
        CHECK_ERR(pmi_tensor_from_dlpack_versioned(&p->versioned, 0, &t), PMI_ERR_INVALID_ARGUMENT,
                  "non-contiguous");
        CHECK(deleted == 1 && t == NULL);
        p = producer_new(data, 2, tshape, transposed, &deleted);
        CHECK_OK(pmi_tensor_from_dlpack_versioned(&p->versioned, PMI_DLPACK_ALLOW_COPY, &t));
        CHECK(deleted == 2); /* released right after the copy */
        g = (const float*)tensor_data(t);
        CHECK(g != data && g[0] == 0 && g[1] == 3 && g[2] == 1 && g[3] == 4 && g[4] == 2 && g[5] == 5);
        pmi_tensor_release(t);
        CHECK(deleted == 2);
    }

    /* errors after ownership passed: the deleter runs exactly once, before returning */
    deleted = 0;
    t = NULL;
    p = producer_new(data, 2, shape, NULL, &deleted);
    p->versioned.dl_tensor.device.device_type = 2; /* kDLCUDA */
    CHECK_ERR(pmi_tensor_from_dlpack_versioned(&p->versioned, 0, &t), PMI_ERR_INVALID_ARGUMENT, "device type 2");
    CHECK(deleted == 1);
    p = producer_new(data, 2, shape, NULL, &deleted);
    p->versioned.version.major = 2;
    CHECK_ERR(pmi_tensor_from_dlpack_versioned(&p->versioned, 0, &t), PMI_ERR_VERSION_MISMATCH, "version 2.0");
    CHECK(deleted == 2);
    p = producer_new(data, 2, shape, NULL, &deleted);
    p->versioned.dl_tensor.dtype.lanes = 4;
    CHECK_ERR(pmi_tensor_from_dlpack_versioned(&p->versioned, 0, &t), PMI_ERR_UNSUPPORTED_DTYPE, "lanes");
    CHECK(deleted == 3);
    p = producer_new(data, 2, shape, NULL, &deleted);
    p->shape[1] = -3;
    CHECK_ERR(pmi_tensor_from_dlpack_versioned(&p->versioned, 0, &t), PMI_ERR_INVALID_ARGUMENT, "negative");
    CHECK(deleted == 4);
    p = producer_new(data, 2, shape, NULL, &deleted);
    p->versioned.dl_tensor.byte_offset = 1; /* misaligned float */
    CHECK_ERR(pmi_tensor_from_dlpack_versioned(&p->versioned, 0, &t), PMI_ERR_INVALID_ARGUMENT, "aligned");
    CHECK(deleted == 5);
    p = producer_new(data, 2, shape, NULL, &deleted);
    p->versioned.dl_tensor.dtype.code = 0; /* int4, not marked padded */
    p->versioned.dl_tensor.dtype.bits = 4;
    CHECK_ERR(pmi_tensor_from_dlpack_versioned(&p->versioned, 0, &t), PMI_ERR_UNSUPPORTED_DTYPE, "padded");
    CHECK(deleted == 6);
    p = producer_new(data, 2, shape, NULL, &deleted);
    CHECK_ERR(pmi_tensor_from_dlpack_versioned(&p->versioned, 0, NULL), PMI_ERR_NULL_POINTER, "'out' is NULL");
    CHECK(deleted == 7);
    CHECK(t == NULL);
    CHECK_ERR(pmi_tensor_from_dlpack_versioned(NULL, 0, &t), PMI_ERR_NULL_POINTER, "NULL");
}

static void test_dlpack_legacy_import(void) {
    float data[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    int deleted = 0;
    producer* p = producer_new(data, 1, shape, NULL, &deleted);
    pmi_tensor* t = NULL;

    CHECK_OK(pmi_tensor_from_dlpack(&p->legacy, 0, &t));
    CHECK(tensor_data(t) == (const void*)data);
    CHECK(tensor_writable(t) == 1); /* legacy DLPack has no read-only flag */
    pmi_tensor_release(t);
    CHECK(deleted == 1);

    p = producer_new(data, 1, shape, NULL, &deleted);
    p->legacy.dl_tensor.device.device_type = 4; /* kDLOpenCL */
    t = NULL;
    CHECK_ERR(pmi_tensor_from_dlpack(&p->legacy, 0, &t), PMI_ERR_INVALID_ARGUMENT, "device type 4");
    CHECK(deleted == 2 && t == NULL);
    p = producer_new(data, 1, shape, NULL, &deleted);
    CHECK_ERR(pmi_tensor_from_dlpack(&p->legacy, 0, NULL), PMI_ERR_NULL_POINTER, "'out' is NULL");
    CHECK(deleted == 3);
    CHECK_ERR(pmi_tensor_from_dlpack(NULL, 0, &t), PMI_ERR_NULL_POINTER, "NULL");
}

static void test_dlpack_export(void) {
    int64_t dims[2] = {2, 3};
    float src[6] = {0, 1, 2, 3, 4, 5};
    pmi_tensor* t = NULL;
    pmi_tensor* back = NULL;
    pmi_tensor* ro = NULL;
    DLManagedTensorVersioned* mt = NULL;
    DLManagedTensor* legacy = NULL;
    const float* values;

    CHECK_OK(pmi_tensor_from_copy(PMI_DTYPE_FLOAT, dims, 2, src, sizeof src, &t));
    CHECK_OK(pmi_tensor_to_dlpack_versioned(t, &mt));
    CHECK(mt->version.major == 1);
    CHECK(mt->deleter != NULL);
    CHECK((mt->flags & 1) == 0);
    CHECK(mt->dl_tensor.data == tensor_data(t)); /* shares data */
    CHECK(mt->dl_tensor.device.device_type == 1 && mt->dl_tensor.device.device_id == 0);
    CHECK(mt->dl_tensor.ndim == 2 && mt->dl_tensor.shape[0] == 2 && mt->dl_tensor.shape[1] == 3);
    CHECK(mt->dl_tensor.strides == NULL || (mt->dl_tensor.strides[0] == 3 && mt->dl_tensor.strides[1] == 1));
    CHECK(mt->dl_tensor.dtype.code == 2 && mt->dl_tensor.dtype.bits == 32 && mt->dl_tensor.dtype.lanes == 1);
    CHECK(mt->dl_tensor.byte_offset == 0);
    /* the tensor may be released before the consumer is done */
    values = (const float*)mt->dl_tensor.data;
    pmi_tensor_release(t);
    CHECK(values[5] == 5.0f);
    /* and the export imports back without a copy */
    CHECK_OK(pmi_tensor_from_dlpack_versioned(mt, 0, &back));
    CHECK(tensor_data(back) == (const void*)values);
    pmi_tensor_release(back);

    /* a consumer that calls the deleter itself */
    t = NULL;
    CHECK_OK(pmi_tensor_from_copy(PMI_DTYPE_FLOAT, dims, 2, src, sizeof src, &t));
    CHECK_OK(pmi_tensor_to_dlpack_versioned(t, &mt));
    CHECK_OK(pmi_tensor_to_dlpack(t, &legacy));
    CHECK(legacy->dl_tensor.data == tensor_data(t) && legacy->dl_tensor.ndim == 2);
    pmi_tensor_release(t);
    mt->deleter(mt);
    legacy->deleter(legacy);

    /* read-only: flagged in the versioned export, refused by the legacy one */
    {
        float buf[2] = {7, 8};
        int64_t two[1] = {2};
        CHECK_OK(pmi_tensor_wrap(PMI_DTYPE_FLOAT, two, 1, buf, sizeof buf, 0, NULL, NULL, &ro));
        CHECK_OK(pmi_tensor_to_dlpack_versioned(ro, &mt));
        CHECK((mt->flags & 1) == 1);
        CHECK_OK(pmi_tensor_from_dlpack_versioned(mt, 0, &back));
        CHECK(tensor_writable(back) == 0);
        pmi_tensor_release(back);
        legacy = NULL;
        CHECK_ERR(pmi_tensor_to_dlpack(ro, &legacy), PMI_ERR_READ_ONLY, "read-only");
        CHECK(legacy == NULL);
        pmi_tensor_release(ro);
    }

    /* sub-byte types: versioned export marks them padded; legacy refuses */
    {
        int64_t three[1] = {3};
        int8_t nibbles[3] = {-8, -1, 7};
        pmi_tensor* i4 = NULL;
        CHECK_OK(pmi_tensor_from_copy(PMI_DTYPE_INT4, three, 1, nibbles, 3, &i4));
        CHECK_OK(pmi_tensor_to_dlpack_versioned(i4, &mt));
        CHECK((mt->flags & 4) == 4 && mt->dl_tensor.dtype.code == 0 && mt->dl_tensor.dtype.bits == 4);
        CHECK_OK(pmi_tensor_from_dlpack_versioned(mt, 0, &back));
        CHECK(((const int8_t*)tensor_data(back))[0] == -8);
        pmi_tensor_release(back);
        CHECK_ERR(pmi_tensor_to_dlpack(i4, &legacy), PMI_ERR_UNSUPPORTED_DTYPE, "int4");
        pmi_tensor_release(i4);
    }

    /* rank 0 and zero-size */
    {
        int64_t empty[2] = {0, 3};
        pmi_tensor* z = NULL;
        CHECK_OK(pmi_tensor_zeros(PMI_DTYPE_DOUBLE, NULL, 0, &z));
        CHECK_OK(pmi_tensor_to_dlpack_versioned(z, &mt));
        CHECK(mt->dl_tensor.ndim == 0);
        CHECK_OK(pmi_tensor_from_dlpack_versioned(mt, 0, &back));
        CHECK(tensor_numel(back) == 1);
        pmi_tensor_release(back);
        pmi_tensor_release(z);
        CHECK_OK(pmi_tensor_zeros(PMI_DTYPE_DOUBLE, empty, 2, &z));
        CHECK_OK(pmi_tensor_to_dlpack(z, &legacy));
        CHECK_OK(pmi_tensor_from_dlpack(legacy, 0, &back));
        CHECK(tensor_numel(back) == 0);
        pmi_tensor_release(back);
        pmi_tensor_release(z);
    }
}

static void test_clone_copy_data_mut(void) {
    int64_t dims[1] = {3};
    pmi_tensor* t = NULL;
    pmi_tensor* clone = NULL;
    pmi_tensor* copy = NULL;
    void* mut = NULL;

    CHECK_OK(pmi_tensor_zeros(PMI_DTYPE_DOUBLE, dims, 1, &t));
    CHECK_OK(pmi_tensor_clone(t, &clone));
    CHECK_OK(pmi_tensor_copy(t, &copy));
    CHECK(tensor_data(clone) == tensor_data(t));
    CHECK(tensor_data(copy) != tensor_data(t));
    CHECK_OK(pmi_tensor_data_mut(t, &mut));
    ((double*)mut)[1] = 2.5;
    CHECK(((const double*)tensor_data(clone))[1] == 2.5); /* clones share */
    CHECK(((const double*)tensor_data(copy))[1] == 0.0);  /* copies do not */
    pmi_tensor_release(t);
    pmi_tensor_release(clone);
    pmi_tensor_release(copy);

    { /* a deep copy of read-only data is writable */
        float buf[3] = {1, 2, 3};
        void* p = NULL;
        CHECK_OK(pmi_tensor_wrap(PMI_DTYPE_FLOAT, dims, 1, buf, sizeof buf, 0, NULL, NULL, &t));
        CHECK_OK(pmi_tensor_copy(t, &copy));
        CHECK(tensor_writable(copy) == 1);
        CHECK_OK(pmi_tensor_data_mut(copy, &p));
        CHECK(((float*)p)[2] == 3.0f);
        pmi_tensor_release(t);
        pmi_tensor_release(copy);
    }
}

static void test_npy_files(void) {
    char dir[] = "/tmp/pmi_c_test_XXXXXX";
    char path[256], missing[256], garbage[256], strings_path[256];
    int64_t dims[2] = {2, 3};
    int32_t src[6] = {1, -2, 3, -4, 5, -6};
    const char* texts[2] = {"one", "\xc3\xa9"};
    int64_t two[1] = {2};
    pmi_tensor* t = NULL;
    pmi_tensor* back = NULL;
    const int64_t* shape = NULL;
    int32_t dtype = 0;
    FILE* f;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/t.npy", dir);
    snprintf(missing, sizeof missing, "%s/missing.npy", dir);
    snprintf(garbage, sizeof garbage, "%s/garbage.npy", dir);
    snprintf(strings_path, sizeof strings_path, "%s/s.npy", dir);

    CHECK_OK(pmi_tensor_from_copy(PMI_DTYPE_INT32, dims, 2, src, sizeof src, &t));
    CHECK_OK(pmi_tensor_save_npy(t, path));
    CHECK_OK(pmi_tensor_load_npy(path, &back));
    CHECK_OK(pmi_tensor_dtype(back, &dtype));
    CHECK_OK(pmi_tensor_shape(back, &shape));
    CHECK(dtype == PMI_DTYPE_INT32 && shape[0] == 2 && shape[1] == 3);
    CHECK(memcmp(tensor_data(back), src, sizeof src) == 0);
    pmi_tensor_release(back);
    pmi_tensor_release(t);

    t = NULL;
    CHECK_OK(pmi_tensor_from_strings(two, 1, texts, NULL, 2, &t));
    CHECK_OK(pmi_tensor_save_npy(t, strings_path));
    back = NULL;
    CHECK_OK(pmi_tensor_load_npy(strings_path, &back));
    {
        const char* s = NULL;
        size_t len = 0;
        CHECK_OK(pmi_tensor_string_get(back, 1, &s, &len));
        CHECK(len == 2 && memcmp(s, "\xc3\xa9", 2) == 0);
    }
    pmi_tensor_release(back);
    pmi_tensor_release(t);

    { /* types without an .npy code */
        int64_t one[1] = {1};
        CHECK_OK(pmi_tensor_zeros(PMI_DTYPE_BFLOAT16, one, 1, &t));
        CHECK_ERR(pmi_tensor_save_npy(t, path), PMI_ERR_UNSUPPORTED_DTYPE, "bfloat16");
        pmi_tensor_release(t);
    }

    back = NULL;
    CHECK_ERR(pmi_tensor_load_npy(missing, &back), PMI_ERR_IO, "missing.npy");
    f = fopen(garbage, "wb");
    CHECK(f != NULL);
    if (f) {
        fputs("definitely not numpy", f);
        fclose(f);
    }
    CHECK_ERR(pmi_tensor_load_npy(garbage, &back), PMI_ERR_INVALID_ARGUMENT, "not a .npy file");
    CHECK_ERR(pmi_tensor_load_npy(NULL, &back), PMI_ERR_NULL_POINTER, "'path' is NULL");
    CHECK_ERR(pmi_tensor_load_npy(path, NULL), PMI_ERR_NULL_POINTER, "'out' is NULL");
    CHECK_ERR(pmi_tensor_load_npy("\xff\xfe.npy", &back), PMI_ERR_INVALID_ARGUMENT, "UTF-8");
    CHECK_ERR(pmi_tensor_save_npy(NULL, path), PMI_ERR_NULL_POINTER, "'tensor' is NULL");
    CHECK(back == NULL);

    unlink(path);
    unlink(garbage);
    unlink(strings_path);
    rmdir(dir);
}

static void test_pb_files(void) {
#ifdef PMI_TEST_HAVE_PB
    char dir[] = "/tmp/pmi_c_pb_XXXXXX";
    char path[256];
    int64_t dims[2] = {2, 2};
    float src[4] = {1.5f, -2, 0, 4};
    pmi_tensor* t = NULL;
    pmi_tensor* back = NULL;
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/t.pb", dir);
    CHECK_OK(pmi_tensor_from_copy(PMI_DTYPE_FLOAT, dims, 2, src, sizeof src, &t));
    CHECK_OK(pmi_tensor_save_pb(t, path));
    CHECK_OK(pmi_tensor_load_pb(path, &back));
    CHECK(back != NULL && memcmp(tensor_data(back), src, sizeof src) == 0);
    pmi_tensor_release(back);
    pmi_tensor_release(t);
    CHECK_ERR(pmi_tensor_load_pb(NULL, &back), PMI_ERR_NULL_POINTER, "'path' is NULL");
    CHECK_ERR(pmi_tensor_save_pb(NULL, path), PMI_ERR_NULL_POINTER, "'tensor' is NULL");
    unlink(path);
    rmdir(dir);
#else
    printf("     (skipped: the library does not export pmi_tensor_load_pb/save_pb yet)\n");
#endif
}

static void test_panic_guard(void) {
    int64_t dims[1] = {2};
    pmi_tensor* t = NULL;
    CHECK(pmi_debug_panic("boom") == PMI_ERR_PANIC);
    CHECK(pmi_last_status() == PMI_ERR_PANIC);
    CHECK(strstr(pmi_last_error(), "boom") != NULL);
    CHECK(pmi_debug_panic(NULL) == PMI_ERR_PANIC);
    /* the library keeps working */
    CHECK_OK(pmi_tensor_zeros(PMI_DTYPE_FLOAT, dims, 1, &t));
    CHECK(pmi_last_status() == PMI_OK);
    pmi_tensor_release(t);
}

/* Errors are thread-local: a failure on one thread does not show on another. */
static void* failing_thread(void* arg) {
    pmi_tensor* t = NULL;
    int* ok = (int*)arg;
    *ok = pmi_tensor_zeros(99, NULL, 0, &t) == PMI_ERR_UNSUPPORTED_DTYPE &&
          strstr(pmi_last_error(), "99") != NULL;
    return NULL;
}

static void test_thread_local_errors(void) {
    pthread_t thread;
    int ok = 0;
    pmi_tensor* t = NULL;
    CHECK_OK(pmi_tensor_zeros(PMI_DTYPE_FLOAT, NULL, 0, &t));
    CHECK(pthread_create(&thread, NULL, failing_thread, &ok) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(ok);
    CHECK(pmi_last_status() == PMI_OK && strcmp(pmi_last_error(), "") == 0);
    pmi_tensor_release(t);
}

/* Tensors may be released on another thread than the one that made them. */
static void* release_thread(void* arg) {
    pmi_tensor_release((pmi_tensor*)arg);
    return NULL;
}

static void test_release_from_another_thread(void) {
    int64_t dims[1] = {8};
    float buf[8] = {0};
    pmi_tensor* t = NULL;
    pthread_t thread;
    g_release_calls = 0;
    CHECK_OK(pmi_tensor_wrap(PMI_DTYPE_FLOAT, dims, 1, buf, sizeof buf, 1, count_release, NULL, &t));
    CHECK(pthread_create(&thread, NULL, release_thread, t) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(g_release_calls == 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Sessions on raw buffers                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* An ONNX model (opset 17): inputs a, b float [n, 4]; outputs s = a + b, y = Identity(b),
 * wc = Identity(w) with the initializer w = [1.5, -2]. */
static const unsigned char k_add_model[] = {
    0x08, 0x08, 0x3a, 0xb5, 0x01, 0x0a, 0x0e, 0x0a, 0x01, 0x61, 0x0a, 0x01, 0x62, 0x12, 0x01, 0x73,
    0x22, 0x03, 0x41, 0x64, 0x64, 0x0a, 0x10, 0x0a, 0x01, 0x62, 0x12, 0x01, 0x79, 0x22, 0x08, 0x49,
    0x64, 0x65, 0x6e, 0x74, 0x69, 0x74, 0x79, 0x0a, 0x11, 0x0a, 0x01, 0x77, 0x12, 0x02, 0x77, 0x63,
    0x22, 0x08, 0x49, 0x64, 0x65, 0x6e, 0x74, 0x69, 0x74, 0x79, 0x12, 0x01, 0x67, 0x2a, 0x11, 0x08,
    0x02, 0x10, 0x01, 0x22, 0x08, 0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x42, 0x01, 0x77,
    0x5a, 0x14, 0x0a, 0x01, 0x61, 0x12, 0x0f, 0x0a, 0x0d, 0x08, 0x01, 0x12, 0x09, 0x0a, 0x03, 0x12,
    0x01, 0x6e, 0x0a, 0x02, 0x08, 0x04, 0x5a, 0x14, 0x0a, 0x01, 0x62, 0x12, 0x0f, 0x0a, 0x0d, 0x08,
    0x01, 0x12, 0x09, 0x0a, 0x03, 0x12, 0x01, 0x6e, 0x0a, 0x02, 0x08, 0x04, 0x62, 0x14, 0x0a, 0x01,
    0x73, 0x12, 0x0f, 0x0a, 0x0d, 0x08, 0x01, 0x12, 0x09, 0x0a, 0x03, 0x12, 0x01, 0x6e, 0x0a, 0x02,
    0x08, 0x04, 0x62, 0x14, 0x0a, 0x01, 0x79, 0x12, 0x0f, 0x0a, 0x0d, 0x08, 0x01, 0x12, 0x09, 0x0a,
    0x03, 0x12, 0x01, 0x6e, 0x0a, 0x02, 0x08, 0x04, 0x62, 0x10, 0x0a, 0x02, 0x77, 0x63, 0x12, 0x0a,
    0x0a, 0x08, 0x08, 0x01, 0x12, 0x04, 0x0a, 0x02, 0x08, 0x02, 0x42, 0x04, 0x0a, 0x00, 0x10, 0x11,
};

static pmi_session* add_session(void) {
    pmi_model* m = NULL;
    pmi_session_options* o = NULL;
    pmi_session* s = NULL;
    CHECK_OK(pmi_model_load_bytes(k_add_model, sizeof k_add_model, &m));
    CHECK_OK(pmi_session_options_create(&o));
    CHECK_OK(pmi_session_options_set_intra_op_threads(o, 1));
    CHECK_OK(pmi_session_create(m, o, &s));
    pmi_session_options_release(o);
    pmi_model_release(m); /* the session keeps what it needs */
    return s;
}

static pmi_input_buffer float_input(size_t index, const int64_t* shape, size_t rank, const float* data,
                                    size_t nbytes, int writable) {
    pmi_input_buffer b;
    memset(&b, 0, sizeof b);
    b.index = index;
    b.dtype = PMI_DTYPE_FLOAT;
    b.writable = writable;
    b.shape = shape;
    b.rank = rank;
    b.data = data;
    b.nbytes = nbytes;
    return b;
}

static void test_session_run_buffers(void) {
    pmi_session* s = add_session();
    size_t ia = 9, ib = 9, iy = 9;
    float a[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    float b[8] = {10, 10, 10, 10, 20, 20, 20, 20};
    int64_t shape[2] = {2, 4};
    pmi_input_buffer in[2];
    pmi_output_buffer out[3];
    size_t i;
    const int64_t* dims = NULL;

    CHECK_OK(pmi_session_input_index(s, "a", &ia));
    CHECK_OK(pmi_session_input_index(s, "b", &ib));
    CHECK(ia == 0 && ib == 1);
    CHECK_ERR(pmi_session_input_index(s, "nope", &ia), PMI_ERR_INVALID_ARGUMENT, "'nope'");
    CHECK_OK(pmi_session_output_index(s, "y", &iy));
    CHECK(iy == 1);
    CHECK_ERR(pmi_session_output_index(s, "a", &iy), PMI_ERR_INVALID_ARGUMENT, "'a'");

    /* Inputs in any order: b first. All outputs, in model order. */
    in[0] = float_input(ib, shape, 2, b, sizeof b, 1);
    in[1] = float_input(ia, shape, 2, a, sizeof a, 1);
    CHECK_OK(pmi_session_run_buffers(s, in, 2, NULL, 3, out));
    /* s = a + b: a new buffer, writable, described like the handle describes it. */
    CHECK(out[0].dtype == PMI_DTYPE_FLOAT && out[0].rank == 2 && out[0].nbytes == sizeof a);
    CHECK(out[0].shape[0] == 2 && out[0].shape[1] == 4);
    CHECK(out[0].writable == 1 && out[0].aliased_input == -1);
    CHECK_OK(pmi_tensor_shape(out[0].tensor, &dims));
    CHECK(dims == out[0].shape);
    CHECK(tensor_data(out[0].tensor) == out[0].data);
    for (i = 0; i < 8; i++) CHECK(((const float*)out[0].data)[i] == a[i] + b[i]);
    /* y = Identity(b): no copy, points into b, which is inputs[0]. */
    CHECK(out[1].data == (void*)b && out[1].aliased_input == 0 && out[1].writable == 1);
    /* wc = the initializer: read-only. */
    CHECK(out[2].rank == 1 && out[2].shape[0] == 2 && out[2].writable == 0 && out[2].aliased_input == -1);
    CHECK(((const float*)out[2].data)[0] == 1.5f && ((const float*)out[2].data)[1] == -2.0f);
    for (i = 0; i < 3; i++) pmi_tensor_release(out[i].tensor);

    /* Selected outputs in any order; a read-only input gives a read-only alias. */
    {
        size_t sel[2] = {1, 0};
        in[0].writable = 0;
        CHECK_OK(pmi_session_run_buffers(s, in, 2, sel, 2, out));
        CHECK(out[0].data == (void*)b && out[0].aliased_input == 0 && out[0].writable == 0);
        CHECK(out[1].aliased_input == -1 && ((const float*)out[1].data)[7] == 27.0f);
        in[0].writable = 1;
    }
    /* Outputs outlive the session. */
    pmi_session_release(s);
    CHECK(((const float*)out[1].data)[0] == 10.0f);
    pmi_tensor_release(out[0].tensor);
    pmi_tensor_release(out[1].tensor);
}

static void test_session_run_buffers_errors(void) {
    pmi_session* s = add_session();
    float a[8] = {0}, b[8] = {0};
    double d[8] = {0};
    unsigned char raw[40] = {0};
    int64_t shape[2] = {2, 4}, other[2] = {3, 4}, wide[2] = {2, 5};
    size_t bad_out[1] = {3};
    pmi_input_buffer in[2];
    pmi_output_buffer out[3];
    memset(out, 0xAB, sizeof out);

    in[0] = float_input(0, shape, 2, a, sizeof a, 1);
    in[1] = float_input(1, shape, 2, b, sizeof b, 1);
    CHECK_ERR(pmi_session_run_buffers(NULL, in, 2, NULL, 3, out), PMI_ERR_NULL_POINTER, "session");
    CHECK_ERR(pmi_session_run_buffers(s, NULL, 2, NULL, 3, out), PMI_ERR_NULL_POINTER, "inputs");
    CHECK_ERR(pmi_session_run_buffers(s, in, 2, NULL, 3, NULL), PMI_ERR_NULL_POINTER, "outputs");
    CHECK_ERR(pmi_session_run_buffers(s, in, 2, NULL, 2, out), PMI_ERR_INVALID_ARGUMENT, "n_outputs");
    CHECK_ERR(pmi_session_run_buffers(s, in, 2, bad_out, 1, out), PMI_ERR_INVALID_ARGUMENT, "output index 3");
    /* The same checks and messages as pmi_session_run. */
    CHECK_ERR(pmi_session_run_buffers(s, in, 1, NULL, 3, out), PMI_ERR_INVALID_ARGUMENT, "input 'b' is missing");
    in[1].index = 0;
    CHECK_ERR(pmi_session_run_buffers(s, in, 2, NULL, 3, out), PMI_ERR_INVALID_ARGUMENT, "'a' is given twice");
    in[1].index = 7;
    CHECK_ERR(pmi_session_run_buffers(s, in, 2, NULL, 3, out), PMI_ERR_INVALID_ARGUMENT, "input index 7");
    in[1] = float_input(1, other, 2, b, sizeof b, 1); /* n = 3 here, 2 in a; nbytes agrees with neither */
    CHECK_ERR(pmi_session_run_buffers(s, in, 2, NULL, 3, out), PMI_ERR_SHAPE_MISMATCH, "inputs[1]");
    {
        float b3[12] = {0};
        in[1] = float_input(1, other, 2, b3, sizeof b3, 1);
        CHECK_ERR(pmi_session_run_buffers(s, in, 2, NULL, 3, out), PMI_ERR_SHAPE_MISMATCH, "'n'");
    }
    {
        float b10[10] = {0};
        in[1] = float_input(1, wide, 2, b10, sizeof b10, 1);
        CHECK_ERR(pmi_session_run_buffers(s, in, 2, NULL, 3, out), PMI_ERR_SHAPE_MISMATCH, "axis 1");
    }
    in[1] = float_input(1, shape, 2, b, sizeof b, 1);
    in[1].dtype = PMI_DTYPE_DOUBLE;
    in[1].data = d;
    in[1].nbytes = sizeof d;
    CHECK_ERR(pmi_session_run_buffers(s, in, 2, NULL, 3, out), PMI_ERR_UNSUPPORTED_DTYPE, "'b'");
    in[1].dtype = PMI_DTYPE_STRING;
    CHECK_ERR(pmi_session_run_buffers(s, in, 2, NULL, 3, out), PMI_ERR_UNSUPPORTED_DTYPE, "inputs[1]");
    in[1].dtype = 999;
    CHECK_ERR(pmi_session_run_buffers(s, in, 2, NULL, 3, out), PMI_ERR_UNSUPPORTED_DTYPE, "inputs[1]");
    in[1] = float_input(1, shape, 2, (const float*)(const void*)(raw + 1), sizeof b, 1);
    CHECK_ERR(pmi_session_run_buffers(s, in, 2, NULL, 3, out), PMI_ERR_INVALID_ARGUMENT, "aligned");
    in[1] = float_input(1, NULL, 2, b, sizeof b, 1);
    CHECK_ERR(pmi_session_run_buffers(s, in, 2, NULL, 3, out), PMI_ERR_NULL_POINTER, "shape");
    /* Nothing was written to the outputs by any failed call. */
    {
        unsigned char expected[sizeof out];
        memset(expected, 0xAB, sizeof expected);
        CHECK(memcmp(out, expected, sizeof out) == 0);
    }
    /* Still usable. */
    in[1] = float_input(1, shape, 2, b, sizeof b, 1);
    CHECK_OK(pmi_session_run_buffers(s, in, 2, NULL, 3, out));
    pmi_tensor_release(out[0].tensor);
    pmi_tensor_release(out[1].tensor);
    pmi_tensor_release(out[2].tensor);
    pmi_session_release(s);
}

int main(void) {
    RUN(test_versions_status_names_dtypes);
    RUN(test_zeros_and_accessors);
    RUN(test_argument_errors);
    RUN(test_from_copy);
    RUN(test_wrap_release_called_once);
    RUN(test_strings);
    RUN(test_dlpack_versioned_import);
    RUN(test_dlpack_legacy_import);
    RUN(test_dlpack_export);
    RUN(test_clone_copy_data_mut);
    RUN(test_npy_files);
    RUN(test_pb_files);
    RUN(test_panic_guard);
    RUN(test_thread_local_errors);
    RUN(test_release_from_another_thread);
    RUN(test_session_run_buffers);
    RUN(test_session_run_buffers_errors);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
