// Shared by the tests of the MLP dual form (test_dual_form_mlp*.cpp): a two-layer MLP
// memory of size 4 (hidden 6) with a given activation, rule, inner loss, gates and key
// normalisation, filled with the reference problems' values; and the comparison of its dual
// and plain chunked forms on a batch of 2 sequences (worst `scaled_err` over every result
// and the token gradients, logged).
#pragma once

#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"

namespace mlpdual {

using namespace seqtest;


constexpr std::size_t D = 4, H = 6;
template <class Act = mm::silu_act, class Rule = mm::titans_rule, class Inner = mm::l2_loss,
          class Gates = mm::data_gates<D>, bool Norm = false>
using mlp_spec = mm::spec<D, mm::mlp<Act, false, D, H>, Inner, Rule, Gates, mm::mse, Norm>;

template <class Memory, class Spec>
void fill(typename Memory::parameters_type& p, typename Memory::hyperparameters_type& h, double m0_scale = 0.3) {
    fill_by_name(p, [&](const std::string& name, std::size_t i) {
        const double v = reference_value(name, i, m0_scale);
        return std::isnan(v) ? 0.0 : v;
    });
    if constexpr (std::is_same_v<typename Spec::gates, mm::const_gates>) {
        h[mm::const_gates::eta] = 0.9;
        h[mm::const_gates::alpha] = 0.1;
        h[mm::const_gates::theta] = 0.2;
    } else {
        h[Spec::gates::theta_max] = 0.3;
    }
}

/// Dual against plain on a batch of 2 sequences of `len` tokens: the worst scaled error
/// over every result and the token gradients. Chunked runs of `chunk` tokens (chunk 1 with
/// `chunked_form`), or with `sequential` the sequential form; `block`: `run_options::
/// dual_block` (0: the default).
template <class Spec, bool FirstOrder = false>
double check(std::size_t chunk, std::size_t len = 11, std::size_t threads = 1, bool from_states = false,
             std::size_t block = 0, bool sequential = false) {
    using memory_t = mm::sequence_memory<Spec, double, FirstOrder>;
    typename memory_t::parameters_type p;
    typename memory_t::hyperparameters_type h;
    fill<memory_t, Spec>(p, h);
    const auto tokens = det_batch(2, len, D, 4.5, 1.0), targets = det_batch(2, len, D, 8.5, 1.0);
    memory_t memory;
    mm::run_options opt;
    opt.chunk = sequential ? 1 : chunk;
    opt.chunked_form = !sequential && chunk == 1;
    opt.dual_block = block;
    opt.threads = threads;
    opt.token_gradient = true;
    std::vector<typename memory_t::state_type> start, adj;
    if (from_states) {
        // Initial states and final adjoints with every part nonzero (G included).
        const auto warm = det_batch(2, 5, D, 1.5, 1.0), wt = det_batch(2, 5, D, 2.5, 1.0);
        start = memory.forward(p, h, warm, wt, {.chunk = 2}).states;
        adj = memory.forward(p, h, wt, warm, {.chunk = 3}).states;
        for (auto& s : start) s.position = 0;
    }
    const auto* s0 = from_states ? &start : nullptr;
    const auto* a0 = from_states ? &adj : nullptr;
    const auto dual = memory.meta_gradient(p, h, tokens, targets, opt, s0, a0);
    opt.dual_form = false;
    const auto plain = memory.meta_gradient(p, h, tokens, targets, opt, s0, a0);
    CHECK(squared_norm(dual.grads) > 0);
    worst w = compare_results(dual, plain, true);
    w.update(scaled_err(flat(dual.token_grads), flat(plain.token_grads)), "token gradients");
    MESSAGE((sequential ? std::string("sequential") : "chunk " + std::to_string(chunk)) << ", block " << block
            << ", length " << len << ", threads " << threads << std::string(from_states ? ", from states" : "")
                     << ": worst " << w.err << " at " << w.where);
    return w.err;
}


}  // namespace mlpdual

namespace mlpdual {
/// The sequential form (chunk 1: every token's gradient at the memory after the token
/// before, by forward substitution in the dual form) against the compiled step token by
/// token.
template <class Spec, bool FirstOrder = false>
double check_sequential(std::size_t len, std::size_t block = 0, std::size_t threads = 1, bool from_states = false) {
    return check<Spec, FirstOrder>(1, len, threads, from_states, block, true);
}
}  // namespace mlpdual
