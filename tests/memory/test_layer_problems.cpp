// The three layer problems (examples/layer_problems.hpp): every entry of the token gradient
// "X" and of every meta-parameter's gradient, from the layers' backward with an upstream
// adjoint, against 4-point central differences of the problem's own loss (float64).
// layer_vjp runs the dual form (sequential, by forward substitution), layer_vjp_chunked the
// dual form in chunks, layer_stack a linear and an MLP memory (compiled steps), stacked
// with a residual. The one-layer problems are also run with the dual form off, and with
// checkpointing, through the compiled steps.
#include <doctest/doctest.h>

#include "examples/layer_problems.hpp"
#include "support/fd.hpp"
#include "support/memory_fd.hpp"

namespace {

using mnemo_test::fd::central_diff;
using mnemo_test::fd::rel_err;

/// The worst relative error of `exact` (flat over `x`) against central differences of
/// `loss()` in every entry of `x`.
template <class Tensor, class Loss>
memfd::worst_entry check_entries(Tensor& x, const std::vector<double>& exact, Loss&& loss, const std::string& name,
                                 double floor = 1e-6) {
    memfd::worst_entry w;
    REQUIRE(exact.size() == x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double fd = central_diff(x.data()[i], loss);
        const double e = rel_err(fd, exact[i], floor);
        if (e > w.err) {
            w.err = e;
            w.where = name + "[" + std::to_string(i) + "] exact " + std::to_string(exact[i]) + " fd " +
                      std::to_string(fd);
        }
    }
    return w;
}

double squared_sum(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x * x;
    return s;
}

void check_vjp(layers::vjp_problem p, double tolerance) {
    layers::vjp_problem::memory_type memory;
    layers::gradients g;
    const double loss = p.run(memory, &g);
    CHECK(std::isfinite(loss));
    // Every meta-parameter and the tokens get a gradient.
    for (const auto& entry : g.grads) CHECK_MESSAGE(squared_sum(entry.second) > 0, entry.first);
    auto f = [&] { return p.run(memory); };
    memfd::worst_entry wp;
    std::vector<std::string> names;
    p.params.for_each([&](const std::string& name, const auto&) { names.push_back(name); });
    std::size_t k = 0;
    p.params.for_each_mutable([&](auto& t) {
        const std::string& name = names[k++];
        const auto w = check_entries(t, g.grads.at(name), f, name);
        if (w.err > wp.err) wp = w;
    });
    const auto wx = check_entries(p.tokens, g.grads.at("X"), f, "X");
    MESSAGE(p.name << " (dual form " << p.options.dual_form << ", checkpoint " << p.options.checkpoint
                   << "): worst relative error of the meta-parameters " << wp.err << " at " << wp.where
                   << ", of X " << wx.err << " at " << wx.where);
    CHECK(wp.err <= tolerance);
    CHECK(wx.err <= tolerance);
}

}  // namespace

TEST_CASE("layer_vjp: the token gradient and the meta-gradient against finite differences") {
    layers::vjp_problem p("layer_vjp", 12, 1);
    check_vjp(p, 1e-7);
    SUBCASE("compiled steps, every state kept") {
        p.options.dual_form = false;
        check_vjp(p, 1e-7);
    }
    SUBCASE("compiled steps, checkpoints every 5 tokens") {
        p.options.dual_form = false;
        p.options.checkpoint = 5;
        check_vjp(p, 1e-7);
    }
}

TEST_CASE("layer_vjp_chunked: the token gradient and the meta-gradient against finite differences") {
    layers::vjp_problem p("layer_vjp_chunked", 16, 4);
    check_vjp(p, 1e-7);
    SUBCASE("compiled chunked steps, checkpoints every 3 tokens") {
        p.options.dual_form = false;
        p.options.checkpoint = 3;
        check_vjp(p, 1e-7);
    }
}

TEST_CASE("layer_stack: two memories with a residual, against finite differences") {
    layers::stack_problem p;
    layers::stack_problem::model m;
    layers::gradients g;
    const double loss = p.run(m, &g);
    CHECK(std::isfinite(loss));
    for (const auto& entry : g.grads) CHECK_MESSAGE(squared_sum(entry.second) > 0, entry.first);
    auto f = [&] { return p.run(m); };
    // The floor of the relative error is 1e-5 here: the differences of this loss (about
    // 0.5) carry a rounding noise of about 3e-13 (measured: the stencil's result moves by
    // that much between steps h = 2.5e-4 and 4e-3), 2e-7 of the smallest entries (layer 1's
    // gate weights, about 1.5e-6). Entries below 1e-5 are thus held to 1e-12 absolute.
    const double fd_floor = 1e-5;
    memfd::worst_entry worst;
    auto check_set = [&](auto& params, const std::string& prefix) {
        std::vector<std::string> names;
        params.for_each([&](const std::string& name, const auto&) { names.push_back(name); });
        std::size_t k = 0;
        params.for_each_mutable([&](auto& t) {
            const std::string name = prefix + names[k++];
            const auto w = check_entries(t, g.grads.at(name), f, name, fd_floor);
            if (w.err > worst.err) worst = w;
        });
    };
    check_set(p.params1, "layer1.");
    check_set(p.params2, "layer2.");
    const auto wx = check_entries(p.tokens, g.grads.at("X"), f, "X", fd_floor);
    MESSAGE("layer_stack: worst relative error of the meta-parameters " << worst.err << " at " << worst.where
                                                                         << ", of X " << wx.err << " at " << wx.where);
    CHECK(worst.err <= 1e-7);
    CHECK(wx.err <= 1e-7);
}
