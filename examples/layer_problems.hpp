// The layer problems of mnemo (docs/memory.md, "Memories as layers"): memories used as
// layers inside a larger model, whose gradients reach them as an upstream adjoint dL/dY and
// leave them as dL/dX. Shared by the example that prints them and by the tests.
#pragma once

#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "reference_problems.hpp"

namespace layers {

namespace mm = mnemo::memory;
using reference::fill_det;

/// The reference values of a memory's parameters, every `det` phase shifted by `shift`
/// (layer i of a stack: 0.25 (i - 1)); the gate biases keep their values.
template <class Spec, class Params>
void fill_reference(Params& params, double shift) {
    using sy = mm::step_symbols<Spec>;
    if constexpr (Params::memory_tensors == 1) fill_det(params.template m0<0>(), 0.5 + shift, 0.1);
    else {
        fill_det(params.template m0<0>(), 0.5 + shift, 0.3);
        fill_det(params.template m0<1>(), 0.9 + shift, 0.3);
    }
    fill_det(params[typename sy::wk{}], 1.5 + shift, 0.3);
    fill_det(params[typename sy::wv{}], 2.5 + shift, 0.3);
    fill_det(params[typename sy::wq{}], 3.5 + shift, 0.3);
    using G = typename Spec::gates;
    fill_det(params[G::wa], 5.5 + shift, 0.2);
    params[G::ba] = -2.0;
    fill_det(params[G::we], 6.5 + shift, 0.2);
    params[G::be] = 1.0;
    fill_det(params[G::wt], 7.5 + shift, 0.2);
    params[G::bt] = 0.0;
}

/// A (1, T, d) batch of `det((T, d), phase, scale)`.
inline xt::xtensor<double, 3> det_tokens(std::size_t T, std::size_t d, double phase, double scale) {
    xt::xtensor<double, 3> a(std::array<std::size_t, 3>{1, T, d});
    fill_det(a, phase, scale);
    return a;
}

/// A result: the loss, the gradient of every meta-parameter by name, and "X".
struct gradients {
    double loss = 0;
    std::map<std::string, std::vector<double>> grads;
};

template <class P>
void add_named(gradients& out, const P& grads, const std::string& prefix) {
    grads.for_each([&](const std::string& key, const auto& g) {
        out.grads[prefix + key].assign(g.data(), g.data() + g.size());
    });
}

/// `layer_vjp` and `layer_vjp_chunked`: one memory, L = sum(G * Y).
struct vjp_problem {
    using spec = reference::linear_data<8>;
    using memory_type = mm::sequence_memory<spec, double>;
    std::string name;
    memory_type::parameters_type params;
    memory_type::hyperparameters_type hyper;
    mm::run_options options;
    xt::xtensor<double, 3> tokens, G;

    vjp_problem(std::string n, std::size_t T, std::size_t chunk) : name(std::move(n)) {
        fill_reference<spec>(params, 0.0);
        hyper[mm::data_gates<8>::theta_max] = 0.1;
        options.chunk = chunk;
        tokens = det_tokens(T, 8, 4.5, 1.0);
        G = det_tokens(T, 8, 9.5, 0.1);
    }

    /// L = sum(G * Y), and with `grads` its gradients through the layer's backward.
    double run(memory_type& memory, gradients* out = nullptr) const {
        memory_type::context ctx;
        const auto& Y = memory.forward(ctx, params, hyper, tokens, options);
        double loss = 0;
        for (std::size_t k = 0; k < Y.size(); ++k) loss += G.data()[k] * Y.data()[k];
        if (out) {
            // dL/dY = G: the upstream adjoint.
            const auto g = memory.backward(ctx, G);
            out->loss = loss;
            add_named(*out, g.grads, "");
            out->grads["X"].assign(g.tokens.data(), g.tokens.data() + g.tokens.size());
        }
        return loss;
    }
};

/// `layer_stack`: Y1 = Mem1(X), H = X + Y1, Y2 = Mem2(H), L = (1/T) sum_t mse(y2_t, target_t).
struct stack_problem {
    using spec1 = reference::linear_data<6>;
    using spec2 = reference::mlp_data<6, 12>;
    using memory1 = mm::sequence_memory<spec1, double>;
    using memory2 = mm::sequence_memory<spec2, double>;
    std::string name = "layer_stack";
    memory1::parameters_type params1;
    memory2::parameters_type params2;
    memory1::hyperparameters_type hyper1;
    memory2::hyperparameters_type hyper2;
    xt::xtensor<double, 3> tokens, targets;

    stack_problem() {
        fill_reference<spec1>(params1, 0.0);
        fill_reference<spec2>(params2, 0.25);
        hyper1[mm::data_gates<6>::theta_max] = 0.1;
        hyper2[mm::data_gates<6>::theta_max] = 0.1;
        tokens = det_tokens(10, 6, 4.5, 1.0);
        targets = det_tokens(10, 6, 8.5, 1.0);
    }

    struct model {
        memory1 mem1;
        memory2 mem2;
    };

    // [stack]
    /// The loss of the stack and, with `out`, its gradients: each layer's backward takes the
    /// adjoint of its output and returns the adjoint of its input.
    double run(model& m, gradients* out = nullptr) const {
        memory1::context ctx1;
        memory2::context ctx2;
        const xt::xtensor<double, 3>& X = tokens;
        const auto& Y1 = m.mem1.forward(ctx1, params1, hyper1, X);
        const xt::xtensor<double, 3> H = X + Y1;  // the residual
        const auto& Y2 = m.mem2.forward(ctx2, params2, hyper2, H);
        const double n = double(Y2.size());  // T tokens of d features: (1/T) sum_t mean_i
        double loss = 0;
        xt::xtensor<double, 3> dY2 = xt::zeros_like(Y2);
        for (std::size_t k = 0; k < Y2.size(); ++k) {
            const double r = Y2.data()[k] - targets.data()[k];
            loss += r * r / n;
            dY2.data()[k] = 2 * r / n;
        }
        if (!out) return loss;
        const auto g2 = m.mem2.backward(ctx2, dY2);      // dL/dH through layer 2
        const auto g1 = m.mem1.backward(ctx1, g2.tokens);  // dL/dY1 = dL/dH
        const xt::xtensor<double, 3> dX = g2.tokens + g1.tokens;
        // [stack]
        out->loss = loss;
        add_named(*out, g1.grads, "layer1.");
        add_named(*out, g2.grads, "layer2.");
        out->grads["X"].assign(dX.data(), dX.data() + dX.size());
        return loss;
    }
};

inline std::vector<std::string> key_order(const std::string& prefix) {
    std::vector<std::string> keys;
    for (const auto& k : reference::key_order()) keys.push_back(prefix + k);
    return keys;
}

}  // namespace layers
