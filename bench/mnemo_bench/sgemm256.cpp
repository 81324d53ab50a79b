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
    std::vector<double> times;
    using clock = std::chrono::steady_clock;
    auto step = [&] {
        auto t0 = clock::now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f,
                    c.data(), n);
        times.push_back(std::chrono::duration<double>(clock::now() - t0).count());
    };
    for (int i = 0; i < 10; ++i) step();  // warm-up
    times.clear();
    const auto start = clock::now();
    do {
        step();
    } while ((opt.max_runs == 0 || int(times.size()) < opt.max_runs) &&
             (std::chrono::duration<double>(clock::now() - start).count() < opt.seconds || times.size() < 3));
    summarise(times, r);
    r.gflops = 2.0 * double(n) * n * n / r.median_s / 1e9;
    r.peak_rss_mb = peak_rss_mb();
    return r;
}
}  // namespace bench
