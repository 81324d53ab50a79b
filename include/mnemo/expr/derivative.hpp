#pragma once
/// \file
/// `derivative<F, X>`: the short name under which `grad(f, x)` hands its result to users,
/// and `unwrap_t`, which replaces such names by the expressions they stand for.
///
/// Design note: a derivative's expression type can be long (hundreds of nodes). If it
/// reached users, one shape mistake next to a gradient would print pages of template
/// arguments. `grad` therefore returns `derivative<F, X>`, whose name holds only the
/// user's own expression and symbol; builders treat it as an opaque expression of X's
/// shape. The differentiator and the evaluator look through it with `unwrap_t`.

#include "mnemo/expr/node.hpp"

namespace mnemo {

template <class F, class X>
struct derivative {
    using shape = typename X::shape;
    using children = detail::list<>;
};

template <class F, class X>
struct is_expression_type<derivative<F, X>> : std::true_type {};

namespace detail {
template <class F, class X>
struct backprop;
}

template <class E>
struct unwrap {
    using type = E;
};
template <class Op, class... A>
struct unwrap<node<Op, A...>> {
    using type = node<Op, typename unwrap<A>::type...>;
};
template <class F, class X>
struct unwrap<derivative<F, X>> {
    using type = typename detail::backprop<typename unwrap<F>::type, X>::type;
};

/// The expression with every `derivative<F, X>` replaced by the expression it names.
template <class E>
using unwrap_t = typename unwrap<std::remove_cvref_t<E>>::type;

}  // namespace mnemo
