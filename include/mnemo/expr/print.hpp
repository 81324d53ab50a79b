#pragma once
/// \file
/// `to_string(e)`: an expression as readable math. `*` is elementwise (a scalar times a
/// tensor included), `@` the matrix product, `^T` the transpose, `^N` an integer power.
/// Shared subexpressions are printed wherever they occur.

#include <string>

#include "mnemo/expr/derivative.hpp"
#include "mnemo/expr/ops/huber.hpp"
#include "mnemo/expr/ops/matrix.hpp"
#include "mnemo/expr/ops/reduction.hpp"

namespace mnemo {
namespace detail {

// Precedence: 1 additive, 2 multiplicative, 3 unary minus, 4 postfix, 5 atoms.
template <class E>
struct printer;

template <fixed_string N, class S>
struct printer<symbol<N, S>> {
    static constexpr int prec = 5;
    static void print(std::string& out) { out += N.view(); }
};
template <std::int64_t N, std::int64_t D>
struct printer<constant<N, D>> {
    static constexpr int prec = (D == 1 && N >= 0) ? 5 : 2;
    static void print(std::string& out) {
        out += std::to_string(N);
        if (D != 1) {
            out += '/';
            out += std::to_string(D);
        }
    }
};
template <class S>
struct printer<zero_tensor<S>> {
    static constexpr int prec = 5;
    static void print(std::string& out) { out += "0"; }
};

template <class E>
void print_operand(std::string& out, int min_prec) {
    const bool parens = printer<E>::prec < min_prec;
    if (parens) out += "(";
    printer<E>::print(out);
    if (parens) out += ")";
}

template <int Prec, bool RightStrict, class A, class B>
void print_infix(std::string& out, std::string_view sym) {
    print_operand<A>(out, Prec);
    out += sym;
    print_operand<B>(out, RightStrict ? Prec + 1 : Prec);
}

template <class... A>
void print_call(std::string& out, std::string_view name) {
    out += name;
    out += "(";
    bool first = true;
    ((out += first ? "" : ", ", first = false, printer<A>::print(out)), ...);
    out += ")";
}

template <class Op, class... A>
struct printer<node<Op, A...>> {
    static constexpr int prec = 5;
    static void print(std::string& out) { print_call<A...>(out, Op::name); }
};
template <class A, class B>
struct printer<node<add_op, A, B>> {
    static constexpr int prec = 1;
    static void print(std::string& out) { print_infix<1, false, A, B>(out, " + "); }
};
template <class A, class B>
struct printer<node<sub_op, A, B>> {
    static constexpr int prec = 1;
    static void print(std::string& out) { print_infix<1, true, A, B>(out, " - "); }
};
template <class A, class B>
struct printer<node<mul_op, A, B>> {
    static constexpr int prec = 2;
    static void print(std::string& out) { print_infix<2, true, A, B>(out, " * "); }
};
template <class A, class B>
struct printer<node<div_op, A, B>> {
    static constexpr int prec = 2;
    static void print(std::string& out) { print_infix<2, true, A, B>(out, " / "); }
};
template <class A, class B>
struct printer<node<matmul_op, A, B>> {
    static constexpr int prec = 2;
    static void print(std::string& out) { print_infix<2, true, A, B>(out, " @ "); }
};
template <class A>
struct printer<node<neg_op, A>> {
    static constexpr int prec = 3;
    static void print(std::string& out) {
        out += "-";
        print_operand<A>(out, 4);
    }
};
template <class A>
struct printer<node<transpose_op, A>> {
    static constexpr int prec = 4;
    static void print(std::string& out) {
        print_operand<A>(out, 5);
        out += "^T";
    }
};
template <int N, class A>
struct printer<node<ipow_op<N>, A>> {
    static constexpr int prec = 4;
    static void print(std::string& out) {
        print_operand<A>(out, 5);
        out += '^';
        out += std::to_string(N);
    }
};
template <class A, class B>
struct printer<node<outer_op, A, B>> {
    static constexpr int prec = 5;
    static void print(std::string& out) { print_call<A, B>(out, "outer"); }
};
template <class A>
struct printer<node<sum_op, A>> {
    static constexpr int prec = 5;
    static void print(std::string& out) { print_call<A>(out, "sum"); }
};
template <class S, class A>
struct printer<node<fill_op<S>, A>> {
    static constexpr int prec = 5;
    static void print(std::string& out) { print_call<A>(out, "fill"); }
};

}  // namespace detail

/// The expression as readable math, e.g. `sum((M @ (K @ x) - V @ x)^2)`.
template <expression E>
std::string to_string(E) {
    std::string out;
    detail::printer<unwrap_t<E>>::print(out);
    return out;
}

}  // namespace mnemo
