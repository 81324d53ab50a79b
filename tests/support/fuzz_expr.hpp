// Random well-shaped expressions, generated at compile time, and the check of their first
// and mixed second derivatives against central differences (tests/expr/test_fuzz_derivatives*.cpp).
//
// * The generator. `fuzz::generated<Seed>` is one expression, a pure function of `Seed`: a
//   constexpr splitmix64 stream drives every choice (result shape, depth 2-4, operation at
//   each node, depth of each operand), through template arguments, so each seed is one
//   type. The symbols: matrix A (3, 4), vectors x (4) and y (3), scalar s. The generator
//   works top-down: asked for an expression of a shape (scalar, (3), (4), (3, 4), (4, 3),
//   (3, 3), (4, 4)), it picks an operation among those that produce that shape and asks for
//   operands of the shapes the operation needs, so every expression is well-shaped by
//   construction. The operations: smooth elementwise functions (tanh, sigmoid, silu, gelu,
//   gelu_exact, erf, softplus, square, ipow<3>, unary minus; exp, log and sqrt on tamed
//   arguments, see below), piecewise ones (abs, relu, huber with a constant or a learned
//   delta), +, -, hadamard, division, scalar broadcasting (scalar * tensor, tensor + scalar,
//   fill), matrix-vector and matrix-matrix products, transposes, outer, dot, sum, mean,
//   squared_norm and l2_normalize. The result e is reduced to the scalar
//   f = sum(w * e), w a symbol of e's shape.
// * Numerically tame. Arguments that could reach a pole are wrapped: exp(tanh(a)),
//   exp(-a^2), log(1 + a^2), sqrt(1 + a^2), a / (1 + b^2), huber's delta 1/2 or
//   1/4 + b^2. What remains, the kinks of abs, relu and huber and the norm under
//   l2_normalize, is guarded at run time: `guards_of<F>` collects, from f's type, the
//   arguments of those operations (and of every log, sqrt and divisor); data are accepted
//   only when no point of any finite-difference stencil changes the sign of a kink's
//   argument and every positive argument stays above a margin (else the data are drawn
//   again with the next data seed).
// * Data: several random points per expression (the plans are compiled once, so points cost
//   run time only), uniform values from a run-time splitmix64 stream seeded by the
//   expression's seed, the point and the attempt: A in [-0.7, 0.7], x, y, s in [-1.2, 1.2],
//   w and the directions in [-1, 1].
// * The check (`check_expression<Seed>`): grad(f, X) for every symbol X of f (and w), and
//   grad(sum(grad(f, M) * U_M), K) for every symbol M of f and every symbol K of that
//   contraction, by the method of fd::check_gradients (tests/support/fd.hpp): the plan's
//   gradients against central differences of the plan and of the reference evaluator, and
//   against the reference evaluator's value of the same gradient expressions, with the
//   tolerances of `fuzz_tolerances` (relative 1e-6 against the differences at both orders,
//   1e-8 between plan and reference, floor 1e-5 times the scale of the check). Every label,
//   and so every failure, names the seed, the data seed and the expression (to_string).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "support/fd.hpp"

#ifndef MNEMO_FUZZ_SEED
#define MNEMO_FUZZ_SEED 0
#endif

