// Other inner losses on a linear memory with data gates (d = 6, T = 8, the reference
// problems' values, theta_max 0.1); meta-gradients against central finite differences of
// the loss, relative 1e-6 (floor 1e-6), sequential form and chunk 4:
//   - huber_loss<1, 2> (delta 1/2) with the l1 outer loss;
//   - lp_loss<3> (sum |r|^3) with mse.
// These losses have kinks: the Huber function's second derivative jumps at |r| = delta
// (so the meta-gradient jumps there), lp<3>'s third derivative at r = 0, and l1 at
// y = target. Before comparing, the test checks that no point of any entry's
// finite-difference stencil leaves the smooth piece of the loss (the signs of
// r - delta, r + delta, resp. r, of every inner residual r, and of every y - target), and
// that both branches of the Huber function are used. Two memory types (double).
#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"

namespace mm = seqtest::mm;
using huber_spec = mm::spec<6, mm::linear<6>, mm::huber_loss<1, 2>, mm::titans_rule, mm::data_gates<6>, mm::l1>;
using lp_spec = mm::spec<6, mm::linear<6>, mm::lp_loss<3>, mm::titans_rule, mm::data_gates<6>, mm::mse>;

TEST_CASE("huber_loss<1, 2> inner loss, l1 outer loss: meta-gradient equals finite differences") {
    seqtest::custom_problem<huber_spec> p(8, 0.1);
    p.hyper[mm::data_gates<6>::theta_max] = 0.1;
    for (std::size_t chunk : {1, 4}) {
        CAPTURE(chunk);
        p.options.chunk = chunk;
        // The pieces: Huber's branch of every residual (r < -delta, inside, r > delta) and
        // the sign of every y - target.
        auto side = [](const seqtest::custom_problem<huber_spec>& q) {
            std::vector<int> s = seqtest::outer_signs(q);
            for (double r : seqtest::inner_residuals(q)) s.push_back((r > 0.5) - (r < -0.5));
            return s;
        };
        const auto r = seqtest::inner_residuals(p);
        const auto inside = std::count_if(r.begin(), r.end(), [](double x) { return std::fabs(x) <= 0.5; });
        std::string first;
        const std::size_t crossings = seqtest::stencil_crossings(p, side, first);
        MESSAGE("chunk " << chunk << ": " << inside << " of " << r.size() << " residuals inside delta; "
                         << crossings << " stencils leave the smooth piece " << first);
        REQUIRE(crossings == 0);
        CHECK(inside > 0);
        CHECK(std::size_t(inside) < r.size());
        const auto w = seqtest::fd_check(p, "huber_loss<1, 2> + l1, chunk " + std::to_string(chunk));
        CHECK(w.err <= 1e-6);
    }
}

TEST_CASE("lp_loss<3> inner loss: meta-gradient equals finite differences") {
    seqtest::custom_problem<lp_spec> p(8, 0.1);
    p.hyper[mm::data_gates<6>::theta_max] = 0.1;
    for (std::size_t chunk : {1, 4}) {
        CAPTURE(chunk);
        p.options.chunk = chunk;
        auto side = [](const seqtest::custom_problem<lp_spec>& q) {
            std::vector<int> s;
            for (double r : seqtest::inner_residuals(q)) s.push_back((r > 0) - (r < 0));
            return s;
        };
        std::string first;
        const std::size_t crossings = seqtest::stencil_crossings(p, side, first);
        MESSAGE("chunk " << chunk << ": " << crossings << " stencils change the sign of a residual " << first);
        REQUIRE(crossings == 0);
        const auto w = seqtest::fd_check(p, "lp_loss<3>, chunk " + std::to_string(chunk));
        CHECK(w.err <= 1e-6);
    }
}
