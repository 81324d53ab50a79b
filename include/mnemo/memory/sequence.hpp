#pragma once
/// \file
/// A test-time memory over whole sequences: the forward through every inner update and the
/// exact meta-gradient by a backward through every inner update, with checkpointing.
///
/// Design note: no graph is kept. The state (memory, surprise, and in the chunked form the
/// memory at the chunk's start) is stored every `c` tokens during the forward; the backward
/// walks the segments from the last, recomputes the states inside a segment from its
/// checkpoint, and runs the compile-time backward step (step.hpp) token by token. Extra
/// memory: about T/c + c states per sequence; c = sqrt(T) by default.

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "mnemo/eval.hpp"
#include "mnemo/memory/params.hpp"
#include "mnemo/memory/step.hpp"

namespace mnemo::memory {

/// How a call runs.
struct run_options {
    /// Chunk size b: every token of a chunk takes its inner gradient at the memory of the
    /// chunk's start. 1 is the sequential form.
    std::size_t chunk = 1;
    /// Checkpoint interval c in tokens; 0 picks about sqrt(T). c >= T keeps every state.
    std::size_t checkpoint = 0;
    /// The outer loss is `loss_scale * sum_t loss_t`, summed over the batch; 0 means
    /// 1 / (B T), the mean over tokens and sequences.
    double loss_scale = 0;
    /// Run the chunked form's compiled step even when `chunk` is 1 (it then computes the
    /// sequential form another way: for tests and ablations).
    bool chunked_form = false;
};

/// The state of one sequence's memory between calls (streaming): the memory tensors, their
/// surprise, the memory at the current chunk's start, and the number of tokens seen.
template <class T>
struct memory_state {
    std::vector<T> values;
    std::size_t position = 0;
};

template <class Spec, class T = double, bool FirstOrder = false>
class sequence_memory {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "mnemo: memories run in float or double.");

public:
    using symbols = step_symbols<Spec>;
    using model = typename Spec::model;
    static constexpr std::size_t d = Spec::d;
    static constexpr std::size_t d_out = model::out;
    static constexpr std::size_t n = symbols::n;  // parameter tensors of the memory

private:
    using seq_step = step<Spec, false, FirstOrder>;
    using chunk_step = step<Spec, true, FirstOrder>;
    using fixed = typename Spec::gates::fixed;
    using all_symbols = typename mnemo::detail::symbols_of<
        typename mnemo::detail::topo_order<void, unwrap_t<decltype(seq_step::phi)>>::type>::type;

public:
    using meta_list = typename detail::meta_symbols<Spec, fixed, all_symbols>::type;
    using parameters_type = parameters<T, typename symbols::shapes, meta_list>;
    using hyperparameters_type = hyperparameters<T, fixed>;
    using state_type = memory_state<T>;

