// The five reference problems of mnemo (docs/memory.md): small deterministic memories whose
// meta-gradients are checked against finite differences. Shared by the example that prints
// them and by the tests.
#pragma once

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <mnemo/mnemo.hpp>

namespace reference {

namespace mm = mnemo::memory;

/// `det(shape, phase, scale)[n] = scale * sin(1 + 0.37 n + phase)`, n the row-major index.
template <class Tensor>
void fill_det(Tensor& a, double phase, double scale) {
    for (std::size_t n = 0; n < a.size(); ++n)
        a.data()[n] = static_cast<typename Tensor::value_type>(scale * std::sin(1.0 + 0.37 * double(n) + phase));
}

// The memories of the five problems.
template <std::size_t D>
using linear_const = mm::spec<D, mm::linear<D>, mm::l2_loss, mm::titans_rule, mm::const_gates, mm::mse>;
template <std::size_t D>
using linear_const_l1 = mm::spec<D, mm::linear<D>, mm::l2_loss, mm::titans_rule, mm::const_gates, mm::l1>;
template <std::size_t D>
using linear_data = mm::spec<D, mm::linear<D>, mm::l2_loss, mm::titans_rule, mm::data_gates<D>, mm::mse>;
template <std::size_t D, std::size_t H>
using mlp_data =
    mm::spec<D, mm::mlp<mm::silu_act, false, D, H>, mm::l2_loss, mm::titans_rule, mm::data_gates<D>, mm::mse>;

/// One problem: its memory, its data and how it runs.
template <class Spec, class T = double>
struct problem {
    using memory_type = mm::sequence_memory<Spec, T>;
    using params_type = typename memory_type::parameters_type;
    using hyper_type = typename memory_type::hyperparameters_type;
    static constexpr std::size_t d = Spec::d;

    std::string name;
    std::size_t length = 1;
    mm::run_options options;
    params_type params;
    hyper_type hyper;
    xt::xtensor<T, 3> tokens, targets;

    /// The reference values (reference-problems table), for T tokens; `seed_target`: the
    /// targets are the tokens themselves.
    problem(std::string n, std::size_t len, bool seed_target) : name(std::move(n)), length(len) {
        using sy = mm::step_symbols<Spec>;
        if constexpr (memory_type::n == 1) fill_det(params.template m0<0>(), 0.5, 0.1);
        else {
            fill_det(params.template m0<0>(), 0.5, 0.3);
            fill_det(params.template m0<1>(), 0.9, 0.3);
        }
        fill_det(params[typename sy::wk{}], 1.5, 0.3);
        fill_det(params[typename sy::wv{}], 2.5, 0.3);
        fill_det(params[typename sy::wq{}], 3.5, 0.3);
        using G = typename Spec::gates;
        if constexpr (requires { G::wa; }) {  // data gates
            fill_det(params[G::wa], 5.5, 0.2);
            params[G::ba] = T(-2.0);
            fill_det(params[G::we], 6.5, 0.2);
            params[G::be] = T(1.0);
            fill_det(params[G::wt], 7.5, 0.2);
            params[G::bt] = T(0.0);
        }
        tokens = xt::xtensor<T, 3>(std::array<std::size_t, 3>{1, len, d});
        fill_det(tokens, 4.5, 1.0);
        targets = tokens;
        if (!seed_target) fill_det(targets, 8.5, 1.0);
    }

    /// The gradient of the outer loss with respect to every meta-parameter.
    auto meta_gradient(memory_type& m) const { return m.meta_gradient(params, hyper, tokens, targets, options); }
    /// The outer loss alone.
    T loss(memory_type& m) const { return m.forward(params, hyper, tokens, targets, options).loss; }
};

/// The meta-parameters in the order of the reference output.
inline std::vector<std::string> key_order() {
    return {"M0[0]", "M0[1]", "WK", "WV", "WQ", "wa", "ba", "we", "be", "wt", "bt"};
}

// The five problems (reference-problems table).
template <class T = double>
auto make_seed() {
    problem<linear_const_l1<10>, T> p("seed", 1, true);
    p.hyper[mm::const_gates::eta] = 0.9;
    p.hyper[mm::const_gates::alpha] = 0.1;
    p.hyper[mm::const_gates::theta] = 0.1;
    return p;
}
template <class T = double>
auto make_seq_linear() {
    problem<linear_const<8>, T> p("seq_linear", 16, false);
    p.hyper[mm::const_gates::eta] = 0.9;
    p.hyper[mm::const_gates::alpha] = 0.05;
    p.hyper[mm::const_gates::theta] = 0.05;
    return p;
}
template <class T = double>
auto make_seq_gated() {
    problem<linear_data<8>, T> p("seq_gated", 16, false);
    p.hyper[mm::data_gates<8>::theta_max] = 0.1;
    return p;
}
template <class T = double>
auto make_seq_mlp() {
    problem<mlp_data<6, 12>, T> p("seq_mlp", 10, false);
    p.hyper[mm::data_gates<6>::theta_max] = 0.1;
    return p;
}
template <class T = double>
auto make_chunked() {
    problem<linear_data<8>, T> p("chunked", 16, false);
    p.hyper[mm::data_gates<8>::theta_max] = 0.02;
    p.options.chunk = 4;
    return p;
}

/// Builds the problem called `name` and hands it to `f`.
template <class F>
void with_problem(const std::string& name, F&& f) {
    if (name == "seed") {
        auto p = make_seed();
        f(p);
    } else if (name == "seq_linear") {
        auto p = make_seq_linear();
        f(p);
    } else if (name == "seq_gated") {
        auto p = make_seq_gated();
        f(p);
    } else if (name == "seq_mlp") {
        auto p = make_seq_mlp();
        f(p);
    } else if (name == "chunked") {
        auto p = make_chunked();
        f(p);
    }
}

inline std::vector<std::string> names() { return {"seed", "seq_linear", "seq_gated", "seq_mlp", "chunked"}; }

}  // namespace reference
