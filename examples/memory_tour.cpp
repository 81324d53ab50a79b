// A tour of mnemo's sequence memories (include/mnemo/memory). The code snippets of
// docs/memory.md are quoted from this file, from examples/reference_problems.hpp and from
// include/. The program is built and run as a test: it prints what it computes and exits
// with status 1 if one of its self-checks fails.
//
// Two memory types only: each costs the compiler about 20-30 s (four compiled steps: the
// forward and the backward step of the sequential and of the chunked form).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include <mnemo/mnemo.hpp>
#include <xtensor/xview.hpp>

#include "reference_problems.hpp"  // reference::fill_det: deterministic values

namespace tour {

namespace mm = mnemo::memory;

int failures = 0;

void expect(bool ok, const char* what) {
    std::printf("  check: %s: %s\n", what, ok ? "ok" : "FAILED");
    if (!ok) ++failures;
}

// ---------------------------------------------------------------------------------------
// Memory 1: the memory of the reference problems. A linear memory M(k) = W k over tokens of
// size 16, the l2 inner loss, the Titans rule, gates computed from the token, the mse outer
// loss.
constexpr std::size_t d = 16;
using linear_memory = mm::spec<d, mm::linear<d>, mm::l2_loss, mm::titans_rule, mm::data_gates<d>, mm::mse>;

// ---------------------------------------------------------------------------------------
// Memory 2: parts written here. Any type with the right static member is a part; its
// backward is derived by the library.

/// A custom inner loss: the l2 loss with a learned weight per feature. `lw` is not state,
/// data or a hyperparameter, so it is a meta-parameter of every memory that uses this loss.
template <std::size_t D>
struct weighted_l2 {
    static constexpr auto weight = mnemo::vector<"lw", D>;
    template <class P, class V>
    static constexpr auto apply(P p, V v) {
        return mnemo::sum(mnemo::hadamard(weight, mnemo::square(p - v)));
    }
};

/// A custom update rule: Nesterov momentum, `S = eta S - theta g`,
/// `M = (1 - alpha) M + eta S - theta g`. Only the forward is written.
struct nesterov_rule {
    template <class P, class S, class G, class Gates>
    static constexpr auto apply(P p, S s, G g, Gates gt) {
        auto s_next = gt.eta * s - gt.theta * g;
        return mm::make_update((mnemo::c<1> - gt.alpha) * p + gt.eta * s_next - gt.theta * g, s_next);
    }
};

/// A residual MLP memory with biases, `M(k) = k + W2 silu(W1 k + b1) + b2`, with the two
/// parts above and constant gates.
constexpr std::size_t d2 = 8, hidden = 16;
using mlp_model = mm::residual<mm::mlp<mm::silu_act, true, d2, hidden>>;
using mlp_memory = mm::spec<d2, mlp_model, weighted_l2<d2>, nesterov_rule, mm::const_gates, mm::mse>;

// Chunked runs of memory 1 take the dual form (docs/memory.md); memory 2 runs the plain
// chunked step: both read off the expressions at compile time.
static_assert(mm::sequence_memory<linear_memory>::has_dual_form);
static_assert(!mm::sequence_memory<mlp_memory>::has_dual_form);

// ---------------------------------------------------------------------------------------
// Helpers.

template <class Tensor>
double norm(const Tensor& t) {
    double s = 0;
    for (std::size_t i = 0; i < t.size(); ++i) s += double(t.data()[i]) * double(t.data()[i]);
    return std::sqrt(s);
}

/// Every meta-parameter (or gradient) of a parameter set, one after the other.
template <class Params>
std::vector<double> flatten(const Params& p) {
    std::vector<double> v;
    p.for_each([&](const std::string&, const auto& t) { v.insert(v.end(), t.data(), t.data() + t.size()); });
    return v;
}

/// max |a - b| / max |b|.
double relative_difference(const std::vector<double>& a, const std::vector<double>& b) {
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        diff = std::max(diff, std::fabs(a[i] - b[i]));
        scale = std::max(scale, std::fabs(b[i]));
    }
    return diff / scale;
}

/// The central difference of `loss()` in one entry of a meta-parameter.
template <class F>
double central_difference(double& entry, F&& loss) {
    const double h = 1e-6, saved = entry;
    entry = saved + h;
    const double up = loss();
    entry = saved - h;
    const double down = loss();
    entry = saved;
    return (up - down) / (2 * h);
}

bool close_to(double fd, double exact) { return std::fabs(fd - exact) <= 1e-6 * std::max(std::fabs(exact), 1e-3); }

xt::xtensor<double, 3> time_slice(const xt::xtensor<double, 3>& a, std::size_t t0, std::size_t t1) {
    return xt::view(a, xt::all(), xt::range(t0, t1), xt::all());
}

// ---------------------------------------------------------------------------------------
// Memory 1.