    /// Sizes and offsets of the tensors in a state: M[0..n), S[0..n), G[0..n).
    static constexpr std::array<std::size_t, n> sizes = [] {
        std::array<std::size_t, n> s{};
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            ((s[I] = mnemo::detail::type_at_t<typename symbols::shapes, I>::size), ...);
        }(std::make_index_sequence<n>{});
        return s;
    }();
    static constexpr std::size_t memory_size = [] {
        std::size_t t = 0;
        for (auto s : sizes) t += s;
        return t;
    }();
    static constexpr std::size_t state_size = 3 * memory_size;
    static constexpr std::size_t offset(std::size_t part, std::size_t i) {
        std::size_t o = part * memory_size;
        for (std::size_t k = 0; k < i; ++k) o += sizes[k];
        return o;
    }

    /// What a forward or meta-gradient call returns.
    struct result {
        T loss = 0;                        ///< loss_scale * sum of the per-token outer losses
        xt::xtensor<T, 3> outputs;         ///< (B, T, d_out): the retrievals y_t
        xt::xtensor<T, 2> surprise;        ///< (B, T): the inner loss at each token
        std::vector<state_type> states;    ///< each sequence's state after its last token
        parameters_type grads;             ///< meta-gradient (meta_gradient only)
        std::vector<state_type> initial_adjoints;  ///< adjoint of each initial state (meta_gradient)
    };

    /// The initial state of a sequence: M0, zero surprise.
    static state_type initial_state(const parameters_type& p) {
        state_type s;
        s.values.assign(state_size, T(0));
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            ((std::copy(p.template m0<I>().data(), p.template m0<I>().data() + sizes[I], s.values.data() + offset(0, I))),
             ...);
        }(std::make_index_sequence<n>{});
        return s;
    }

    /// Forward over a batch of sequences: tokens (B, T, d), targets (B, T, d_out). Each
    /// sequence starts from `initial` (one state per sequence) or else from M0.
    result forward(const parameters_type& p, const hyperparameters_type& h, const xt::xtensor<T, 3>& tokens,
                   const xt::xtensor<T, 3>& targets, run_options opt = {},
                   const std::vector<state_type>* initial = nullptr) {
        return run(p, h, tokens, targets, opt, initial, nullptr, false);
    }

    /// Forward and backward: the exact gradient of the outer loss with respect to every
    /// meta-parameter. `final_adjoints` (optional) are the adjoints of the final states from
    /// a later call of the same sequences (full backpropagation across calls); without
    /// them the backward stops at this call's end. The adjoint of each initial state is
    /// returned; when a sequence started from M0 it is also added to the gradient of M0.
    result meta_gradient(const parameters_type& p, const hyperparameters_type& h, const xt::xtensor<T, 3>& tokens,
                         const xt::xtensor<T, 3>& targets, run_options opt = {},
                         const std::vector<state_type>* initial = nullptr,
                         const std::vector<state_type>* final_adjoints = nullptr) {
        return run(p, h, tokens, targets, opt, initial, final_adjoints, true);
    }

