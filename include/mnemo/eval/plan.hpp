#pragma once
/// \file
/// `plan`: evaluates a set of expressions in one call, each distinct subexpression once,
/// into one arena allocated when the plan is made: no heap allocation per call.
///
/// Design note: the schedule is a straight line over the distinct node types of all the
/// outputs, fixed at compile time (graph.hpp). Products go to BLAS; an elementwise node
/// used once by another elementwise node or a sum is not stored but computed inside its
/// consumer's loop, so an elementwise chain is one loop; sums are computed once, eagerly.
/// A transpose used only by products costs nothing: it becomes a BLAS flag.

#include <boost/hana.hpp>
#include <xsimd/memory/xsimd_aligned_allocator.hpp>
#include <tuple>
#include <vector>

#include "mnemo/detail/blas.hpp"
#include "mnemo/detail/lanes.hpp"
#include "mnemo/eval/bind.hpp"
#include "mnemo/eval/graph.hpp"

namespace mnemo {
namespace detail {

template <class T, class G>
struct context {
    T* arena;
    std::array<const T*, G::symbols::size> sym;
    /// Where output I is written instead of the arena (null: the arena); see
    /// `plan::run_unchecked_into`.
    std::array<T*, G::outputs.size()> out{};
};

template <class G, std::size_t J>
using node_at = type_at_t<typename G::order, J>;

/// The first output whose node is J, or G::outputs.size() when J is no output.
template <class G, std::size_t J>
constexpr std::size_t output_of() {
    for (std::size_t o = 0; o < G::outputs.size(); ++o)
        if (G::outputs[o] == J) return o;
    return G::outputs.size();
}

/// The storage of the materialised node J: the arena, or the place its output goes.
template <class T, class G, std::size_t J>
inline T* buffer(const context<T, G>& ctx) {
    constexpr std::size_t o = output_of<G, J>();
    if constexpr (o < G::outputs.size()) {
        if (T* p = ctx.out[o]) return p;
    }
    return ctx.arena + G::facts.offset[J];
}

template <class T, class G, std::size_t J>
const T* pointer(const context<T, G>& ctx) {
    using E = node_at<G, J>;
    // A symbol is read where it is bound, even when it is also an output (then copied).
    if constexpr (G::kind[J] == node_kind::symbol) return ctx.sym[index_of_v<typename G::symbols, E>];
    else {
        static_assert(G::facts.materialised[J], "mnemo internal: pointer to a node without storage.");
        return buffer<T, G, J>(ctx);
    }
}

template <class T, class G, std::size_t J>
T value(const context<T, G>& ctx, std::size_t i);
template <class T, class G, std::size_t J, std::size_t Cols>
T value2(const context<T, G>& ctx, std::size_t r, std::size_t c);

/// Entry (r, c) of the rank-2 elementwise node J computed from its children, inside a 2-D
/// loop (flat index r * Cols + c): an outer product below it costs u[r] * v[c], and the
/// inner loop over c stays contiguous (vectorised).
template <class T, class G, std::size_t J, std::size_t Cols>
T compute2(const context<T, G>& ctx, std::size_t r, std::size_t c) {
    using Op = typename node_at<G, J>::op;
    constexpr auto ch = G::child[J];
    if constexpr (ch[1] == no_child) return Op::apply(value2<T, G, ch[0], Cols>(ctx, r, c));
    else return Op::apply(value2<T, G, ch[0], Cols>(ctx, r, c), value2<T, G, ch[1], Cols>(ctx, r, c));
}

/// Entry i of node J computed from its children (J elementwise).
template <class T, class G, std::size_t J>
T compute(const context<T, G>& ctx, std::size_t i) {
    using E = node_at<G, J>;
    using Op = typename E::op;
    constexpr auto ch = G::child[J];
    constexpr std::size_t n0 = G::size[ch[0]];
    if constexpr (ch[1] == no_child) return Op::apply(value<T, G, ch[0]>(ctx, n0 == 1 ? 0 : i));
    else {
        constexpr std::size_t n1 = G::size[ch[1]];
        return Op::apply(value<T, G, ch[0]>(ctx, n0 == 1 ? 0 : i), value<T, G, ch[1]>(ctx, n1 == 1 ? 0 : i));
    }
}

template <class T, class G, std::size_t J>
inline T value(const context<T, G>& ctx, std::size_t i) {
    using E = node_at<G, J>;
    // Leaves first: a leaf that is also an output has a buffer, which its own step fills
    // from here.
    if constexpr (G::kind[J] == node_kind::symbol) return ctx.sym[index_of_v<typename G::symbols, E>][i];
    else if constexpr (is_constant_v<E>) return E::template value<T>();
    else if constexpr (G::kind[J] == node_kind::constant) return T(0);
    else if constexpr (G::facts.materialised[J]) return buffer<T, G, J>(ctx)[i];
    else if constexpr (G::kind[J] == node_kind::outer) {
        constexpr std::size_t cols = G::size[G::child[J][1]];
        return pointer<T, G, G::child[J][0]>(ctx)[i / cols] * pointer<T, G, G::child[J][1]>(ctx)[i % cols];
    } else return compute<T, G, J>(ctx, i);
}

template <class T, class G, std::size_t J, std::size_t Cols>
inline T value2(const context<T, G>& ctx, std::size_t r, std::size_t c) {
    using E = node_at<G, J>;
    if constexpr (G::size[J] == 1) return value<T, G, J>(ctx, 0);  // a scalar, broadcast
    else if constexpr (G::kind[J] == node_kind::symbol)
        return ctx.sym[index_of_v<typename G::symbols, E>][r * Cols + c];
    else if constexpr (G::kind[J] == node_kind::constant) return T(0);
    else if constexpr (G::facts.materialised[J]) return buffer<T, G, J>(ctx)[r * Cols + c];
    else if constexpr (G::kind[J] == node_kind::outer)
        return pointer<T, G, G::child[J][0]>(ctx)[r] * pointer<T, G, G::child[J][1]>(ctx)[c];
    else return compute2<T, G, J, Cols>(ctx, r, c);
}

/// A product operand: its data and whether BLAS must transpose it.
template <class T, class G, std::size_t J>
std::pair<const T*, bool> operand(const context<T, G>& ctx) {
    if constexpr (G::kind[J] == node_kind::transpose && !G::facts.materialised[J])
        return {pointer<T, G, G::child[J][0]>(ctx), true};
    else return {pointer<T, G, J>(ctx), false};
}

/// Compute node J into its buffer.
template <class T, class G, std::size_t J>
void run_step(context<T, G>& ctx) {
    using E = node_at<G, J>;
    T* out = buffer<T, G, J>(ctx);
    constexpr std::size_t n = G::size[J];
    constexpr auto ch = G::child[J];
    if constexpr (G::kind[J] == node_kind::symbol || G::kind[J] == node_kind::constant) {
        for (std::size_t i = 0; i < n; ++i) out[i] = value<T, G, J>(ctx, i);  // an output that is a leaf
    } else if constexpr (G::kind[J] == node_kind::elementwise && E::shape::rank == 2) {
        constexpr std::size_t rows = E::shape::dims[0], cols = E::shape::dims[1];
        for (std::size_t r = 0; r < rows; ++r) {
            T* o = out + r * cols;
            for (std::size_t c = 0; c < cols; ++c) o[c] = compute2<T, G, J, cols>(ctx, r, c);
        }
    } else if constexpr (G::kind[J] == node_kind::elementwise) {
        for (std::size_t i = 0; i < n; ++i) out[i] = compute<T, G, J>(ctx, i);
    } else if constexpr (G::kind[J] == node_kind::reduce_sum &&
                         type_at_t<typename G::order, ch[0]>::shape::rank == 2) {
        // Lanes over the columns (lanes.hpp): a vectorised sum, not one bound by the add's latency.
        using S = typename type_at_t<typename G::order, ch[0]>::shape;
        constexpr std::size_t rows = S::dims[0], cols = S::dims[1];
        T acc[lanes_for(rows * cols)] = {};
        for (std::size_t r = 0; r < rows; ++r)
            add_to_lanes(acc, cols, [&](std::size_t c) { return value2<T, G, ch[0], cols>(ctx, r, c); });
        out[0] = fold_lanes(acc);
    } else if constexpr (G::kind[J] == node_kind::reduce_sum) {
        constexpr std::size_t m = G::size[ch[0]];
        out[0] = lane_sum<T, lanes_for(m)>(m, [&](std::size_t i) { return value<T, G, ch[0]>(ctx, i); });
    } else if constexpr (G::kind[J] == node_kind::outer) {
        const T* u = pointer<T, G, ch[0]>(ctx);
        const T* v = pointer<T, G, ch[1]>(ctx);
        constexpr std::size_t rows = G::size[ch[0]], cols = G::size[ch[1]];
        for (std::size_t r = 0; r < rows; ++r) {
            const T ur = u[r];
            T* o = out + r * cols;
            for (std::size_t c = 0; c < cols; ++c) o[c] = ur * v[c];
        }
    } else if constexpr (G::kind[J] == node_kind::transpose) {
        using S = typename type_at_t<typename G::order, ch[0]>::shape;
        const T* a = pointer<T, G, ch[0]>(ctx);
        constexpr std::size_t rows = S::dims[0], cols = S::dims[1];
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t c = 0; c < cols; ++c) out[c * rows + r] = a[r * cols + c];
    } else {  // matmul
        using A = type_at_t<typename G::order, ch[0]>;
        using B = type_at_t<typename G::order, ch[1]>;
        constexpr int m = static_cast<int>(A::shape::dims[0]);
        constexpr int k = static_cast<int>(A::shape::dims[1]);
        const auto [a, ta] = operand<T, G, ch[0]>(ctx);
        const auto [b, tb] = operand<T, G, ch[1]>(ctx);
        // Whether A is read transposed is known here at compile time.
        constexpr bool a_transposed = G::kind[ch[0]] == node_kind::transpose && !G::facts.materialised[ch[0]];
        if constexpr (B::shape::rank == 1 && blas::use_small_gemv(a_transposed, m, k)) {
            blas::small_gemv<m, k>(ta, a, b, out);  // stored A is (m, k), or (k, m) when ta
        } else if constexpr (B::shape::rank == 1) {
            // Stored A is (m, k), or (k, m) when ta.
            blas::gemv(ta, ta ? k : m, ta ? m : k, a, b, out);
        } else {
            constexpr int nn = static_cast<int>(B::shape::dims[1]);
            blas::gemm(ta, tb, m, nn, k, a, ta ? m : k, b, tb ? k : nn, out);
        }
    }
    (void)sizeof(E);
}

template <class T, class G>
using step_fn = void (*)(context<T, G>&);

template <class T, class G, std::size_t... K>
constexpr std::array<step_fn<T, G>, sizeof...(K)> make_steps(std::index_sequence<K...>) {
    return {&run_step<T, G, G::steps[K]>...};
}

}  // namespace detail

