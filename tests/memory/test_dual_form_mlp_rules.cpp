// The MLP dual form against the plain chunked form (see test_dual_form_mlp.cpp) for other
// rules, inner losses and gates: the delta rule, the Huber inner loss (its gradient is
// nonlinear in the prediction), constant gates and normalised keys, 1e-12 of each
// tensor's scale, double.
#include <doctest/doctest.h>

#include "memory/dual_form_mlp_support.hpp"

using namespace mlpdual;

TEST_CASE("MLP dual form: rules, inner losses, gates") {
    CHECK(check<mlp_spec<mm::silu_act, mm::delta_rule>>(4) <= 1e-12);
    CHECK(check<mlp_spec<mm::silu_act, mm::titans_rule, mm::huber_loss<1, 2>>>(3) <= 1e-12);
    CHECK(check<mlp_spec<mm::silu_act, mm::titans_rule, mm::l2_loss, mm::const_gates>>(4) <= 1e-12);
    CHECK(check<mlp_spec<mm::silu_act, mm::titans_rule, mm::l2_loss, mm::data_gates<D>, true>>(4) <= 1e-12);
}
