// The first-order meta-gradient, `sequence_memory<Spec, double, true>`: the inner gradient is
// a constant for the outer differentiation.
//
// Linear memory with const gates (the seq_linear problem: d = 8, T = 16). The frozen loss
// is written by hand with plain loops (test_sequence_support.hpp, `linear_titans`): the
// inner gradients g_t = 2 (G_t k_t - v_t) k_t^T are recorded at the unperturbed
// meta-parameters, and the frozen loss recomputes the forward at perturbed meta-parameters
// with the recorded g_t. The first-order meta-gradient equals its central finite
// differences (relative 1e-7, floor 1e-6), for chunk 1 and chunk 4.
// Derived properties: with const gates and a linear memory, W_K and W_V enter only through
// the inner gradient, so their first-order gradient is exactly zero; the full meta-gradient
// of the same problem differs (non-zero W_K, W_V gradients, a different M0 gradient),
// while W_Q, which only enters the retrieval, has the full gradient (1e-12); and the
// forward is that of the full memory (stop_gradient is the identity).
// Two memory types: first-order and full, double.
#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"

using namespace seqtest;

namespace {

using problem_t = decltype(reference::make_seq_linear());
using spec_t = reference::linear_const<8>;
using full_memory_t = problem_t::memory_type;
using fo_memory_t = mm::sequence_memory<spec_t, double, true>;
using sy = mm::step_symbols<spec_t>;
static_assert(std::is_same_v<fo_memory_t::parameters_type, full_memory_t::parameters_type>);

hand_run by_hand(const problem_t& p, std::size_t chunk, const std::vector<std::vector<double>>* frozen) {
    const auto& P = p.params;
    const const_gates_d gates{p.hyper[mm::const_gates::eta], p.hyper[mm::const_gates::alpha],
                              p.hyper[mm::const_gates::theta]};
    return linear_titans(8, p.length, P.m0<0>().data(), P[sy::wk{}].data(), P[sy::wv{}].data(), P[sy::wq{}].data(),
                         p.tokens.data(), p.targets.data(), gates, chunk, 1.0 / double(p.length), frozen);
}

}  // namespace

TEST_CASE("first-order meta-gradient equals finite differences of the loss with frozen inner gradients") {
    auto p = reference::make_seq_linear();
    fo_memory_t fo;
    full_memory_t full;
    for (std::size_t chunk : {1, 4}) {
        CAPTURE(chunk);
        const mm::run_options opt{.chunk = chunk};
        const auto r = fo.meta_gradient(p.params, p.hyper, p.tokens, p.targets, opt);
        const auto rf = full.meta_gradient(p.params, p.hyper, p.tokens, p.targets, opt);

        // The forward is unchanged by stop_gradient.
        worst wf;
        wf.update(compare_results(r, rf, false), "");
        MESSAGE("chunk " << chunk << ": first-order vs full forward, worst " << wf.err << " at " << wf.where);
        CHECK(wf.err <= 1e-15);

        // The inner gradients at the unperturbed meta-parameters, and the hand loss.
        const hand_run base = by_hand(p, chunk, nullptr);
        const double hand_err = std::max(scaled_err(double(r.loss), base.loss), scaled_err(flat(r.outputs), base.y));
        MESSAGE("chunk " << chunk << ": library vs plain-loop forward " << hand_err);
        CHECK(hand_err <= 1e-12);
        const std::vector<std::vector<double>> recorded = base.g;
        CHECK(by_hand(p, chunk, &recorded).loss == base.loss);

        const auto w = memfd::check_all(p.params, r.grads, [&] { return by_hand(p, chunk, &recorded).loss; }, 1e-6);
        MESSAGE("chunk " << chunk << ": first-order gradient vs fd of the frozen loss, worst " << w.err << " at "
                         << w.where);
        CHECK(w.err <= 1e-7);

        // W_K and W_V reach the loss only through the inner gradient.
        CHECK(tensor_named(r.grads, "WK") == std::vector<double>(64, 0.0));
        CHECK(tensor_named(r.grads, "WV") == std::vector<double>(64, 0.0));
        const auto wk = tensor_named(rf.grads, "WK"), wv = tensor_named(rf.grads, "WV");
        const double nk = std::sqrt(std::inner_product(wk.begin(), wk.end(), wk.begin(), 0.0));
        const double nv = std::sqrt(std::inner_product(wv.begin(), wv.end(), wv.begin(), 0.0));
        const double dm = norm_err(tensor_named(r.grads, "M0[0]"), tensor_named(rf.grads, "M0[0]"));
        const double dq = norm_err(tensor_named(r.grads, "WQ"), tensor_named(rf.grads, "WQ"));
        MESSAGE("chunk " << chunk << ": full gradient |WK| " << nk << ", |WV| " << nv
                         << "; first-order vs full, norm-wise: M0 " << dm << ", WQ " << dq);
        CHECK(nk > 1e-4);
        CHECK(nv > 1e-4);
        CHECK(dm > 1e-3);
        // W_Q enters only the retrieval y_t = M_t W_Q x_t, never the inner gradient, and the
        // forward is the same: its gradient is the full one.
        CHECK(dq <= 1e-12);
    }
}
