// Finite-difference checks of a memory's meta-gradient: every entry of every
// meta-parameter, against the 4-point central difference of the outer loss.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "support/fd.hpp"

namespace memfd {

struct worst_entry {
    double err = 0;
    std::string where;
};

/// Relative error of every gradient entry against central differences of `loss()`, with
/// the floor `floor` on the denominator; returns the worst. `params` and `grads` are the
/// same parameters type. With `h_small` > 0, each entry's error is the smaller of its
/// errors against the differences with the relative steps fd::default_h and `h_small` (a
/// second opinion for losses whose derivatives of high order are large: the 4-point
/// stencil's truncation error falls as h^4; an error in the gradient larger than both
/// differences' errors is not hidden by the smaller of them).
template <class Params, class Loss>
worst_entry check_all(Params& params, const Params& grads, Loss&& loss, double floor, double h_small = 0) {
    worst_entry w;
    std::vector<std::pair<std::string, std::vector<double>>> exact;
    grads.for_each([&](const std::string& name, const auto& g) {
        exact.emplace_back(name, std::vector<double>(g.data(), g.data() + g.size()));
    });
    std::size_t k = 0;
    params.for_each_mutable([&](auto& t) {
        const auto& [name, g] = exact[k++];
        for (std::size_t i = 0; i < t.size(); ++i) {
            const double fd1 = mnemo_test::fd::central_diff(t.data()[i], loss);
            double fd2 = fd1, e = mnemo_test::fd::rel_err(fd1, g[i], floor);
            if (h_small > 0) {
                fd2 = mnemo_test::fd::central_diff(t.data()[i], loss, h_small);
                e = std::min(e, mnemo_test::fd::rel_err(fd2, g[i], floor));
            }
            if (!(e <= w.err)) {
                w.err = std::isnan(e) ? INFINITY : e;
                std::ostringstream s;
                s.precision(12);
                s << name << "[" << i << "] exact " << g[i] << ", fd " << fd1;
                if (h_small > 0) s << " (step " << mnemo_test::fd::default_h << "), " << fd2 << " (step " << h_small << ")";
                w.where = s.str();
            }
        }
    });
    return w;
}

/// The whole check of a reference problem: finite loss, forward and meta-gradient agree on
/// the loss, and every gradient entry matches central differences to `tolerance`.
template <class Problem>
void check_reference_problem(Problem p, double tolerance = 1e-6) {
    typename Problem::memory_type memory;
    const auto r = p.meta_gradient(memory);
    CHECK(std::isfinite(r.loss));
    CHECK(r.loss == doctest::Approx(p.loss(memory)).epsilon(1e-14));
    const auto worst = check_all(p.params, r.grads, [&] { return double(p.loss(memory)); }, 1e-6);
    MESSAGE(p.name << ": worst relative error " << worst.err << " at " << worst.where);
    CHECK(worst.err <= tolerance);
}

}  // namespace memfd
