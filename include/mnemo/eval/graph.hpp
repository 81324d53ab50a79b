#pragma once
/// \file
/// The evaluation schedule of a set of output expressions, fixed at compile time: the
/// distinct nodes in an order where children come first, which nodes get a buffer
/// ("materialised") and which are computed inline inside their single consumer's loop
/// (fusion), and every buffer's offset in one arena.

#include <array>
#include <cstddef>

#include "mnemo/expr.hpp"

namespace mnemo::detail {

enum class node_kind { symbol, constant, elementwise, reduce_sum, matmul, outer, transpose };

template <class E>
struct kind_of {
    static constexpr node_kind value = node_kind::constant;  // constant<N, D>, zero_tensor<S>
};
template <fixed_string N, class S>
struct kind_of<symbol<N, S>> {
    static constexpr node_kind value = node_kind::symbol;
};
template <class Op, class... A>
struct kind_of<node<Op, A...>> {
    static constexpr node_kind value = Op::kind == op_kind::elementwise  ? node_kind::elementwise
                                       : Op::kind == op_kind::reduce_sum ? node_kind::reduce_sum
                                       : Op::kind == op_kind::matmul     ? node_kind::matmul
                                       : Op::kind == op_kind::outer      ? node_kind::outer
                                                                         : node_kind::transpose;
};

inline constexpr std::size_t no_child = static_cast<std::size_t>(-1);

/// Whether a node costs so little (a negation) that each of its consumers computes it
/// again from its stored child, rather than storing it: a stored tensor is one more pass
/// over memory, written and read back.
template <class E>
inline constexpr bool recomputed_v = false;
template <class A>
inline constexpr bool recomputed_v<node<neg_op, A>> = true;

template <class Order, class E>
struct child_indices {
    static constexpr std::array<std::size_t, 2> value{no_child, no_child};
};
template <class Order, class Op, class A>
struct child_indices<Order, node<Op, A>> {
    static constexpr std::array<std::size_t, 2> value{index_of_v<Order, A>, no_child};
};
template <class Order, class Op, class A, class B>
struct child_indices<Order, node<Op, A, B>> {
    static constexpr std::array<std::size_t, 2> value{index_of_v<Order, A>, index_of_v<Order, B>};
};

/// Buffers start on multiples of 16 elements (64 bytes for float) in a 64-byte aligned arena.
inline constexpr std::size_t arena_align = 16;

template <class Order, class Outputs>
struct graph;

template <class... Ns, class... Outs>
struct graph<list<Ns...>, list<Outs...>> {
    using order = list<Ns...>;
    using symbols = typename symbols_of<order>::type;
    static constexpr std::size_t n = sizeof...(Ns);
    static constexpr std::array<node_kind, n> kind{kind_of<Ns>::value...};
    static constexpr std::array<std::array<std::size_t, 2>, n> child{child_indices<order, Ns>::value...};
    static constexpr std::array<std::size_t, n> size{Ns::shape::size...};
    static constexpr std::array<bool, n> recomputed{recomputed_v<Ns>...};
    static constexpr std::array<std::size_t, sizeof...(Outs)> outputs{index_of_v<order, Outs>...};

    struct info {
        std::array<std::size_t, n> uses{};
        std::array<bool, n> is_output{};
        std::array<bool, n> non_fusing_user{};  // used by a node that is not elementwise/sum
        std::array<bool, n> non_matmul_user{};
        std::array<bool, n> tensor_user{};  // used by a node with more than one entry
        std::array<bool, n> materialised{};
        std::array<std::size_t, n> offset{};
        std::size_t arena_size = 0;
        std::size_t steps = 0;
    };

