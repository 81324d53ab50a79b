#pragma once
/// \file
/// Finite-difference helpers (float64) for the derivative tests, and a harness that checks
/// `mnemo::grad` against them.
///
/// * `central_diff`: the 4-point central stencil
///       f'(x) ~ [8 (f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))] / (12 h),
///   truncation error h^4/30 |f^(5)|, roundoff about 1.5 eps |f| / h. With the default
///   h = 1e-3 max(1, |x|) both are ~1e-12 relative for smooth O(1) functions, so relative
///   errors of 1e-7 are resolved comfortably.
/// * `rel_err(a, b, floor) = |a - b| / max(|a|, |b|, floor)`: the floor is explicit, so an
///   entry that is zero (or cancels to nearly zero) is compared in absolute terms at the
///   scale `floor` instead of producing a meaningless relative error.
/// * `compare`: the worst `rel_err` over two tensors, with where it happened.
/// * `dataset` + `check_gradients`: bind deterministic data to the symbols of an
///   expression, compile `phi` and `grad(phi, X)` for each X with `mnemo::compile<double>`,
///   and check every gradient entry against central differences of `phi` computed twice:
///   with the plan, and with the independent reference evaluator (tests/support/
///   reference_eval.hpp). The plan's gradients are also checked against the reference
///   evaluator's value of the same gradient expressions (a tight tolerance: the same
///   formula evaluated two ways).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "support/reference_eval.hpp"

namespace mnemo_test::fd {

// ---------------------------------------------------------------------------------------
// Generic numerics

/// Relative error with an explicit floor on the denominator.
inline double rel_err(double a, double b, double floor) {
    const double d = std::max({std::fabs(a), std::fabs(b), floor});
    return std::fabs(a - b) / d;
}

/// The worst entry of a comparison.
struct worst {
    double err = 0.0;     // worst rel_err
    double abs_err = 0.0; // |a - b| at that entry
    std::size_t index = 0;
    double a = 0.0, b = 0.0;
    std::size_t count = 0;  // entries compared
    void update(std::size_t i, double x, double y, double floor) {
        const double e = rel_err(x, y, floor);
        ++count;
        if (!(e <= err)) {  // also catches NaN
            err = std::isnan(e) ? INFINITY : e;
            abs_err = std::fabs(x - y);
            index = i;
            a = x;
            b = y;
        }
    }
    std::string str() const {
        std::ostringstream s;
        s.precision(3);
        s << "rel " << err << " (abs " << abs_err << ") at [" << index << "]: ";
        s.precision(17);
        s << a << " vs " << b;
        return s.str();
    }
};

/// Worst relative error between two tensors of the same shape.
inline worst compare(const ref::tensor& a, const ref::tensor& b, double floor) {
    worst w;
    if (a.shape != b.shape || a.size() != b.size()) {
        w.err = INFINITY;
        return w;
    }
    for (std::size_t i = 0; i < a.size(); ++i) w.update(i, a[i], b[i], floor);
    return w;
}

/// Largest absolute entry.
inline double max_abs(const ref::tensor& t) {
    double m = 0.0;
    for (double v : t.data) m = std::max(m, std::fabs(v));
    return m;
}

/// Default step: h_rel * max(1, |x|).
inline constexpr double default_h = 1e-3;

/// d f / d x by the 4-point central stencil, `x` perturbed in place (and restored).
/// `f()` must read `x` through whatever binds it.
template <class F>
double central_diff(double& x, F&& f, double h_rel = default_h) {
    const double x0 = x;
    const double h = h_rel * std::max(1.0, std::fabs(x0));
    x = x0 + h;
    const double fp1 = f();
    x = x0 - h;
    const double fm1 = f();
    x = x0 + 2.0 * h;
    const double fp2 = f();
    x = x0 - 2.0 * h;
    const double fm2 = f();
    x = x0;
    return (8.0 * (fp1 - fm1) - (fp2 - fm2)) / (12.0 * h);
}

/// Entry-wise gradient of the scalar function `f()` with respect to the `n` values at `p`.
template <class F>
ref::tensor gradient(double* p, const std::vector<std::size_t>& shape, F&& f, double h_rel = default_h) {
    ref::tensor g(shape);
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = central_diff(p[i], f, h_rel);
    return g;
}

/// `offset + scale * sin(1 + 0.37 n + phase)` at flat index n (the reference problems'
/// deterministic data, with an offset).
inline double det_value(std::size_t n, double phase, double scale, double offset = 0.0) {
    return offset + scale * std::sin(1.0 + 0.37 * double(n) + phase);
}

template <class X>
void det_fill(X& x, double phase, double scale, double offset = 0.0) {
    for (std::size_t n = 0; n < x.size(); ++n) x.data()[n] = det_value(n, phase, scale, offset);
}

// ---------------------------------------------------------------------------------------
// Data bound to the symbols of an expression

template <class Sym>
using data_of = xt::xtensor<double, Sym::shape::rank>;

template <class Sym>
data_of<Sym> zeros_of() {
    std::array<std::size_t, Sym::shape::rank> s{};
    for (std::size_t k = 0; k < Sym::shape::rank; ++k) s[k] = Sym::shape::dims[k];
    data_of<Sym> d(s);
    std::fill(d.begin(), d.end(), 0.0);
    return d;
}

/// One `xt::xtensor<double, rank>` per symbol, bound by `run(plan)`, copied to reference
/// bindings by `bindings()`. Every symbol gets distinct deterministic data by default
/// (phase = its position, scale 1); tests then set each one's range with `set`.
template <class... Syms>
struct dataset {
    std::tuple<data_of<Syms>...> values{zeros_of<Syms>()...};

