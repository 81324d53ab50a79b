// The MLP dual form against the plain chunked form, and its sequential form against the compiled step
// token by token (see test_dual_form_mlp.cpp), for relu,
// whose second derivative is zero (the second-order term through act'' vanishes), 1e-12 of
// each tensor's scale, double. (Split from test_dual_form_mlp_activations.cpp for the
// compiler's memory.)
#include <doctest/doctest.h>

#include "memory/dual_form_mlp_support.hpp"

using namespace mlpdual;

TEST_CASE("MLP dual form: relu") {
    CHECK(check<mlp_spec<mm::relu_act>>(4) <= 1e-12);
    CHECK(check_sequential<mlp_spec<mm::relu_act>>(11, 4) <= 1e-12);
}
