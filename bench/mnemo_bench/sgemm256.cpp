#include "mnemo_bench/common.hpp"

namespace bench {
/// C = A B for n = 256 in float (row-major, buffers allocated once, random data) with the
/// BLAS that mnemo links, on one thread (mnemo_bench sets OpenBLAS to one thread).
result run_sgemm256(const options& opt) {
    constexpr int n = 256;
    std::mt19937 rng(12345);
    xt::xtensor<float, 2> a(std::array<std::size_t, 2>{n, n}), b(std::array<std::size_t, 2>{n, n}),
        c(std::array<std::size_t, 2>{n, n});
    fill_normal(a, rng, 1.0);
    fill_normal(b, rng, 1.0);
    c.fill(0.0f);
    result r;
    r.name = "sgemm256";
    r.threads = 1;
    r.batch = 1;
    r.length = 1;
    r.d = n;
    time_steps(
        [&] {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f,
                        c.data(), n);
        },
        10, opt, r);
    r.gflops = 2.0 * double(n) * n * n / r.median_s / 1e9;
    r.peak_rss_mb = peak_rss_mb();
    return r;
}
}  // namespace bench
