#pragma once
/// \file
/// Containers for a memory's meta-parameters (and their gradients) and hyperparameters,
/// indexed by symbol.

#include <array>
#include <boost/hana.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "mnemo/detail/xtensor.hpp"
#include "mnemo/memory/step.hpp"

namespace mnemo::memory {
namespace detail {

/// The symbols of a step that are not state, data or adjoints: the ones the outer loop
/// learns, minus the gates' hyperparameters.
template <class Spec, class Fixed, class L>
struct meta_symbols;
template <class Spec, class Fixed, class... Syms>
struct meta_symbols<Spec, Fixed, mnemo::detail::list<Syms...>> {
    using sy = step_symbols<Spec>;
    template <class S, std::size_t... I>
    static constexpr bool is_state(std::index_sequence<I...>) {
        return ((std::is_same_v<S, typename sy::template param<I>> ||
                 std::is_same_v<S, typename sy::template surprise<I>> ||
                 std::is_same_v<S, typename sy::template grad_point<I>> ||
                 std::is_same_v<S, typename sy::template adj_param<I>> ||
                 std::is_same_v<S, typename sy::template adj_surprise<I>>) ||
                ...);
    }
    template <class S>
    static constexpr bool is_meta = !is_state<S>(std::make_index_sequence<sy::n>{}) &&
                                    !std::is_same_v<S, typename sy::token> &&
                                    !std::is_same_v<S, typename sy::target> &&
                                    !std::is_same_v<S, typename sy::retrieval_adjoint> &&
                                    !mnemo::detail::contains_type_v<Fixed, S>;
    using type = typename mnemo::detail::list_cat<
        std::conditional_t<is_meta<Syms>, mnemo::detail::list<Syms>, mnemo::detail::list<>>...>::type;
};

template <class T, class S>
struct tensor_of {
    using type = xt::xtensor<T, S::rank>;
};

template <class T, class S>
typename tensor_of<T, S>::type zeros_of() {
    std::array<std::size_t, S::rank> sh{};
    for (std::size_t k = 0; k < S::rank; ++k) sh[k] = S::dims[k];
    typename tensor_of<T, S>::type a(sh);
    a.fill(T(0));
    return a;
}

template <class Sym, class... Syms>
constexpr std::size_t position(mnemo::detail::list<Syms...>) {
    constexpr bool hits[] = {std::is_same_v<Sym, Syms>..., false};
    for (std::size_t i = 0; i < sizeof...(Syms); ++i)
        if (hits[i]) return i;
    return sizeof...(Syms);
}

}  // namespace detail

/// Meta-parameters of a memory: the initial memory `M0` (one tensor per parameter tensor
/// of the model) and every learned symbol (projections, gate weights, ...). The same type
/// holds their gradients. Tensors are zero-initialised with their shapes.
template <class T, class Shapes, class Metas>
class parameters;

template <class T, class... Shapes, class... Metas>
class parameters<T, mnemo::detail::list<Shapes...>, mnemo::detail::list<Metas...>> {
public:
    using meta_list = mnemo::detail::list<Metas...>;
    static constexpr std::size_t memory_tensors = sizeof...(Shapes);

    parameters()
        : m_m0(detail::zeros_of<T, Shapes>()...),
          m_meta(detail::zeros_of<T, typename Metas::shape>()...) {}

    /// Tensor I of the initial memory `M0`.
    template <std::size_t I>
    auto& m0() { return boost::hana::at_c<I>(m_m0); }
    template <std::size_t I>
    const auto& m0() const { return boost::hana::at_c<I>(m_m0); }

    /// The value of a learned symbol: `params[WK]`.
    template <class Sym>
    auto& operator[](Sym) {
        constexpr std::size_t i = detail::position<Sym>(meta_list{});
        static_assert(i < sizeof...(Metas), "mnemo: this symbol is not a meta-parameter of the memory.");
        return boost::hana::at_c<i>(m_meta);
    }
    template <class Sym>
    const auto& operator[](Sym) const {
        constexpr std::size_t i = detail::position<Sym>(meta_list{});
        static_assert(i < sizeof...(Metas), "mnemo: this symbol is not a meta-parameter of the memory.");
        return boost::hana::at_c<i>(m_meta);
    }
    /// Whether `Sym` is a meta-parameter of this memory.
    template <class Sym>
    static constexpr bool has(Sym) { return detail::position<Sym>(meta_list{}) < sizeof...(Metas); }

