#pragma once
/// \file
/// Memory models: the inner model `M(k)` as an expression of the input and the memory's
/// parameter tensors.
///
/// A model is a type with
///   - `in`, `out`: input and output sizes;
///   - `params`: a `mnemo::type_list` of the shapes of its parameter tensors (updated at test
///     time, one surprise state each);
///   - `static constexpr auto apply(K k, P... p)`: the expression `M(k)` for the parameter
///     symbols `p...` (the library passes its own symbols).
/// Any such type is a model; the ones below are ready-made. A model may also use symbols of
/// its own (such as a layer norm's scale): they become meta-parameters, learned by the
/// outer loop.

#include <tuple>

#include "mnemo/expr.hpp"

namespace mnemo::memory {

/// Activations for MLP memories.
struct silu_act {
    template <class A>
    static constexpr auto apply(A a) { return silu(a); }
};
struct gelu_act {
    template <class A>
    static constexpr auto apply(A a) { return gelu(a); }
};
/// The exact (erf-form) GELU: titans-pytorch's default MLP activation (F.gelu; PyTorch's
/// F.gelu and nn.GELU() default to the exact erf form). `gelu_act` is the tanh form.
struct gelu_exact_act { template <class A> static constexpr auto apply(A a) { return gelu_exact(a); } };
struct relu_act {
    template <class A>
    static constexpr auto apply(A a) { return relu(a); }
};

/// `M(k) = W k`, one matrix W of shape (out, in).
template <std::size_t In, std::size_t Out = In>
struct linear {
    static constexpr std::size_t in = In, out = Out;
    using params = mnemo::type_list<shape<Out, In>>;
    template <class K, class W>
    static constexpr auto apply(K k, W w) { return w * k; }
};

namespace detail {
template <std::size_t... S>
struct size_list {};

template <std::size_t I, std::size_t... S>
constexpr std::size_t nth_size() {
    constexpr std::size_t a[] = {S...};
    return a[I];
}

template <bool Bias, class Sizes, class Seq>
struct mlp_params;
template <bool Bias, std::size_t... S, std::size_t... L>
struct mlp_params<Bias, size_list<S...>, std::index_sequence<L...>> {
    // Layer l maps size S[l] to S[l + 1]: weights (S[l+1], S[l]), then biases (S[l+1]).
    using weights = mnemo::detail::list<shape<nth_size<L + 1, S...>(), nth_size<L, S...>()>...>;
    using biases = mnemo::detail::list<shape<nth_size<L + 1, S...>()>...>;
    using type = std::conditional_t<Bias, typename mnemo::detail::list_cat<weights, biases>::type, weights>;
};
}  // namespace detail

/// MLP memory `W_L act(... act(W_1 k + b_1) ...) + b_L`, depth L = number of hidden sizes + 1
/// (at least 2): `mlp<silu_act, false, 64, 256>` is `W2 silu(W1 k)` with W1 (256, 64) and
/// W2 (64, 256). Parameters: the weights in order, then (with `Bias`) the biases.
template <class Act, bool Bias, std::size_t In, std::size_t... Hidden>
struct mlp {
    static_assert(sizeof...(Hidden) >= 1, "mnemo: an MLP memory needs at least one hidden layer (depth 2).");
    static constexpr std::size_t in = In, out = In;
    static constexpr std::size_t depth = sizeof...(Hidden) + 1;
    using params = typename detail::mlp_params<Bias, detail::size_list<In, Hidden..., In>,
                                               std::make_index_sequence<depth>>::type;

    template <std::size_t L, class H, class Tuple>
    static constexpr auto layer(H h, Tuple ps) {
        auto z = std::get<L>(ps) * h;
        if constexpr (Bias) {
            auto zb = z + std::get<depth + L>(ps);
            if constexpr (L + 1 == depth) return zb;
            else return layer<L + 1>(Act::apply(zb), ps);
        } else {
            if constexpr (L + 1 == depth) return z;
            else return layer<L + 1>(Act::apply(z), ps);
        }
    }
    template <class K, class... P>
    static constexpr auto apply(K k, P... p) {
        return layer<0>(k, std::tuple<P...>{p...});
    }
};

/// `M(k) = k + Inner(k)` (needs in == out).
template <class Inner>
struct residual {
    static_assert(Inner::in == Inner::out, "mnemo: a residual memory needs equal input and output sizes.");
    static constexpr std::size_t in = Inner::in, out = Inner::out;
    using params = typename Inner::params;
    template <class K, class... P>
    static constexpr auto apply(K k, P... p) { return k + Inner::apply(k, p...); }
};

/// `M(k) = scale * normalise(Inner(k))`: a layer norm with a learned scale (a meta-parameter,
/// the symbol `ln_scale` of size `out`), `normalise(y) = (y - mean(y)) / sqrt(var(y) + 1e-5)`.
template <class Inner>
struct layer_norm {
    static constexpr std::size_t in = Inner::in, out = Inner::out;
    using params = typename Inner::params;
    static constexpr auto scale = mnemo::vector<"ln_scale", out>;
    template <class K, class... P>
    static constexpr auto apply(K k, P... p) {
        auto y = Inner::apply(k, p...);
        auto centred = y - mean(y);
        return hadamard(scale, centred / sqrt(mean(square(centred)) + c<1, 100000>));
    }
};

}  // namespace mnemo::memory
