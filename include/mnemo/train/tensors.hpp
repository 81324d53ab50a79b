#pragma once
/// \file
/// Named views of tensors: what the optimizers, the initialisers and the checkpoints work
/// on. A `tensor_list` does not own data; it points into the caller's tensors (a memory's
/// `parameters_type`, several of them for a stack, an embedding or a readout of the
/// caller's), each under a name, in the order they were added.

#include <concepts>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace mnemo::train {

namespace detail {
// What `tensor_list::add(Params&)` calls `for_each` with in its constraint: a named type
// rather than a lambda, which crashes clang 14 there (in a requires-expression).
struct named_tensor_probe {
    template <class Tensor>
    void operator()(const std::string&, Tensor&) const {}
};
}  // namespace detail

/// One tensor: its name, its data (row-major, contiguous) and its shape.
template <class T>
struct tensor_view {
    std::string name;
    T* data = nullptr;
    std::vector<std::size_t> shape;  ///< empty for a scalar (a 0-d tensor)
    std::size_t size = 0;            ///< the product of `shape`
};

/// "(64, 32)", "()" for a scalar.
inline std::string shape_string(const std::vector<std::size_t>& shape) {
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

/// Views of named tensors of one scalar type `T`, in order. Names are unique.
///
///     train::tensor_list<double> params;
///     params.add(memory_params, "layer1.");   // every meta-parameter of a memory, prefixed
///     params.add("embed", embedding);         // any contiguous xtensor container
///
/// A view stays valid as long as the tensor it points into is neither destroyed nor
/// resized.
template <class T>
class tensor_list {
    static_assert(std::is_floating_point_v<T>, "mnemo: a tensor_list holds float or double tensors.");

public:
    using value_type = T;

    /// Adds one tensor under `name`: an `xt::xtensor`, `xt::xarray` or any container with
    /// `data()`, `shape()` and `size()` whose elements are `T`, row-major and contiguous.
    template <class Tensor>
        requires requires(Tensor& t) {
            { t.data() } -> std::convertible_to<T*>;
            t.shape();
            t.size();
        }
    tensor_list& add(std::string name, Tensor& t) {
        std::vector<std::size_t> shape(t.shape().begin(), t.shape().end());
        push(std::move(name), t.data(), std::move(shape));
        return *this;
    }

    /// A tensor of another element type (float into a `tensor_list<double>`, or the
    /// reverse): refused at compile time. A list points into the caller's tensors, so a
    /// converted copy would leave the optimizer updating the copy.
    template <class Tensor>
        requires requires(Tensor& t) {
            { t.data() } -> std::convertible_to<const void*>;
            t.shape();
            t.size();
        } && (!std::convertible_to<decltype(std::declval<Tensor&>().data()), T*>)
    tensor_list& add(std::string, Tensor&) {
        static_assert(!sizeof(Tensor*),
                      "mnemo: a tensor_list<T> holds views of tensors whose elements are T; this tensor's "
                      "element type is another (or it is const): no conversion, since the list points into "
                      "the tensor itself.");
        return *this;
    }

    /// Adds every tensor of a set that names its tensors, `p.for_each(f(name, tensor&))`,
    /// such as a memory's `parameters_type` (its gradients too): "M0[0]", "WK", ...,
    /// each name after `prefix`.
    template <class Params>
        requires requires(Params& p, detail::named_tensor_probe f) { p.for_each(f); } &&
                 (!requires(Params& p) { p.data(); })
    tensor_list& add(Params& p, const std::string& prefix = "") {
        p.for_each([&](const std::string& name, auto& t) { add(prefix + name, t); });
        return *this;
    }

    /// Adds every view of another list, each name after `prefix`.
    tensor_list& add(const tensor_list& other, const std::string& prefix = "") {
        for (const auto& v : other) push(prefix + v.name, v.data, v.shape);
        return *this;
    }

    std::size_t size() const { return m_views.size(); }
    bool empty() const { return m_views.empty(); }
    const tensor_view<T>& operator[](std::size_t i) const { return m_views[i]; }
    auto begin() const { return m_views.begin(); }
    auto end() const { return m_views.end(); }

    /// The view called `name`, or null.
    const tensor_view<T>* find(std::string_view name) const {
        for (const auto& v : m_views)
            if (v.name == name) return &v;
        return nullptr;
    }
    /// The view called `name`; throws std::invalid_argument naming the tensors if there is none.
    const tensor_view<T>& at(std::string_view name) const {
        if (const auto* v = find(name)) return *v;
        throw std::invalid_argument("mnemo: no tensor named '" + std::string(name) + "' (the tensors are " +
                                    names_string() + ")");
    }
    /// The number of values over all the tensors.
    std::size_t values() const {
        std::size_t n = 0;
        for (const auto& v : m_views) n += v.size;
        return n;
    }
    /// "M0[0], WK, WV, ...", for messages.
    std::string names_string() const {
        std::string s;
        for (const auto& v : m_views) s += (s.empty() ? "" : ", ") + v.name;
        return s.empty() ? "none" : s;
    }

    /// Throws std::invalid_argument unless `other` has the same names and shapes in the same
    /// order (a gradient list against its parameters), naming the first difference.
    /// `what` names `other` in the message ("the gradients").
    void check_same_layout(const tensor_list& other, std::string_view what) const {
        // (Messages are built on failure only: a training step calls this, and allocates nothing.)
        auto head = [&] { return "mnemo: " + std::string(what) + " do not match the parameters: "; };
        for (std::size_t i = 0; i < m_views.size() && i < other.size(); ++i) {
            const auto& a = m_views[i];
            const auto& b = other[i];
            if (a.name != b.name)
                throw std::invalid_argument(head() + "entry " + std::to_string(i) + " is '" + b.name + "', expected '" +
                                            a.name + "'");
            if (a.shape != b.shape)
                throw std::invalid_argument(head() + "'" + a.name + "' has shape " + shape_string(b.shape) +
                                            ", expected " + shape_string(a.shape));
        }
        if (other.size() != m_views.size())
            throw std::invalid_argument(head() + std::to_string(other.size()) + " tensors, expected " +
                                        std::to_string(m_views.size()) + " (" + names_string() + ")");
    }

private:
    void push(std::string name, T* data, std::vector<std::size_t> shape) {
        if (name.empty()) throw std::invalid_argument("mnemo: a tensor needs a name");
        if (find(name)) throw std::invalid_argument("mnemo: two tensors named '" + name + "'");
        std::size_t n = 1;
        for (std::size_t s : shape) n *= s;
        if (n > 0 && data == nullptr) throw std::invalid_argument("mnemo: the tensor '" + name + "' has no data");
        m_views.push_back({std::move(name), data, std::move(shape), n});
    }

    std::vector<tensor_view<T>> m_views;
};

}  // namespace mnemo::train
