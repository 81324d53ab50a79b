// Helpers shared by the sequence-memory tests (tests/memory/test_*.cpp): flat copies and
// comparisons of parameter sets, states and outputs, slicing of (B, T, d) batches, and an
// independent plain-loop forward of the linear Titans memory (no mnemo expressions, no
// BLAS) used as the hand check of the library's forward.
//
// Comparison metric (documented here once): `scaled_err(a, b)` is
//     max_i |a_i - b_i| / max_i max(|a_i|, |b_i|)
// the largest difference relative to the scale of the tensor (0 when both are zero, +inf
// when an entry is not finite). For scalars it is the ordinary relative error.
// `norm_err(a, b)` is the norm-wise ||a - b||_2 / ||b||_2.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "examples/reference_problems.hpp"
#include "support/memory_fd.hpp"

namespace seqtest {

namespace mm = mnemo::memory;

inline constexpr double inf = std::numeric_limits<double>::infinity();

// ---------------------------------------------------------------------------------------
// Metrics

inline double scaled_err(const double* a, const double* b, std::size_t n) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return inf;
        num = std::max(num, std::fabs(a[i] - b[i]));
        den = std::max({den, std::fabs(a[i]), std::fabs(b[i])});
    }
    return num == 0 ? 0.0 : num / den;
}
inline double scaled_err(const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() != b.size()) return inf;
    return scaled_err(a.data(), b.data(), a.size());
}
inline double scaled_err(double a, double b) { return scaled_err(&a, &b, 1); }

inline double norm_err(const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() != b.size()) return inf;
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return inf;
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    if (num == 0) return 0.0;
    return den == 0 ? inf : std::sqrt(num / den);
}

/// Any tensor-like (xtensor, vector) as a flat vector of doubles.
template <class A>
std::vector<double> flat(const A& a) {
    return std::vector<double>(a.data(), a.data() + a.size());
}

/// The worst of several comparisons, with where it happened.
struct worst {
    double err = 0;
    std::string where;
    void update(double e, const std::string& w) {
        if (!(e <= err)) {
            err = std::isnan(e) ? inf : e;
            where = w;
        }
    }
    void update(const worst& o, const std::string& prefix = "") {
        if (!(o.err <= err)) update(o.err, prefix + o.where);
    }
};

// ---------------------------------------------------------------------------------------
// Parameter sets (meta-parameters and their gradients)

struct named {
    std::string name;
    std::vector<double> v;
};

/// Every tensor of a `parameters` object, as doubles, in `for_each` order.
template <class P>
std::vector<named> flatten(const P& p) {
    std::vector<named> out;
    p.for_each([&](const std::string& name, const auto& t) {
        out.push_back({name, std::vector<double>(t.data(), t.data() + t.size())});
    });
    return out;
}

/// The worst `scaled_err` (or `norm_err` with `normwise`) over the tensors of two
/// parameter sets, paired by name (both sets must hold the same names).
template <class PA, class PB>
worst compare_params(const PA& a, const PB& b, bool normwise = false) {
    worst w;
    const auto fa = flatten(a), fb = flatten(b);
    if (fa.size() != fb.size()) {
        w.update(inf, "different number of tensors");
        return w;
    }
    for (const auto& ta : fa) {
        const auto it = std::find_if(fb.begin(), fb.end(), [&](const named& x) { return x.name == ta.name; });
        if (it == fb.end()) {
            w.update(inf, ta.name + " missing");
            continue;
        }
        w.update(normwise ? norm_err(ta.v, it->v) : scaled_err(ta.v, it->v), ta.name);
    }
    return w;
}

/// Whether two parameter sets are equal bit for bit.
template <class P>
bool identical(const P& a, const P& b) {
    const auto fa = flatten(a), fb = flatten(b);
    if (fa.size() != fb.size()) return false;
    for (std::size_t k = 0; k < fa.size(); ++k)
        if (fa[k].v != fb[k].v) return false;
    return true;
}

