// When the dual form applies, read off the expressions at compile time (memory/dual.hpp):
// a linear memory with the Titans rule or the delta rule (any inner loss, any gates,
// normalised keys and queries), and a two-layer MLP memory without biases or residual
// (memory/dual_mlp.hpp, tested in test_dual_form_mlp*.cpp); not a normalising rule
// (normalized_momentum_rule) or a Newton-Schulz rule, where the plain chunked form runs.
// The checks are static_asserts on `mm::has_dual_form_v` (the same fact as
// `sequence_memory<Spec>::has_dual_form`, without instantiating the memory's steps). At run
// time, a memory where the dual form does not apply (normalized_momentum_rule) runs the
// plain chunked form whatever `run_options::dual_form` says: both settings give the same
// results bit for bit.
#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"

using namespace seqtest;

namespace {

constexpr std::size_t D = 4;
template <class Rule, class Inner = mm::l2_loss, class Gates = mm::data_gates<D>, bool Norm = false>
using lin = mm::spec<D, mm::linear<D>, Inner, Rule, Gates, mm::mse, Norm>;

static_assert(mm::has_dual_form_v<lin<mm::titans_rule>>);
static_assert(mm::has_dual_form_v<lin<mm::delta_rule>>);
static_assert(mm::has_dual_form_v<lin<mm::titans_rule, mm::huber_loss<1, 2>>>);
static_assert(mm::has_dual_form_v<lin<mm::titans_rule, mm::l2_loss, mm::const_gates>>);
static_assert(mm::has_dual_form_v<lin<mm::titans_rule, mm::l2_loss, mm::data_gates<D>, true>>);
static_assert(!mm::has_dual_form_v<lin<mm::normalized_momentum_rule>>);
static_assert(!mm::has_dual_form_v<lin<mm::newton_schulz_rule<1>>>);
using mlp_memory = mm::spec<D, mm::mlp<mm::silu_act, false, D, 6>, mm::l2_loss, mm::titans_rule, mm::data_gates<D>, mm::mse>;
static_assert(mm::has_dual_form_v<mlp_memory> && mm::has_mlp_dual_form_v<mlp_memory>);
static_assert(!mm::has_linear_dual_form_v<mlp_memory>);  // its sequential runs take the plain form
static_assert(mm::has_linear_dual_form_v<lin<mm::titans_rule>> && !mm::has_mlp_dual_form_v<lin<mm::titans_rule>>);
static_assert(!mm::has_dual_form_v<mm::spec<D, mm::mlp<mm::silu_act, true, D, 6>, mm::l2_loss, mm::titans_rule,
                                             mm::data_gates<D>, mm::mse>>);  // biases: no dual form

}  // namespace

TEST_CASE("where the dual form does not apply, chunked runs take the plain form") {
    using memory_t = mm::sequence_memory<lin<mm::normalized_momentum_rule>>;
    static_assert(!memory_t::has_dual_form);
    memory_t::parameters_type p;
    memory_t::hyperparameters_type h;
    fill_by_name(p, [](const std::string& name, std::size_t i) {
        const double v = reference_value(name, i, 0.1);
        return std::isnan(v) ? 0.0 : v;
    });
    h[mm::data_gates<D>::theta_max] = 0.1;
    const auto tokens = det_batch(2, 11, D, 4.5, 1.0), targets = det_batch(2, 11, D, 8.5, 1.0);
    memory_t memory;
    mm::run_options opt;
    opt.chunk = 4;
    const auto a = memory.meta_gradient(p, h, tokens, targets, opt);
    opt.dual_form = false;
    const auto b = memory.meta_gradient(p, h, tokens, targets, opt);
    CHECK(squared_norm(a.grads) > 0);
    CHECK(identical_results(a, b, true));
}