void linear_tour() {
    std::printf("linear memory, data gates, d = %zu\n", d);

    // The meta-parameters and the hyperparameters, both zero-initialised with their shapes.
    using memory_type = mm::sequence_memory<linear_memory, double>;
    using gates = mm::data_gates<d>;
    memory_type::parameters_type params;
    memory_type::hyperparameters_type hyper;
    reference::fill_det(params.m0<0>(), 0.5, 0.1);  // M0: the memory before the first token
    reference::fill_det(params.get<"WK">(), 1.5, 0.15);
    reference::fill_det(params.get<"WV">(), 2.5, 0.15);
    reference::fill_det(params.get<"WQ">(), 3.5, 0.15);
    reference::fill_det(params.get<"wa">(), 5.5, 0.2);
    reference::fill_det(params.get<"we">(), 6.5, 0.2);
    reference::fill_det(params.get<"wt">(), 7.5, 0.2);
    params.get<"ba">() = -2.0;  // forget little
    params.get<"be">() = 1.0;
    hyper[gates::theta_max] = 0.1;

    std::printf("  meta-parameters:");
    params.for_each([](const std::string& name, const auto&) { std::printf(" %s", name.c_str()); });
    std::printf("\n");

    // A batch of B sequences of T tokens (B, T, d) and their targets (B, T, d_out).
    const std::size_t B = 2, T = 32;
    xt::xtensor<double, 3> tokens(std::array<std::size_t, 3>{B, T, d});
    xt::xtensor<double, 3> targets(std::array<std::size_t, 3>{B, T, memory_type::d_out});
    reference::fill_det(tokens, 4.5, 0.35);
    reference::fill_det(targets, 8.5, 0.35);

    // The memory holds its compiled steps; make it once and reuse it.
    memory_type memory;
    const auto r = memory.meta_gradient(params, hyper, tokens, targets);
    std::printf("  loss %.6f (mean over the %zu tokens of %zu sequences)\n", r.loss, T, B);
    std::printf("  |dL/dM0| %.4e  |dL/dWK| %.4e  |dL/dwa| %.4e  |dL/dba| %.4e\n", norm(r.grads.m0<0>()),
                norm(r.grads.get<"WK">()), norm(r.grads.get<"wa">()), norm(r.grads.get<"ba">()));
    std::printf("  inner loss at the last token of sequence 0: %.4f\n", r.surprise(0, T - 1));

    // The meta-gradient is exact: compare two entries with central differences of the loss.
    auto loss = [&] { return memory.forward(params, hyper, tokens, targets).loss; };
    const double fd_wk = central_difference(params.get<"WK">()(2, 3), loss);
    const double fd_ba = central_difference(params.get<"ba">()(), loss);
    std::printf("  dL/dWK(2, 3): exact %.10e, finite differences %.10e\n", r.grads.get<"WK">()(2, 3), fd_wk);
    expect(close_to(fd_wk, r.grads.get<"WK">()(2, 3)), "dL/dWK(2, 3) equals finite differences");
    expect(close_to(fd_ba, r.grads.get<"ba">()()), "dL/dba equals finite differences");

    // Checkpointing changes the memory used, not the result. (These short sequences keep
    // every state by default: they fit in run_options::state_budget_bytes.)
    mm::run_options sparse;
    sparse.checkpoint = 4;  // a checkpoint every 4 tokens, the states between them recomputed
    const auto r_sparse = memory.meta_gradient(params, hyper, tokens, targets, sparse);
    expect(relative_difference(flatten(r_sparse.grads), flatten(r.grads)) <= 1e-12,
           "the meta-gradient does not depend on the checkpoint interval");

    // The chunked form: every token of a chunk takes its inner gradient at the memory of the
    // chunk's start.
    mm::run_options chunked;
    chunked.chunk = 8;
    const auto rc = memory.meta_gradient(params, hyper, tokens, targets, chunked);
    std::printf("  chunked form (chunk 8): loss %.6f\n", rc.loss);

    // Streaming: the sequences in two pieces. The second piece starts from the states the
    // first one ended in; both use the loss scale of the whole sequence.
    const auto tok_a = time_slice(tokens, 0, 12), tgt_a = time_slice(targets, 0, 12);
    const auto tok_b = time_slice(tokens, 12, T), tgt_b = time_slice(targets, 12, T);
    mm::run_options whole;
    whole.loss_scale = 1.0 / double(B * T);
    const auto a = memory.forward(params, hyper, tok_a, tgt_a, whole);
    const auto b = memory.forward(params, hyper, tok_b, tgt_b, whole, &a.states);
    std::printf("  streamed: %.6f + %.6f = %.6f\n", a.loss, b.loss, a.loss + b.loss);
    expect(b.states[1].position == T, "a state counts the tokens its sequence has seen");
    expect(std::fabs(a.loss + b.loss - r.loss) <= 1e-12 * r.loss, "the pieces' losses add up to the one-call loss");

    // The full backward across calls: the last piece first; its initial adjoints are the
    // final adjoints of the piece before.
    const auto gb = memory.meta_gradient(params, hyper, tok_b, tgt_b, whole, &a.states);
    const auto ga = memory.meta_gradient(params, hyper, tok_a, tgt_a, whole, nullptr, &gb.initial_adjoints);
    std::vector<double> streamed = flatten(ga.grads);
    const std::vector<double> second = flatten(gb.grads);
    for (std::size_t i = 0; i < streamed.size(); ++i) streamed[i] += second[i];
    expect(relative_difference(streamed, flatten(r.grads)) <= 1e-12,
           "the pieces' meta-gradients add up to the one-call meta-gradient");
    // Truncated: without final adjoints the backward stops at the end of the first piece.
    const auto ga_truncated = memory.meta_gradient(params, hyper, tok_a, tgt_a, whole);
    std::printf("  truncated backward: |dL/dM0| %.4e instead of %.4e\n", norm(ga_truncated.grads.m0<0>()),
                norm(ga.grads.m0<0>()));

    // Two heads over the same tokens: independent memories, each with its own parameters
    // (here the same values) and its slice of the targets; the loss is the mean over heads.
    mm::multi_head_memory<linear_memory, 2> heads;
    const std::vector<memory_type::parameters_type> head_params{params, params};
    xt::xtensor<double, 3> head_targets(std::array<std::size_t, 3>{B, T, 2 * d});
    reference::fill_det(head_targets, 9.5, 0.35);
    const auto rh = heads.meta_gradient(head_params, hyper, tokens, head_targets);
    std::printf("  two heads: loss %.6f, |dL/dWQ| of head 1 %.4e\n", rh.loss, norm(rh.grads[1].get<"WQ">()));

    // Bad input is refused before any work, with the sequence and the token.
    xt::xtensor<double, 3> bad = tokens;
    bad(1, 5, 3) = std::nan("");
    try {
        memory.forward(params, hyper, bad, targets);
        expect(false, "a NaN token is refused");
    } catch (const std::invalid_argument& e) {
        std::printf("  %s\n", e.what());
        expect(std::string(e.what()).find("sequence 1, token 5") != std::string::npos, "a NaN token is refused");
    }
}