    static constexpr info analyse() {
        info r{};
        for (std::size_t o : outputs) {
            r.is_output[o] = true;
            ++r.uses[o];
        }
        for (std::size_t j = 0; j < n; ++j)
            for (std::size_t c : child[j]) {
                if (c == no_child) continue;
                ++r.uses[c];
                if (kind[j] != node_kind::elementwise && kind[j] != node_kind::reduce_sum)
                    r.non_fusing_user[c] = true;
                if (kind[j] != node_kind::matmul) r.non_matmul_user[c] = true;
                if (size[j] > 1) r.tensor_user[c] = true;
            }
        for (std::size_t j = 0; j < n; ++j) {
            bool m = false;
            switch (kind[j]) {
                case node_kind::symbol:
                case node_kind::constant: m = r.is_output[j]; break;
                case node_kind::elementwise: {
                    // A scalar feeding a tensor loop is stored, not recomputed per entry. A
                    // negation of a stored node (or a leaf) is computed in each consumer's loop.
                    const std::size_t c = child[j][0];
                    const bool cheap = recomputed[j] && (r.materialised[c] || kind[c] == node_kind::symbol ||
                                                         kind[c] == node_kind::constant);
                    m = r.is_output[j] || (r.uses[j] != 1 && !cheap) || r.non_fusing_user[j] ||
                        (size[j] == 1 && r.tensor_user[j]);
                    break;
                }
                case node_kind::transpose: m = r.is_output[j] || r.non_matmul_user[j]; break;
                case node_kind::outer:
                    // Computed inside its one elementwise (or sum) consumer's loop.
                    m = r.is_output[j] || r.uses[j] != 1 || r.non_fusing_user[j];
                    break;
                default: m = true;
            }
            r.materialised[j] = m;
            if (m) ++r.steps;
        }
        place(r);
        return r;
    }

    /// Buffer offsets by liveness: a buffer is free again after the last step that reads it,
    /// and a later node of no greater (aligned) size takes it (the smallest that fits), so
    /// the arena, and the memory a step touches, stay small. Outputs keep their own buffers.
    ///
    /// A node is read when the step that evaluates it runs: its own step when materialised,
    /// else the step of its consumer (the latest one, for a transpose read by several
    /// products); nodes come after their children in `order`, so one pass from the last
    /// node finds every evaluation time before it is needed.
    static constexpr void place(info& r) {
        constexpr std::size_t none = static_cast<std::size_t>(-1);
        std::array<std::size_t, n> eval{}, last{};
        for (std::size_t j = 0; j < n; ++j) {
            eval[j] = r.materialised[j] ? j : 0;
            last[j] = r.is_output[j] ? n : (r.materialised[j] ? j : 0);
        }
        for (std::size_t j = n; j-- > 0;)
            for (std::size_t c : child[j]) {
                if (c == no_child) continue;
                if (!r.materialised[c] && eval[j] > eval[c]) eval[c] = eval[j];
                if (eval[j] > last[c]) last[c] = eval[j];
            }
        // Free buffers: offset and (aligned) size; none marks an empty slot.
        std::array<std::size_t, n> free_off{}, free_size{};
        for (std::size_t k = 0; k < n; ++k) free_off[k] = none;
        auto aligned = [](std::size_t s) { return (s + arena_align - 1) / arena_align * arena_align; };
        for (std::size_t j = 0; j < n; ++j) {
            if (!r.materialised[j]) continue;
            const std::size_t want = aligned(size[j]);
            std::size_t best = none;
            for (std::size_t k = 0; k < n; ++k)
                if (free_off[k] != none && free_size[k] >= want && (best == none || free_size[k] < free_size[best]))
                    best = k;
            if (best != none) {
                r.offset[j] = free_off[best];
                free_off[best] = none;
            } else {
                r.offset[j] = r.arena_size;
                r.arena_size += want;
            }
            // Buffers whose last reader is this step are free for the next steps.
            for (std::size_t c = 0; c <= j; ++c)
                if (r.materialised[c] && last[c] == j && c != j) {
                    std::size_t k = 0;
                    while (free_off[k] != none) ++k;
                    free_off[k] = r.offset[c];
                    free_size[k] = aligned(size[c]);
                }
        }
    }
    static constexpr info facts = analyse();

    /// Indices of the materialised nodes, in evaluation order.
    static constexpr std::array<std::size_t, facts.steps> steps = [] {
        std::array<std::size_t, facts.steps> s{};
        std::size_t k = 0;
        for (std::size_t j = 0; j < n; ++j)
            if (facts.materialised[j]) s[k++] = j;
        return s;
    }();
};

/// The graph of the outputs `Outputs` (as the user wrote them).
///
/// Design note: this is a class, not an alias of `graph<...>`: every evaluation function is
/// a template of its graph type, and an alias would put the whole list of node types into
/// each of their names (compile time and memory go into mangling them). The class's name
/// holds only the outputs as written, where derivatives are the short `derivative<F, X>`.
template <class... Outputs>
struct graph_of
    : graph<typename reverse<typename topo_order<void, unwrap_t<Outputs>...>::type>::type, list<unwrap_t<Outputs>...>> {
};

}  // namespace mnemo::detail
