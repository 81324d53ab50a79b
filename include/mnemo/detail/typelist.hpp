#pragma once
/// \file
/// Type lists for the core's own bookkeeping (node sets, maps, orderings).
///
/// Design note: set membership, map look-up and indexing are done through base-class
/// look-up (`inherit<tag<Ts>...>`), not fold expressions: folds over more than 256
/// elements are a hard error on clang 14, and the node sets of second derivatives can be
/// that large. Look-ups by overload resolution cost one class per set, not per query.

#include <cstddef>
#include <type_traits>
#include <utility>

namespace mnemo::detail {

template <class... Ts>
struct list {
    static constexpr std::size_t size = sizeof...(Ts);
};

template <class T>
struct tag {
    using type = T;
};

template <class... Ts>
struct inherit : tag<Ts>... {};

/// True when `T` is one of the (distinct) types of the list `L`.
template <class L, class T>
struct contains_type;
template <class... Ts, class T>
struct contains_type<list<Ts...>, T> : std::is_base_of<tag<T>, inherit<Ts...>> {};
template <class L, class T>
inline constexpr bool contains_type_v = contains_type<L, T>::value;

template <class L, class T>
struct push_front;
template <class... Ts, class T>
struct push_front<list<Ts...>, T> {
    using type = list<T, Ts...>;
};

template <class L, class T>
struct push_back;
template <class... Ts, class T>
struct push_back<list<Ts...>, T> {
    using type = list<Ts..., T>;
};

template <class... Ls>
struct list_cat;
template <>
struct list_cat<> {
    using type = list<>;
};
template <class... A>
struct list_cat<list<A...>> {
    using type = list<A...>;
};
template <class... A, class... B, class... R>
struct list_cat<list<A...>, list<B...>, R...> {
    using type = typename list_cat<list<A..., B...>, R...>::type;
};

template <std::size_t I, class T>
struct indexed {};

template <class L, class Seq>
struct indexed_set_impl;
template <class... Ts, std::size_t... Is>
struct indexed_set_impl<list<Ts...>, std::index_sequence<Is...>> : indexed<Is, Ts>... {};

/// A distinct-type list laid out for O(1)-like look-up of an element's index and of the
/// element at an index.
template <class L>
struct indexed_set;
template <class... Ts>
struct indexed_set<list<Ts...>> : indexed_set_impl<list<Ts...>, std::index_sequence_for<Ts...>> {};

template <class T, std::size_t I>
constexpr std::size_t index_of_fn(const indexed<I, T>*) {
    return I;
}
template <std::size_t I, class T>
T type_at_fn(const indexed<I, T>*);

template <class L, class T>
inline constexpr std::size_t index_of_v = index_of_fn<T>(static_cast<const indexed_set<L>*>(nullptr));

template <class L, std::size_t I>
using type_at_t = decltype(type_at_fn<I>(static_cast<const indexed_set<L>*>(nullptr)));

}  // namespace mnemo::detail
