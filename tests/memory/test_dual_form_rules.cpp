// The dual form against the plain form (chunked, and sequential in dual blocks) for other
// update rules and inner losses: the delta rule and the Huber inner loss (1e-12 of each
// tensor's scale, double).
#include <doctest/doctest.h>

#include "memory/dual_form_support.hpp"

using namespace dualtest;

TEST_CASE("delta rule") {
    for (std::size_t b : {3, 4}) CHECK(check<lin<mm::delta_rule>>(b) <= 1e-12);
    CHECK(check<lin<mm::delta_rule>>(2, 6) <= 1e-12);  // three chunks per dual block
    for (std::size_t blk : {3, 4}) CHECK(check<lin<mm::delta_rule>>(1, blk) <= 1e-12);
}
TEST_CASE("Huber inner loss") {
    for (std::size_t b : {3, 4}) CHECK(check<lin<mm::titans_rule, mm::huber_loss<1, 2>>>(b) <= 1e-12);
    // Sequential: the substitution for each token's prediction goes through the nonlinear
    // loss gradient.
    for (std::size_t blk : {3, 4})
        CHECK(check<lin<mm::titans_rule, mm::huber_loss<1, 2>>>(1, blk) <= 1e-12);
    CHECK(check<lin<mm::titans_rule, mm::huber_loss<1, 2>>>(2, 6) <= 1e-12);
}
