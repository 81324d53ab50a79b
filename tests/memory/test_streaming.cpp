// Streaming: a sequence cut into pieces, each piece starting from the previous piece's final
// state (`initial`), with loss_scale = 1 / (B T_total).
//
// * Forward: the pieces' losses add up to the one-call loss; outputs, per-token inner
//   losses and the final state equal the one-call ones (1e-12 of each tensor's scale).
// * Full backward across calls: meta_gradient on the pieces in reverse order, each with
//   `initial` = the state before it and `final_adjoints` = the next piece's
//   `initial_adjoints`. The first piece runs without `initial`, so its initial adjoint is
//   added to M0's gradient by the library; the sum of the pieces' gradients equals the
//   one-call meta-gradient (1e-12). Variant: the first piece with its initial state given
//   explicitly; then the library adds nothing to M0's gradient (checked: exactly zero) and
//   the test adds the M part of its initial adjoint itself.
// * Truncated backpropagation (no final_adjoints): each piece's gradient equals central
//   finite differences of that piece's loss with the state passed into it held fixed (1e-6,
//   floor 1e-6), and the truncated sum differs from the full meta-gradient.
// * The initial adjoint of a piece that starts mid-chunk (position 6, chunk 4: its G is
//   the memory at position 4) and has final adjoints A: initial adjoints and gradients
//   equal finite differences of J = piece loss + <A, final state> with respect to every
//   entry of the initial state (M, S and G) and every meta-parameter (1e-6). A piece that
//   starts on a chunk boundary has a zero G adjoint (G is overwritten at its first token).
//
// Splits: chunk 1: 5 + 7 + 4, 1 + 15; chunk 4: 4 + 4 + 4 + 4, 6 + 10, 5 + 7 + 4, 3 + 1 + 12.
// One memory type: linear memory, data gates, d = 8 (seq_gated and chunked), double.
#include <doctest/doctest.h>

#include <numeric>

#include "memory/test_sequence_support.hpp"
#include "support/memory_fd.hpp"

using namespace seqtest;