/// A compiled evaluation of the expressions `Outputs...` in scalar type `T`.
/// Make one with `mnemo::compile<T>(e1, e2, ...)`, then call it with bindings:
/// `auto [loss, gM] = p(M = m, x = x)`. Tensor results are views into the plan's arena,
/// valid until its next call.
template <class T, class... Outputs>
class plan {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "mnemo: plans compute in float or double.");

public:
    using graph = detail::graph_of<Outputs...>;
    static_assert(check::names_are_unique<typename graph::order>());

    plan() : m_arena(graph::facts.arena_size + 1) {}

    /// Number of distinct nodes, and of those that get a buffer.
    static constexpr std::size_t node_count = graph::n;
    static constexpr std::size_t buffer_count = graph::facts.steps;
    /// Size of the arena, in elements of T.
    static constexpr std::size_t arena_size = graph::facts.arena_size;

    /// Evaluate every output with the given bindings (`sym = data`, or `bind(sym, data)`).
    template <class... Bs>
    auto operator()(const Bs&... bs) {
        run(bs...);
        return results(std::index_sequence_for<Outputs...>{});
    }

    /// Evaluate, keeping the results in the plan (read them with `get<I>()`).
    template <class... Bs>
    void run(const Bs&... bs) {
        bind_all(typename graph::symbols{}, bs...);
        execute();
    }

    /// Pointers to the data of the symbols, in the order of `graph::symbols` (a scalar's
    /// pointer points at its value).
    using pointers = std::array<const T*, graph::symbols::size>;

    /// Evaluate with data already checked by the caller: one pointer per symbol of
    /// `graph::symbols`, each to contiguous row-major data of the symbol's shape. No checks,
    /// for the library's inner loops (per-token steps), where the shapes hold by construction.
    void run_unchecked(const pointers& p) {
        m_ctx.arena = m_arena.data();
        for (std::size_t k = 0; k < p.size(); ++k) m_ctx.sym[k] = p[k];
        execute();
    }

    /// Places for the results, in the order of the outputs (null: the plan's arena).
    using destinations = std::array<T*, sizeof...(Outputs)>;

    /// `run_unchecked`, writing result I to `out[I]` where that is not null (`shape::size`
    /// elements, row-major) instead of the arena: no copy out of the plan. Such a result is
    /// also read from there by the rest of the evaluation, so `out[I]` must not overlap any
    /// bound symbol's data or another result; `data<I>()` does not hold it.
    void run_unchecked_into(const pointers& p, const destinations& out) {
        m_ctx.out = out;
        run_unchecked(p);
        // A node that is several outputs was written to the first one's place.
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            (copy_repeat<I>(out), ...);
        }(std::index_sequence_for<Outputs...>{});
        m_ctx.out = destinations{};
    }

    /// Pointer to result I of the last evaluation (row-major, `shape::size` elements).
    template <std::size_t I>
    const T* data() const {
        return m_arena.data() + graph::facts.offset[graph::outputs[I]];
    }

    /// Result I of the last evaluation: a `T` for a scalar, else a view of shape
    /// (n) or (m, n) into the arena.
    template <std::size_t I>
    auto get() const {
        constexpr std::size_t j = graph::outputs[I];
        using S = typename detail::type_at_t<typename graph::order, j>::shape;
        const T* p = m_arena.data() + graph::facts.offset[j];
        if constexpr (S::rank == 0) return *p;
        else {
            std::array<std::size_t, S::rank> sh{};
            for (std::size_t k = 0; k < S::rank; ++k) sh[k] = S::dims[k];
            return xt::adapt(p, S::size, xt::no_ownership(), sh);
        }
    }

