// The chunked form against the sequential form and against a forward written by hand.
//
// * chunk 1 run through the chunked compiled step (G = M reset at every token) equals the
//   sequential compiled step: loss, outputs, surprise, states, every gradient, initial
//   adjoints (1e-12 of each tensor's scale).
// * chunk 1, 4 and T: the library's outputs, per-token inner loss, loss and final state
//   equal an independent plain-loop forward (test_sequence_support.hpp: `linear_titans`),
//   in which token t takes its inner gradient at the memory of its chunk's start (1e-12).
// * chunk T (every inner gradient at M0): the meta-gradient equals central finite
//   differences of the plain-loop loss (1e-6, floor 1e-6), an independent check of the
//   chunked backward.
//
// One memory type: the seq_gated spec (linear memory, data gates, d = 8), double.
#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"
#include "support/memory_fd.hpp"

using namespace seqtest;

namespace {

using problem_t = decltype(reference::make_seq_gated());
using memory_t = problem_t::memory_type;
using G8 = mm::data_gates<8>;
using sy = mm::step_symbols<reference::linear_data<8>>;

hand_run by_hand(const problem_t& p, std::size_t chunk) {
    const auto& P = p.params;
    const data_gates_d gates{8,
                             P[G8::wa].data(),
                             P[G8::we].data(),
                             P[G8::wt].data(),
                             P[G8::ba](),
                             P[G8::be](),
                             P[G8::bt](),
                             p.hyper[G8::theta_max]};
    return linear_titans(8, p.length, P.m0<0>().data(), P[sy::wk{}].data(), P[sy::wv{}].data(), P[sy::wq{}].data(),
                         p.tokens.data(), p.targets.data(), gates, chunk, 1.0 / double(p.length));
}

}  // namespace

TEST_CASE("chunk 1 through the chunked step equals the sequential step") {
    auto p = reference::make_seq_gated();
    memory_t memory;
    const auto seq = memory.meta_gradient(p.params, p.hyper, p.tokens, p.targets, {.chunk = 1});
    const auto chk = memory.meta_gradient(p.params, p.hyper, p.tokens, p.targets, {.chunk = 1, .chunked_form = true});

    // The two runs really took different paths: the sequential step never writes G (it
    // stays 0 from the initial state); the chunked one sets G = M before every token, so
    // after the last token G is the memory before it, M_{T-1}.
    constexpr std::size_t m = memory_t::memory_size;
    const auto prefix = memory.forward(p.params, p.hyper, slice_time(p.tokens, 0, p.length - 1),
                                       slice_time(p.targets, 0, p.length - 1), {.chunk = 1});
    const std::vector<double> g_seq(seq.states[0].values.begin() + 2 * m, seq.states[0].values.end());
    const std::vector<double> g_chk(chk.states[0].values.begin() + 2 * m, chk.states[0].values.end());
    const std::vector<double> m_before_last(prefix.states[0].values.begin(), prefix.states[0].values.begin() + m);
    CHECK(g_seq == std::vector<double>(m, 0.0));
    CHECK(scaled_err(g_chk, m_before_last) <= 1e-12);

    // Everything else: M and S of the final states and initial adjoints (their G parts
    // differ by design: see above), loss, outputs, surprise, gradients.
    worst w;
    w.update(scaled_err(seq.loss, chk.loss), "loss");
    w.update(scaled_err(flat(seq.outputs), flat(chk.outputs)), "outputs");
    w.update(scaled_err(flat(seq.surprise), flat(chk.surprise)), "surprise");
    w.update(compare_states(seq.states, chk.states, 0, 2 * m), "final state (M, S)");
    w.update(compare_states(seq.initial_adjoints, chk.initial_adjoints, 0, 2 * m), "initial adjoint (M, S)");
    w.update(compare_params(seq.grads, chk.grads), "grad ");
    MESSAGE("chunk 1, chunked step vs sequential step: worst " << w.err << " at " << w.where);
    CHECK(w.err <= 1e-12);
    CHECK(squared_norm(seq.grads) > 0);
    // The adjoint of the initial G: the chunked step resets G at token 0, so none.
    const std::vector<double> ga(chk.initial_adjoints[0].values.begin() + 2 * m, chk.initial_adjoints[0].values.end());
    CHECK(ga == std::vector<double>(m, 0.0));
}

TEST_CASE("chunk 1, 4 and T: forward equals the plain-loop forward") {
    auto p = reference::make_seq_gated();
    memory_t memory;
    constexpr std::size_t m = memory_t::memory_size;
    std::vector<double> y_of_chunk1;
    for (std::size_t chunk : {std::size_t(1), std::size_t(4), p.length}) {
        CAPTURE(chunk);
        const auto r = memory.forward(p.params, p.hyper, p.tokens, p.targets, {.chunk = chunk});
        const hand_run h = by_hand(p, chunk);
        worst w;
        w.update(scaled_err(double(r.loss), h.loss), "loss");
        w.update(scaled_err(flat(r.outputs), h.y), "outputs");
        w.update(scaled_err(flat(r.surprise), h.surprise), "surprise (inner loss at G)");
        const std::vector<double> M(r.states[0].values.begin(), r.states[0].values.begin() + m);
        const std::vector<double> S(r.states[0].values.begin() + m, r.states[0].values.begin() + 2 * m);
        w.update(scaled_err(M, h.M), "final M");
        w.update(scaled_err(S, h.S), "final S");
        MESSAGE("chunk " << chunk << ": library vs plain loops, worst " << w.err << " at " << w.where
                         << " (loss " << r.loss << ")");
        CHECK(w.err <= 1e-12);
        CHECK(r.states[0].position == p.length);
        if (chunk == 1) y_of_chunk1 = h.y;
        // The chunk size matters: the outputs are not those of the sequential form.
        else CHECK(scaled_err(h.y, y_of_chunk1) > 1e-6);
    }
}

TEST_CASE("chunk T: meta-gradient equals finite differences of the plain-loop loss") {
    auto p = reference::make_seq_gated();
    memory_t memory;
    const auto r = memory.meta_gradient(p.params, p.hyper, p.tokens, p.targets, {.chunk = p.length});
    CHECK(scaled_err(double(r.loss), by_hand(p, p.length).loss) <= 1e-12);
    const auto w = memfd::check_all(p.params, r.grads, [&] { return by_hand(p, p.length).loss; }, 1e-6);
    MESSAGE("chunk T: library gradient vs fd of the plain loops, worst " << w.err << " at " << w.where);
    CHECK(w.err <= 1e-6);
}
