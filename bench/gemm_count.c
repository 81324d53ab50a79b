/* An LD_PRELOAD counter of the BLAS products a program calls: cblas_sgemm, cblas_dgemm
 * (2 m n k flops each) and cblas_sgemv, cblas_dgemv (2 m n), forwarded to the real BLAS.
 * At exit it appends one JSON line {"gemm_calls", "gemm_flops", "gemv_calls", "gemv_flops"}
 * to the file named by GEMM_COUNT_OUT (stderr if unset). bench/compare.sh builds it and
 * runs mnemo_bench under it with two step counts: the difference is one step's products.
 *
 *   cc -O2 -shared -fPIC bench/gemm_count.c -o build/bench/libgemm_count.so -ldl
 *   GEMM_COUNT_OUT=counts.jsonl LD_PRELOAD=build/bench/libgemm_count.so build/bench/mnemo_bench ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef int order_t; /* CBLAS_ORDER, CBLAS_TRANSPOSE: enums, passed as int */

static double gemm_flops, gemv_flops;
static unsigned long long gemm_calls, gemv_calls;

static void* next(const char* name) {
    void* f = dlsym(RTLD_NEXT, name);
    if (!f) {
        fprintf(stderr, "gemm_count: %s not found in the libraries after this one\n", name);
        abort();
    }
    return f;
}

/* cblas_?gemm and cblas_?gemv of scalar type T, counted, then forwarded. */
#define COUNTED_GEMM(name, T)                                                                             \
    void name(order_t o, order_t ta, order_t tb, int m, int n, int k, T alpha, const T* a, int lda,         \
              const T* b, int ldb, T beta, T* c, int ldc) {                                                \
        typedef void (*fn)(order_t, order_t, order_t, int, int, int, T, const T*, int, const T*, int, T, T*, \
                           int);                                                                           \
        static fn f;                                                                                       \
        if (!f) f = (fn)next(#name);                                                                       \
        gemm_calls++;                                                                                      \
        gemm_flops += 2.0 * m * n * k;                                                                     \
        f(o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);                                        \
    }
#define COUNTED_GEMV(name, T)                                                                              \
    void name(order_t o, order_t t, int m, int n, T alpha, const T* a, int lda, const T* x, int incx, T beta, \
              T* y, int incy) {                                                                             \
        typedef void (*fn)(order_t, order_t, int, int, T, const T*, int, const T*, int, T, T*, int);         \
        static fn f;                                                                                        \
        if (!f) f = (fn)next(#name);                                                                        \
        gemv_calls++;                                                                                       \
        gemv_flops += 2.0 * m * n;                                                                          \
        f(o, t, m, n, alpha, a, lda, x, incx, beta, y, incy);                                               \
    }

COUNTED_GEMM(cblas_sgemm, float)
COUNTED_GEMM(cblas_dgemm, double)
COUNTED_GEMV(cblas_sgemv, float)
COUNTED_GEMV(cblas_dgemv, double)

__attribute__((destructor)) static void report(void) {
    const char* path = getenv("GEMM_COUNT_OUT");
    FILE* out = path ? fopen(path, "a") : stderr;
    if (!out) return;
    fprintf(out, "{\"gemm_calls\": %llu, \"gemm_flops\": %.17g, \"gemv_calls\": %llu, \"gemv_flops\": %.17g}\n",
            gemm_calls, gemm_flops, gemv_calls, gemv_flops);
    if (path) fclose(out);
}
