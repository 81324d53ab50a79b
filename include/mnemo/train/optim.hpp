#pragma once
/// \file
/// Outer optimizers over a `tensor_list` of parameters: AdamW and SGD with momentum, with
/// global-norm gradient clipping, a learning-rate schedule (linear warm-up, then cosine
/// decay) and per-parameter freezing, by name.
///
/// A step is all or nothing: it first reads every gradient (the global norm, a check that
/// all are finite, and the loss if given), and only then writes. A non-finite loss or
/// gradient throws `non_finite_error`, naming the step and the tensor, with the parameters
/// and the optimizer's state as they were before the step. The buffers are made by the
/// constructor: a step allocates nothing.

#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "mnemo/detail/lanes.hpp"
#include "mnemo/train/schedule.hpp"
#include "mnemo/train/tensors.hpp"

namespace mnemo::train {

/// A non-finite loss or gradient at a step: the step did not happen.
struct non_finite_error : std::runtime_error {
    using std::runtime_error::runtime_error;
    std::size_t step = 0;  ///< the step that was refused (1 for the first)
};

/// What every optimizer takes besides its own constants.
struct step_options {
    /// Clip the gradients to this global l2 norm (over every tensor that is not frozen);
    /// 0: no clipping.
    double clip_norm = 0;
    /// The learning rate's factor by step (default: constant 1).
    schedule lr_schedule = {};
    /// Names of parameters that get no update (no decay either); each must be a parameter.
    std::vector<std::string> frozen = {};
};

/// The squared l2 norm of n entries, added in double: not finite when an entry is not (or
/// the sum overflows).
template <class T>
double squared_norm(const T* g, std::size_t n) {
    return mnemo::detail::lane_sum<double>(n, [g](std::size_t k) { return double(g[k]) * double(g[k]); });
}

/// What AdamW and SGD share: the parameters, the frozen set, clipping, the schedule, the
/// step count and the state buffers (named, for checkpoints).
template <class T>
class optimizer {
public:
    virtual ~optimizer() = default;
    // The state views point into this object's buffers: copies would share them.
    optimizer(const optimizer&) = delete;
    optimizer& operator=(const optimizer&) = delete;

    /// One update from `grads` (the same names and shapes as the parameters, in the same
    /// order). With `loss`, a non-finite loss refuses the step too.
    void step(const tensor_list<T>& grads) { step_impl(grads, nullptr); }
    void step(const tensor_list<T>& grads, double loss) { step_impl(grads, &loss); }

    /// Refuses the next step for a reason found before it (a memory that diverged in the
    /// forward: memory::divergence_error): throws `non_finite_error` as `step` does for a
    /// non-finite loss, naming the step and `why`, with nothing changed.
    [[noreturn]] void refuse_step(const std::string& why) const {
        const std::size_t t = m_steps + 1;
        non_finite_error e("mnemo: step " + std::to_string(t) + " refused: " + why +
                           "; the parameters and the optimizer's state are unchanged");
        e.step = t;
        throw e;
    }

    /// The steps taken so far.
    std::size_t steps() const { return m_steps; }
    /// The learning rate of the next step.
    double learning_rate() const { return m_lr * m_options.lr_schedule.factor(m_steps); }
    /// The global norm of the last step's gradients, before clipping.
    double last_grad_norm() const { return m_last_norm; }
    const tensor_list<T>& parameters() const { return m_params; }
    bool is_frozen(std::size_t i) const { return m_frozen[i]; }
    /// The optimizer's state tensors, named "<optimizer>.<buffer>.<parameter>"
    /// ("adamw.m.WK"): what a checkpoint saves besides the parameters and `steps()`.
    const tensor_list<T>& state() const { return m_state_views; }
    /// Sets the step count (a checkpoint being loaded).
    void set_steps(std::size_t n) { m_steps = n; }
    /// "adamw", "sgd".
    virtual const char* kind() const = 0;

protected:
    optimizer(const tensor_list<T>& params, double lr, step_options opt, const char* who)
        : m_params(params), m_lr(lr), m_options(std::move(opt)), m_frozen(params.size(), false) {
        const std::string head = std::string("mnemo: ") + who + ": ";
        if (!(lr > 0) || !std::isfinite(lr))
            throw std::invalid_argument(head + "the learning rate must be finite and > 0, not " + std::to_string(lr));
        if (!(m_options.clip_norm >= 0) || !std::isfinite(m_options.clip_norm))
            throw std::invalid_argument(head + "clip_norm must be finite and >= 0 (0: no clipping), not " +
                                        std::to_string(m_options.clip_norm));
        m_options.lr_schedule.check();
        for (const auto& name : m_options.frozen) {
            bool found = false;
            for (std::size_t i = 0; i < params.size(); ++i)
                if (params[i].name == name) found = m_frozen[i] = true;
            if (!found)
                throw std::invalid_argument(head + "the frozen name '" + name + "' is not a parameter (the parameters are " +
                                            params.names_string() + ")");
        }
    }

