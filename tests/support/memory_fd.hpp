// Finite-difference checks of a memory's meta-gradient: every entry of every
// meta-parameter, against the 4-point central difference of the outer loss.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "support/fd.hpp"

namespace memfd {

struct worst_entry {
    double err = 0;
    std::string where;
};

/// Relative error of every gradient entry against central differences of `loss()`, with
/// the floor `floor` on the denominator; returns the worst. `params` and `grads` are the
/// same parameters type.
template <class Params, class Loss>
worst_entry check_all(Params& params, const Params& grads, Loss&& loss, double floor) {
    worst_entry w;
    std::vector<std::pair<std::string, std::vector<double>>> exact;
    grads.for_each([&](const std::string& name, const auto& g) {
        exact.emplace_back(name, std::vector<double>(g.data(), g.data() + g.size()));
    });
    std::size_t k = 0;
    params.for_each_mutable([&](auto& t) {
        const auto& [name, g] = exact[k++];
        for (std::size_t i = 0; i < t.size(); ++i) {
            const double fd = mnemo_test::fd::central_diff(t.data()[i], loss);
            const double e = mnemo_test::fd::rel_err(fd, g[i], floor);
            if (e > w.err) {
                w.err = e;
                w.where = name + "[" + std::to_string(i) + "] exact " + std::to_string(g[i]) + " fd " +
                          std::to_string(fd);
            }
        }
    });
    return w;
}

}  // namespace memfd
