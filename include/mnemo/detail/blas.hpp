#pragma once
/// \file
/// Thin, allocation-free wrappers over the BLAS calls the evaluator makes (row-major).

#include <cstddef>

#include "mnemo/detail/lanes.hpp"
#include "mnemo/detail/xtensor.hpp"

namespace mnemo::detail::blas {

/// C (m, n) = op(A) (m, k) op(B) (k, n); lda/ldb are the row strides of A and B as stored.
inline void gemm(bool ta, bool tb, int m, int n, int k, const double* a, int lda, const double* b, int ldb,
                 double* c) {
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0,
                a, lda, b, ldb, 0.0, c, n);
}
inline void gemm_acc(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                     int ldb, float beta, float* c, int ldc);
inline void gemm(bool ta, bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                 float* c) {
    gemm_acc(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
}
/// C (m, n) = alpha op(A) op(B) + beta C, with leading dimensions lda, ldb, ldc.
inline void gemm_acc(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda,
                     const double* b, int ldb, double beta, double* c, int ldc) {
    if (m == 0 || n == 0) return;
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                lda, b, ldb, beta, c, ldc);
}
/// In float, A B^T with at most 16 rows of A and more than 64 of B goes in slices of 64
/// rows of B: OpenBLAS 0.3.21's small-matrix kernel for this form slows down past 64
/// (AVX-512 kernels: 16x128x64 in 3.1 us, as two 16x64x64 in 2.1 us; the AVX2 kernels take
/// the same time either way, and at 32 rows slices are slower there).
inline void gemm_acc(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                     int ldb, float beta, float* c, int ldc) {
    if (m == 0 || n == 0) return;
    if (!ta && tb && m <= 16 && n > 64) {
        for (int j = 0; j < n; j += 64)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n - j < 64 ? n - j : 64, k, alpha, a, lda,
                        b + j * ldb, ldb, beta, c + j, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                lda, b, ldb, beta, c, ldc);
}
/// y = alpha op(A) x + beta y, with A stored as (rows, cols) of row stride lda and x of
/// stride incx.
inline void gemv_acc(bool ta, int rows, int cols, double alpha, const double* a, int lda, const double* x, int incx,
                     double beta, double* y) {
    cblas_dgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, rows, cols, alpha, a, lda, x, incx, beta, y, 1);
}
inline void gemv_acc(bool ta, int rows, int cols, float alpha, const float* a, int lda, const float* x, int incx,
                     float beta, float* y) {
    cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, rows, cols, alpha, a, lda, x, incx, beta, y, 1);
}
/// y = op(A) x, with A stored as (rows, cols).
inline void gemv(bool ta, int rows, int cols, const double* a, const double* x, double* y) {
    cblas_dgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, rows, cols, 1.0, a, cols, x, 1, 0.0, y, 1);
}
inline void gemv(bool ta, int rows, int cols, const float* a, const float* x, float* y) {
    cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, rows, cols, 1.0f, a, cols, x, 1, 0.0f, y, 1);
}

/// Whether a matrix-vector product of an (m, k) matrix runs in the inline kernel below,
/// specialised to the sizes at compile time, instead of a BLAS call (whose fixed cost is
/// most of the work at these sizes). Measured against OpenBLAS 0.3.21 (one thread,
/// float, AVX-512): the transposed form (an axpy per row of the stored matrix) wins up to
/// 64K entries (79 ns against 173 at 64 x 64); the row-dot form wins for tiny matrices
/// and for rows of 128 and more, and loses at 64 x 64 (355 ns against 265).
constexpr bool use_small_gemv(bool transposed, std::size_t m, std::size_t k) {
    if (m * k > 65536) return false;
    return transposed || m * k <= 1024 || k >= 128;
}

/// y = op(A) x for a matrix of compile-time size: stored A is (M, K), or (K, M) when `ta`.
/// Non-transposed: one dot product per row in independent lanes (lanes.hpp); transposed:
/// y accumulates x_j times row j.
template <int M, int K, class T>
inline void small_gemv(bool ta, const T* __restrict a, const T* __restrict x, T* __restrict y) {
    static_assert(M > 0 && K > 0, "mnemo internal: small_gemv of an empty matrix.");
    if (ta) {
        // y starts as x_0 times row 0 (no pass to clear it first).
        for (int i = 0; i < M; ++i) y[i] = x[0] * a[i];
        for (int j = 1; j < K; ++j) {
            const T xj = x[j];
            const T* __restrict r = a + j * M;
            for (int i = 0; i < M; ++i) y[i] += xj * r[i];
        }
    } else {
        for (int i = 0; i < M; ++i) {
            const T* __restrict r = a + i * K;
            T acc[lanes_for(K)] = {};
            add_to_lanes(acc, K, [&](std::size_t j) { return r[j] * x[j]; });
            y[i] = fold_lanes(acc);
        }
    }
}

/// sum_k a[k] b[k], in independent lanes (lanes.hpp).
template <class T>
inline T dot(const T* __restrict a, const T* __restrict b, std::size_t n) {
    return lane_sum<T>(n, [&](std::size_t k) { return a[k] * b[k]; });
}

}  // namespace mnemo::detail::blas