    /// The tensor called `Name`: "M0[0]", "M0[1]", ... for the initial memory, else the
    /// symbol's name ("WK", "WV", "WQ", a gate's "wa", a model's own symbol, ...). The one
    /// way to name every meta-parameter: `params.get<"WK">()`, `params.get<"wa">()`.
    template <fixed_string Name>
    auto& get() {
        constexpr std::size_t i = index_of(Name.view());
        static_assert(i < sizeof...(Shapes) + sizeof...(Metas), "mnemo: the memory has no meta-parameter of this name.");
        if constexpr (i < sizeof...(Shapes)) return boost::hana::at_c<i>(m_m0);
        else return boost::hana::at_c<i - sizeof...(Shapes)>(m_meta);
    }
    template <fixed_string Name>
    const auto& get() const {
        return const_cast<parameters*>(this)->template get<Name>();
    }
    /// Whether the memory has a meta-parameter called `name`.
    static constexpr bool has_named(std::string_view name) {
        return index_of(name) < sizeof...(Shapes) + sizeof...(Metas);
    }
    /// The names of every tensor, in the order of `for_each`.
    static std::vector<std::string> names() {
        std::vector<std::string> out;
        for (std::size_t i = 0; i < sizeof...(Shapes); ++i) out.push_back("M0[" + std::to_string(i) + "]");
        for (std::string_view v : std::array<std::string_view, sizeof...(Metas) + 1>{Metas::name()..., ""})
            if (!v.empty()) out.emplace_back(v);
        return out;
    }

    /// `f(name, tensor)` for every tensor: "M0[0]", "M0[1]", ..., then each symbol's name.
    template <class F>
    void for_each(F&& f) const {
        std::size_t i = 0;
        boost::hana::for_each(m_m0, [&](const auto& t) { f("M0[" + std::to_string(i++) + "]", t); });
        std::size_t j = 0;
        constexpr std::array<std::string_view, sizeof...(Metas) + 1> names{Metas::name()..., ""};
        boost::hana::for_each(m_meta, [&](const auto& t) { f(std::string(names[j++]), t); });
    }
    /// The same with each tensor mutable, `f(name, tensor&)`: how an optimizer or an
    /// initialiser walks the parameters (and, in the same order, their gradients).
    template <class F>
    void for_each(F&& f) {
        std::size_t i = 0;
        boost::hana::for_each(m_m0, [&](auto& t) { f("M0[" + std::to_string(i++) + "]", t); });
        std::size_t j = 0;
        constexpr std::array<std::string_view, sizeof...(Metas) + 1> names{Metas::name()..., ""};
        boost::hana::for_each(m_meta, [&](auto& t) { f(std::string(names[j++]), t); });
    }
    /// `f(tensor&)` for every tensor, in the order of `for_each`.
    template <class F>
    void for_each_mutable(F&& f) {
        boost::hana::for_each(m_m0, [&](auto& t) { f(t); });
        boost::hana::for_each(m_meta, [&](auto& t) { f(t); });
    }

private:
    static constexpr std::size_t index_of(std::string_view name) {
        constexpr std::size_t n0 = sizeof...(Shapes);
        if (name.size() == 5 && name.substr(0, 3) == "M0[" && name[4] == ']' && name[3] >= '0' &&
            std::size_t(name[3] - '0') < n0)
            return std::size_t(name[3] - '0');
        constexpr std::array<std::string_view, sizeof...(Metas) + 1> names{Metas::name()..., ""};
        for (std::size_t k = 0; k < sizeof...(Metas); ++k)
            if (names[k] == name) return n0 + k;
        return n0 + sizeof...(Metas);
    }

    boost::hana::tuple<typename detail::tensor_of<T, Shapes>::type...> m_m0;
    boost::hana::tuple<typename detail::tensor_of<T, typename Metas::shape>::type...> m_meta;
};

/// Hyperparameters (bound, not learned), such as constant gates or `theta_max`:
/// `hyper[theta_max] = 0.1`.
template <class T, class Fixed>
class hyperparameters;
template <class T, class... Syms>
class hyperparameters<T, mnemo::detail::list<Syms...>> {
public:
    using list = mnemo::detail::list<Syms...>;
    template <class Sym>
    T& operator[](Sym) {
        constexpr std::size_t i = detail::position<Sym>(list{});
        static_assert(i < sizeof...(Syms), "mnemo: this symbol is not a hyperparameter of the memory.");
        return m_values[i];
    }
    template <class Sym>
    const T& operator[](Sym) const {
        constexpr std::size_t i = detail::position<Sym>(list{});
        static_assert(i < sizeof...(Syms), "mnemo: this symbol is not a hyperparameter of the memory.");
        return m_values[i];
    }

private:
    std::array<T, sizeof...(Syms) + 1> m_values{};
};

}  // namespace mnemo::memory
