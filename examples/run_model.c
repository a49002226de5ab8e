/*
 * run_model: load an ONNX model and .npy inputs, run it, write .npy outputs.
 *
 *   run_model MODEL.onnx OUT_DIR NAME=INPUT.npy [NAME=INPUT.npy ...]
 *
 * Writes OUT_DIR/<output name>.npy for every model output and prints one line per output.
 * Build: cc -std=c99 -I include examples/run_model.c -L <libdir> -lpyml_interop -o run_model
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyml_interop.h"

#define CHECK(call)                                                                     \
    do {                                                                                \
        pmi_status st_ = (call);                                                        \
        if (st_ != PMI_OK) {                                                            \
            fprintf(stderr, "error: %s: %s\n", pmi_status_name(st_), pmi_last_error()); \
            goto fail;                                                                  \
        }                                                                               \
    } while (0)

int main(int argc, char** argv) {
    pmi_model* model = NULL;
    pmi_session* session = NULL;
    pmi_tensor** inputs = NULL;
    const char** names = NULL;
    pmi_tensor** outputs = NULL;
    size_t n_in = 0, n_out = 0, i;
    int rc = 1;

    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.onnx OUT_DIR NAME=INPUT.npy ...\n", argv[0]);
        return 2;
    }
    if ((pmi_abi_version() >> 16) != PMI_ABI_VERSION_MAJOR) {
        fprintf(stderr, "error: library ABI %u.%u does not match header %d.%d\n", pmi_abi_version() >> 16,
                pmi_abi_version() & 0xffffu, PMI_ABI_VERSION_MAJOR, PMI_ABI_VERSION_MINOR);
        return 1;
    }
    CHECK(pmi_model_load_file(argv[1], &model));
    CHECK(pmi_session_create(model, NULL, &session));

    n_in = (size_t)(argc - 3);
    inputs = (pmi_tensor**)calloc(n_in + 1, sizeof *inputs);
    names = (const char**)calloc(n_in + 1, sizeof *names);
    if (!inputs || !names) goto fail;
    for (i = 0; i < n_in; i++) {
        char* arg = argv[3 + i];
        char* eq = strchr(arg, '=');
        if (!eq) {
            fprintf(stderr, "error: argument '%s' is not NAME=FILE.npy\n", arg);
            goto fail;
        }
        *eq = '\0';
        names[i] = arg;
        CHECK(pmi_tensor_load_npy(eq + 1, &inputs[i]));
    }

    CHECK(pmi_session_output_count(session, &n_out));
    outputs = (pmi_tensor**)calloc(n_out + 1, sizeof *outputs);
    if (!outputs) goto fail;
    CHECK(pmi_session_run(session, names, (const pmi_tensor* const*)inputs, n_in, NULL, n_out, outputs));

    for (i = 0; i < n_out; i++) {
        pmi_value_info info;
        char path[4096];
        size_t rank = 0, k;
        const int64_t* dims = NULL;
        CHECK(pmi_session_output_info(session, i, &info));
        CHECK(pmi_tensor_rank(outputs[i], &rank));
        CHECK(pmi_tensor_shape(outputs[i], &dims));
        if ((size_t)snprintf(path, sizeof path, "%s/%s.npy", argv[2], info.name) >= sizeof path) {
            fprintf(stderr, "error: output path too long\n");
            goto fail;
        }
        CHECK(pmi_tensor_save_npy(outputs[i], path));
        printf("%s %s [", info.name, info.type_string);
        for (k = 0; k < rank; k++) printf(k ? ", %lld" : "%lld", (long long)dims[k]);
        printf("] -> %s\n", path);
    }
    rc = 0;

fail:
    if (outputs)
        for (i = 0; i < n_out; i++) pmi_tensor_release(outputs[i]);
    if (inputs)
        for (i = 0; i < n_in; i++) pmi_tensor_release(inputs[i]);
    free(outputs);
    free(inputs);
    free(names);
    pmi_session_release(session);
    pmi_model_release(model);
    return rc;
}
