// The benchmark configurations of mnemo_bench: one meta-gradient step (forward through
// every inner update of B sequences of T tokens, then the backward to every meta-parameter)
// on the model of the reference problems with data gates, l2 inner loss and mse outer loss,
// in float32, with random values; the sequences of the batch run on `threads` threads
// (run_options::threads). Also sgemm256: one single-thread OpenBLAS sgemm, the machine's
// yardstick.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <mnemo/mnemo.hpp>
#include <mnemo/train.hpp>

namespace bench {

struct options {
    std::string config;
    int threads = 1;             // run_options::threads
    double seconds = 3.0;
    std::size_t tokens = 0;      // 0: the configuration's T
    std::size_t checkpoint = 0;  // 0: default (every state if it fits in 64 MiB, else about sqrt(T))
    std::size_t dual_block = 0;  // run_options::dual_block (0: the default)
    bool dual_form = true;       // run_options::dual_form
    int max_runs = 0;            // 0: as many as fit in `seconds`
    /// "meta": meta_gradient (the default); "dx": meta_gradient that also returns the token
    /// gradient (run_options::token_gradient); "layer": the layer interface, forward(context)
    /// then backward(context, dY) with dY of the mse loss formed here, returning dL/dX;
    /// "layer_nodx": the same without dL/dX (backward_options::token_gradient = false: tokens
    /// that are data, as the PyTorch module's backward when x needs no gradient).
    std::string mode = "meta";
    /// One AdamW step (mnemo::train::adamw, lr 1e-6) after each gradient: a training step,
    /// as bench/torch_module.py times inside PyTorch.
    bool optimizer = false;
};

struct result {
    std::string name;
    std::string mode = "meta";
    int threads = 1;
    double median_s = 0, min_s = 0;
    int runs = 0;
    double loss = 0;
    double tokens_per_s = 0;
    double peak_rss_mb = 0;
    /// Memory configurations: the nominal 54 B T d^2 floating-point operations of a step per
    /// median time, in GFLOP/s (a rate to compare runs by, not a count of what mnemo
    /// executes); sgemm256: 2 n^3 per median time.
    double gflops = 0;
    std::size_t batch = 0, length = 0, d = 0;
};

/// Median and minimum of `times` (sorted in place) into r.
inline void summarise(std::vector<double>& times, result& r) {
    std::sort(times.begin(), times.end());
    r.runs = int(times.size());
    r.median_s = times[times.size() / 2];
    r.min_s = times.front();
}

/// Times `step` (one unit of work): `warmup` untimed calls, then calls for `opt.seconds`
/// (at least 3, at most `opt.max_runs` when set); the median and minimum go into r.
template <class F>
void time_steps(F&& step, int warmup, const options& opt, result& r) {
    using clock = std::chrono::steady_clock;
    for (int i = 0; i < warmup; ++i) step();
    std::vector<double> times;
    const auto start = clock::now();
    do {
        const auto t0 = clock::now();
        step();
        times.push_back(std::chrono::duration<double>(clock::now() - t0).count());
    } while ((opt.max_runs == 0 || int(times.size()) < opt.max_runs) &&
             (std::chrono::duration<double>(clock::now() - start).count() < opt.seconds || times.size() < 3));
    summarise(times, r);
}

inline double peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

template <class Tensor>
void fill_normal(Tensor& a, std::mt19937& rng, double stddev, double mean = 0.0) {
    std::normal_distribution<double> dist(mean, stddev);
    for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = static_cast<typename Tensor::value_type>(dist(rng));
}

/// Runs one configuration: B sequences of T tokens of the memory `Spec`.
template <class Spec>
result run(const std::string& name, std::size_t batch, std::size_t length, std::size_t chunk, const options& opt) {
    namespace mm = mnemo::memory;
    using T = float;
    using memory_type = mm::sequence_memory<Spec, T>;
    using sy = mm::step_symbols<Spec>;
    constexpr std::size_t d = Spec::d;
    if (opt.tokens) length = opt.tokens;

    std::mt19937 rng(12345);
    typename memory_type::parameters_type p;
    typename memory_type::hyperparameters_type h;
    using G = typename Spec::gates;
    h[G::theta_max] = T(0.1);
    const double proj = 1.0 / std::sqrt(double(d));
    fill_normal(p[typename sy::wk{}], rng, proj);
    fill_normal(p[typename sy::wv{}], rng, proj);
    fill_normal(p[typename sy::wq{}], rng, proj);
    fill_normal(p[G::wa], rng, 0.01);
    fill_normal(p[G::we], rng, 0.01);
    fill_normal(p[G::wt], rng, 0.01);
    p[G::ba] = T(-2);
    p[G::be] = T(1);
    p[G::bt] = T(0);
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        // Linear memory: N(0, 0.01); MLP: N(0, 1 / fan_in).
        (fill_normal(p.template m0<I>(), rng,
                     memory_type::n == 1 ? 0.1
                                         : 1.0 / std::sqrt(double(p.template m0<I>().shape()[1]))),
         ...);
    }(std::make_index_sequence<memory_type::n>{});
    xt::xtensor<T, 3> tokens(std::array<std::size_t, 3>{batch, length, d});
    xt::xtensor<T, 3> targets(std::array<std::size_t, 3>{batch, length, memory_type::d_out});
    fill_normal(tokens, rng, proj);
    fill_normal(targets, rng, proj);