private:
    /// Schedules of at most this many steps run as one function, the steps written out in
    /// it (the compiler may inline them); longer ones call each step through a table.
    static constexpr std::size_t inline_steps = 64;

    /// Runs the schedule. Written out, the small per-token plans pay no call per step;
    /// the table keeps the compile time and compiler memory of long schedules (an MLP
    /// memory's step) in bounds.
    void execute() {
        if constexpr (graph::facts.steps <= inline_steps) {
            [this]<std::size_t... K>(std::index_sequence<K...>) {
                (detail::run_step<T, graph, graph::steps[K]>(m_ctx), ...);
            }(std::make_index_sequence<graph::facts.steps>{});
        } else {
            static constexpr auto steps =
                detail::make_steps<T, graph>(std::make_index_sequence<graph::facts.steps>{});
            for (auto step : steps) step(m_ctx);
        }
    }

    template <std::size_t I>
    void copy_repeat(const destinations& out) {
        constexpr std::size_t j = graph::outputs[I];
        constexpr std::size_t first = detail::output_of<graph, j>();
        if constexpr (first != I) {
            if (!out[I]) return;
            const T* src = out[first] ? out[first] : m_arena.data() + graph::facts.offset[j];
            std::copy_n(src, detail::type_at_t<typename graph::order, j>::shape::size, out[I]);
        }
    }

    template <std::size_t... I>
    auto results(std::index_sequence<I...>) const {
        return std::tuple{get<I>()...};
    }

    template <class... Syms, class... Bs>
    void bind_all(detail::list<Syms...>, const Bs&... bs) {
        m_ctx.arena = m_arena.data();
        auto all = boost::hana::make_tuple(&bs...);
        using bound = detail::list<typename Bs::symbol_type...>;
        std::size_t k = 0;
        (bind_one<Syms, bound>(all, k++), ...);
    }

    template <class Sym, class... Bound>
    static constexpr std::array<std::size_t, 2> find_binding(detail::list<Bound...>) {
        constexpr bool hit[] = {std::is_same_v<Bound, Sym>..., false};
        std::size_t first = sizeof...(Bound), count = 0;
        for (std::size_t i = 0; i < sizeof...(Bound); ++i)
            if (hit[i]) {
                if (count++ == 0) first = i;
            }
        return {first, count};
    }

    template <class Sym, class Bound, class All>
    void bind_one(const All& all, std::size_t k) {
        constexpr auto found = find_binding<Sym>(Bound{});
        static_assert(found[1] <= 1, "mnemo: a symbol is bound twice in one evaluation.");
        static_assert(check::symbol_is_bound<Sym, (found[1] >= 1)>,
                      "mnemo: a symbol of this plan has no data bound to it; bind every symbol (sym = data).");
        if constexpr (found[1] == 1)
            m_ctx.sym[k] = detail::bound_pointer<T, Sym>(boost::hana::at_c<found[0]>(all)->data, m_scalars[k]);
    }

    std::vector<T, xsimd::aligned_allocator<T, 64>> m_arena;
    std::array<T, graph::symbols::size + 1> m_scalars{};
    detail::context<T, graph> m_ctx{};
};

/// `compile<T>(e1, e2, ...)`: a plan evaluating the expressions together in type `T`.
template <class T, expression... Es>
plan<T, Es...> compile(Es...) {
    return {};
}

}  // namespace mnemo
