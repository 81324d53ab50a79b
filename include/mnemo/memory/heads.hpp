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
                         const xt::xtensor<T, 3>& tokens, const xt::xtensor<T, 3>& targets, run_options opt = {}) {
        return run(params, hyper, tokens, targets, opt, true);
    }
    result forward(const std::vector<parameters_type>& params, const hyperparameters_type& hyper,
                   const xt::xtensor<T, 3>& tokens, const xt::xtensor<T, 3>& targets, run_options opt = {}) {
        return run(params, hyper, tokens, targets, opt, false);
    }

private:
    result run(const std::vector<parameters_type>& params, const hyperparameters_type& hyper,
               const xt::xtensor<T, 3>& tokens, const xt::xtensor<T, 3>& targets, run_options opt, bool backward) {
        if (params.size() != H)
            throw std::invalid_argument("mnemo: " + std::to_string(params.size()) + " parameter sets given for " +
                                        std::to_string(H) + " heads");
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