    /// Makes one state buffer per parameter, named "<kind>.<buffer>.<parameter>", zeroed.
    void make_buffers(const std::string& buffer, std::vector<std::vector<T>>& out) {
        out.resize(m_params.size());
        for (std::size_t i = 0; i < m_params.size(); ++i) out[i].assign(m_params[i].size, T(0));
        for (std::size_t i = 0; i < m_params.size(); ++i) {
            auto& v = out[i];
            struct flat {
                std::vector<T>* v;
                std::vector<std::size_t> sh;
                T* data() { return v->data(); }
                const std::vector<std::size_t>& shape() const { return sh; }
                std::size_t size() const { return v->size(); }
            } f{&v, m_params[i].shape};
            m_state_views.add(std::string(kind()) + "." + buffer + "." + m_params[i].name, f);
        }
    }

    /// The update of tensor i with the gradient `g` (already clipped by `scale`) at learning
    /// rate `lr`; `t` is the step number (1 for the first).
    virtual void update(std::size_t i, const T* g, T scale, double lr, std::size_t t) = 0;

private:
    void step_impl(const tensor_list<T>& grads, const double* loss) {
        const std::size_t t = m_steps + 1;
        m_params.check_same_layout(grads, "the gradients");
        auto refuse = [&](const std::string& what) { refuse_step(what); };
        if (loss && !std::isfinite(*loss)) refuse("the loss is " + std::to_string(*loss));
        double sq = 0;
        for (std::size_t i = 0; i < grads.size(); ++i) {
            if (m_frozen[i]) continue;
            const T* g = grads[i].data;
            const double s = squared_norm(g, grads[i].size);
            if (!std::isfinite(s)) {
                for (std::size_t k = 0; k < grads[i].size; ++k)
                    if (!std::isfinite(g[k]))
                        refuse("the gradient of '" + grads[i].name + "' is " + std::to_string(g[k]) + " at entry " +
                               std::to_string(k));
                refuse("the gradient of '" + grads[i].name + "' overflows its squared norm");
            }
            sq += s;
        }
        m_last_norm = std::sqrt(sq);
        if (!std::isfinite(m_last_norm)) refuse("the gradients' global norm overflows");
        T scale = T(1);
        if (m_options.clip_norm > 0 && m_last_norm > m_options.clip_norm) scale = T(m_options.clip_norm / m_last_norm);
        const double lr = learning_rate();
        for (std::size_t i = 0; i < grads.size(); ++i)
            if (!m_frozen[i]) update(i, grads[i].data, scale, lr, t);
        m_steps = t;
    }

protected:
    tensor_list<T> m_params;
    double m_lr;
    step_options m_options;
    std::vector<bool> m_frozen;
    std::size_t m_steps = 0;
    double m_last_norm = 0;
    tensor_list<T> m_state_views;
};

/// AdamW's constants (Loshchilov and Hutter; PyTorch's `torch.optim.AdamW`).
struct adamw_options {
    double lr = 1e-3;
    double beta1 = 0.9, beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.01;  ///< decoupled: p -= lr * weight_decay * p
};

/// One AdamW update of n entries in place, at step t (1 for the first) and learning rate lr,
/// of the gradient `g` scaled by `scale` (clipping): `adamw`'s update, and the kernel of the
/// PyTorch package's `mnemo_torch.AdamW`.
template <class T>
void adamw_update(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v, std::size_t n, T scale,
                  const adamw_options& o, double lr, std::size_t t) {
    const T b1 = T(o.beta1), b2 = T(o.beta2);
    const T c1 = T(1 / (1 - std::pow(o.beta1, double(t))));
    const T c2 = T(1 / (1 - std::pow(o.beta2, double(t))));
    const T decay = T(1 - lr * o.weight_decay), step = T(lr), eps = T(o.eps);
    // In batches of xsimd: the compiler does not vectorise std::sqrt itself unless told that
    // errno does not matter (-fno-math-errno): 10x slower without.
    using batch = xsimd::batch<T>;
    constexpr std::size_t W = batch::size;
    const std::size_t full = n / W * W;
    const batch vb1(b1), vb2(b2), va1(T(1) - b1), va2(T(1) - b2), vc1(c1), vc2(c2), vdecay(decay), vstep(step),
        veps(eps), vscale(scale);
    for (std::size_t k = 0; k < full; k += W) {
        const batch gk = vscale * batch::load_unaligned(g + k);
        const batch mk = vb1 * batch::load_unaligned(m + k) + va1 * gk;
        const batch vk = vb2 * batch::load_unaligned(v + k) + va2 * gk * gk;
        mk.store_unaligned(m + k);
        vk.store_unaligned(v + k);
        const batch pk = vdecay * batch::load_unaligned(p + k) - vstep * (mk * vc1) / (xsimd::sqrt(vk * vc2) + veps);
        pk.store_unaligned(p + k);
    }
    for (std::size_t k = full; k < n; ++k) {
        const T gk = scale * g[k];
        m[k] = b1 * m[k] + (1 - b1) * gk;
        v[k] = b2 * v[k] + (1 - b2) * gk * gk;
        p[k] = decay * p[k] - step * (m[k] * c1) / (std::sqrt(v[k] * c2) + eps);
    }
}

/// AdamW:
///     m = beta1 m + (1 - beta1) g,  v = beta2 v + (1 - beta2) g^2,
///     p -= lr (weight_decay p + (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)),
/// as `torch.optim.AdamW` (the decay taken from p before the Adam step).
template <class T>
class adamw : public optimizer<T> {
public:
    adamw(const tensor_list<T>& params, adamw_options o = {}, step_options s = {})
        : optimizer<T>(params, o.lr, std::move(s), "adamw"), m_o(o) {
        auto range = [](const char* name, double v) {
            if (!(v >= 0 && v < 1))
                throw std::invalid_argument(std::string("mnemo: adamw: ") + name + " = " + std::to_string(v) +
                                            " is out of range [0, 1)");
        };
        range("beta1", o.beta1);
        range("beta2", o.beta2);
        if (!(o.eps > 0) || !std::isfinite(o.eps))
            throw std::invalid_argument("mnemo: adamw: eps must be finite and > 0, not " + std::to_string(o.eps));
        if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay))
            throw std::invalid_argument("mnemo: adamw: weight_decay must be finite and >= 0, not " +
                                        std::to_string(o.weight_decay));
        this->make_buffers("m", m_m);
        this->make_buffers("v", m_v);
    }
    const char* kind() const override { return "adamw"; }
    const adamw_options& options() const { return m_o; }

