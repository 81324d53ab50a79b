// The MLP dual form against the plain chunked form, and its sequential form against the compiled step
// token by token (see test_dual_form_mlp.cpp), with
// constant gates and with normalised keys, 1e-12 of each tensor's scale, double. (Split
// from test_dual_form_mlp_rules.cpp for the compiler's memory.)
#include <doctest/doctest.h>

#include "memory/dual_form_mlp_support.hpp"

using namespace mlpdual;

TEST_CASE("MLP dual form: constant gates, normalised keys") {
    CHECK(check<mlp_spec<mm::silu_act, mm::titans_rule, mm::l2_loss, mm::const_gates>>(4) <= 1e-12);
    CHECK(check_sequential<mlp_spec<mm::silu_act, mm::titans_rule, mm::l2_loss, mm::const_gates>>(11, 4) <= 1e-12);
    CHECK(check<mlp_spec<mm::silu_act, mm::titans_rule, mm::l2_loss, mm::data_gates<D>, true>>(4) <= 1e-12);
    CHECK(check_sequential<mlp_spec<mm::silu_act, mm::titans_rule, mm::l2_loss, mm::data_gates<D>, true>>(11, 4) <= 1e-12);
}