// ---------------------------------------------------------------------------------------
// Memory 2.

void mlp_tour() {
    std::printf("residual MLP memory, custom inner loss and rule, d = %zu\n", d2);
    using memory_type = mm::sequence_memory<mlp_memory, double>;
    using params_type = memory_type::parameters_type;

    // Which symbols are meta-parameters is derived from the step at compile time.
    static_assert(params_type::has(weighted_l2<d2>::weight));  // the inner loss's lw
    static_assert(!params_type::has(mm::const_gates::theta));  // a hyperparameter
    static_assert(params_type::memory_tensors == 4);           // W1, W2, b1, b2

    params_type params;
    memory_type::hyperparameters_type hyper;
    reference::fill_det(params.m0<0>(), 0.5, 0.3);  // W1 (16, 8)
    reference::fill_det(params.m0<1>(), 0.9, 0.3);  // W2 (8, 16); the biases stay 0
    reference::fill_det(params.get<"WK">(), 1.5, 0.15);
    reference::fill_det(params.get<"WV">(), 2.5, 0.15);
    reference::fill_det(params.get<"WQ">(), 3.5, 0.15);
    params.get<"lw">().fill(1.0);
    hyper[mm::const_gates::eta] = 0.9;
    hyper[mm::const_gates::alpha] = 0.01;
    hyper[mm::const_gates::theta] = 0.02;  // inner steps too large make the memory diverge

    const std::size_t B = 1, T = 24;
    xt::xtensor<double, 3> tokens(std::array<std::size_t, 3>{B, T, d2});
    xt::xtensor<double, 3> targets(std::array<std::size_t, 3>{B, T, d2});
    reference::fill_det(tokens, 4.5, 1.0);
    reference::fill_det(targets, 8.5, 1.0);

    memory_type memory;
    mm::run_options opt;
    opt.chunk = 4;
    const auto r = memory.meta_gradient(params, hyper, tokens, targets, opt);
    std::printf("  loss %.6f\n", r.loss);
    r.grads.for_each([](const std::string& name, const auto& g) {
        std::printf("  |dL/d%s| %.4e\n", name.c_str(), norm(g));
    });

    auto loss = [&] { return memory.forward(params, hyper, tokens, targets, opt).loss; };
    const double fd_weight = central_difference(params.get<"lw">()(1), loss);
    const double fd_b1 = central_difference(params.m0<2>()(3), loss);
    expect(close_to(fd_weight, r.grads.get<"lw">()(1)), "dL/dlw(1) equals finite differences");
    expect(close_to(fd_b1, r.grads.m0<2>()(3)), "dL/dM0[2](3) equals finite differences");
}

}  // namespace tour

int main() {
    tour::linear_tour();
    tour::mlp_tour();
    if (tour::failures) {
        std::printf("%d check(s) FAILED\n", tour::failures);
        return 1;
    }
    std::printf("all checks passed\n");
    return 0;
}
