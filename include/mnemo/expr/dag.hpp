#pragma once
/// \file
/// The DAG of distinct node types under an expression: a topological order, membership
/// of a symbol, and the list of symbols (with a check that no name has two shapes).

#include <array>
#include <string_view>

#include "mnemo/expr/node.hpp"

namespace mnemo::detail {

/// `E` is `X`, or has `X` somewhere below it.
template <class E, class X>
struct contains : std::is_same<E, X> {};
template <class Op, class... A, class X>
struct contains<node<Op, A...>, X> : std::bool_constant<(contains<A, X>::value || ...)> {};
template <class X>
struct contains<X, X> : std::true_type {};
template <class Op, class... A>
struct contains<node<Op, A...>, node<Op, A...>> : std::true_type {};

/// Every node is kept when `X` is void; otherwise the nodes that contain `X`.
template <class E, class X>
inline constexpr bool keep_v = std::is_void_v<X> || contains<E, X>::value;

template <class Acc, class E, class X, bool Visit = keep_v<E, X> && !contains_type_v<Acc, E>>
struct dfs {
    using type = Acc;
};
template <class Acc, class L, class X>
struct dfs_children;
template <class Acc, class X>
struct dfs_children<Acc, list<>, X> {
    using type = Acc;
};
template <class Acc, class H, class... T, class X>
struct dfs_children<Acc, list<H, T...>, X> {
    using type = typename dfs_children<typename dfs<Acc, H, X>::type, list<T...>, X>::type;
};
template <class Acc, class E, class X>
struct dfs<Acc, E, X, true> {
    using type = typename push_front<typename dfs_children<Acc, typename E::children, X>::type, E>::type;
};

/// The distinct nodes under the roots `Es` (that contain `X`, unless `X` is void), each
/// before its children: a reverse postorder.
template <class X, class... Es>
struct topo_order;
template <class X>
struct topo_order<X> {
    using type = list<>;
};
template <class X, class E, class... Es>
struct topo_order<X, E, Es...> {
    // Later roots first, so that the first root's nodes come first in the order.
    using type = typename dfs<typename topo_order<X, Es...>::type, E, X>::type;
};

/// Reverse of a list.
template <class L, class Acc = list<>>
struct reverse {
    using type = Acc;
};
template <class H, class... T, class... A>
struct reverse<list<H, T...>, list<A...>> {
    using type = typename reverse<list<T...>, list<H, A...>>::type;
};

/// The symbols of a node list, in order.
template <class L>
struct symbols_of;
template <class... Ts>
struct symbols_of<list<Ts...>> {
    template <class T>
    using one = std::conditional_t<is_symbol_v<T>, list<T>, list<>>;
    template <class... Ls>
    struct cat;
    template <class... A>
    struct cat<list<A...>> {
        using type = list<A...>;
    };
    template <class... A, class... B, class... R>
    struct cat<list<A...>, list<B...>, R...> {
        using type = typename cat<list<A..., B...>, R...>::type;
    };
    using type = typename cat<list<>, one<Ts>...>::type;
};

/// Index pair of two symbols with the same name (and so different shapes), or {0, 0}.
template <class... Syms>
constexpr std::array<std::size_t, 2> name_clash(list<Syms...>) {
    constexpr std::size_t n = sizeof...(Syms);
    if constexpr (n < 2) return {0, 0};
    else {
        constexpr std::array<std::string_view, n> names{Syms::name()...};
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = i + 1; j < n; ++j)
                if (names[i] == names[j]) return {i, j};
        return {0, 0};
    }
}

}  // namespace mnemo::detail

namespace mnemo::check {
/// Both symbols have the same name: one name was used with two shapes.
template <class SymbolA, class SymbolB>
inline constexpr bool distinct_symbol_names = std::is_same_v<SymbolA, SymbolB>;

/// Fails to compile, naming both symbols, when a name is used with two shapes in `L`.
template <class L>
constexpr bool names_are_unique() {
    using syms = typename detail::symbols_of<L>::type;
    if constexpr (syms::size >= 2) {
        constexpr auto ij = detail::name_clash(syms{});
        using A = detail::type_at_t<syms, ij[0]>;
        using B = detail::type_at_t<syms, ij[1]>;
        static_assert(distinct_symbol_names<A, B>,
                      "mnemo: one symbol name is used with two different shapes.");
    }
    return true;
}
}  // namespace mnemo::check