    dataset() {
        std::size_t k = 0;
        std::apply([&](auto&... v) { ((det_fill(v, 0.9 * double(k++), 1.0)), ...); }, values);
    }

    template <class Sym>
    static constexpr std::size_t index_of() {
        constexpr std::array<bool, sizeof...(Syms)> same{std::is_same_v<Sym, Syms>...};
        for (std::size_t i = 0; i < same.size(); ++i)
            if (same[i]) return i;
        return sizeof...(Syms);
    }

    template <class Sym>
    auto& operator[](Sym) {
        static_assert(index_of<Sym>() < sizeof...(Syms), "symbol not in this dataset");
        return std::get<index_of<Sym>()>(values);
    }

    /// Set the symbol's data to offset + scale * sin(1 + 0.37 n + phase).
    template <class Sym>
    dataset& set(Sym s, double phase, double scale, double offset = 0.0) {
        det_fill((*this)[s], phase, scale, offset);
        return *this;
    }

    /// Set every entry of the symbol's data to `v` (scalars, constant tensors).
    template <class Sym>
    dataset& set_value(Sym s, double v) {
        auto& d = (*this)[s];
        std::fill(d.begin(), d.end(), v);
        return *this;
    }

    /// Evaluate the plan with every symbol bound; returns the plan's results.
    template <class Plan>
    auto run(Plan& p) {
        return std::apply([&](auto&... v) { return p((Syms{} = v)...); }, values);
    }