/// acc += g, tensor by tensor.
template <class P>
void add_into(P& acc, const P& g) {
    const auto fg = flatten(g);
    std::size_t k = 0;
    acc.for_each_mutable([&](auto& t) {
        const auto& v = fg[k++].v;
        for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] += static_cast<typename std::decay_t<decltype(t)>::value_type>(v[i]);
    });
}

/// Sum of the squares of every entry (to show a gradient is not zero).
template <class P>
double squared_norm(const P& p) {
    double s = 0;
    for (const auto& t : flatten(p))
        for (double x : t.v) s += x * x;
    return s;
}

/// The tensor called `name` of a parameter set.
template <class P>
std::vector<double> tensor_named(const P& p, const std::string& name) {
    for (auto& t : flatten(p))
        if (t.name == name) return t.v;
    FAIL("no tensor " << name);
    return {};
}

/// Fills every tensor of a parameter set: `f(name, flat index)` gives each entry.
template <class P, class F>
void fill_by_name(P& p, F&& f) {
    std::vector<std::string> names;
    p.for_each([&](const std::string& name, const auto&) { names.push_back(name); });
    std::size_t k = 0;
    p.for_each_mutable([&](auto& t) {
        const std::string& name = names[k++];
        for (std::size_t i = 0; i < t.size(); ++i)
            t.data()[i] = static_cast<typename std::decay_t<decltype(t)>::value_type>(f(name, i));
    });
}

/// `scale * sin(1 + 0.37 n + phase)` (the reference problems' deterministic values).
inline double det(std::size_t n, double phase, double scale) { return scale * std::sin(1.0 + 0.37 * double(n) + phase); }

/// The reference problems' values by name (reference-problems.md), `m0_scale` for every M0
/// tensor (phase 0.5 + 0.4 i for M0[i]); `ln_scale` is 1 + det(9.5, 0.2). Returns NaN for
/// an unknown name (so that a test notices a meta-parameter it did not expect).
inline double reference_value(const std::string& name, std::size_t i, double m0_scale) {
    if (name.rfind("M0[", 0) == 0) return det(i, 0.5 + 0.4 * double(name[3] - '0'), m0_scale);
    if (name == "WK") return det(i, 1.5, 0.3);
    if (name == "WV") return det(i, 2.5, 0.3);
    if (name == "WQ") return det(i, 3.5, 0.3);
    if (name == "wa") return det(i, 5.5, 0.2);
    if (name == "ba") return -2.0;
    if (name == "we") return det(i, 6.5, 0.2);
    if (name == "be") return 1.0;
    if (name == "wt") return det(i, 7.5, 0.2);
    if (name == "bt") return 0.0;
    if (name == "ln_scale") return 1.0 + det(i, 9.5, 0.2);
    return std::numeric_limits<double>::quiet_NaN();
}

// ---------------------------------------------------------------------------------------
// Batches and states

/// Tokens [t0, t1) of every sequence of a (B, T, w) batch.
template <class T>
xt::xtensor<T, 3> slice_time(const xt::xtensor<T, 3>& a, std::size_t t0, std::size_t t1) {
    const std::size_t B = a.shape()[0], w = a.shape()[2];
    xt::xtensor<T, 3> out(std::array<std::size_t, 3>{B, t1 - t0, w});
    for (std::size_t s = 0; s < B; ++s)
        for (std::size_t t = t0; t < t1; ++t)
            for (std::size_t i = 0; i < w; ++i) out(s, t - t0, i) = a(s, t, i);
    return out;
}

/// Sequence s of a batch, as a batch of one.
template <class T>
xt::xtensor<T, 3> sequence_of(const xt::xtensor<T, 3>& a, std::size_t s) {
    const std::size_t L = a.shape()[1], w = a.shape()[2];
    xt::xtensor<T, 3> out(std::array<std::size_t, 3>{1, L, w});
    for (std::size_t t = 0; t < L; ++t)
        for (std::size_t i = 0; i < w; ++i) out(0, t, i) = a(s, t, i);
    return out;
}

