// Shared by test_dual_form_rules.cpp and test_dual_form_options.cpp: a linear memory of
// size 4 with a given rule, inner loss, gates and key normalisation, filled with the
// reference problems' values, and the comparison of its dual and plain forms on a batch of
// 2 sequences of 11 tokens (worst `scaled_err` over every result, logged): chunked with
// chunk > 1, sequential (chunk 1) in dual blocks of `block` tokens.
#pragma once

#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"

namespace dualtest {

using namespace seqtest;


constexpr std::size_t D = 4;
template <class Rule, class Inner = mm::l2_loss, class Gates = mm::data_gates<D>, bool Norm = false>
using lin = mm::spec<D, mm::linear<D>, Inner, Rule, Gates, mm::mse, Norm>;

template <class Spec, class Memory>
void fill(typename Memory::parameters_type& p, typename Memory::hyperparameters_type& h) {
    fill_by_name(p, [](const std::string& name, std::size_t i) {
        const double v = reference_value(name, i, 0.1);
        return std::isnan(v) ? 0.0 : v;
    });
    if constexpr (std::is_same_v<typename Spec::gates, mm::const_gates>) {
        h[mm::const_gates::eta] = 0.9;
        h[mm::const_gates::alpha] = 0.1;
        h[mm::const_gates::theta] = 0.1;
    } else {
        h[Spec::gates::theta_max] = 0.1;
    }
}

template <class Spec, bool FirstOrder = false>
double check(std::size_t chunk, std::size_t block = 0) {
    using memory_t = mm::sequence_memory<Spec, double, FirstOrder>;
    typename memory_t::parameters_type p;
    typename memory_t::hyperparameters_type h;
    fill<Spec, memory_t>(p, h);
    const auto tokens = det_batch(2, 11, D, 4.5, 1.0), targets = det_batch(2, 11, D, 8.5, 1.0);
    memory_t memory;
    mm::run_options opt;
    opt.chunk = chunk;
    opt.dual_block = block;
    const auto dual = memory.meta_gradient(p, h, tokens, targets, opt);
    opt.dual_form = false;
    const auto plain = memory.meta_gradient(p, h, tokens, targets, opt);
    CHECK(squared_norm(dual.grads) > 0);
    const worst w = compare_results(dual, plain, true);
    MESSAGE("chunk " << chunk << ", dual block " << block << ": worst " << w.err << " at " << w.where);
    return w.err;
}

}  // namespace dualtest