    mm::run_options ro;
    ro.chunk = chunk;
    ro.checkpoint = opt.checkpoint;
    ro.dual_block = opt.dual_block;
    ro.dual_form = opt.dual_form;
    ro.threads = std::size_t(opt.threads);
    memory_type memory;
    result r;
    r.name = name;
    r.threads = opt.threads;
    r.batch = batch;
    r.length = length;
    r.d = d;
    r.mode = opt.mode;
    // As in a training loop: the result is kept between steps (no allocation once warm).
    typename memory_type::result out;
    ro.token_gradient = opt.mode == "dx";
    namespace tr = mnemo::train;
    tr::tensor_list<T> params;
    params.add(p);
    tr::adamw<T> adamw(params, {.lr = 1e-6, .weight_decay = 0});
    tr::tensor_list<T> grads;
    if (opt.mode == "layer" || opt.mode == "layer_nodx") {
        // (Made here only: not counted in the other modes' peak memory.)
        typename memory_type::context ctx;
        typename memory_type::layer_gradients g;
        grads.add(g.grads);
        xt::xtensor<T, 3> dY = xt::zeros_like(targets);
        const T scale = T(2) / T(batch * length * memory_type::d_out);
        time_steps(
            [&] {
                const auto& Y = memory.forward(ctx, p, h, tokens, ro);
                double loss = 0;
                for (std::size_t k = 0; k < Y.size(); ++k) {
                    const T e = Y.data()[k] - targets.data()[k];
                    loss += double(e) * double(e);
                    dY.data()[k] = scale * e;
                }
                memory.backward(ctx, dY, g, nullptr, {.token_gradient = opt.mode == "layer"});
                r.loss = loss / double(Y.size());
                if (opt.optimizer) adamw.step(grads);
            },
            1, opt, r);
    } else {
        grads.add(out.grads);  // sized at construction; every step writes into these buffers
        time_steps(
            [&] {
                memory.meta_gradient(out, p, h, tokens, targets, ro);
                r.loss = double(out.loss);
                if (opt.optimizer) adamw.step(grads);
            },
            1, opt, r);
    }
    r.tokens_per_s = double(batch * length) / r.median_s;
    r.gflops = 54.0 * double(batch) * double(length) * double(d) * double(d) / r.median_s / 1e9;
    r.peak_rss_mb = peak_rss_mb();
    return r;
}

// One function per memory type, each in its own translation unit (compile cost).
result run_seed(const options&);
result run_linear64(const options&, const std::string& name, std::size_t batch, std::size_t chunk);
result run_mlp64(const options&);
result run_mlpchunk64(const options&);
result run_big256(const options&);
result run_sgemm256(const options&);

}  // namespace bench
