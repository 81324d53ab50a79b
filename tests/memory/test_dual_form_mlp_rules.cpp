// The MLP dual form against the plain chunked form, and its sequential form against the compiled step
// token by token (see test_dual_form_mlp.cpp), for other
// rules and inner losses: the delta rule and the Huber inner loss (its gradient is
// nonlinear in the prediction), 1e-12 of each tensor's scale, double. Gates:
// test_dual_form_mlp_gates.cpp (four memories in one unit took 2.35 GB to compile).
#include <doctest/doctest.h>

#include "memory/dual_form_mlp_support.hpp"

using namespace mlpdual;

TEST_CASE("MLP dual form: rules, inner losses") {
    CHECK(check<mlp_spec<mm::silu_act, mm::delta_rule>>(4) <= 1e-12);
    CHECK(check_sequential<mlp_spec<mm::silu_act, mm::delta_rule>>(11, 4) <= 1e-12);
    CHECK(check<mlp_spec<mm::silu_act, mm::titans_rule, mm::huber_loss<1, 2>>>(3) <= 1e-12);
    CHECK(check_sequential<mlp_spec<mm::silu_act, mm::titans_rule, mm::huber_loss<1, 2>>>(11, 4) <= 1e-12);
}
