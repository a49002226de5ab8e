//! Numeric kernels shared by operators (GEMM, convolution helpers, SIMD paths).
