// The header compiles as C++ (extern "C", no C-only constructs) and links from C++.
// Built with g++ -std=c++17 -Wall -Wextra -Werror -pedantic by tests/c/run.sh.
#include "pyml_interop.h"

#include <cstdio>
#include <cstring>
#include <type_traits>

// Layouts the DLPack specification fixes (64-bit platforms).
static_assert(sizeof(DLDataType) == 4, "DLDataType is 4 bytes");
static_assert(sizeof(DLDevice) == 8, "DLDevice is 8 bytes");
static_assert(sizeof(void*) != 8 || sizeof(DLTensor) == 48, "DLTensor layout");
static_assert(sizeof(void*) != 8 || sizeof(DLManagedTensorVersioned) == 80, "DLManagedTensorVersioned layout");
static_assert(std::is_same<decltype(&pmi_tensor_release), void (*)(pmi_tensor*)>::value, "C linkage, plain pointer");
static_assert(PMI_OK == 0 && PMI_ERR_RUNTIME == 13, "status values are stable");

int main() {
    int failed = 0;
    if ((pmi_abi_version() >> 16) != PMI_ABI_VERSION_MAJOR) failed++;
    const int64_t dims[2] = {2, 2};
    pmi_tensor* t = nullptr;
    if (pmi_tensor_zeros(PMI_DTYPE_FLOAT, dims, 2, &t) != PMI_OK) failed++;
    size_t n = 0;
    if (pmi_tensor_numel(t, &n) != PMI_OK || n != 4) failed++;
    pmi_tensor_release(t);
    if (pmi_tensor_zeros(PMI_DTYPE_FLOAT, nullptr, 2, &t) != PMI_ERR_NULL_POINTER) failed++;
    if (std::strstr(pmi_last_error(), "shape") == nullptr) failed++;
    if (pmi_debug_panic("from C++") != PMI_ERR_PANIC) failed++;
    std::printf("C++ header test: %s\n", failed == 0 ? "1 passed, 0 failed" : "FAILED");
    return failed == 0 ? 0 : 1;
}