namespace mnemo_test::fuzz {

// ---------------------------------------------------------------------------------------
// The pseudo-random stream (constexpr, so usable in template arguments)

constexpr std::uint64_t splitmix64(std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/// The `k`-th independent stream derived from `r` (one per operand, per choice).
constexpr std::uint64_t fork(std::uint64_t r, std::uint64_t k) { return splitmix64(r ^ (0xd1b54a32d192ed03ULL * (k + 1))); }
/// A number in [0, n).
constexpr std::uint64_t below(std::uint64_t r, std::uint64_t n) { return (r >> 16) % n; }

/// The run-time stream of the data.
struct rng {
    std::uint64_t state;
    double uniform(double lo, double hi) {
        state = splitmix64(state);
        return lo + (hi - lo) * (double(state >> 11) * 0x1.0p-53);
    }
};

// ---------------------------------------------------------------------------------------
// Symbols and shapes

inline constexpr auto A = mnemo::matrix<"A", 3, 4>;
inline constexpr auto x = mnemo::vector<"x", 4>;
inline constexpr auto y = mnemo::vector<"y", 3>;
inline constexpr auto s = mnemo::scalar<"s">;
// The directions of the second-order checks, one per symbol.
inline constexpr auto UA = mnemo::matrix<"UA", 3, 4>;
inline constexpr auto Ux = mnemo::vector<"Ux", 4>;
inline constexpr auto Uy = mnemo::vector<"Uy", 3>;
inline constexpr auto Us = mnemo::scalar<"Us">;

using A_t = std::remove_cv_t<decltype(A)>;
using x_t = std::remove_cv_t<decltype(x)>;
using y_t = std::remove_cv_t<decltype(y)>;
using s_t = std::remove_cv_t<decltype(s)>;

/// The shapes an expression can be asked for.
enum class kind : int { s, v3, v4, m34, m43, m33, m44 };
inline constexpr int kinds = 7;

template <kind K>
struct shape_of_kind;
template <> struct shape_of_kind<kind::s> { using type = mnemo::shape<>; };
template <> struct shape_of_kind<kind::v3> { using type = mnemo::shape<3>; };
template <> struct shape_of_kind<kind::v4> { using type = mnemo::shape<4>; };
template <> struct shape_of_kind<kind::m34> { using type = mnemo::shape<3, 4>; };
template <> struct shape_of_kind<kind::m43> { using type = mnemo::shape<4, 3>; };
template <> struct shape_of_kind<kind::m33> { using type = mnemo::shape<3, 3>; };
template <> struct shape_of_kind<kind::m44> { using type = mnemo::shape<4, 4>; };
template <kind K>
using shape_t = typename shape_of_kind<K>::type;

/// A tensor kind (not the scalar), for the operands of reductions.
constexpr kind tensor_kind(std::uint64_t r) { return kind(1 + int(below(r, kinds - 1))); }
constexpr kind vector_kind(std::uint64_t r) { return below(r, 2) ? kind::v3 : kind::v4; }

// ---------------------------------------------------------------------------------------
// The generator

template <std::uint64_t R, int D, kind K>
constexpr auto gen();

/// Depth of a second operand: anything below the node's.
template <std::uint64_t R, int D>
inline constexpr int sub_depth = int(below(R, std::uint64_t(D)));

template <std::uint64_t R>
constexpr auto constant() {
    constexpr auto i = below(R, 5);
    if constexpr (i == 0) return mnemo::c<1, 2>;
    else if constexpr (i == 1) return mnemo::c<3, 2>;
    else if constexpr (i == 2) return mnemo::c<-2, 3>;
    else if constexpr (i == 3) return mnemo::c<2>;
    else return mnemo::c<-1, 4>;
}

/// Depth 0: the symbol of the shape (or something as small).
template <std::uint64_t R, kind K>
constexpr auto leaf() {
    if constexpr (K == kind::s) {
        if constexpr (below(R, 6) == 0) return constant<fork(R, 1)>();
        else return s;
    } else if constexpr (K == kind::v3) {
        if constexpr (below(R, 8) == 0) return mnemo::fill<mnemo::shape<3>>(s);
        else return y;
    } else if constexpr (K == kind::v4) {
        if constexpr (below(R, 8) == 0) return mnemo::fill<mnemo::shape<4>>(s);
        else return x;
    } else if constexpr (K == kind::m34) return A;
    else if constexpr (K == kind::m43) return mnemo::transpose(A);
    else if constexpr (K == kind::m33) {
        if constexpr (below(R, 2) == 0) return A * mnemo::transpose(A);
        else return mnemo::outer(y, y);
    } else {
        if constexpr (below(R, 2) == 0) return mnemo::transpose(A) * A;
        else return mnemo::outer(x, x);
    }
}

/// A smooth elementwise function of `a`, poles kept away.
template <std::uint64_t R, class E>
constexpr auto smooth_unary(E a) {
    constexpr auto i = below(R, 14);
    if constexpr (i == 0) return mnemo::tanh(a);
    else if constexpr (i == 1) return mnemo::sigmoid(a);
    else if constexpr (i == 2) return mnemo::silu(a);
    else if constexpr (i == 3) return mnemo::gelu(a);
    else if constexpr (i == 4) return mnemo::gelu_exact(a);
    else if constexpr (i == 5) return mnemo::erf(a);
    else if constexpr (i == 6) return mnemo::softplus(a);
    else if constexpr (i == 7) return mnemo::square(a);
    else if constexpr (i == 8) return mnemo::ipow<3>(a);
    else if constexpr (i == 9) return mnemo::exp(mnemo::tanh(a));
    else if constexpr (i == 10) return mnemo::exp(-mnemo::square(a));
    else if constexpr (i == 11) return mnemo::log(mnemo::c<1> + mnemo::square(a));
    else if constexpr (i == 12) return mnemo::sqrt(mnemo::c<1> + mnemo::square(a));
    else return -a;
}

/// A piecewise function of `a` (its kinks are guarded at run time).
template <std::uint64_t R, int D, class E>
constexpr auto piecewise(E a) {
    constexpr auto i = below(R, 4);
    if constexpr (i == 0) return mnemo::abs(a);
    else if constexpr (i == 1) return mnemo::relu(a);
    else if constexpr (i == 2) return mnemo::huber(a, mnemo::c<1, 2>);
    else return mnemo::huber(a, mnemo::c<1, 4> + mnemo::square(gen<fork(R, 1), sub_depth<fork(R, 2), D>, kind::s>()));
}

/// Two operands of the same shape.
template <std::uint64_t R, int D, kind K>
constexpr auto binary() {
    constexpr auto a = gen<fork(R, 1), D - 1, K>();
    constexpr auto b = gen<fork(R, 2), sub_depth<fork(R, 3), D>, K>();
    constexpr auto i = below(R, 5);
    if constexpr (i == 0 || (i == 1 && std::is_same_v<decltype(a), decltype(b)>)) return a + b;  // never a - a
    else if constexpr (i == 1) return a - b;
    else if constexpr (i == 2) return mnemo::hadamard(a, b);
    else if constexpr (i == 3) return b / (mnemo::c<1> + mnemo::square(a));
    else return mnemo::hadamard(b, a) + a;
}

/// A scalar and a tensor (broadcasting).
template <std::uint64_t R, int D, kind K>
constexpr auto broadcast() {
    constexpr bool scalar_deep = below(fork(R, 4), 2) == 0;
    constexpr auto t = gen<fork(R, 1), scalar_deep ? sub_depth<fork(R, 3), D> : D - 1, K>();
    constexpr auto c = gen<fork(R, 2), scalar_deep ? D - 1 : sub_depth<fork(R, 3), D>, kind::s>();
    constexpr auto i = below(R, 5);
    if constexpr (i == 0 || i == 1) return c * t;
    else if constexpr (i == 2) return t + c;
    else if constexpr (i == 3) return c - t;
    else return mnemo::hadamard(mnemo::fill<shape_t<K>>(c), t) / (mnemo::c<1> + mnemo::square(c));
}

/// The operations particular to the shape: products, transposes, outer, reductions.
template <std::uint64_t R, int D, kind K>
constexpr auto structural() {
    constexpr std::uint64_t r1 = fork(R, 1), r2 = fork(R, 2);
    constexpr int d2 = sub_depth<fork(R, 3), D>;
    constexpr bool swap = below(fork(R, 4), 2) == 0;  // which operand gets the full depth
    constexpr int da = swap ? d2 : D - 1, db = swap ? D - 1 : d2;
    constexpr auto i = below(R, 4);
    if constexpr (K == kind::s) {
        constexpr kind T = tensor_kind(fork(R, 5));
        if constexpr (i == 0) return mnemo::sum(gen<r1, D - 1, T>());
        else if constexpr (i == 1) return mnemo::mean(gen<r1, D - 1, T>());
        else if constexpr (i == 2) return mnemo::squared_norm(gen<r1, D - 1, T>());
        else {
            constexpr kind V = vector_kind(fork(R, 5));
            return mnemo::dot(gen<r1, da, V>(), gen<r2, db, V>());
        }
    } else if constexpr (K == kind::v3) {
        if constexpr (i == 0) return gen<r1, da, kind::m34>() * gen<r2, db, kind::v4>();
        else if constexpr (i == 1) return gen<r1, da, kind::m33>() * gen<r2, db, kind::v3>();
        else if constexpr (i == 2) return mnemo::transpose(gen<r1, da, kind::m43>()) * gen<r2, db, kind::v4>();
        else return mnemo::l2_normalize(gen<r1, D - 1, kind::v3>());
    } else if constexpr (K == kind::v4) {
        if constexpr (i == 0) return gen<r1, da, kind::m43>() * gen<r2, db, kind::v3>();
        else if constexpr (i == 1) return mnemo::transpose(gen<r1, da, kind::m34>()) * gen<r2, db, kind::v3>();
        else if constexpr (i == 2) return gen<r1, da, kind::m44>() * gen<r2, db, kind::v4>();
        else return mnemo::l2_normalize(gen<r1, D - 1, kind::v4>());
    } else if constexpr (K == kind::m34) {
        if constexpr (i == 0) return mnemo::outer(gen<r1, da, kind::v3>(), gen<r2, db, kind::v4>());
        else if constexpr (i == 1) return gen<r1, da, kind::m33>() * gen<r2, db, kind::m34>();
        else if constexpr (i == 2) return gen<r1, da, kind::m34>() * gen<r2, db, kind::m44>();
        else return mnemo::transpose(gen<r1, D - 1, kind::m43>());
    } else if constexpr (K == kind::m43) {
        if constexpr (i == 0) return mnemo::outer(gen<r1, da, kind::v4>(), gen<r2, db, kind::v3>());
        else if constexpr (i == 1) return mnemo::transpose(gen<r1, D - 1, kind::m34>());
        else if constexpr (i == 2) return gen<r1, da, kind::m44>() * gen<r2, db, kind::m43>();
        else return gen<r1, da, kind::m43>() * gen<r2, db, kind::m33>();
    } else if constexpr (K == kind::m33) {
        if constexpr (i == 0) return gen<r1, da, kind::m34>() * gen<r2, db, kind::m43>();
        else if constexpr (i == 1) return mnemo::outer(gen<r1, da, kind::v3>(), gen<r2, db, kind::v3>());
        else if constexpr (i == 2) return gen<r1, da, kind::m34>() * mnemo::transpose(gen<r2, db, kind::m34>());
        else return gen<r1, da, kind::m33>() * gen<r2, db, kind::m33>();
    } else {
        if constexpr (i == 0) return gen<r1, da, kind::m43>() * gen<r2, db, kind::m34>();
        else if constexpr (i == 1) return mnemo::outer(gen<r1, da, kind::v4>(), gen<r2, db, kind::v4>());
        else if constexpr (i == 2) return mnemo::transpose(gen<r1, da, kind::m34>()) * gen<r2, db, kind::m34>();
        else return gen<r1, da, kind::m44>() * gen<r2, db, kind::m44>();
    }
}

/// An expression of shape `K` and depth at most `D` (exactly `D` along its first operands,
/// up to the builders' simplifications).
template <std::uint64_t R, int D, kind K>
constexpr auto gen() {
    if constexpr (D <= 0) return leaf<R, K>();
    else {
        constexpr auto cat = below(R, 16);
        constexpr std::uint64_t r = fork(R, 9);
        if constexpr (cat < 5) return structural<r, D, K>();
        else if constexpr (cat < 8) return smooth_unary<r>(gen<fork(r, 7), D - 1, K>());
        else if constexpr (cat == 8) return piecewise<r, D>(gen<fork(r, 7), D - 1, K>());
        else if constexpr (cat < 13) return binary<r, D, K>();
        else if constexpr (K == kind::s) return structural<r, D, K>();
        else return broadcast<r, D, K>();
    }
}

/// The expression of a seed: e of a random shape and depth 2-4, and f = sum(w * e).
template <std::uint64_t Seed>
struct generated {
    static constexpr std::uint64_t seed = Seed;
    static constexpr std::uint64_t r0 = splitmix64(Seed ^ 0x6a09e667f3bcc909ULL);
    static constexpr int depth = 2 + int(below(fork(r0, 1), 3));
    static constexpr kind result_kind = kind(below(fork(r0, 2), kinds));
    using result_shape = shape_t<result_kind>;
    static constexpr auto w = mnemo::symbol<"w", result_shape>{};
    static constexpr auto e = gen<fork(r0, 3), depth, result_kind>();
    static constexpr auto f = mnemo::sum(mnemo::hadamard(w, e));
};

// ---------------------------------------------------------------------------------------
// Guards: where the data must keep away from kinks and poles

/// `Z`'s entries must keep their sign over every stencil (a kink at 0); with `Positive`,
/// they must also be >= `margin` (an argument of log, sqrt or l2_normalize's norm).
template <class Z, bool Positive>
struct guard {};

template <class E>
struct guards_of {
    using type = mnemo::detail::list<>;
};
template <class Op, class... Args>
struct own_guards {
    using type = mnemo::detail::list<>;
};
template <class X>
struct own_guards<mnemo::abs_op, X> {
    using type = mnemo::detail::list<guard<X, false>>;
};
template <class X>
struct own_guards<mnemo::relu_op, X> {
    using type = mnemo::detail::list<guard<X, false>>;
};
template <class X>
struct own_guards<mnemo::log_op, X> {
    using type = mnemo::detail::list<guard<X, true>>;
};
template <class X>
struct own_guards<mnemo::sqrt_op, X> {
    using type = mnemo::detail::list<guard<X, true>>;
};
template <class N, class Dn>
struct own_guards<mnemo::div_op, N, Dn> {
    using type = mnemo::detail::list<guard<Dn, false>>;
};
/// Huber: the kink at |r| = delta (the sign(r) in its derivatives only counts where
/// |r| > delta), and a positive delta.
template <class R, class Dl>
struct own_guards<mnemo::huber_op, R, Dl> {
    using inside = decltype(mnemo::abs(R{}) - Dl{});
    using type = mnemo::detail::list<guard<inside, false>, guard<Dl, true>>;
};
template <class Op, class... Args>
struct guards_of<mnemo::node<Op, Args...>> {
    using type = typename mnemo::detail::list_cat<typename own_guards<Op, Args...>::type,
                                                  typename guards_of<Args>::type...>::type;
};

/// The guards of an expression, evaluated by the reference evaluator.
struct guard_values {
    std::vector<std::function<ref::tensor(const ref::bindings&)>> eval;
    std::vector<bool> positive;
    std::vector<std::string> text;
};
template <class... G>
struct guard_list_to_values;
template <class... Z, bool... P>
struct guard_list_to_values<mnemo::detail::list<guard<Z, P>...>> {
    static guard_values make() {
        guard_values v;
        ((v.eval.push_back([](const ref::bindings& b) { return ref::evaluate(Z{}, b); }), v.positive.push_back(P),
          v.text.push_back(mnemo::to_string(Z{}))),
         ...);
        return v;
    }
};

inline constexpr double positive_margin = 0.05;

/// Signs of every guard entry (0 where an entry violates a margin).
inline std::vector<int> guard_signs(const guard_values& g, const ref::bindings& b) {
    std::vector<int> out;
    for (std::size_t k = 0; k < g.eval.size(); ++k) {
        const ref::tensor t = g.eval[k](b);
        for (double v : t.data) {
            if (!std::isfinite(v)) out.push_back(0);
            else if (g.positive[k]) out.push_back(v >= positive_margin ? 1 : 0);
            else out.push_back((v > 0) - (v < 0));
        }
    }
    return out;
}

/// Whether every guard entry is away from its kink (no zero sign) and keeps its sign at
/// every point of the stencils of `fd::central_diff` on the entries of `names`. On
/// failure, `why` says which.
inline bool guards_hold(const guard_values& g, const ref::bindings& b0, const std::vector<std::string>& names,
                        double h_rel, std::string& why) {
    if (g.eval.empty()) return true;
    const std::vector<int> base = guard_signs(g, b0);
    for (std::size_t i = 0; i < base.size(); ++i)
        if (base[i] == 0) {
            why = "a guard is at its kink or under its margin at the point";
            return false;
        }
    ref::bindings b = b0;
    for (const auto& name : names) {
        auto it = b.find(name);
        if (it == b.end()) continue;
        for (std::size_t i = 0; i < it->second.size(); ++i) {
            const double v0 = it->second[i];
            const double h = h_rel * std::max(1.0, std::fabs(v0));
            for (double m : {-2.0, -1.0, 1.0, 2.0}) {
                it->second[i] = v0 + m * h;
                if (guard_signs(g, b) != base) {
                    it->second[i] = v0;
                    why = "the stencil of " + name + "[" + std::to_string(i) + "] crosses a kink";
                    return false;
                }
            }
            it->second[i] = v0;
        }
    }
    return true;
}

// ---------------------------------------------------------------------------------------
// The check of one expression

/// The symbols of `E` among `A, x, y, s`, then `Extra...`, as a list.
template <class E, class... Syms>
struct present;
template <class E>
struct present<E> {
    using type = mnemo::detail::list<>;
};
template <class E, class S, class... Rest>
struct present<E, S, Rest...> {
    using rest = typename present<E, Rest...>::type;
    using type = std::conditional_t<mnemo::detail::contains<E, S>::value,
                                    typename mnemo::detail::push_front<rest, S>::type, rest>;
};

/// The direction of the second-order check for symbol `M`.
template <class M>
constexpr auto direction() {
    if constexpr (std::is_same_v<M, A_t>) return UA;
    else if constexpr (std::is_same_v<M, x_t>) return Ux;
    else if constexpr (std::is_same_v<M, y_t>) return Uy;
    else return Us;
}

/// Worst errors over a run of expressions.
struct summary {
    std::size_t expressions = 0, points = 0, skipped = 0, redrawn = 0, first_order_checks = 0,
                second_order_checks = 0;
    std::size_t guarded = 0;  // expressions with kinks or poles guarded at run time
    double worst1 = 0, worst2 = 0;
    std::string where1, where2;
    double biggest_tree = 0;
};

/// Tolerances of the checks, explicit: relative errors (|a - b| / max(|a|, |b|, floor))
/// against central differences at order 1 and 2, and between the plan and the reference
/// evaluator (the same formulas evaluated two ways). The floor is `floor_rel` times the
/// scale of the check, max(1, |phi|, largest gradient entry): an entry that is zero, or
/// cancels to nearly zero, is compared in absolute terms at that scale (the expressions are
/// random: some are locally constant in a symbol, e.g. l2_normalize(s * v) in s, and their
/// exact zero derivatives come out as rounding noise).
struct fuzz_tolerances {
    double fd_rel1 = 1e-6, fd_rel2 = 1e-6, ref_rel = 1e-8, floor_rel = 1e-5;
};

template <class DS, class... Syms>
void fill_data(DS& ds, std::uint64_t data_seed) {
    rng r{data_seed};
    auto fill = [&](auto sym, double lo, double hi) {
        auto& d = ds[sym];
        for (std::size_t i = 0; i < d.size(); ++i) d.data()[i] = r.uniform(lo, hi);
    };
    fill(A, -0.7, 0.7);
    fill(x, -1.2, 1.2);
    fill(y, -1.2, 1.2);
    fill(s, -1.2, 1.2);
    fill(UA, -1.0, 1.0);
    fill(Ux, -1.0, 1.0);
    fill(Uy, -1.0, 1.0);
    fill(Us, -1.0, 1.0);
    (fill(Syms{}, -1.0, 1.0), ...);
}

/// The non-template part of `check_gradients` (kept out of the templates: compile time).
/// Returns the worst relative error against central differences.
inline double run_checks(const std::string& label, double fd_rel, const fuzz_tolerances& ft, double phi_plan,
                         double phi_ref, std::vector<fd::detail::wrt_info>& syms,
                         const std::function<double()>& phi_by_plan, const std::function<double()>& phi_by_ref) {
    double scale = 1.0;
    if (std::isfinite(phi_plan)) scale = std::max(scale, std::fabs(phi_plan));
    for (const auto& sy : syms)
        for (double v : sy.exact.data)
            if (std::isfinite(v)) scale = std::max(scale, std::fabs(v));
    const double floor = ft.floor_rel * scale;
    INFO(label << ": phi plan " << phi_plan << ", reference " << phi_ref << "; floor " << floor);
    CHECK(std::isfinite(phi_plan));
    CHECK(fd::rel_err(phi_plan, phi_ref, floor) <= ft.ref_rel);
    double worst_fd = 0.0;
    for (auto& sy : syms) {
        const std::string name = label + " d/d" + sy.name;
        fd::record r;
        r.label = name;
        r.ref_vs_plan = fd::compare(sy.by_reference, sy.exact, floor);
        r.fd_plan = fd::compare(fd::gradient(sy.data, sy.shape, phi_by_plan), sy.exact, floor);
        r.fd_ref = fd::compare(fd::gradient(sy.data, sy.shape, phi_by_ref), sy.exact, floor);
        fd::records().push_back(r);
        INFO(name << " (floor " << floor << ")");
        INFO("  plan vs reference evaluator: " << r.ref_vs_plan.str());
        INFO("  plan vs fd(plan):            " << r.fd_plan.str());
        INFO("  plan vs fd(reference):       " << r.fd_ref.str());
        CHECK(r.ref_vs_plan.err <= ft.ref_rel);
        CHECK(r.fd_plan.err <= fd_rel);
        CHECK(r.fd_ref.err <= fd_rel);
        worst_fd = std::max({worst_fd, r.fd_plan.err, r.fd_ref.err});
    }
    CHECK(phi_by_plan() == phi_plan);  // the differences restored the data
    return worst_fd;
}

/// The dims of a shape (ref::shape_vec, without g++'s -Wnonnull false positive on the
/// empty std::array of a scalar).
template <class S>
std::vector<std::size_t> shape_vector() {
    std::vector<std::size_t> v;
    for (std::size_t k = 0; k < S::rank; ++k) v.push_back(S::dims[k]);
    return v;
}

/// `grad(phi, K)` for every K in `Ks`, compiled with `phi` into one plan and evaluated on
/// `ds`, against central differences of `phi` (by the plan and by the reference evaluator)
/// and against the reference evaluator's value of the same gradient expressions: the method
/// of fd::check_gradients, with the floor of `fuzz_tolerances`. Adds the number of
/// gradients checked to `count`; returns the worst error against central differences.
template <class Phi, class DS, class... Ks>
double check_wrt(const std::string& label, Phi phi, DS& ds, double fd_rel, const fuzz_tolerances& ft,
                 mnemo::detail::list<Ks...>, std::size_t& count) {
    if constexpr (sizeof...(Ks) == 0) return 0.0;
    else {
        count += sizeof...(Ks);
        auto p = mnemo::compile<double>(phi, mnemo::grad(phi, Ks{})...);
        const auto res = ds.run(p);
        std::array<ref::tensor, sizeof...(Ks)> exact =
            fd::detail::tail_to_ref(res, std::index_sequence_for<Ks...>{});
        const ref::bindings b0 = ds.bindings();
        std::vector<fd::detail::wrt_info> syms;
        std::size_t i = 0;
        ((syms.push_back({std::string(Ks::name()), ds[Ks{}].data(), shape_vector<typename Ks::shape>(),
                          std::move(exact[i++]), ref::evaluate(mnemo::grad(phi, Ks{}), b0)})),
         ...);
        return run_checks(
            label, fd_rel, ft, std::get<0>(res), ref::evaluate(phi, b0).value(), syms,
            [&] { return std::get<0>(ds.run(p)); }, [&] { return ref::evaluate(phi, ds.bindings()).value(); });
    }
}

/// The second-order checks for each symbol `M` of f.
template <class G, class DS, class Syms>
struct second_order;
template <class G, class DS, class... Ms>
struct second_order<G, DS, mnemo::detail::list<Ms...>> {
    static void run(const std::string& head, DS& ds, const fuzz_tolerances& ft, summary& sm) {
        (one<Ms>(head, ds, ft, sm), ...);
    }
    template <class M>
    static void one(const std::string& head, DS& ds, const fuzz_tolerances& ft, summary& sm) {
        constexpr auto phi = mnemo::sum(mnemo::hadamard(mnemo::grad(G::f, M{}), direction<M>()));
        using wrt = typename present<mnemo::unwrap_t<decltype(phi)>, A_t, x_t, y_t, s_t,
                                     std::remove_cv_t<decltype(G::w)>>::type;
        if constexpr (wrt::size > 0) {
            sm.biggest_tree = std::max(sm.biggest_tree, ref::tree_size<mnemo::unwrap_t<decltype(phi)>>::value);
            const std::string label =
                head + " <grad_" + std::string(M::name()) + " f, " + std::string(direction<M>().name()) + ">";
            const double e = check_wrt(label, phi, ds, ft.fd_rel2, ft, wrt{}, sm.second_order_checks);
            if (!(e <= sm.worst2)) {
                sm.worst2 = e;
                sm.where2 = label;
            }
        }
    }
};

/// Expands the list of symbols of f into a dataset type (the symbols, w, the directions).
template <class W>
using dataset_for = fd::dataset<A_t, x_t, y_t, s_t, W, std::remove_cv_t<decltype(UA)>,
                                std::remove_cv_t<decltype(Ux)>, std::remove_cv_t<decltype(Uy)>,
                                std::remove_cv_t<decltype(Us)>>;

/// Checks the first and mixed second derivatives of the expression of `Seed` at `points`
/// random points (the plans are compiled once; more points cost run time only).
template <std::uint64_t Seed>
void check_expression(summary& sm, std::size_t points, const fuzz_tolerances& ft = {}) {
    using G = generated<Seed>;
    using W = std::remove_cv_t<decltype(G::w)>;
    using F = std::remove_cv_t<decltype(G::f)>;
    using syms = typename present<F, A_t, x_t, y_t, s_t>::type;
    using syms_w = typename mnemo::detail::push_back<syms, W>::type;
    using DS = dataset_for<W>;

    const std::string expr = mnemo::to_string(G::f);
    const guard_values guards = guard_list_to_values<typename guards_of<F>::type>::make();
    ++sm.expressions;

    if (!guards.eval.empty()) ++sm.guarded;
    // `points` random points, each drawn again (the next data seed) until its stencils keep
    // away from every kink.
    for (std::size_t point = 0; point < points; ++point) {
        DS ds;
        std::string why;
        const std::uint64_t first_draw = splitmix64(Seed * 0x10000 + point * 0x100 + 0x5eed);
        std::uint64_t data_seed = first_draw;
        bool ok = false;
        for (int attempt = 0; attempt < 16 && !ok; ++attempt) {
            data_seed = first_draw + std::uint64_t(attempt);
            fill_data<DS, W>(ds, data_seed);
            ok = guards_hold(guards, ds.bindings(), {"A", "x", "y", "s"}, fd::default_h, why);
        }
        if (!ok) {
            ++sm.skipped;
            MESSAGE("seed " << Seed << ", point " << point << ": skipped, no data in 16 draws keeps away from the kinks ("
                            << why << "): f = " << expr);
            continue;
        }
        if (data_seed != first_draw) ++sm.redrawn;
        ++sm.points;
        std::ostringstream head_s;
        head_s << "seed " << Seed << " (data seed " << data_seed << ", depth " << G::depth << ", f = " << expr << ")";
        const std::string head = head_s.str();
        INFO(head);
        try {
            const double e1 =
                check_wrt(head + " grad f", G::f, ds, ft.fd_rel1, ft, syms_w{}, sm.first_order_checks);
            if (!(e1 <= sm.worst1)) {
                sm.worst1 = e1;
                sm.where1 = head;
            }
            second_order<G, DS, syms>::run(head, ds, ft, sm);
        } catch (const std::exception& ex) {
            FAIL_CHECK(head << ": threw " << ex.what());
        }
    }
}

/// Checks the expressions of the seeds First, First + 1, ..., First + N - 1.
template <std::uint64_t First, std::size_t... I>
void check_seeds(summary& sm, std::index_sequence<I...>, std::size_t points, const fuzz_tolerances& ft = {}) {
    (check_expression<First + I>(sm, points, ft), ...);
}

/// The report of a run (doctest MESSAGE), and the checks that it did check something.
inline void report(const summary& sm, std::uint64_t first, std::size_t n, std::size_t points) {
    MESSAGE("fuzzed derivatives, seeds [" << first << ", " << first + n << "): " << sm.expressions
                                          << " expressions (" << sm.guarded << " with guarded kinks or poles) at "
                                          << sm.points << " random points (" << sm.redrawn
                                          << " drawn again for kinks, " << sm.skipped << " skipped); "
                                          << sm.first_order_checks << " first-order and " << sm.second_order_checks
                                          << " second-order gradients checked; worst relative error against "
                                             "central differences: order 1 "
                                          << sm.worst1 << " (" << sm.where1 << "), order 2 " << sm.worst2 << " ("
                                          << sm.where2 << "); largest reference tree " << sm.biggest_tree);
    CHECK(sm.expressions == n);
    CHECK(sm.points + sm.skipped == n * points);
    CHECK(sm.skipped * 4 <= n * points);  // kinks may skip a few points, not most
    CHECK(sm.first_order_checks > 0);
    CHECK(sm.second_order_checks > 0);
}

/// One unit of the fuzz tests (tests/expr/test_fuzz_derivatives_<Unit + 1>.cpp): the
/// `per_unit` expressions of the seeds MNEMO_FUZZ_SEED + Unit * per_unit, ..., each at
/// `points` random points (run time only). MNEMO_FUZZ_SEED is a compile definition from
/// the CMake cache variable of that name (0 by default; scripts/fuzz.sh varies it). An
/// expression costs about 3 s of compile time and up to 0.1 GB of compiler memory.
template <std::size_t Unit>
void run_unit() {
    constexpr std::size_t per_unit = 14;
    constexpr std::size_t points = 3;
    constexpr std::uint64_t first = std::uint64_t(MNEMO_FUZZ_SEED) + Unit * per_unit;
    summary sm;
    check_seeds<first>(sm, std::make_index_sequence<per_unit>{}, points);
    report(sm, first, per_unit, points);
}

}  // namespace mnemo_test::fuzz