/// A (B, L, w) batch of `offset + scale * sin(1 + 0.37 n + phase)`.
inline xt::xtensor<double, 3> det_batch(std::size_t B, std::size_t L, std::size_t w, double phase, double scale) {
    xt::xtensor<double, 3> a(std::array<std::size_t, 3>{B, L, w});
    for (std::size_t n = 0; n < a.size(); ++n) a.data()[n] = det(n, phase, scale);
    return a;
}

/// Compares two vectors of states (same sizes, same positions), values by `scaled_err` over
/// [from, to) of each state (the whole state by default).
template <class S>
worst compare_states(const std::vector<S>& a, const std::vector<S>& b, std::size_t from = 0,
                     std::size_t to = std::size_t(-1)) {
    worst w;
    if (a.size() != b.size()) {
        w.update(inf, "different number of states");
        return w;
    }
    for (std::size_t s = 0; s < a.size(); ++s) {
        if (a[s].position != b[s].position) w.update(inf, "position of state " + std::to_string(s));
        const std::size_t e = std::min<std::size_t>(to, a[s].values.size());
        if (a[s].values.size() != b[s].values.size()) {
            w.update(inf, "size of state " + std::to_string(s));
            continue;
        }
        std::vector<double> va(a[s].values.begin() + from, a[s].values.begin() + e);
        std::vector<double> vb(b[s].values.begin() + from, b[s].values.begin() + e);
        w.update(scaled_err(va, vb), "state " + std::to_string(s));
    }
    return w;
}

/// Everything two results of `sequence_memory` hold, compared: loss, outputs, surprise,
/// final states and (for meta_gradient results) gradients and initial adjoints.
template <class RA, class RB>
worst compare_results(const RA& a, const RB& b, bool backward) {
    worst w;
    w.update(scaled_err(double(a.loss), double(b.loss)), "loss");
    w.update(a.outputs.shape() == b.outputs.shape() ? scaled_err(flat(a.outputs), flat(b.outputs)) : inf, "outputs");
    w.update(a.surprise.shape() == b.surprise.shape() ? scaled_err(flat(a.surprise), flat(b.surprise)) : inf,
             "surprise");
    w.update(compare_states(a.states, b.states), "final ");
    if (backward) {
        w.update(compare_params(a.grads, b.grads), "grad ");
        w.update(compare_states(a.initial_adjoints, b.initial_adjoints), "initial adjoint ");
    }
    return w;
}

/// Whether two results are equal bit for bit.
template <class R>
bool identical_results(const R& a, const R& b, bool backward) {
    auto same_states = [](const auto& x, const auto& y) {
        if (x.size() != y.size()) return false;
        for (std::size_t s = 0; s < x.size(); ++s)
            if (x[s].values != y[s].values || x[s].position != y[s].position) return false;
        return true;
    };
    bool same = a.loss == b.loss && flat(a.outputs) == flat(b.outputs) && flat(a.surprise) == flat(b.surprise) &&
                same_states(a.states, b.states);
    if (backward) same = same && identical(a.grads, b.grads) && same_states(a.initial_adjoints, b.initial_adjoints);
    return same;
}

// ---------------------------------------------------------------------------------------
// The linear Titans memory by hand

struct gates_d {
    double eta, alpha, theta;
};
inline double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

/// Data gates by hand: alpha = sigmoid(wa.x + ba), eta = sigmoid(we.x + be),
/// theta = theta_max sigmoid(wt.x + bt).
struct data_gates_d {
    std::size_t d;
    const double *wa, *we, *wt;
    double ba, be, bt, theta_max;
    gates_d operator()(const double* x) const {
        double za = ba, ze = be, zt = bt;
        for (std::size_t i = 0; i < d; ++i) {
            za += wa[i] * x[i];
            ze += we[i] * x[i];
            zt += wt[i] * x[i];
        }
        return {sigmoid(ze), sigmoid(za), theta_max * sigmoid(zt)};
    }
};
struct const_gates_d {
    double eta, alpha, theta;
    gates_d operator()(const double*) const { return {eta, alpha, theta}; }
};