private:
    void update(std::size_t i, const T* g, T scale, double lr, std::size_t t) override {
        adamw_update(this->m_params[i].data, g, m_m[i].data(), m_v[i].data(), this->m_params[i].size, scale, m_o, lr,
                     t);
    }
    adamw_options m_o;
    std::vector<std::vector<T>> m_m, m_v;
};

/// SGD's constants (PyTorch's `torch.optim.SGD`, dampening 0).
struct sgd_options {
    double lr = 1e-2;
    double momentum = 0.9;  ///< 0: plain SGD
    bool nesterov = false;
    double weight_decay = 0;  ///< coupled (L2): g += weight_decay * p
};

/// SGD with momentum: g' = g + weight_decay p, b = momentum b + g' (b = g' at the first
/// step), p -= lr (nesterov ? g' + momentum b : b).
template <class T>
class sgd : public optimizer<T> {
public:
    sgd(const tensor_list<T>& params, sgd_options o = {}, step_options s = {})
        : optimizer<T>(params, o.lr, std::move(s), "sgd"), m_o(o) {
        if (!(o.momentum >= 0 && o.momentum < 1))
            throw std::invalid_argument("mnemo: sgd: momentum = " + std::to_string(o.momentum) +
                                        " is out of range [0, 1)");
        if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay))
            throw std::invalid_argument("mnemo: sgd: weight_decay must be finite and >= 0, not " +
                                        std::to_string(o.weight_decay));
        if (o.nesterov && o.momentum == 0)
            throw std::invalid_argument("mnemo: sgd: nesterov needs a momentum > 0");
        this->make_buffers("momentum", m_b);
    }
    const char* kind() const override { return "sgd"; }
    const sgd_options& options() const { return m_o; }

private:
    void update(std::size_t i, const T* g, T scale, double lr, std::size_t t) override {
        const auto& p = this->m_params[i];
        T* b = m_b[i].data();
        const T mu = T(m_o.momentum), wd = T(m_o.weight_decay), step = T(lr);
        for (std::size_t k = 0; k < p.size; ++k) {
            const T gk = scale * g[k] + wd * p.data[k];
            b[k] = (t == 1) ? gk : mu * b[k] + gk;
            p.data[k] -= step * (m_o.nesterov ? gk + mu * b[k] : b[k]);
        }
    }
    sgd_options m_o;
    std::vector<std::vector<T>> m_b;
};

}  // namespace mnemo::train
