// The sequences of a batch run on run_options::threads threads; the thread count changes
// the order in which the sequences' losses and gradients are summed, nothing else.
//
// * A batch of 5 different sequences (T = 12), meta_gradient with threads = 2, 3, 5, 8 (more
//   threads than sequences) and 0 (hardware concurrency) against threads = 1: loss and every
//   gradient agree to 1e-12 relative (of each tensor's scale); each sequence's outputs,
//   per-token inner losses, final states and initial adjoints are bit-identical. Chunk 1,
//   chunk 4 (the dual form where it applies), chunk 4 token by token with checkpoint 5;
//   also forward alone, and the streaming arguments (per-sequence initial states, some
//   mid-chunk, and final adjoints).
// * Determinism: the same call with the same thread count gives the same result bit for
//   bit, also after the memory ran with more threads in between (its workers are reused).
// * threads = 1 on one memory object that has run with 8 threads equals a fresh memory bit
//   for bit.
// * Bad input is still rejected (std::invalid_argument) with threads = 2, and the memory
//   then still computes the fresh result.
//
// One memory type: linear memory, data gates, d = 4, double.
#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"

using namespace seqtest;

namespace {

using spec_t = reference::linear_data<4>;
using problem_t = custom_problem<spec_t>;
using memory_t = problem_t::memory_type;
using state_t = memory_t::state_type;

constexpr std::size_t B = 5, L = 12, D = 4;

/// Five different sequences of length L: (5, L, 4).
xt::xtensor<double, 3> five(double phase) {
    xt::xtensor<double, 3> a(std::array<std::size_t, 3>{B, L, D});
    for (std::size_t s = 0; s < B; ++s)
        for (std::size_t n = 0; n < L * D; ++n)
            a.data()[s * L * D + n] = det(n, phase + 1.7 * double(s), 1.0 - 0.15 * double(s));
    return a;
}

problem_t make_problem() {
    problem_t p(L, 0.1);
    p.hyper[mm::data_gates<D>::theta_max] = 0.1;
    p.tokens = five(4.5);
    p.targets = five(8.5);
    return p;
}

/// Per-sequence parts of two results: bit-identical?
template <class R>
bool same_sequences(const R& a, const R& b, bool backward) {
    auto same_states = [](const auto& x, const auto& y) {
        if (x.size() != y.size()) return false;
        for (std::size_t s = 0; s < x.size(); ++s)
            if (x[s].values != y[s].values || x[s].position != y[s].position) return false;
        return true;
    };
    bool same = flat(a.outputs) == flat(b.outputs) && flat(a.surprise) == flat(b.surprise) &&
                same_states(a.states, b.states);
    if (backward) same = same && same_states(a.initial_adjoints, b.initial_adjoints);
    return same;
}

/// Runs the batch with every thread count and compares with threads = 1.
void check_thread_counts(const problem_t& p, mm::run_options opt, const std::vector<state_t>* initial,
                         const std::vector<state_t>* final_adjoints, const std::string& label) {
    memory_t memory;
    opt.threads = 1;
    const auto ref = memory.meta_gradient(p.params, p.hyper, p.tokens, p.targets, opt, initial, final_adjoints);
    const auto ref_fwd = memory.forward(p.params, p.hyper, p.tokens, p.targets, opt, initial);
    REQUIRE(squared_norm(ref.grads) > 0);
    // The sequences differ (a mixed-up sequence index would show).
    for (std::size_t s = 0; s + 1 < B; ++s)
        CHECK(scaled_err(flat(sequence_of(ref.outputs, s)), flat(sequence_of(ref.outputs, s + 1))) > 1e-3);

    worst w;
    std::size_t exact = 0, runs = 0;
    for (std::size_t threads : {2, 3, 5, 8, 0}) {
        CAPTURE(threads);
        opt.threads = threads;
        const std::string tag = "threads = " + std::to_string(threads) + ": ";
        const auto r = memory.meta_gradient(p.params, p.hyper, p.tokens, p.targets, opt, initial, final_adjoints);
        w.update(compare_results(r, ref, true), tag);
        CHECK(same_sequences(r, ref, true));
        ++runs;
        if (identical_results(r, ref, true)) ++exact;

        const auto f = memory.forward(p.params, p.hyper, p.tokens, p.targets, opt, initial);
        w.update(compare_results(f, ref_fwd, false), tag + "forward: ");
        CHECK(same_sequences(f, ref_fwd, false));

        // The same thread count again: the same result bit for bit.
        const auto again = memory.meta_gradient(p.params, p.hyper, p.tokens, p.targets, opt, initial, final_adjoints);
        CHECK(identical_results(again, r, true));
    }
    MESSAGE(label << ": worst difference to threads = 1 " << w.err << " " << w.where << "; " << exact << " of "
                  << runs << " runs bit-identical");
    CHECK(w.err <= 1e-12);

    // Back to one thread after 8: the same as before, and as a fresh memory.
    opt.threads = 1;
    const auto back = memory.meta_gradient(p.params, p.hyper, p.tokens, p.targets, opt, initial, final_adjoints);
    CHECK(identical_results(back, ref, true));
    memory_t fresh;
    CHECK(identical_results(fresh.meta_gradient(p.params, p.hyper, p.tokens, p.targets, opt, initial, final_adjoints),
                            ref, true));
}

}  // namespace

