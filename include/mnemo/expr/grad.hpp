#pragma once
/// \file
/// `grad(f, x)`: symbolic reverse mode at compile time.
///
/// Design note: the adjoints are computed over the DAG of distinct node types, not by
/// walking the tree. The nodes that contain `x` are put in topological order (each before
/// its children); one pass over that order keeps a map from node type to adjoint
/// expression: a node's adjoint is final when the pass reaches it (all its parents came
/// before), and is then pushed to its children through the operation's rule (`vjp`).
/// Every shared subexpression is thus differentiated once. Walking the tree instead
/// differentiates a shared subexpression once per path to it, which grows geometrically
/// when steps are composed. The result is built with the ordinary builders, so it is
/// simplified as it is built and can be differentiated again.

#include "mnemo/expr/dag.hpp"
#include "mnemo/expr/derivative.hpp"
#include "mnemo/expr/ops/arithmetic.hpp"
#include "mnemo/expr/ops/reduction.hpp"

namespace mnemo {
namespace detail {

template <class K, class V>
struct entry {};
template <class... Es>
struct adjoint_map : Es... {};

struct absent {};
template <class K, class V>
V lookup_fn(const entry<K, V>*);
template <class K>
absent lookup_fn(const void*);

template <class Map, class K>
using lookup_t = decltype(lookup_fn<K>(static_cast<const Map*>(nullptr)));

template <bool Add, class V, class C>
struct add_if {
    using type = V;
};
template <class V, class C>
struct add_if<true, V, C> {
    using type = decltype(V{} + C{});
};

/// The map with `C` added to the adjoint of `K`.
template <class Map, class K, class C, bool Found = !std::is_same_v<lookup_t<Map, K>, absent>>
struct accumulate;
template <class... Ks, class... Vs, class K, class C>
struct accumulate<adjoint_map<entry<Ks, Vs>...>, K, C, true> {
    using type = adjoint_map<entry<Ks, typename add_if<std::is_same_v<Ks, K>, Vs, C>::type>...>;
};
template <class... Ks, class... Vs, class K, class C>
struct accumulate<adjoint_map<entry<Ks, Vs>...>, K, C, false> {
    using type = adjoint_map<entry<Ks, Vs>..., entry<K, C>>;
};

/// `e` summed down to `Shape` where an elementwise operation broadcast a scalar operand.
template <class Shape, class E>
constexpr auto unbroadcast(E e) {
    if constexpr (std::is_same_v<typename E::shape, Shape>) return e;
    else return sum(e);
}

/// The contribution of node `Node` with adjoint `G` to the adjoint of its child `I`.
template <class Node, std::size_t I, class G>
struct contribution;
template <class Op, class... A, std::size_t I, class G>
struct contribution<node<Op, A...>, I, G> {
    using child = type_at_t<list<A...>, I>;
    using raw = decltype(Op::template vjp<I>(node<Op, A...>{}, G{}, A{}...));
    using type = decltype(unbroadcast<typename type_at_t<list<A...>, I>::shape>(raw{}));
};

/// Whether the adjoint of `E` is needed: it contains `X`, or (X void: every gradient at
/// once) it is not a constant.
template <class E, class X>
inline constexpr bool adjoint_wanted =
    std::is_void_v<X> ? !(is_constant_v<E> || is_zero_v<E>) : contains<E, X>::value;

template <class Map, class Node, class G, class X, class Seq>
struct push_children {
    using type = Map;
};
template <class Map, class Node, class C, class X, bool Contains>
struct accumulate_if {
    using type = Map;
};
template <class Map, class Node, class C, class X>
struct accumulate_if<Map, Node, C, X, true> {
    using type = typename accumulate<Map, typename C::child, typename C::type>::type;
};
template <class Map, class Op, class... A, class G, class X, std::size_t I, std::size_t... Is>
struct push_children<Map, node<Op, A...>, G, X, std::index_sequence<I, Is...>> {
    using child = type_at_t<list<A...>, I>;
    using next = typename accumulate_if<Map, node<Op, A...>, contribution<node<Op, A...>, I, G>, X,
                                        adjoint_wanted<child, X>>::type;
    using type = typename push_children<next, node<Op, A...>, G, X, std::index_sequence<Is...>>::type;
};

/// One node of the pass: push its (final) adjoint to its children.
template <class Map, class Node, class X, class G = lookup_t<Map, Node>,
          bool Skip = is_zero_v<G> || std::is_same_v<G, absent>>
struct backprop_step {
    using type = Map;
};
template <class Map, class Op, class... A, class X, class G>
struct backprop_step<Map, node<Op, A...>, X, G, false> {
    using type = typename push_children<Map, node<Op, A...>, G, X, std::index_sequence_for<A...>>::type;
};

// The pass over the order, four nodes per level of template recursion.
template <class Map, class L, class X>
struct backprop_pass {
    using type = Map;
};
template <class Map, class N, class... T, class X>
struct backprop_pass<Map, list<N, T...>, X> {
    using type = typename backprop_pass<typename backprop_step<Map, N, X>::type, list<T...>, X>::type;
};
template <class Map, class N1, class N2, class N3, class N4, class... T, class X>
struct backprop_pass<Map, list<N1, N2, N3, N4, T...>, X> {
    using m1 = typename backprop_step<Map, N1, X>::type;
    using m2 = typename backprop_step<m1, N2, X>::type;
    using m3 = typename backprop_step<m2, N3, X>::type;
    using m4 = typename backprop_step<m3, N4, X>::type;
    using type = typename backprop_pass<m4, list<T...>, X>::type;
};

/// The adjoints of every node of `F` (`X` void), or of the nodes that contain `X`.
template <class F, class X>
struct backprop_map {
    using order = typename topo_order<X, F>::type;
    using type = typename backprop_pass<adjoint_map<entry<F, constant<1>>>, order, X>::type;
};

/// The gradient of `F` with respect to the symbol `X`. One pass over the whole DAG of `F`
/// serves every symbol: the gradients of one expression with respect to several symbols
/// (a loss and all its meta-parameters) share it, instead of one pass each.
template <class F, class X>
struct backprop {
    using found = lookup_t<typename backprop_map<F, void>::type, X>;
    using type = std::conditional_t<std::is_same_v<found, absent>, zero_of<typename X::shape>, found>;
};

}  // namespace detail

/// `grad(f, x)`: the gradient of the scalar expression `f` with respect to the symbol `x`,
/// an expression of `x`'s shape. It can be differentiated again:
/// `grad(sum(hadamard(grad(f, M), U)), K)` is a mixed second derivative.
struct grad_fn {
    template <expression F, expression X>
    constexpr auto operator()(F, X) const {
        static_assert(shape_of<F>::rank == 0,
                      "mnemo: grad(f, x) needs a scalar expression f; take sum(...) of a tensor first.");
        static_assert(is_symbol_v<X>,
                      "mnemo: grad(f, x) differentiates with respect to a symbol; x is not a symbol.");
        if constexpr (shape_of<F>::rank != 0 || !is_symbol_v<X>) return constant<0>{};
        else {
            using f = unwrap_t<F>;
            static_assert(check::names_are_unique<typename detail::topo_order<void, f, X>::type>());
            using result = typename detail::backprop<f, X>::type;
            if constexpr (is_node_v<result>) return derivative<F, X>{};
            else return result{};
        }
    }
};
inline constexpr grad_fn grad{};

}  // namespace mnemo