struct hand_run {
    double loss = 0;
    std::vector<double> y;               // (T, d): the retrievals
    std::vector<double> surprise;        // (T): the inner loss at each token
    std::vector<std::vector<double>> g;  // per token: the inner gradient used (d x d)
    std::vector<double> M, S;            // after the last token
};

/// One sequence of the linear Titans memory, with plain loops:
///   k = WK x, v = WV x, q = WQ x; G = the memory at the start of the token's chunk
///   (chunk 1: M_{t-1}); g = 2 (G k - v) k^T; S = eta S - theta g; M = (1 - alpha) M + S;
///   y = M q; loss = loss_scale * sum_t mean_i (y - target)^2 (|y - target| with `l1`).
/// With `frozen`, g_t is taken from it instead (the first-order loss); the inner loss
/// reported is still that at G.
template <class Gates>
hand_run linear_titans(std::size_t d, std::size_t T, const double* M0, const double* WK, const double* WV,
                       const double* WQ, const double* X, const double* Y, const Gates& gates, std::size_t chunk,
                       double loss_scale, const std::vector<std::vector<double>>* frozen = nullptr,
                       bool l1 = false) {
    hand_run r;
    std::vector<double> M(M0, M0 + d * d), S(d * d, 0.0), G = M, k(d), v(d), q(d), e(d), g(d * d);
    r.y.assign(T * d, 0.0);
    r.surprise.assign(T, 0.0);
    for (std::size_t t = 0; t < T; ++t) {
        const double* x = X + t * d;
        if (t % chunk == 0) G = M;
        for (std::size_t i = 0; i < d; ++i) {
            k[i] = v[i] = q[i] = 0;
            for (std::size_t j = 0; j < d; ++j) {
                k[i] += WK[i * d + j] * x[j];
                v[i] += WV[i * d + j] * x[j];
                q[i] += WQ[i * d + j] * x[j];
            }
        }
        double inner = 0;
        for (std::size_t i = 0; i < d; ++i) {
            double gk = 0;
            for (std::size_t j = 0; j < d; ++j) gk += G[i * d + j] * k[j];
            e[i] = gk - v[i];
            inner += e[i] * e[i];
        }
        r.surprise[t] = inner;
        for (std::size_t i = 0; i < d; ++i)
            for (std::size_t j = 0; j < d; ++j) g[i * d + j] = 2.0 * e[i] * k[j];
        if (frozen) g = (*frozen)[t];
        r.g.push_back(g);
        const gates_d gt = gates(x);
        for (std::size_t n = 0; n < d * d; ++n) {
            S[n] = gt.eta * S[n] - gt.theta * g[n];
            M[n] = (1.0 - gt.alpha) * M[n] + S[n];
        }
        double lt = 0;
        for (std::size_t i = 0; i < d; ++i) {
            double yi = 0;
            for (std::size_t j = 0; j < d; ++j) yi += M[i * d + j] * q[j];
            r.y[t * d + i] = yi;
            const double diff = yi - Y[t * d + i];
            lt += l1 ? std::fabs(diff) : diff * diff;
        }
        r.loss += loss_scale * lt / double(d);
    }
    r.M = M;
    r.S = S;
    return r;
}

}  // namespace seqtest

namespace seqtest {

/// One reference problem in float against the same problem in double: loss (relative),
/// outputs and every gradient tensor (norm-wise, ||g_f - g_d|| / ||g_d||). Returns the worst.
template <class PF, class PD>
worst float_vs_double(const PF& pf, const PD& pd) {
    static_assert(std::is_same_v<typename PF::memory_type::parameters_type::meta_list,
                                 typename PD::memory_type::parameters_type::meta_list>);
    typename PF::memory_type mf;
    typename PD::memory_type md;
    const auto rf = pf.meta_gradient(mf);
    const auto rd = pd.meta_gradient(md);
    worst w;
    w.update(scaled_err(double(rf.loss), double(rd.loss)), "loss");
    w.update(norm_err(flat(rf.outputs), flat(rd.outputs)), "outputs");
    std::ostringstream per_tensor;
    per_tensor.precision(3);
    const auto gf = flatten(rf.grads), gd = flatten(rd.grads);
    for (std::size_t k = 0; k < gf.size() && k < gd.size(); ++k) {
        const double e = gf[k].name == gd[k].name ? norm_err(gf[k].v, gd[k].v) : inf;
        w.update(e, "grad " + gf[k].name);
        per_tensor << " " << gf[k].name << " " << e;
    }
    if (gf.size() != gd.size()) w.update(inf, "different number of gradient tensors");
    MESSAGE(pd.name << " float vs double: loss " << rd.loss << " (float " << rf.loss << "), worst " << w.err << " at "
                    << w.where << "; per gradient tensor:" << per_tensor.str());
    // Sanity: the double gradient is not zero (a norm-wise comparison of zeros says nothing).
    CHECK(squared_norm(rd.grads) > 0);
    return w;
}

}  // namespace seqtest

