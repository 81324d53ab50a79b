#pragma once
/// \file
/// Thin, allocation-free wrappers over the BLAS calls the evaluator makes (row-major).

#include <cstddef>

#include "mnemo/detail/xtensor.hpp"

namespace mnemo::detail::blas {

/// C (m, n) = op(A) (m, k) op(B) (k, n); lda/ldb are the row strides of A and B as stored.
inline void gemm(bool ta, bool tb, int m, int n, int k, const double* a, int lda, const double* b, int ldb,
                 double* c) {
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0,
                a, lda, b, ldb, 0.0, c, n);
}
inline void gemm(bool ta, bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                 float* c) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f,
                a, lda, b, ldb, 0.0f, c, n);
}
/// C (m, n) = alpha op(A) op(B) + beta C, with leading dimensions lda, ldb, ldc.
inline void gemm_acc(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda,
                     const double* b, int ldb, double beta, double* c, int ldc) {
    if (m == 0 || n == 0) return;
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                lda, b, ldb, beta, c, ldc);
}
inline void gemm_acc(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                     int ldb, float beta, float* c, int ldc) {
    if (m == 0 || n == 0) return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                lda, b, ldb, beta, c, ldc);
}
/// y = op(A) x, with A stored as (rows, cols).
inline void gemv(bool ta, int rows, int cols, const double* a, const double* x, double* y) {
    cblas_dgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, rows, cols, 1.0, a, cols, x, 1, 0.0, y, 1);
}
inline void gemv(bool ta, int rows, int cols, const float* a, const float* x, float* y) {
    cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, rows, cols, 1.0f, a, cols, x, 1, 0.0f, y, 1);
}

}  // namespace mnemo::detail::blas
