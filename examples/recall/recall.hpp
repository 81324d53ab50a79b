// In-context associative recall, learned at test time: the task, the model and its training
// (examples/recall, docs/tutorial-recall.md). Each sequence writes N random pairs as tokens
// [key; value], then asks for them in another order as [key; 0]; the memory must answer
// each query with its value. The outer loss counts the queries only: the upstream adjoint
// dL/dY that the layer's backward takes is zero at the writes.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <mnemo/mnemo.hpp>
#include <mnemo/train.hpp>
#include <mnemo/train/checkpoint.hpp>

namespace recall {

namespace mm = mnemo::memory;
namespace tr = mnemo::train;

// [model]
constexpr std::size_t key_size = 16;        // keys and values: unit vectors of R^16
constexpr std::size_t d = 2 * key_size;      // a token is [key; value] (a query: [key; 0])
// k = normalise(W_K x), v = W_V x, q = normalise(W_Q x); M: a 16 x 16 matrix; the gates
// (momentum, forget, inner learning rate) are functions of the token.
using spec = mm::spec<d, mm::linear<key_size>, mm::l2_loss, mm::titans_rule, mm::data_gates<d>, mm::mse, true>;
template <bool FirstOrder>
using memory = mm::sequence_memory<spec, double, FirstOrder>;
// [model]
using parameters = memory<false>::parameters_type;
using hyperparameters = memory<false>::hyperparameters_type;

/// A batch of B sequences of N pairs: tokens (B, 2N, d), the values (B, N, key_size) and,
/// per query, the index of the pair it asks for.
struct batch {
    std::size_t B = 0, N = 0;
    xt::xtensor<double, 3> tokens, values;
    std::vector<std::size_t> asked;  // (B, N): query j of sequence b asks for pair asked[b N + j]
    std::vector<double> keys;        // scratch
};

/// A unit vector of R^key_size, uniform on the sphere.
inline void unit_vector(tr::random_stream& rng, double* out) {
    double n = 0;
    for (std::size_t i = 0; i < key_size; ++i) {
        out[i] = rng.normal();
        n += out[i] * out[i];
    }
    n = std::sqrt(n);
    for (std::size_t i = 0; i < key_size; ++i) out[i] /= n;
}

/// Fills `b` (reusing its buffers) with B fresh sequences of N pairs.
inline void make_batch(tr::random_stream& rng, std::size_t B, std::size_t N, batch& b) {
    b.B = B, b.N = N;
    if (b.tokens.shape() != std::array<std::size_t, 3>{B, 2 * N, d}) {
        b.tokens = xt::zeros<double>({B, 2 * N, d});
        b.values = xt::zeros<double>({B, N, key_size});
    }
    b.asked.resize(B * N);
    b.keys.resize(N * key_size);
    double* keys = b.keys.data();
    for (std::size_t s = 0; s < B; ++s) {
        double* x = &b.tokens(s, 0, 0);
        for (std::size_t i = 0; i < N; ++i) {
            unit_vector(rng, &keys[i * key_size]);
            unit_vector(rng, &b.values(s, i, 0));
            for (std::size_t c = 0; c < key_size; ++c) {
                x[i * d + c] = keys[i * key_size + c];                // the write: [key; value]
                x[i * d + key_size + c] = b.values(s, i, c);
            }
        }
        std::size_t* order = &b.asked[s * N];  // the queries: another order (Fisher-Yates)
        for (std::size_t j = 0; j < N; ++j) order[j] = j;
        for (std::size_t j = N; j > 1; --j) std::swap(order[j - 1], order[rng.below(j)]);
        for (std::size_t j = 0; j < N; ++j)
            for (std::size_t c = 0; c < key_size; ++c) {
                x[(N + j) * d + c] = keys[order[j] * key_size + c];  // the query: [key; 0]
                x[(N + j) * d + key_size + c] = 0;
            }
    }
}

/// The outer loss, the mean squared error of the answers over the queries and the
/// features, and its gradient dL/dY (B, 2N, key_size): zero at the writes.
inline double query_loss(const batch& b, const xt::xtensor<double, 3>& Y, xt::xtensor<double, 3>& dY) {
    if (dY.shape() != Y.shape()) dY = xt::zeros_like(Y);
    const std::size_t B = b.B, N = b.N;
    const double scale = 1.0 / double(B * N * key_size);
    double loss = 0;
    for (std::size_t s = 0; s < B; ++s)
        for (std::size_t j = 0; j < 2 * N; ++j)
            for (std::size_t c = 0; c < key_size; ++c) {
                if (j < N) {
                    dY(s, j, c) = 0;  // a write: no loss
                    continue;
                }
                const double r = Y(s, j, c) - b.values(s, b.asked[s * N + j - N], c);
                loss += r * r * scale;
                dY(s, j, c) = 2 * r * scale;
            }
    return loss;
}

/// Recall over a batch: the fraction of queries whose answer is nearer (euclidean) to the
/// right value than to every other value of its sequence, and the normalised error
/// mean ||y - v||^2 / ||v||^2.
struct recall_score {
    double accuracy = 0, error = 0;
};
inline recall_score score(const batch& b, const xt::xtensor<double, 3>& Y) {
    recall_score r;
    const std::size_t B = b.B, N = b.N;
    for (std::size_t s = 0; s < B; ++s)
        for (std::size_t j = 0; j < N; ++j) {
            const double* y = &Y(s, N + j, 0);
            std::size_t best = 0;
            double best_d = INFINITY, right_d = 0;
            for (std::size_t i = 0; i < N; ++i) {
                double dist = 0;
                for (std::size_t c = 0; c < key_size; ++c) dist += (y[c] - b.values(s, i, c)) * (y[c] - b.values(s, i, c));
                if (dist < best_d) best_d = dist, best = i;
                if (i == b.asked[s * N + j]) right_d = dist;
            }
            r.accuracy += best == b.asked[s * N + j];
            r.error += right_d;  // ||v|| = 1
        }
    r.accuracy /= double(B * N);
    r.error /= double(B * N);
    return r;
}

/// The four variants of the demo.
enum class variant { full, first_order, frozen_kv, no_memory };
inline const char* name_of(variant v) {
    switch (v) {
        case variant::full: return "full";
        case variant::first_order: return "first_order";
        case variant::frozen_kv: return "frozen_kv";
        default: return "no_memory";
    }
}

struct config {
    std::size_t steps = 3000;
    std::size_t batch = 32;
    std::size_t min_pairs = 1, max_pairs = key_size / 2;  // N of a training batch: uniform in this range
    std::uint64_t seed = 1;
    double lr = 3e-3;
    std::size_t warmup = 100;
    double clip = 1.0;
    std::size_t threads = 2;
    std::size_t eval_sequences = 256;                     // per N
    std::vector<std::size_t> eval_pairs = {1, 2, 4, 6, 8, 12, 16};
    std::string checkpoints;  // a folder: each variant's parameters and AdamW state to <variant>.npz
};

struct outcome {
    std::vector<double> loss;                        // per step
    std::map<std::size_t, recall_score> scores;      // by N, on held-out sequences
    double seconds = 0;            // training, in all (the parts below and the bookkeeping)
    double memory_seconds = 0;     // the layer's forward and backward: the meta-gradient
    double loss_seconds = 0;       // the outer loss and dL/dY
    double optimizer_seconds = 0;  // AdamW
    double data_seconds = 0;       // making the batches
    std::size_t tokens = 0;
    parameters params;
};

/// The initial parameters (the same for every variant): Xavier projections, M0 = 0, the
/// gates open at about half: theta = theta_max sigmoid(0) = 0.5 (with unit keys, an inner
/// step that about overwrites the key's old value), little forgetting, some momentum.
// [init]
inline void initialise(parameters& p, std::uint64_t seed) {
    tr::tensor_list<double> views;
    views.add(p);
    tr::initialize(views, seed,
                   {{"WK", tr::xavier_normal{}}, {"WV", tr::xavier_normal{}}, {"WQ", tr::xavier_normal{}},
                    {"M0[0]", tr::zeros{}}, {"wa", tr::zeros{}}, {"we", tr::zeros{}}, {"wt", tr::zeros{}},
                    {"ba", tr::constant{-4.0}}, {"be", tr::constant{-2.0}}, {"bt", tr::constant{0.0}}});
}
// [init]

/// Progress of a run: (step, steps, loss, tokens so far, seconds so far).
using progress_fn = std::function<void(std::size_t, std::size_t, double, std::size_t, double)>;

/// Lap times: `lap(x)` adds the seconds since the last lap (or the start) to x.
struct stopwatch {
    using clock = std::chrono::steady_clock;
    clock::time_point last = clock::now();
    void operator()(double& into) {
        const auto now = clock::now();
        into += std::chrono::duration<double>(now - last).count();
        last = now;
    }
};

/// Meta-trains one variant. Every variant sees the same batches (the same seed).
template <bool FirstOrder>
outcome train(const config& cfg, variant v, const progress_fn& progress = {}) {
    outcome out;
    memory<FirstOrder> mem;
    parameters& p = out.params;
    initialise(p, cfg.seed);
    hyperparameters h;
    // No memory: theta = 0, no inner update; the answer is M0 q.
    h[mm::data_gates<d>::theta_max] = v == variant::no_memory ? 0.0 : 1.0;
    mm::run_options opt;
    opt.threads = cfg.threads;

    // [train]
    typename memory<FirstOrder>::context ctx;
    typename memory<FirstOrder>::layer_gradients g;
    tr::tensor_list<double> params, grads;
    params.add(p);
    grads.add(g.grads);  // the backward writes into the same buffers every step
    tr::step_options so{.clip_norm = cfg.clip, .lr_schedule = {.warmup = cfg.warmup, .total = cfg.steps, .min_factor = 0.1}};
    if (v == variant::frozen_kv) so.frozen = {"WK", "WV"};  // what `param.data = ...` did
    tr::adamw<double> optimizer(params, {.lr = cfg.lr, .weight_decay = 0}, so);

    tr::random_stream rng(cfg.seed, "train batches");
    std::vector<batch> batches(cfg.max_pairs + 1);  // one per N: no allocation once each N was seen
    std::vector<xt::xtensor<double, 3>> dYs(cfg.max_pairs + 1);
    stopwatch wall;  // the whole step, bookkeeping and progress display included
    for (std::size_t step = 0; step < cfg.steps; ++step) {
        stopwatch lap;  // lap(x): x += the seconds since the last lap
        const std::size_t N = cfg.min_pairs + rng.below(cfg.max_pairs - cfg.min_pairs + 1);
        batch& b = batches[N];
        auto& dY = dYs[N];
        make_batch(rng, cfg.batch, N, b);
        lap(out.data_seconds);
        try {
            mem.forward(ctx, p, h, b.tokens, opt);
        } catch (const mm::divergence_error& e) {  // the memory diverged (run_options::check_finite)
            optimizer.refuse_step(e.what());        // throws non_finite_error, p unchanged
        }
        const auto& Y = ctx.outputs();
        lap(out.memory_seconds);
        const double loss = query_loss(b, Y, dY);  // dY = dL/dY, zero at the writes
        lap(out.loss_seconds);
        mem.backward(ctx, dY, g);
        lap(out.memory_seconds);
        optimizer.step(grads, loss);  // throws, with p unchanged, on a non-finite loss or gradient
        lap(out.optimizer_seconds);
        // [train]
        out.tokens += b.tokens.shape()[0] * b.tokens.shape()[1];
        out.loss.push_back(loss);
        if (progress) progress(step + 1, cfg.steps, loss, out.tokens, out.seconds);
        wall(out.seconds);
    }

    if (!cfg.checkpoints.empty())
        tr::save_checkpoint(std::filesystem::path(cfg.checkpoints) / (std::string(name_of(v)) + ".npz"), params, &optimizer);

    // Held-out sequences (their own stream), the same for every variant.
    batch b;
    for (std::size_t N : cfg.eval_pairs) {
        tr::random_stream eval_rng(cfg.seed, "eval N=" + std::to_string(N));
        make_batch(eval_rng, cfg.eval_sequences, N, b);
        const auto& Y = mem.forward(ctx, p, h, b.tokens, opt);
        out.scores[N] = score(b, Y);
    }
    return out;
}

// The two memory types are compiled in separate units (recall_full.cpp, recall_first_order.cpp).
extern template outcome train<false>(const config&, variant, const progress_fn&);
extern template outcome train<true>(const config&, variant, const progress_fn&);

}  // namespace recall