namespace seqtest {

/// A small problem on any memory spec (double): the reference problems' values by name
/// (`reference_value`, every M0 tensor scaled by `m0_scale`), tokens det((1, T, d), 4.5, 1)
/// and targets det((1, T, d_out), 8.5, 1). Hyperparameters are left to the test.
template <class Spec>
struct custom_problem {
    using memory_type = mm::sequence_memory<Spec, double>;
    typename memory_type::parameters_type params;
    typename memory_type::hyperparameters_type hyper;
    xt::xtensor<double, 3> tokens, targets;
    mm::run_options options;

    custom_problem(std::size_t T, double m0_scale) {
        fill_by_name(params, [&](const std::string& name, std::size_t i) { return reference_value(name, i, m0_scale); });
        params.for_each([](const std::string& name, const auto& t) {
            for (std::size_t i = 0; i < t.size(); ++i) {
                INFO("meta-parameter " << name << " has no reference value");
                REQUIRE(std::isfinite(double(t.data()[i])));
            }
        });
        tokens = det_batch(1, T, Spec::d, 4.5, 1.0);
        targets = det_batch(1, T, memory_type::d_out, 8.5, 1.0);
    }
};

/// Names of the gradient tensors that are exactly zero.
template <class P>
std::string zero_tensors(const P& g) {
    std::string z;
    for (const auto& t : flatten(g))
        if (std::all_of(t.v.begin(), t.v.end(), [](double x) { return x == 0.0; })) z += " " + t.name;
    return z;
}

}  // namespace seqtest

namespace seqtest {

/// The meta-gradient of a custom problem against central differences of its loss (every
/// entry of every meta-parameter; `floor` on the denominator). Also checks that the loss of
/// meta_gradient is that of forward, and that every gradient tensor is non-zero.
template <class Spec>
memfd::worst_entry fd_check(custom_problem<Spec>& p, const std::string& label, double floor = 1e-6) {
    typename custom_problem<Spec>::memory_type memory;
    const auto r = memory.meta_gradient(p.params, p.hyper, p.tokens, p.targets, p.options);
    const double loss = memory.forward(p.params, p.hyper, p.tokens, p.targets, p.options).loss;
    CHECK(std::isfinite(r.loss));
    CHECK(r.loss == loss);
    const std::string zeros = zero_tensors(r.grads);
    INFO(label << ": gradient tensors that are exactly zero:" << zeros);
    CHECK(zeros.empty());
    const auto w = memfd::check_all(
        p.params, r.grads, [&] { return double(memory.forward(p.params, p.hyper, p.tokens, p.targets, p.options).loss); },
        floor);
    MESSAGE(label << ": loss " << r.loss << ", worst relative error against fd " << w.err << " at " << w.where);
    return w;
}

}  // namespace seqtest

