#pragma once
/// \file
/// Several heads: independent memories over slices of the projections.
///
/// Head h has its own initial memory, gates and projections: its `W_K`, `W_V`, `W_Q` are
/// the rows of head h of the layer's full projections, which is the same as a projection
/// of its own. Its retrieval is the slice h of the layer's output `y = [y_0; ...; y_{H-1}]`.
/// The outer loss of the layer is the mean over heads of each head's outer loss, which for
/// per-feature means (mse, l1) is the mean over all features of `y`.

#include <vector>

#include "mnemo/memory/sequence.hpp"

namespace mnemo::memory {

template <class Spec, std::size_t H, class T = double, bool FirstOrder = false>
class multi_head_memory {
    static_assert(H >= 1, "mnemo: a multi-head memory needs at least one head.");

public:
    using head_memory = sequence_memory<Spec, T, FirstOrder>;
    using parameters_type = typename head_memory::parameters_type;
    using hyperparameters_type = typename head_memory::hyperparameters_type;
    using state_type = typename head_memory::state_type;
    static constexpr std::size_t heads = H;
    static constexpr std::size_t d = head_memory::d;
    static constexpr std::size_t d_out = head_memory::d_out * H;

    struct result {
        T loss = 0;
        xt::xtensor<T, 3> outputs;                 ///< (B, T, H d_out_head)
        std::vector<parameters_type> grads;        ///< one per head
        std::vector<std::vector<state_type>> states;  ///< [head][sequence]
    };

    /// Forward and meta-gradient of every head on the same tokens; `targets` is
    /// (B, T, H * d_out_head), head h reading its slice.
    result meta_gradient(const std::vector<parameters_type>& params, const hyperparameters_type& hyper,
                         batch_ref<T> tokens, batch_ref<T> targets, run_options opt = {}) {
        return run(params, hyper, tokens, targets, opt, true);
    }
    result forward(const std::vector<parameters_type>& params, const hyperparameters_type& hyper,
                   batch_ref<T> tokens, batch_ref<T> targets, run_options opt = {}) {
        return run(params, hyper, tokens, targets, opt, false);
    }

    /// A layer's forward of every head, kept for its backward.
    class context {
    public:
        /// The retrievals Y (B, T, H d_out_head), head h in its slice.
        const xt::xtensor<T, 3>& outputs() const { return m_outputs; }
        /// Head h's forward (its final states: heads()[h].states()).
        const std::vector<typename head_memory::context>& heads() const { return m_heads; }

    private:
        friend class multi_head_memory;
        std::vector<typename head_memory::context> m_heads = std::vector<typename head_memory::context>(H);
        xt::xtensor<T, 3> m_outputs;
        xt::xtensor<T, 3> m_slice;
    };
    /// What the layer's backward returns: per head, the meta-gradient and the adjoints of
    /// the initial states; the token gradient, summed over the heads.
    struct layer_gradients {
        std::vector<parameters_type> grads;                       ///< one per head
        xt::xtensor<T, 3> tokens;                                 ///< dL/dX, (B, T, d)
        std::vector<std::vector<state_type>> initial_adjoints;   ///< [head][sequence]
    };

    /// The forward of every head as a layer: Y (B, T, H d_out_head). `initial`, if given,
    /// holds the initial states [head][sequence].
    const xt::xtensor<T, 3>& forward(context& ctx, const std::vector<parameters_type>& params,
                                     const hyperparameters_type& hyper, batch_ref<T> tokens_arg, run_options opt = {},
                                     const std::vector<std::vector<state_type>>* initial = nullptr) {
        const xt::xtensor<T, 3>& tokens = tokens_arg;
        check_heads(params.size(), "parameter sets");
        if (initial) check_heads(initial->size(), "initial state sets");
        const std::size_t B = tokens.shape()[0], L = tokens.shape()[1], w = head_memory::d_out;
        for (std::size_t h = 0; h < H; ++h) {
            const auto& y = m_memory.forward(ctx.m_heads[h], params[h], hyper, tokens, opt,
                                             initial ? &(*initial)[h] : nullptr);
            if (h == 0) ctx.m_outputs.resize(std::array<std::size_t, 3>{B, L, d_out});
            for (std::size_t s = 0; s < B; ++s)
                for (std::size_t t = 0; t < L; ++t)
                    for (std::size_t i = 0; i < w; ++i) ctx.m_outputs(s, t, h * w + i) = y(s, t, i);
        }
        return ctx.m_outputs;
    }

