#pragma once
/// \file
/// Binding data to symbols: `M = data` makes a `binding`, checked when a plan runs.

#include <stdexcept>
#include <string>
#include <type_traits>

#include "mnemo/detail/xtensor.hpp"
#include "mnemo/expr/node.hpp"

namespace mnemo {

/// The data `D` bound to the symbol `Sym` (held by reference: keep it alive until the
/// evaluation returns).
template <class Sym, class D>
struct binding {
    using symbol_type = Sym;
    const D& data;
};

/// `bind(M, data)`, the same as `M = data`.
template <fixed_string N, class S, class D>
constexpr binding<symbol<N, S>, D> bind(symbol<N, S>, const D& data) {
    return {data};
}

namespace detail {

template <class D>
concept contiguous_tensor = requires(const D& d) {
    d.data();
    d.shape();
    d.strides();
    d.dimension();
};

/// Pointer to the data bound to `Sym`, after checking its shape and layout at run time.
/// Scalars bound as plain numbers are copied to `scalar_slot`.
template <class T, class Sym, class D>
const T* bound_pointer(const D& d, T& scalar_slot) {
    using S = typename Sym::shape;
    if constexpr (std::is_arithmetic_v<D>) {
        static_assert(S::rank == 0, "mnemo: a plain number can only be bound to a scalar symbol.");
        scalar_slot = static_cast<T>(d);
        return &scalar_slot;
    } else {
        static_assert(contiguous_tensor<D>,
                      "mnemo: bind an xtensor container (xtensor, xtensor_fixed, xarray, adaptor, view) or a "
                      "number; evaluate a lazy xtensor expression into a container first.");
        if constexpr (!contiguous_tensor<D>) return nullptr;
        else {
        static_assert(std::is_same_v<std::remove_cv_t<typename D::value_type>, T>,
                      "mnemo: the data's value type must be the plan's scalar type (float or double).");
        bool ok = d.dimension() == S::rank;
        for (std::size_t k = 0; ok && k < S::rank; ++k) ok = static_cast<std::size_t>(d.shape()[k]) == S::dims[k];
        if (!ok) {
            std::string got = "(";
            for (std::size_t k = 0; k < d.dimension(); ++k) got += (k ? ", " : "") + std::to_string(d.shape()[k]);
            throw std::invalid_argument("mnemo: symbol '" + std::string(Sym::name()) + "' has shape " +
                                        shape_string<S>() + " but was bound to data of shape " + got + ")");
        }
        // Contiguous row-major storage: unit stride along the last axis, rows one after the
        // other (a stride of a length-1 axis does not matter). Views are fine if they are.
        const auto& st = d.strides();
        bool contiguous = true;
        if constexpr (S::rank >= 1)
            contiguous = contiguous && (S::dims[S::rank - 1] == 1 || st[S::rank - 1] == 1);
        if constexpr (S::rank == 2)
            contiguous = contiguous && (S::dims[0] == 1 || static_cast<std::size_t>(st[0]) == S::dims[1]);
        if (!contiguous)
            throw std::invalid_argument("mnemo: symbol '" + std::string(Sym::name()) +
                                        "' must be bound to contiguous row-major data");
        if constexpr (requires { d.data_offset(); }) return d.data() + d.data_offset();
        else return d.data();
        }
    }
}

}  // namespace detail
}  // namespace mnemo