namespace {

using problem_t = decltype(reference::make_seq_gated());
using memory_t = problem_t::memory_type;
using state_t = memory_t::state_type;
using params_t = memory_t::parameters_type;

std::string split_name(const std::vector<std::size_t>& pieces) {
    std::string s;
    for (auto n : pieces) s += (s.empty() ? "" : " + ") + std::to_string(n);
    return s;
}

struct pieces_run {
    std::vector<std::size_t> begin;                  // first token of each piece
    std::vector<std::vector<state_t>> state_before;  // state before each piece (piece 0: M0)
};

/// Forward piece by piece; compares with the one-call forward. Returns the piece bounds and
/// the states before each piece.
pieces_run check_forward(memory_t& memory, const problem_t& p, const std::vector<std::size_t>& pieces,
                         mm::run_options opt, worst& w) {
    const std::size_t L = p.length;
    REQUIRE(std::accumulate(pieces.begin(), pieces.end(), std::size_t(0)) == L);
    const auto full = memory.forward(p.params, p.hyper, p.tokens, p.targets, opt);
    opt.loss_scale = 1.0 / double(L);
    pieces_run pr;
    double loss = 0;
    std::vector<double> outputs, surprise;
    std::vector<state_t> states{memory_t::initial_state(p.params)};
    std::size_t t0 = 0;
    for (std::size_t k = 0; k < pieces.size(); ++k) {
        const std::size_t t1 = t0 + pieces[k];
        pr.begin.push_back(t0);
        pr.state_before.push_back(states);
        const auto r = memory.forward(p.params, p.hyper, slice_time(p.tokens, t0, t1), slice_time(p.targets, t0, t1),
                                      opt, k == 0 ? nullptr : &states);
        loss += r.loss;
        for (double y : r.outputs) outputs.push_back(y);
        for (double s : r.surprise) surprise.push_back(s);
        CHECK(r.states[0].position == t1);
        states = r.states;
        t0 = t1;
    }
    w.update(scaled_err(loss, double(full.loss)), "sum of the losses");
    w.update(scaled_err(outputs, flat(full.outputs)), "outputs");
    w.update(scaled_err(surprise, flat(full.surprise)), "surprise");
    w.update(compare_states(states, full.states), "final state");
    return pr;
}

/// Full backward across calls; `explicit_first`: piece 0 gets its initial state explicitly.
params_t streamed_gradient(memory_t& memory, const problem_t& p, const std::vector<std::size_t>& pieces,
                           const pieces_run& pr, mm::run_options opt, bool explicit_first,
                           std::vector<state_t>& first_initial_adjoints) {
    opt.loss_scale = 1.0 / double(p.length);
    params_t sum;
    std::vector<state_t> adj;
    for (std::size_t k = pieces.size(); k-- > 0;) {
        const std::size_t t0 = pr.begin[k], t1 = t0 + pieces[k];
        const bool with_initial = k > 0 || explicit_first;
        const auto r = memory.meta_gradient(p.params, p.hyper, slice_time(p.tokens, t0, t1),
                                            slice_time(p.targets, t0, t1), opt,
                                            with_initial ? &pr.state_before[k] : nullptr,
                                            k + 1 < pieces.size() ? &adj : nullptr);
        if (with_initial) {
            // The state came from outside: nothing may be added to M0's gradient.
            CHECK(flat(r.grads.m0<0>()) == std::vector<double>(memory_t::sizes[0], 0.0));
        }
        add_into(sum, r.grads);
        adj = r.initial_adjoints;
        CHECK(adj[0].position == t0);
    }
    first_initial_adjoints = adj;
    if (explicit_first) sum.m0<0>() += memory_t::view_of_state<0>(adj[0]);
    return sum;
}

void check_split(const problem_t& p, const std::vector<std::size_t>& pieces) {
    memory_t memory;
    mm::run_options opt = p.options;
    const std::string label = "chunk " + std::to_string(opt.chunk) + ", " + split_name(pieces);
    CAPTURE(label);

    worst wf;
    const pieces_run pr = check_forward(memory, p, pieces, opt, wf);
    MESSAGE(label << ": forward, worst " << wf.err << " at " << wf.where);
    CHECK(wf.err <= 1e-12);

    const auto full = memory.meta_gradient(p.params, p.hyper, p.tokens, p.targets, opt);
    worst wb;
    for (bool explicit_first : {false, true}) {
        std::vector<state_t> first_adj;
        const params_t g = streamed_gradient(memory, p, pieces, pr, opt, explicit_first, first_adj);
        const std::string variant = explicit_first ? "first piece with explicit initial: " : "first piece from M0: ";
        wb.update(compare_params(g, full.grads), variant + "grad ");
        wb.update(compare_states(first_adj, full.initial_adjoints), variant + "initial adjoint ");
    }
    MESSAGE(label << ": full backward across calls, worst " << wb.err << " at " << wb.where);
    CHECK(wb.err <= 1e-12);
}

}  // namespace

TEST_CASE("streaming, chunk 1: forward pieces and full backward across calls") {
    const auto p = reference::make_seq_gated();
    check_split(p, {5, 7, 4});
    check_split(p, {1, 15});
}

TEST_CASE("streaming, chunk 4: aligned and unaligned pieces") {
    const auto p = reference::make_chunked();
    REQUIRE(p.options.chunk == 4);
    check_split(p, {4, 4, 4, 4});
    check_split(p, {6, 10});
    check_split(p, {5, 7, 4});
    check_split(p, {3, 1, 12});
}