    /// The backward of every head, given dL/dY (B, T, H d_out_head) (and optionally the
    /// final adjoints [head][sequence]).
    layer_gradients backward(context& ctx, batch_ref<T> dY_arg,
                             const std::vector<std::vector<state_type>>* final_adjoints = nullptr) {
        const xt::xtensor<T, 3>& dY = dY_arg;
        if (final_adjoints) check_heads(final_adjoints->size(), "final adjoint sets");
        const auto& ys = ctx.m_outputs.shape();
        if (dY.shape()[0] != ys[0] || dY.shape()[1] != ys[1] || dY.shape()[2] != ys[2])
            throw std::invalid_argument("mnemo: backward: dY does not have the shape of the heads' retrievals (B, T, " +
                                        std::to_string(d_out) + ")");
        for (std::size_t h = 0; h < H; ++h)
            if (!ctx.m_heads[h].ready())
                throw std::invalid_argument("mnemo: backward: the context holds no forward to differentiate");
        const std::size_t B = ys[0], L = ys[1], w = head_memory::d_out;
        layer_gradients g;
        ctx.m_slice.resize(std::array<std::size_t, 3>{B, L, w});
        for (std::size_t h = 0; h < H; ++h) {
            for (std::size_t s = 0; s < B; ++s)
                for (std::size_t t = 0; t < L; ++t)
                    for (std::size_t i = 0; i < w; ++i) ctx.m_slice(s, t, i) = dY(s, t, h * w + i);
            auto hg = m_memory.backward(ctx.m_heads[h], ctx.m_slice, final_adjoints ? &(*final_adjoints)[h] : nullptr);
            if (h == 0) g.tokens = std::move(hg.tokens);
            else g.tokens += hg.tokens;
            g.grads.push_back(std::move(hg.grads));
            g.initial_adjoints.push_back(std::move(hg.initial_adjoints));
        }
        return g;
    }

private:
    static void check_heads(std::size_t given, const char* what) {
        if (given != H)
            throw std::invalid_argument("mnemo: " + std::to_string(given) + " " + what + " given for " +
                                        std::to_string(H) + " heads");
    }

    result run(const std::vector<parameters_type>& params, const hyperparameters_type& hyper,
               const xt::xtensor<T, 3>& tokens, const xt::xtensor<T, 3>& targets, run_options opt, bool backward) {
        check_heads(params.size(), "parameter sets");
        const std::size_t B = tokens.shape()[0], L = tokens.shape()[1], w = head_memory::d_out;
        if (targets.dimension() != 3 || targets.shape()[2] != d_out || targets.shape()[0] != B ||
            targets.shape()[1] != L)
            throw std::invalid_argument("mnemo: multi-head targets must be (B, T, " + std::to_string(d_out) + ")");
        if (opt.loss_scale == 0) opt.loss_scale = 1.0 / double(B * L * H);
        result r;
        r.outputs = xt::xtensor<T, 3>(std::array<std::size_t, 3>{B, L, d_out});
        xt::xtensor<T, 3> slice(std::array<std::size_t, 3>{B, L, w});
        for (std::size_t h = 0; h < H; ++h) {
            for (std::size_t s = 0; s < B; ++s)
                for (std::size_t t = 0; t < L; ++t)
                    for (std::size_t i = 0; i < w; ++i) slice(s, t, i) = targets(s, t, h * w + i);
            auto hr = backward ? m_memory.meta_gradient(params[h], hyper, tokens, slice, opt)
                               : m_memory.forward(params[h], hyper, tokens, slice, opt);
            r.loss += hr.loss;
            for (std::size_t s = 0; s < B; ++s)
                for (std::size_t t = 0; t < L; ++t)
                    for (std::size_t i = 0; i < w; ++i) r.outputs(s, t, h * w + i) = hr.outputs(s, t, i);
            if (backward) r.grads.push_back(std::move(hr.grads));
            r.states.push_back(std::move(hr.states));
        }
        return r;
    }

    head_memory m_memory;
};

}  // namespace mnemo::memory
