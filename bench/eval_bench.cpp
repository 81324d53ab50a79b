// Evaluation speed of a fused plan against hand-written BLAS code.
//
// The loss sum(square(M (K x) - V x)) and its gradients with respect to M, K and V, at
// n = 16, 64, 256, in float and double: mnemo's plan (one compile-time schedule, one
// arena) against the same computation written by hand with BLAS calls into buffers
// allocated once. Prints one JSON line per case; the ratio is mnemo / hand-written.
//
//   build/bench/eval_bench [--seconds S]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <mnemo/mnemo.hpp>

extern "C" void openblas_set_num_threads(int);

namespace {

using clock_type = std::chrono::steady_clock;

/// Median and minimum time per call of f, over batches filling about `seconds`.
template <class F>
std::pair<double, double> time_it(F&& f, double seconds) {
    for (int i = 0; i < 20; ++i) f();  // warm-up
    auto t0 = clock_type::now();
    int calib = 0;
    while (std::chrono::duration<double>(clock_type::now() - t0).count() < 0.05) {
        f();
        ++calib;
    }
    const double per_call = 0.05 / calib;
    const int batch = std::max(1, int(1e-3 / per_call));  // batches of about 1 ms
    std::vector<double> samples;
    auto start = clock_type::now();
    while (std::chrono::duration<double>(clock_type::now() - start).count() < seconds || samples.size() < 5) {
        auto b0 = clock_type::now();
        for (int i = 0; i < batch; ++i) f();
        samples.push_back(std::chrono::duration<double>(clock_type::now() - b0).count() / batch);
    }
    std::sort(samples.begin(), samples.end());
    return {samples[samples.size() / 2], samples.front()};
}

template <class T>
void fill_det(T* p, std::size_t n, double phase, double scale) {
    for (std::size_t i = 0; i < n; ++i) p[i] = T(scale * std::sin(1.0 + 0.37 * double(i) + phase));
}

/// The same computation by hand: three gemv, the residual, three rank-one outer products.
template <class T, std::size_t N>
struct hand_written {
    std::vector<T> kx = std::vector<T>(N), mkx = std::vector<T>(N), vx = std::vector<T>(N), g = std::vector<T>(N),
                   t = std::vector<T>(N);
    std::vector<T> gm = std::vector<T>(N * N), gk = std::vector<T>(N * N), gv = std::vector<T>(N * N);
    T loss = 0;
    void operator()(const T* m, const T* k, const T* v, const T* x) {
        namespace blas = mnemo::detail::blas;
        blas::gemv(false, N, N, k, x, kx.data());
        blas::gemv(false, N, N, m, kx.data(), mkx.data());
        blas::gemv(false, N, N, v, x, vx.data());
        T l = 0;
        for (std::size_t i = 0; i < N; ++i) {
            const T r = mkx[i] - vx[i];
            l += r * r;
            g[i] = 2 * r;
        }
        loss = l;
        blas::gemv(true, N, N, m, g.data(), t.data());
        for (std::size_t i = 0; i < N; ++i)
            for (std::size_t j = 0; j < N; ++j) {
                gm[i * N + j] = g[i] * kx[j];
                gk[i * N + j] = t[i] * x[j];
                gv[i * N + j] = -g[i] * x[j];
            }
    }
};

template <class T, std::size_t N>
void run_case(double seconds) {
    constexpr auto M = mnemo::matrix<"M", N, N>;
    constexpr auto K = mnemo::matrix<"K", N, N>;
    constexpr auto V = mnemo::matrix<"V", N, N>;
    constexpr auto x = mnemo::vector<"x", N>;
    constexpr auto f = mnemo::sum(mnemo::square(M * (K * x) - V * x));
    auto plan = mnemo::compile<T>(f, mnemo::grad(f, M), mnemo::grad(f, K), mnemo::grad(f, V));

    xt::xtensor<T, 2> m(std::array<std::size_t, 2>{N, N}), k(std::array<std::size_t, 2>{N, N}), v(std::array<std::size_t, 2>{N, N});
    xt::xtensor<T, 1> xv(std::array<std::size_t, 1>{N});
    fill_det(m.data(), m.size(), 0.5, 1.0 / std::sqrt(double(N)));
    fill_det(k.data(), k.size(), 1.5, 1.0 / std::sqrt(double(N)));
    fill_det(v.data(), v.size(), 2.5, 1.0 / std::sqrt(double(N)));
    fill_det(xv.data(), xv.size(), 4.5, 1.0);

    hand_written<T, N> hand;
    hand(m.data(), k.data(), v.data(), xv.data());
    plan.run(M = m, K = k, V = v, x = xv);
    // The two must agree before their times mean anything.
    double worst = std::abs(double(plan.template get<0>() - hand.loss)) / std::abs(double(hand.loss));
    auto gm = plan.template get<1>();
    auto gk = plan.template get<2>();
    auto gv = plan.template get<3>();
    for (std::size_t i = 0; i < N * N; ++i) {
        worst = std::max(worst, std::abs(double(gm.data()[i] - hand.gm[i])) / (1e-6 + std::abs(double(hand.gm[i]))));
        worst = std::max(worst, std::abs(double(gk.data()[i] - hand.gk[i])) / (1e-6 + std::abs(double(hand.gk[i]))));
        worst = std::max(worst, std::abs(double(gv.data()[i] - hand.gv[i])) / (1e-6 + std::abs(double(hand.gv[i]))));
    }

    auto [plan_med, plan_min] = time_it([&] { plan.run(M = m, K = k, V = v, x = xv); }, seconds);
    auto [hand_med, hand_min] = time_it([&] { hand(m.data(), k.data(), v.data(), xv.data()); }, seconds);
    std::printf(
        "{\"case\": \"loss+3 grads\", \"n\": %zu, \"type\": \"%s\", \"mnemo_median_us\": %.3f, \"mnemo_min_us\": "
        "%.3f, \"hand_median_us\": %.3f, \"hand_min_us\": %.3f, \"ratio_median\": %.3f, \"max_rel_diff\": %.2e, "
        "\"nodes\": %zu, \"buffers\": %zu}\n",
        N, sizeof(T) == 4 ? "float" : "double", plan_med * 1e6, plan_min * 1e6, hand_med * 1e6, hand_min * 1e6,
        plan_med / hand_med, worst, plan.node_count, plan.buffer_count);
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    double seconds = 1.0;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) seconds = std::stod(argv[++i]);
        else {
            std::fprintf(stderr, "usage: %s [--seconds S]\n", argv[0]);
            return 2;
        }
    }
    openblas_set_num_threads(1);  // one thread on both sides
    run_case<double, 16>(seconds);
    run_case<double, 64>(seconds);
    run_case<double, 256>(seconds);
    run_case<float, 16>(seconds);
    run_case<float, 64>(seconds);
    run_case<float, 256>(seconds);
}