TEST_CASE("truncated backpropagation: each piece's gradient is that of its loss with its initial state fixed") {
    for (bool chunked : {false, true}) {
        auto p = chunked ? reference::make_chunked() : reference::make_seq_gated();
        const std::vector<std::size_t> pieces = chunked ? std::vector<std::size_t>{6, 10} : std::vector<std::size_t>{5, 7, 4};
        const std::string label = "chunk " + std::to_string(p.options.chunk) + ", " + split_name(pieces);
        CAPTURE(label);
        memory_t memory;
        mm::run_options opt = p.options;
        worst wf;
        const pieces_run pr = check_forward(memory, p, pieces, opt, wf);
        REQUIRE(wf.err <= 1e-12);
        opt.loss_scale = 1.0 / double(p.length);
        const auto full = memory.meta_gradient(p.params, p.hyper, p.tokens, p.targets, p.options);

        params_t sum;
        worst w;
        for (std::size_t k = 0; k < pieces.size(); ++k) {
            const std::size_t t0 = pr.begin[k], t1 = t0 + pieces[k];
            const auto tok = slice_time(p.tokens, t0, t1), tgt = slice_time(p.targets, t0, t1);
            // Piece 0 starts from M0 (a meta-parameter); the others from the stored state.
            const std::vector<state_t>* initial = k == 0 ? nullptr : &pr.state_before[k];
            const auto r = memory.meta_gradient(p.params, p.hyper, tok, tgt, opt, initial);
            add_into(sum, r.grads);
            const auto e = memfd::check_all(
                p.params, r.grads, [&] { return double(memory.forward(p.params, p.hyper, tok, tgt, opt, initial).loss); },
                1e-6);
            w.update(e.err, "piece " + std::to_string(k) + ": " + e.where);
        }
        MESSAGE(label << ": truncated gradients vs fd with fixed states, worst " << w.err << " at " << w.where);
        CHECK(w.err <= 1e-6);
        // Truncation drops the paths through the states between pieces: a different gradient.
        const double diff = compare_params(sum, full.grads, true).err;
        MESSAGE(label << ": truncated vs full meta-gradient, worst norm-wise difference " << diff);
        CHECK(diff > 1e-3);
    }
}

TEST_CASE("initial adjoints: mid-chunk piece with final adjoints against finite differences") {
    auto p = reference::make_chunked();
    memory_t memory;
    mm::run_options opt = p.options;
    opt.loss_scale = 1.0 / 16.0;
    constexpr std::size_t m = memory_t::memory_size;
    for (std::size_t start : {std::size_t(6), std::size_t(8)}) {
        CAPTURE(start);
        const auto first = memory.forward(p.params, p.hyper, slice_time(p.tokens, 0, start),
                                          slice_time(p.targets, 0, start), opt);
        std::vector<state_t> s0 = first.states;
        const auto tok = slice_time(p.tokens, start, 16), tgt = slice_time(p.targets, start, 16);
        std::vector<state_t> A(1);
        A[0].values.resize(memory_t::state_size);
        for (std::size_t n = 0; n < A[0].values.size(); ++n) A[0].values[n] = det(n, 11.5, 0.05);
        A[0].position = 16;
        // J = loss of the piece + <A, final state>, as a function of s0 and the meta-parameters.
        auto J = [&] {
            const auto r = memory.forward(p.params, p.hyper, tok, tgt, opt, &s0);
            double j = r.loss;
            for (std::size_t n = 0; n < A[0].values.size(); ++n) j += A[0].values[n] * r.states[0].values[n];
            return j;
        };
        const auto r = memory.meta_gradient(p.params, p.hyper, tok, tgt, opt, &s0, &A);
        const auto& adj = r.initial_adjoints[0].values;
        worst w;
        for (std::size_t n = 0; n < memory_t::state_size; ++n) {
            const double fd = mnemo_test::fd::central_diff(s0[0].values[n], J);
            const char* part = n < m ? "M" : n < 2 * m ? "S" : "G";
            w.update(mnemo_test::fd::rel_err(fd, adj[n], 1e-6),
                     std::string("d/d") + part + "[" + std::to_string(n % m) + "] exact " + std::to_string(adj[n]) +
                         " fd " + std::to_string(fd));
        }
        const auto e = memfd::check_all(p.params, r.grads, J, 1e-6);
        w.update(e.err, "meta-parameter " + e.where);
        MESSAGE("piece [" << start << ", 16) with final adjoints: worst " << w.err << " at " << w.where);
        CHECK(w.err <= 1e-6);
        double g_adj = 0;
        for (std::size_t n = 2 * m; n < 3 * m; ++n) g_adj = std::max(g_adj, std::fabs(adj[n]));
        if (start % 4 == 0) CHECK(g_adj == 0.0);  // G is overwritten at the first token
        else CHECK(g_adj > 1e-6);                 // tokens 6 and 7 read G = M_4
    }
}
