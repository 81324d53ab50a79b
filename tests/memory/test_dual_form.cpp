// The dual form of the chunked update (memory/dual.hpp) against the plain chunked form.
//
// * Where the dual form applies (here: linear memory, data gates, Titans rule, l2 inner
//   loss, mse), a meta-gradient call runs it by default; `run_options::dual_form = false`
//   runs the plain chunked step token by token. Both must give the same loss, outputs,
//   per-token inner losses, final states, gradients and initial adjoints, to 1e-12 of each
//   tensor's scale (double), for chunk sizes that divide the length, that do not (a
//   shorter last chunk), of 1 and beyond the length, in dual blocks of one chunk or
//   several; with batches and threads.
// * A call that starts inside a chunk (streaming) cannot take the dual form's first chunk
//   at its start: the driver falls back to the plain form there, and the full backward
//   across calls still equals the one-shot run.
// * The finite-difference check of the dual form itself is the reference `chunked`
//   problem (test_reference_chunked), which now runs through it.
//
// * Sequential runs (chunk 1) take the dual form in blocks of `run_options::dual_block`
//   tokens, each token's prediction by forward substitution over its block: the same
//   results as the sequential step token by token, for any block size, with batches,
//   threads, initial states and final adjoints.
//
// * A result kept between calls (`meta_gradient(r, ...)`, no allocation once warm) equals
//   a fresh one bit for bit.
//
// One memory type: the reference `chunked` spec (d = 8), double.
#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"

using namespace seqtest;

namespace {

using problem_t = decltype(reference::make_chunked());
using memory_t = problem_t::memory_type;
using state_t = memory_t::state_type;

static_assert(memory_t::has_dual_form, "the linear Titans memory must take the dual form");

struct batch {
    xt::xtensor<double, 3> tokens, targets;
};
batch make_batch(std::size_t B, std::size_t L) {
    return {det_batch(B, L, 8, 4.5, 1.0), det_batch(B, L, 8, 8.5, 1.0)};
}

worst dual_vs_plain(memory_t& memory, const problem_t& p, const batch& data, mm::run_options opt) {
    opt.dual_form = true;
    const auto dual = memory.meta_gradient(p.params, p.hyper, data.tokens, data.targets, opt);
    opt.dual_form = false;
    const auto plain = memory.meta_gradient(p.params, p.hyper, data.tokens, data.targets, opt);
    // The plain run must not have been the dual form again: the gradients are not all zero
    // and the paths differ in rounding for any chunk > 1 (checked below by the caller).
    return compare_results(dual, plain, true);
}

}  // namespace

TEST_CASE("dual form equals the plain chunked form") {
    auto p = reference::make_chunked();
    memory_t memory;
    const auto data = make_batch(3, 16);
    for (std::size_t chunk : {2, 3, 4, 5, 7, 16, 40}) {
        // Blocks of one chunk, of several (a shorter last block; the last chunk starts a
        // block of its own), and the default.
        for (std::size_t block : {std::size_t(1), 3 * chunk, std::size_t(0)}) {
            mm::run_options opt;
            opt.chunk = chunk;
            opt.dual_block = block;
            const worst w = dual_vs_plain(memory, p, data, opt);
            MESSAGE("chunk " << chunk << ", dual block " << block << ": worst " << w.err << " at " << w.where);
            CHECK(w.err <= 1e-12);
        }
    }
}

TEST_CASE("dual form with chunk 1 equals the sequential form") {
    auto p = reference::make_chunked();
    memory_t memory;
    const auto data = make_batch(2, 9);
    mm::run_options dual;
    dual.chunk = 1;
    dual.chunked_form = true;  // chunk 1 through the chunked path: the dual form
    const auto a = memory.meta_gradient(p.params, p.hyper, data.tokens, data.targets, dual);
    const auto b = memory.meta_gradient(p.params, p.hyper, data.tokens, data.targets, {.chunk = 1});
    // The sequential step never writes G (the memory at the chunk's start): compare the
    // states' M and S only.
    constexpr std::size_t m = memory_t::memory_size;
    worst w;
    w.update(scaled_err(double(a.loss), double(b.loss)), "loss");
    w.update(scaled_err(flat(a.outputs), flat(b.outputs)), "outputs");
    w.update(scaled_err(flat(a.surprise), flat(b.surprise)), "surprise");
    w.update(compare_states(a.states, b.states, 0, 2 * m), "final state ");
    w.update(compare_params(a.grads, b.grads), "grad ");
    w.update(compare_states(a.initial_adjoints, b.initial_adjoints), "initial adjoint ");
    MESSAGE("worst " << w.err << " at " << w.where);
    CHECK(w.err <= 1e-12);
}

TEST_CASE("sequential form in dual blocks equals the plain sequential form, for any block size") {
    auto p = reference::make_chunked();
    memory_t memory;
    const auto data = make_batch(3, 16);
    for (std::size_t block : {1, 2, 3, 5, 8, 16, 40}) {
        mm::run_options opt;
        opt.chunk = 1;
        opt.dual_block = block;
        const worst w = dual_vs_plain(memory, p, data, opt);
        MESSAGE("dual block " << block << ": worst " << w.err << " at " << w.where);
        CHECK(w.err <= 1e-12);
    }
}