private:
    // ------------------------------------------------------------------------------------
    // The compiled steps.
    template <class St, std::size_t... I>
    static auto make_forward(std::index_sequence<I...>) {
        return compile<T>(St::template next_param<I>..., St::template next_surprise<I>..., St::y, St::inner_loss,
                          St::outer_loss);
    }
    template <class St, bool Chunked, class... Metas, std::size_t... I>
    static auto make_backward(mnemo::detail::list<Metas...>, std::index_sequence<I...>) {
        if constexpr (Chunked)
            return compile<T>(grad(St::phi, typename symbols::template param<I>{})...,
                              grad(St::phi, typename symbols::template surprise<I>{})...,
                              grad(St::phi, typename symbols::template grad_point<I>{})...,
                              grad(St::phi, Metas{})...);
        else
            return compile<T>(grad(St::phi, typename symbols::template param<I>{})...,
                              grad(St::phi, typename symbols::template surprise<I>{})...,
                              grad(St::phi, Metas{})...);
    }
    using seq_forward_plan = decltype(make_forward<seq_step>(std::make_index_sequence<n>{}));
    using chunk_forward_plan = decltype(make_forward<chunk_step>(std::make_index_sequence<n>{}));
    using seq_backward_plan = decltype(make_backward<seq_step, false>(meta_list{}, std::make_index_sequence<n>{}));
    using chunk_backward_plan = decltype(make_backward<chunk_step, true>(meta_list{}, std::make_index_sequence<n>{}));

    seq_forward_plan m_seq_fwd;
    chunk_forward_plan m_chunk_fwd;
    seq_backward_plan m_seq_bwd;
    chunk_backward_plan m_chunk_bwd;

    // ------------------------------------------------------------------------------------
    // Binding every symbol of a plan to its data.
    struct bindings {
        const parameters_type* params;
        const hyperparameters_type* hyper;
        const T* state;    // M, S, G
        const T* adjoint;  // dM, dS (backward only)
        const T* x;
        const T* target;
        T loss_scale;
    };

    template <class Sym, template <std::size_t> class Family, std::size_t... I>
    static constexpr std::size_t family_index(std::index_sequence<I...>) {
        constexpr bool hit[] = {std::is_same_v<Sym, Family<I>>..., false};
        for (std::size_t i = 0; i < sizeof...(I); ++i)
            if (hit[i]) return i;
        return n;
    }
    template <std::size_t I>
    using param_sym = typename symbols::template param<I>;
    template <std::size_t I>
    using surprise_sym = typename symbols::template surprise<I>;
    template <std::size_t I>
    using grad_point_sym = typename symbols::template grad_point<I>;
    template <std::size_t I>
    using adj_param_sym = typename symbols::template adj_param<I>;
    template <std::size_t I>
    using adj_surprise_sym = typename symbols::template adj_surprise<I>;

    template <class Sym>
    static const T* resolve(const bindings& b) {
        constexpr auto seq = std::make_index_sequence<n>{};
        constexpr std::size_t ip = family_index<Sym, param_sym>(seq);
        constexpr std::size_t is = family_index<Sym, surprise_sym>(seq);
        constexpr std::size_t ig = family_index<Sym, grad_point_sym>(seq);
        constexpr std::size_t iap = family_index<Sym, adj_param_sym>(seq);
        constexpr std::size_t ias = family_index<Sym, adj_surprise_sym>(seq);
        if constexpr (std::is_same_v<Sym, typename symbols::token>) return b.x;
        else if constexpr (std::is_same_v<Sym, typename symbols::target>) return b.target;
        else if constexpr (std::is_same_v<Sym, typename symbols::loss_scale>) return &b.loss_scale;
        else if constexpr (ip < n) return b.state + offset(0, ip);
        else if constexpr (is < n) return b.state + offset(1, is);
        else if constexpr (ig < n) return b.state + offset(2, ig);
        else if constexpr (iap < n) return b.adjoint + offset(0, iap);
        else if constexpr (ias < n) return b.adjoint + offset(1, ias);
        else if constexpr (mnemo::detail::contains_type_v<fixed, Sym>) return &(*b.hyper)[Sym{}];
        else return (*b.params)[Sym{}].data();
    }

    template <class Sym>
    static auto view(const T* p) {
        using S = typename Sym::shape;
        if constexpr (S::rank == 0) return *p;
        else {
            std::array<std::size_t, S::rank> sh{};
            for (std::size_t k = 0; k < S::rank; ++k) sh[k] = S::dims[k];
            return xt::adapt(p, S::size, xt::no_ownership(), sh);
        }
    }

    template <class Plan, class... Syms>
    static void call(Plan& plan, const bindings& b, mnemo::detail::list<Syms...>) {
        auto views = std::tuple{view<Syms>(resolve<Syms>(b))...};
        std::apply([&](const auto&... v) { plan.run((Syms{} = v)...); }, views);
    }
    template <class Plan>
    static void call(Plan& plan, const bindings& b) {
        call(plan, b, typename Plan::graph::symbols{});
    }

    // ------------------------------------------------------------------------------------
    // One token forward: state -> next state (M, S; G untouched), y, surprise, loss.
    template <class Plan>
    void forward_token(Plan& plan, bindings b, T* state, T* y, T& surprise, T& loss) {
        b.state = state;
        call(plan, b);
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            ((std::copy_n(plan.template get<I>().data(), sizes[I], state + offset(0, I)),
              std::copy_n(plan.template get<n + I>().data(), sizes[I], state + offset(1, I))),
             ...);
        }(std::make_index_sequence<n>{});
        const auto yv = plan.template get<2 * n>();
        if (y) std::copy_n(yv.data(), d_out, y);
        surprise = plan.template get<2 * n + 1>();
        loss = plan.template get<2 * n + 2>();
    }

    static bool chunk_start(std::size_t position, std::size_t chunk) { return position % chunk == 0; }
    static void reset_grad_point(T* state) {
        std::copy_n(state + offset(0, 0), memory_size, state + offset(2, 0));
    }

    static void check_finite(const xt::xtensor<T, 3>& a, const char* what) {
        const std::size_t B = a.shape()[0], L = a.shape()[1], W = a.shape()[2];
        for (std::size_t s = 0; s < B; ++s)
            for (std::size_t t = 0; t < L; ++t)
                for (std::size_t i = 0; i < W; ++i)
                    if (!std::isfinite(a(s, t, i)))
                        throw std::invalid_argument(std::string("mnemo: ") + what + " of sequence " +
                                                    std::to_string(s) + ", token " + std::to_string(t) +
                                                    ", feature " + std::to_string(i) + " is not finite");
    }

    void validate(const xt::xtensor<T, 3>& tokens, const xt::xtensor<T, 3>& targets, const run_options& opt,
                  const std::vector<state_type>* initial, const std::vector<state_type>* final_adjoints) const {
        const auto& ts = tokens.shape();
        const auto& gs = targets.shape();
        if (ts[2] != d)
            throw std::invalid_argument("mnemo: tokens have width " + std::to_string(ts[2]) + ", the memory needs " +
                                        std::to_string(d));
        if (gs[2] != d_out)
            throw std::invalid_argument("mnemo: targets have width " + std::to_string(gs[2]) +
                                        ", the memory's output size is " + std::to_string(d_out));
        if (gs[0] != ts[0])
            throw std::invalid_argument("mnemo: " + std::to_string(ts[0]) + " token sequences but " +
                                        std::to_string(gs[0]) + " target sequences");
        if (gs[1] != ts[1])
            throw std::invalid_argument("mnemo: the sequences have " + std::to_string(ts[1]) + " tokens but " +
                                        std::to_string(gs[1]) + " targets");
        if (ts[1] == 0) throw std::invalid_argument("mnemo: sequences must have at least one token");
        if (opt.chunk == 0) throw std::invalid_argument("mnemo: the chunk size must be at least 1");
        auto check_states = [&](const std::vector<state_type>* v, const char* what) {
            if (!v) return;
            if (v->size() != ts[0])
                throw std::invalid_argument(std::string("mnemo: ") + what + ": " + std::to_string(v->size()) +
                                            " given for " + std::to_string(ts[0]) + " sequences");
            for (std::size_t s = 0; s < v->size(); ++s) {
                if ((*v)[s].values.size() != state_size)
                    throw std::invalid_argument(std::string("mnemo: ") + what + " of sequence " + std::to_string(s) +
                                                " has the wrong size");
                for (T e : (*v)[s].values)
                    if (!std::isfinite(e))
                        throw std::invalid_argument(std::string("mnemo: ") + what + " of sequence " +
                                                    std::to_string(s) + " is not finite");
            }
        };
        check_states(initial, "initial states");
        check_states(final_adjoints, "final adjoints");
        check_finite(tokens, "token");
        check_finite(targets, "target");
    }

    // ------------------------------------------------------------------------------------
    // Forward and backward of one sequence.
    template <class FwdPlan, class BwdPlan, bool Chunked>
    void run_sequence(FwdPlan& fwd, BwdPlan& bwd, const parameters_type& p, const hyperparameters_type& h,
                      const T* tok, const T* tgt, std::size_t len, const run_options& opt, T scale,
                      state_type& st, T* y, T* surprise, T& loss, bool backward, const state_type* final_adj,
                      parameters_type* grads, state_type* initial_adj, std::vector<T>& work) {
        const std::size_t b_chunk = opt.chunk;
        std::size_t c = opt.checkpoint ? opt.checkpoint
                                       : std::max<std::size_t>(1, std::size_t(std::ceil(std::sqrt(double(len)))));
        if (c > len) c = len;
        const std::size_t segments = (len + c - 1) / c;
        const std::size_t start_pos = st.position;

        bindings b{&p, &h, nullptr, nullptr, nullptr, nullptr, scale};
        // Checkpoints: the state before tokens 0, c, 2c, ... (only when a backward follows).
        work.assign(backward ? (segments + c + 3) * state_size : 0, T(0));
        T* checkpoints = work.data();
        T* seg_states = checkpoints + segments * state_size;  // c states inside a segment
        T* adj = seg_states + c * state_size;                 // adjoint (dM, dS, dG accumulated)
        T* adj_next = adj + state_size;
        T* cur = adj_next + state_size;

        std::vector<T> own_state;
        T* s = st.values.data();
        for (std::size_t t = 0; t < len; ++t) {
            if (backward && t % c == 0) std::copy_n(s, state_size, checkpoints + (t / c) * state_size);
            if (Chunked && chunk_start(start_pos + t, b_chunk)) reset_grad_point(s);
            b.x = tok + t * d;
            b.target = tgt + t * d_out;
            T token_loss = 0;
            forward_token(fwd, b, s, y ? y + t * d_out : nullptr, surprise[t], token_loss);
            loss += scale * token_loss;
        }
        st.position = start_pos + len;
        if (!backward) return;

        // Backward, segment by segment from the last.
        std::fill_n(adj, state_size, T(0));
        if (final_adj) std::copy_n(final_adj->values.data(), state_size, adj);
        for (std::size_t sg = segments; sg-- > 0;) {
            const std::size_t t0 = sg * c, t1 = std::min(len, t0 + c);
            std::copy_n(checkpoints + sg * state_size, state_size, cur);
            for (std::size_t t = t0; t < t1; ++t) {
                if (Chunked && chunk_start(start_pos + t, b_chunk)) reset_grad_point(cur);
                std::copy_n(cur, state_size, seg_states + (t - t0) * state_size);
                if (t + 1 < t1) {
                    b.x = tok + t * d;
                    b.target = tgt + t * d_out;
                    T s_unused = 0, l_unused = 0;
                    forward_token(fwd, b, cur, nullptr, s_unused, l_unused);
                }
            }
            for (std::size_t t = t1; t-- > t0;) {
                b.state = seg_states + (t - t0) * state_size;
                b.adjoint = adj;
                b.x = tok + t * d;
                b.target = tgt + t * d_out;
                call(bwd, b);
                backward_token<Chunked>(bwd, adj, adj_next, grads);
                if constexpr (Chunked) {
                    if (chunk_start(start_pos + t, b_chunk)) {
                        // G was set to M here: its accumulated adjoint joins M's.
                        for (std::size_t k = 0; k < memory_size; ++k) {
                            adj_next[k] += adj_next[2 * memory_size + k];
                            adj_next[2 * memory_size + k] = T(0);
                        }
                    }
                }
                std::swap(adj, adj_next);
            }
        }
        initial_adj->values.assign(adj, adj + state_size);
        initial_adj->position = start_pos;
    }

    /// Reads the backward plan's outputs: the new adjoint into adj_next (dG accumulated from
    /// adj), the meta-gradient contributions into grads.
    template <bool Chunked, class Plan>
    static void backward_token(const Plan& plan, const T* adj, T* adj_next, parameters_type* grads) {
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            (add_output<I>(plan, adj_next + offset(0, I), sizes[I], false), ...);
            (add_output<n + I>(plan, adj_next + offset(1, I), sizes[I], false), ...);
            if constexpr (Chunked) {
                ((std::copy_n(adj + offset(2, I), sizes[I], adj_next + offset(2, I)),
                  add_output<2 * n + I>(plan, adj_next + offset(2, I), sizes[I], true)),
                 ...);
            } else {
                std::fill_n(adj_next + offset(2, 0), memory_size, T(0));
            }
        }(std::make_index_sequence<n>{});
        constexpr std::size_t first_meta = Chunked ? 3 * n : 2 * n;
        [&]<std::size_t... J>(std::index_sequence<J...>) {
            ((add_output<first_meta + J>(plan, (*grads)[mnemo::detail::type_at_t<meta_list, J>{}].data(),
                                         mnemo::detail::type_at_t<meta_list, J>::shape::size, true)),
             ...);
        }(std::make_index_sequence<meta_list::size>{});
    }

    template <std::size_t J, class Plan>
    static void add_output(const Plan& plan, T* dst, std::size_t count, bool accumulate) {
        using S = typename mnemo::detail::type_at_t<typename Plan::graph::order, Plan::graph::outputs[J]>::shape;
        if constexpr (S::rank == 0) {
            const T v = plan.template get<J>();
            dst[0] = accumulate ? dst[0] + v : v;
        } else {
            const T* src = plan.template get<J>().data();
            if (accumulate)
                for (std::size_t k = 0; k < count; ++k) dst[k] += src[k];
            else std::copy_n(src, count, dst);
        }
    }

    result run(const parameters_type& p, const hyperparameters_type& h, const xt::xtensor<T, 3>& tokens,
               const xt::xtensor<T, 3>& targets, const run_options& opt, const std::vector<state_type>* initial,
               const std::vector<state_type>* final_adjoints, bool backward) {
        validate(tokens, targets, opt, initial, final_adjoints);
        const std::size_t B = tokens.shape()[0], L = tokens.shape()[1];
        const T scale = opt.loss_scale != 0 ? T(opt.loss_scale) : T(1) / T(B * L);
        result r;
        r.outputs = xt::xtensor<T, 3>(std::array<std::size_t, 3>{B, L, d_out});
        r.surprise = xt::xtensor<T, 2>(std::array<std::size_t, 2>{B, L});
        r.states.resize(B);
        if (backward) r.initial_adjoints.resize(B);
        std::vector<T> work;
        for (std::size_t s = 0; s < B; ++s) {
            r.states[s] = initial ? (*initial)[s] : initial_state(p);
            const T* tok = tokens.data() + s * L * d;
            const T* tgt = targets.data() + s * L * d_out;
            T* y = r.outputs.data() + s * L * d_out;
            T* sur = r.surprise.data() + s * L;
            const state_type* fa = final_adjoints ? &(*final_adjoints)[s] : nullptr;
            state_type* ia = backward ? &r.initial_adjoints[s] : nullptr;
            if (opt.chunk == 1 && !opt.chunked_form)
                run_sequence<seq_forward_plan, seq_backward_plan, false>(m_seq_fwd, m_seq_bwd, p, h, tok, tgt, L,
                                                                         opt, scale, r.states[s], y, sur, r.loss,
                                                                         backward, fa, &r.grads, ia, work);
            else
                run_sequence<chunk_forward_plan, chunk_backward_plan, true>(m_chunk_fwd, m_chunk_bwd, p, h, tok,
                                                                            tgt, L, opt, scale, r.states[s], y, sur,
                                                                            r.loss, backward, fa, &r.grads, ia,
                                                                            work);
            if (backward && !initial) {
                // The sequence started from M0: the adjoint of its initial memory is M0's gradient.
                [&]<std::size_t... I>(std::index_sequence<I...>) {
                    ((r.grads.template m0<I>() += view_of_state<I>(r.initial_adjoints[s])), ...);
                }(std::make_index_sequence<n>{});
            }
        }
        return r;
    }

public:
    /// Tensor I of the memory in a state (or of the adjoint of M in an adjoint state).
    template <std::size_t I>
    static auto view_of_state(const state_type& s) {
        using S = mnemo::detail::type_at_t<typename symbols::shapes, I>;
        std::array<std::size_t, S::rank> sh{};
        for (std::size_t k = 0; k < S::rank; ++k) sh[k] = S::dims[k];
        return xt::adapt(s.values.data() + offset(0, I), S::size, xt::no_ownership(), sh);
    }
};

}  // namespace mnemo::memory