    ref::bindings bindings() const {
        ref::bindings b;
        std::apply([&](const auto&... v) { ((b[std::string(Syms::name())] = ref::from_xt(v)), ...); }, values);
        return b;
    }
};

// ---------------------------------------------------------------------------------------
// Gradient checks

struct tolerances {
    double fd_rel = 1e-7;       // exact gradient vs finite differences
    double ref_rel = 1e-12;     // plan vs reference evaluator (same formulas)
    double floor = 1e-6;        // rel_err floor (absolute)
    double h = default_h;       // relative step of central_diff
};

/// Worst errors of one (expression, symbol) check, recorded for the report.
struct record {
    std::string label;
    worst fd_plan, fd_ref, ref_vs_plan;
};

inline std::vector<record>& records() {
    static std::vector<record> r;
    return r;
}

/// Print every record when MNEMO_FD_REPORT is set (used to report observed errors).
struct report_at_exit {
    report_at_exit() { records(); }  // constructed first, so destroyed after this object
    ~report_at_exit() {
        if (!std::getenv("MNEMO_FD_REPORT")) return;
        for (const auto& r : records())
            std::printf("%-48s fd(plan) %-10.3g fd(ref) %-10.3g ref-vs-plan %-10.3g (n=%zu)%s%s\n", r.label.c_str(),
                        r.fd_plan.err, r.fd_ref.err, r.ref_vs_plan.err, r.fd_plan.count,
                        std::getenv("MNEMO_FD_REPORT_DETAIL") ? "\n    worst fd(plan): " : "",
                        std::getenv("MNEMO_FD_REPORT_DETAIL") ? r.fd_plan.str().c_str() : "");
    }
};
inline report_at_exit report_instance{};

namespace detail {
template <class Tuple, std::size_t... I>
std::array<ref::tensor, sizeof...(I)> tail_to_ref(const Tuple& t, std::index_sequence<I...>) {
    return {ref::from_xt(std::get<I + 1>(t))...};
}

/// What the checks need to know about one symbol X of `grad(phi, X)`.
struct wrt_info {
    std::string name;
    double* data;                    // the bound data, perturbed in place
    std::vector<std::size_t> shape;
    ref::tensor exact;               // grad(phi, X) by the plan
    ref::tensor by_reference;        // grad(phi, X) by the reference evaluator
};

/// The non-template part of `check_gradients` (kept out of the templates: compile time).
inline double run_checks(const std::string& label, const tolerances& tol, double phi_plan, double phi_ref,
                         std::vector<wrt_info>& syms, const std::function<double()>& phi_by_plan,
                         const std::function<double()>& phi_by_ref) {
    INFO(label << ": phi plan " << phi_plan << ", reference " << phi_ref);
    CHECK(std::isfinite(phi_plan));
    CHECK(rel_err(phi_plan, phi_ref, 1e-300) <= tol.ref_rel);
    double worst_fd = 0.0;
    for (auto& s : syms) {
        const std::string name = label + " d/d" + s.name;
        const double floor = tol.floor;
        record r;
        r.label = name;
        r.ref_vs_plan = compare(s.by_reference, s.exact, floor);
        r.fd_plan = compare(gradient(s.data, s.shape, phi_by_plan, tol.h), s.exact, floor);
        r.fd_ref = compare(gradient(s.data, s.shape, phi_by_ref, tol.h), s.exact, floor);
        records().push_back(r);

        INFO(name << " (floor " << floor << ")");
        INFO("  plan vs reference evaluator: " << r.ref_vs_plan.str());
        INFO("  plan vs fd(plan):            " << r.fd_plan.str());
        INFO("  plan vs fd(reference):       " << r.fd_ref.str());
        CHECK(r.ref_vs_plan.err <= tol.ref_rel);
        CHECK(r.fd_plan.err <= tol.fd_rel);
        CHECK(r.fd_ref.err <= tol.fd_rel);
        worst_fd = std::max({worst_fd, r.fd_plan.err, r.fd_ref.err});
    }
    // The differences restore the data: the plan gives the same value again.
    CHECK(phi_by_plan() == phi_plan);
    return worst_fd;
}
}  // namespace detail

/// Check `grad(phi, X)` for every X in `wrt`: compiled with `phi` into one plan, evaluated
/// on `ds`, and compared with central differences of `phi` (computed with the plan and
/// with the reference evaluator) and with the reference evaluator's value of the same
/// gradient expression. Returns the worst finite-difference error over all symbols.
template <class Phi, class... Syms, class... Wrt>
double check_gradients(const std::string& label, Phi phi, dataset<Syms...>& ds, const tolerances& tol,
                       Wrt... wrt) {
    static_assert(mnemo::shape_of<Phi>::rank == 0, "phi must be a scalar expression");
    auto p = mnemo::compile<double>(phi, mnemo::grad(phi, wrt)...);
    const auto res = ds.run(p);
    std::array<ref::tensor, sizeof...(Wrt)> exact = detail::tail_to_ref(res, std::index_sequence_for<Wrt...>{});
    const ref::bindings b0 = ds.bindings();
    std::vector<detail::wrt_info> syms;
    std::size_t i = 0;
    ((syms.push_back({std::string(wrt.name()), ds[wrt].data(), ref::shape_vec<typename Wrt::shape>(),
                      std::move(exact[i++]), ref::evaluate(mnemo::grad(phi, wrt), b0)})),
     ...);
    return detail::run_checks(
        label, tol, std::get<0>(res), ref::evaluate(phi, b0).value(), syms,
        [&] { return std::get<0>(ds.run(p)); }, [&] { return ref::evaluate(phi, ds.bindings()).value(); });
}

/// `fd::dataset` of the symbols given as values: `data_for<A, x, b>`.
template <auto... S>
using data_for = dataset<std::remove_cvref_t<decltype(S)>...>;

/// Smallest |z| over the entries of the expression `z` on the data: keeps inputs of
/// abs/relu/sign/step away from their kinks (and of huber away from |r| = delta).
template <class E>
double min_abs_entry(E z, const ref::bindings& b) {
    const ref::tensor t = ref::evaluate(z, b);
    double m = INFINITY;
    for (double v : t.data) m = std::min(m, std::fabs(v));
    return m;
}
template <class E>
double min_entry(E z, const ref::bindings& b) {
    const ref::tensor t = ref::evaluate(z, b);
    double m = INFINITY;
    for (double v : t.data) m = std::min(m, v);
    return m;
}

}  // namespace mnemo_test::fd