namespace seqtest {

/// For a linear memory: the inner residuals r_t = G_t k_t - v_t of every token (T x d),
/// G_t being the memory at which token t's inner gradient is taken (the memory at the start
/// of its chunk), read from the library's states after each prefix (the chunked form, which
/// records G). Used to keep finite differences away from the kinks of an inner loss.
template <class Spec>
std::vector<double> inner_residuals(const custom_problem<Spec>& p) {
    using memory_t = typename custom_problem<Spec>::memory_type;
    using sy = mm::step_symbols<Spec>;
    constexpr std::size_t d = Spec::d, m = memory_t::memory_size;
    static_assert(memory_t::n == 1 && m == d * d, "a linear memory");
    memory_t memory;
    const std::size_t T = p.tokens.shape()[1], b = p.options.chunk;
    std::vector<double> r;
    for (std::size_t t = 0; t < T; ++t) {
        std::vector<double> G(p.params.template m0<0>().data(), p.params.template m0<0>().data() + m);
        if (t > 0) {
            mm::run_options o = p.options;
            o.chunked_form = true;
            const auto s = memory.forward(p.params, p.hyper, slice_time(p.tokens, 0, t), slice_time(p.targets, 0, t), o);
            const auto& v = s.states[0].values;
            const std::size_t part = t % b == 0 ? 0 : 2;
            G.assign(v.begin() + part * m, v.begin() + (part + 1) * m);
        }
        const double* x = p.tokens.data() + t * d;
        const double* WK = p.params[typename sy::wk{}].data();
        const double* WV = p.params[typename sy::wv{}].data();
        for (std::size_t i = 0; i < d; ++i) {
            double gk = 0, v = 0;
            for (std::size_t j = 0; j < d; ++j) {
                double k = 0;
                for (std::size_t l = 0; l < d; ++l) k += WK[j * d + l] * x[l];
                gk += G[i * d + j] * k;
                v += WV[i * d + j] * x[j];
            }
            r.push_back(gk - v);
        }
    }
    return r;
}

/// min_i |y_i - target_i| over all tokens (the distance of an l1 outer loss from its kinks).
template <class Spec>
double outer_margin(const custom_problem<Spec>& p) {
    typename custom_problem<Spec>::memory_type memory;
    const auto r = memory.forward(p.params, p.hyper, p.tokens, p.targets, p.options);
    double m = inf;
    for (std::size_t n = 0; n < r.outputs.size(); ++n)
        m = std::min(m, std::fabs(r.outputs.data()[n] - p.targets.data()[n]));
    return m;
}

}  // namespace seqtest

namespace seqtest {

/// Finite differences of a loss with kinks are only meaningful when no point of the stencil
/// leaves the smooth piece of the loss that holds the unperturbed point. `side(p)` returns
/// signs that identify that piece (e.g. the signs of y - target for an l1 loss); this counts
/// the meta-parameter entries whose stencil (the points x +- h, x +- 2h of
/// `mnemo_test::fd::central_diff`) changes any of them, and names the first.
template <class Spec, class Side>
std::size_t stencil_crossings(custom_problem<Spec>& p, Side&& side, std::string& first) {
    const std::vector<int> base = side(p);
    std::vector<std::string> names;
    p.params.for_each([&](const std::string& name, const auto&) { names.push_back(name); });
    std::size_t count = 0, k = 0;
    p.params.for_each_mutable([&](auto& t) {
        const std::string& name = names[k++];
        for (std::size_t i = 0; i < t.size(); ++i) {
            double& x = t.data()[i];
            const double x0 = x, h = mnemo_test::fd::default_h * std::max(1.0, std::fabs(x0));
            for (double m : {-2.0, -1.0, 1.0, 2.0}) {
                x = x0 + m * h;
                if (side(p) != base) {
                    if (count == 0) first = name + "[" + std::to_string(i) + "]";
                    ++count;
                    break;
                }
            }
            x = x0;
        }
    });
    return count;
}

/// The signs of y - target of every output (the pieces of an l1 outer loss).
template <class Spec>
std::vector<int> outer_signs(const custom_problem<Spec>& p) {
    typename custom_problem<Spec>::memory_type memory;
    const auto r = memory.forward(p.params, p.hyper, p.tokens, p.targets, p.options);
    std::vector<int> s;
    for (std::size_t n = 0; n < r.outputs.size(); ++n) {
        const double e = r.outputs.data()[n] - p.targets.data()[n];
        s.push_back((e > 0) - (e < 0));
    }
    return s;
}

}  // namespace seqtest
