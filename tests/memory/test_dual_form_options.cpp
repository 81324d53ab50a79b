// The dual form against the plain form (chunked, and sequential in dual blocks) with
// constant gates, normalised keys and queries, and the first-order switch (1e-12 of each
// tensor's scale, double).
#include <doctest/doctest.h>

#include "memory/dual_form_support.hpp"

using namespace dualtest;

TEST_CASE("constant gates") {
    for (std::size_t b : {3, 4}) CHECK(check<lin<mm::titans_rule, mm::l2_loss, mm::const_gates>>(b) <= 1e-12);
    for (std::size_t blk : {3, 4})
        CHECK(check<lin<mm::titans_rule, mm::l2_loss, mm::const_gates>>(1, blk) <= 1e-12);
}
TEST_CASE("normalised keys and queries") {
    for (std::size_t b : {3, 4})
        CHECK(check<lin<mm::titans_rule, mm::l2_loss, mm::data_gates<D>, true>>(b) <= 1e-12);
    for (std::size_t blk : {3, 4})
        CHECK(check<lin<mm::titans_rule, mm::l2_loss, mm::data_gates<D>, true>>(1, blk) <= 1e-12);
}
TEST_CASE("first-order switch") {
    for (std::size_t b : {3, 4}) CHECK(check<lin<mm::titans_rule>, true>(b) <= 1e-12);
    for (std::size_t blk : {3, 4}) CHECK(check<lin<mm::titans_rule>, true>(1, blk) <= 1e-12);
    CHECK(check<lin<mm::titans_rule>, true>(2, 6) <= 1e-12);
}
