// The MLP dual form against the plain chunked form, and its sequential form against the compiled step
// token by token (see test_dual_form_mlp.cpp), for the
// other activations: the tanh and erf GELUs, 1e-12 of each tensor's scale, double. relu:
// test_dual_form_mlp_relu.cpp (three memories in one unit took 2.2 GB to compile).
#include <doctest/doctest.h>

#include "memory/dual_form_mlp_support.hpp"

using namespace mlpdual;

TEST_CASE("MLP dual form: activations") {
    CHECK(check<mlp_spec<mm::gelu_act>>(4) <= 1e-12);
    CHECK(check_sequential<mlp_spec<mm::gelu_act>>(11, 4) <= 1e-12);
    CHECK(check<mlp_spec<mm::gelu_exact_act>>(3) <= 1e-12);
    CHECK(check_sequential<mlp_spec<mm::gelu_exact_act>>(11) <= 1e-12);
}
