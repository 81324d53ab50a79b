// The checkpoint interval changes how much is stored and recomputed, never a result.
//
// For c = 1, 2, 3, 4, 5, 6, 7, T - 1, T, T + 7, and the automatic choice with no memory budget
// for kept states (c = 0, state_budget_bytes = 0: about sqrt(T)), against the default (c = 0
// with the default budget: these short sequences fit, so c = T, every state kept): loss,
// outputs, surprise, final states, every gradient and the initial adjoints agree to 1e-13 of
// each tensor's scale (the number of bit-identical runs is reported). The automatic choice
// itself: c = T within the budget, ceil(sqrt(T)) beyond it. Cases: the
// seq_gated problem (T = 16, chunk 1), the chunked problem (T = 16, chunk 4), a piece of
// the chunked problem that starts mid-chunk from a given state and has final adjoints, and a
// batch of two sequences.
//
// One memory type: linear memory, data gates, d = 8 (seq_gated and chunked share it), double.
#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"

using namespace seqtest;

namespace {

using problem_t = decltype(reference::make_seq_gated());
using memory_t = problem_t::memory_type;
using state_t = memory_t::state_type;

/// Runs meta_gradient with every interval and compares with the default interval.
void check_intervals(memory_t& memory, const problem_t& p, const xt::xtensor<double, 3>& tokens,
                     const xt::xtensor<double, 3>& targets, mm::run_options opt, const std::vector<state_t>* initial,
                     const std::vector<state_t>* final_adjoints, const std::string& label) {
    const std::size_t L = tokens.shape()[1];
    // Checkpoints belong to the token-by-token steps; the dual form of the chunked step
    // (memory/dual.hpp) keeps none, so it is switched off here.
    opt.dual_form = false;
    opt.checkpoint = 0;
    CHECK(memory_t::checkpoint_interval(opt, L) == L);  // every state kept: the states fit the budget
    const auto ref = memory.meta_gradient(p.params, p.hyper, tokens, targets, opt, initial, final_adjoints);
    const auto ref_fwd = memory.forward(p.params, p.hyper, tokens, targets, opt, initial);
    CHECK(squared_norm(ref.grads) > 0);
    worst w;
    w.update(compare_results(ref_fwd, ref, false), "forward vs meta_gradient: ");
    std::size_t exact = 0, runs = 0;
    for (std::size_t c : {std::size_t(1), std::size_t(2), std::size_t(3), std::size_t(4), std::size_t(5), std::size_t(6),
                          std::size_t(7), L - 1, L, L + 7}) {
        opt.checkpoint = c;
        const auto r = memory.meta_gradient(p.params, p.hyper, tokens, targets, opt, initial, final_adjoints);
        w.update(compare_results(r, ref, true), "c = " + std::to_string(c) + ": ");
        ++runs;
        if (identical_results(r, ref, true)) ++exact;
    }
    {
        // The automatic choice beyond the budget: about sqrt(T), with recomputed segments.
        mm::run_options tight = opt;
        tight.checkpoint = 0;
        tight.state_budget_bytes = 0;
        const auto c = memory_t::checkpoint_interval(tight, L);
        CHECK(c == std::size_t(std::ceil(std::sqrt(double(L)))));
        CHECK(c < L);
        const auto r = memory.meta_gradient(p.params, p.hyper, tokens, targets, tight, initial, final_adjoints);
        w.update(compare_results(r, ref, true), "c = 0 with no budget (c = " + std::to_string(c) + "): ");
        ++runs;
        if (identical_results(r, ref, true)) ++exact;
    }
    MESSAGE(label << ": worst difference to c = 0 " << w.err << " " << w.where << "; " << exact << " of " << runs
                  << " runs bit-identical");
    CHECK(w.err <= 1e-13);
}

}  // namespace

TEST_CASE("checkpoint interval: seq_gated (T = 16, chunk 1)") {
    auto p = reference::make_seq_gated();
    memory_t memory;
    check_intervals(memory, p, p.tokens, p.targets, p.options, nullptr, nullptr, "seq_gated");
}

TEST_CASE("checkpoint interval: chunked (T = 16, chunk 4)") {
    auto p = reference::make_chunked();
    memory_t memory;
    REQUIRE(p.options.chunk == 4);
    check_intervals(memory, p, p.tokens, p.targets, p.options, nullptr, nullptr, "chunked");
}

TEST_CASE("checkpoint interval: a mid-chunk piece with an initial state and final adjoints") {
    auto p = reference::make_chunked();
    memory_t memory;
    // The state after tokens [0, 6): position 6, in the middle of the chunk [4, 8).
    const auto first = memory.forward(p.params, p.hyper, slice_time(p.tokens, 0, 6), slice_time(p.targets, 0, 6),
                                      p.options);
    REQUIRE(first.states[0].position == 6);
    // Final adjoints: arbitrary deterministic values on M, S and G.
    std::vector<state_t> adj(1);
    adj[0].values.resize(memory_t::state_size);
    for (std::size_t n = 0; n < adj[0].values.size(); ++n) adj[0].values[n] = det(n, 11.5, 0.05);
    adj[0].position = p.length;
    check_intervals(memory, p, slice_time(p.tokens, 6, p.length), slice_time(p.targets, 6, p.length), p.options,
                    &first.states, &adj, "chunked, tokens [6, 16)");
}

TEST_CASE("checkpoint interval: a batch of two sequences (chunk 1 and chunk 4)") {
    auto p = reference::make_seq_gated();
    memory_t memory;
    const auto tokens = det_batch(2, 13, 8, 4.5, 1.0);
    const auto targets = det_batch(2, 13, 8, 8.5, 1.0);
    check_intervals(memory, p, tokens, targets, {.chunk = 1}, nullptr, nullptr, "batch of 2, chunk 1");
    check_intervals(memory, p, tokens, targets, {.chunk = 4}, nullptr, nullptr, "batch of 2, chunk 4");
}