TEST_CASE("sequential dual form from given states, with final adjoints and threads") {
    // Initial states and final adjoints (every part nonzero, G included) from other runs.
    auto p = reference::make_chunked();
    memory_t memory;
    const auto warm = make_batch(3, 5);
    mm::run_options opt;
    opt.chunk = 1;
    const auto start = memory.forward(p.params, p.hyper, warm.tokens, warm.targets, opt).states;
    const auto adj = memory.forward(p.params, p.hyper, warm.tokens, warm.targets, {.chunk = 3}).states;
    const auto data = make_batch(3, 13);
    for (std::size_t block : {3, 32}) {
        for (std::size_t threads : {1, 2}) {
            opt.dual_block = block;
            opt.threads = threads;
            opt.dual_form = true;
            const auto dual = memory.meta_gradient(p.params, p.hyper, data.tokens, data.targets, opt, &start, &adj);
            opt.dual_form = false;
            const auto plain = memory.meta_gradient(p.params, p.hyper, data.tokens, data.targets, opt, &start, &adj);
            const worst w = compare_results(dual, plain, true);
            MESSAGE("dual block " << block << ", threads " << threads << ": worst " << w.err << " at " << w.where);
            CHECK(w.err <= 1e-12);
            CHECK(squared_norm(dual.grads) > 0);
        }
    }
}

TEST_CASE("dual form: the two paths really differ, and a bad gate breaks the agreement") {
    // A control: the comparison can fail. Changing one meta-parameter in one of the two runs
    // must show up far above the tolerance.
    auto p = reference::make_chunked();
    memory_t memory;
    const auto data = make_batch(1, 16);
    mm::run_options opt;
    opt.chunk = 4;
    const auto dual = memory.meta_gradient(p.params, p.hyper, data.tokens, data.targets, opt);
    auto q = p;
    q.params[mm::data_gates<8>::be] += 1e-6;
    opt.dual_form = false;
    const auto plain = memory.meta_gradient(q.params, q.hyper, data.tokens, data.targets, opt);
    CHECK(compare_results(dual, plain, true).err > 1e-9);
    CHECK(squared_norm(dual.grads) > 0);
}

TEST_CASE("dual form with threads and a batch") {
    auto p = reference::make_chunked();
    memory_t memory;
    const auto data = make_batch(5, 13);
    mm::run_options opt;
    opt.chunk = 4;
    opt.threads = 2;
    const worst w = dual_vs_plain(memory, p, data, opt);
    MESSAGE("worst " << w.err << " at " << w.where);
    CHECK(w.err <= 1e-12);
}

TEST_CASE("streaming across chunk boundaries: dual where a call starts a chunk, plain where not") {
    auto p = reference::make_chunked();  // chunk 4, T = 16
    memory_t memory;
    mm::run_options opt = p.options;
    opt.loss_scale = 1.0 / double(p.length);
    const auto full = memory.meta_gradient(p.params, p.hyper, p.tokens, p.targets, opt);
    for (const std::vector<std::size_t>& pieces :
         {std::vector<std::size_t>{8, 5, 3}, std::vector<std::size_t>{4, 4, 8}, std::vector<std::size_t>{6, 2, 8}}) {
        // Forward piece by piece, keeping the state before each piece.
        std::vector<std::vector<state_t>> before;
        std::vector<state_t> states{memory_t::initial_state(p.params)};
        std::vector<std::size_t> begin;
        std::size_t t0 = 0;
        for (std::size_t len : pieces) {
            before.push_back(states);
            begin.push_back(t0);
            states = memory.forward(p.params, p.hyper, slice_time(p.tokens, t0, t0 + len),
                                    slice_time(p.targets, t0, t0 + len), opt, &states)
                         .states;
            t0 += len;
        }
        CHECK(compare_states(states, full.states).err <= 1e-12);
        // Backward from the last piece, each taking the next one's initial adjoint.
        typename memory_t::parameters_type sum;
        std::vector<state_t> adj;
        for (std::size_t k = pieces.size(); k-- > 0;) {
            const auto r = memory.meta_gradient(p.params, p.hyper, slice_time(p.tokens, begin[k], begin[k] + pieces[k]),
                                                slice_time(p.targets, begin[k], begin[k] + pieces[k]), opt, &before[k],
                                                k + 1 < pieces.size() ? &adj : nullptr);
            add_into(sum, r.grads);
            adj = r.initial_adjoints;
        }
        sum.m0<0>() += memory_t::view_of_state<0>(adj[0]);
        const worst w = compare_params(sum, full.grads);
        MESSAGE("pieces " << pieces[0] << "," << pieces[1] << "," << pieces[2] << ": worst " << w.err << " at "
                          << w.where);
        CHECK(w.err <= 1e-12);
    }
}

TEST_CASE("a result reused across calls equals a fresh one, for both forms and other sizes") {
    // meta_gradient(r, ...) keeps r's memory between calls; every field must be rewritten:
    // compare bit for bit with the returned result, after calls of other sizes and forms.
    auto p = reference::make_chunked();
    memory_t memory;
    typename memory_t::result kept;
    for (std::size_t B : {3, 1, 3}) {
        for (bool dual : {true, false}) {
            const auto data = make_batch(B, B == 1 ? 7 : 16);
            mm::run_options opt;
            opt.chunk = 4;
            opt.dual_form = dual;
            memory.meta_gradient(kept, p.params, p.hyper, data.tokens, data.targets, opt);
            const auto fresh = memory.meta_gradient(p.params, p.hyper, data.tokens, data.targets, opt);
            CHECK(identical_results(kept, fresh, true));
            memory.forward(kept, p.params, p.hyper, data.tokens, data.targets, opt);
            const auto fresh_fwd = memory.forward(p.params, p.hyper, data.tokens, data.targets, opt);
            CHECK(identical_results(kept, fresh_fwd, false));
        }
    }
}