TEST_CASE("threads: a batch of 5 sequences, chunk 1 and chunk 4") {
    const auto p = make_problem();
    check_thread_counts(p, {.chunk = 1}, nullptr, nullptr, "chunk 1");
    check_thread_counts(p, {.chunk = 4}, nullptr, nullptr, "chunk 4");
    // The chunked step token by token (not its dual form), with checkpointing inside the
    // workers (c = 5: recomputed segments).
    check_thread_counts(p, {.chunk = 4, .checkpoint = 5, .dual_form = false}, nullptr, nullptr,
                        "chunk 4 token by token, checkpoint 5");
}

TEST_CASE("threads: per-sequence initial states and final adjoints") {
    const auto p = make_problem();
    memory_t memory;
    std::vector<state_t> initial, adj;
    for (std::size_t s = 0; s < B; ++s) {
        const std::size_t len = 2 + s;  // positions 2..6: some start mid-chunk
        const auto pre = memory.forward(p.params, p.hyper, det_batch(1, len, D, 1.5 + double(s), 1.0),
                                        det_batch(1, len, D, 2.5 + double(s), 1.0), {.chunk = 4});
        initial.push_back(pre.states[0]);
        state_t a;
        a.values.resize(memory_t::state_size);
        for (std::size_t n = 0; n < a.values.size(); ++n) a.values[n] = det(n, 3.5 * double(s), 0.05);
        a.position = len + L;
        adj.push_back(a);
    }
    check_thread_counts(p, {.chunk = 4}, &initial, &adj, "chunk 4, initial states and final adjoints");
    check_thread_counts(p, {.chunk = 1}, &initial, &adj, "chunk 1, initial states and final adjoints");
}

TEST_CASE("threads: bad input is rejected before any thread starts") {
    const auto p = make_problem();
    memory_t memory;
    const mm::run_options opt{.chunk = 4, .threads = 2};
    const auto fresh = memory_t{}.meta_gradient(p.params, p.hyper, p.tokens, p.targets, opt);

    auto bad_tokens = p.tokens;
    bad_tokens(3, 7, 1) = std::numeric_limits<double>::quiet_NaN();
    std::vector<state_t> short_initial(2, memory_t::initial_state(p.params));
    for (bool forward : {true, false}) {
        CAPTURE(forward);
        auto call = [&](const xt::xtensor<double, 3>& tok, const std::vector<state_t>* initial) {
            if (forward) memory.forward(p.params, p.hyper, tok, p.targets, opt, initial);
            else memory.meta_gradient(p.params, p.hyper, tok, p.targets, opt, initial);
        };
        std::string message;
        try {
            call(bad_tokens, nullptr);
        } catch (const std::invalid_argument& e) {
            message = e.what();
        }
        INFO("message: \"" << message << "\"");
        CHECK(message.find("sequence 3, token 7, feature 1 is not finite") != std::string::npos);
        CHECK_THROWS_AS(call(p.tokens, &short_initial), std::invalid_argument);
    }
    CHECK(identical_results(memory.meta_gradient(p.params, p.hyper, p.tokens, p.targets, opt), fresh, true));
}
