#pragma once
/// \file
/// A test-time memory over whole sequences: the forward through every inner update and the
/// exact meta-gradient by a backward through every inner update, with checkpointing.
///
/// Design note: no graph is kept. The state (memory, surprise, and in the chunked form the
/// memory at the chunk's start) is stored every `c` tokens during the forward; the backward
/// walks the segments from the last, recomputes the states inside a segment from its
/// checkpoint (the last segment's states are kept by the forward itself), and runs the
/// compile-time backward step (step.hpp) token by token. Extra memory: about T/c + c states
/// per sequence and thread. By default c = T (every state kept, nothing recomputed) when the
/// T states fit in `run_options::state_budget_bytes`, else c = sqrt(T).
///
/// The sequences of a batch are independent: they run on `run_options::threads` threads,
/// each with its own compiled plans and work buffer, and their losses and gradients are
/// added up in a fixed order.

#include <algorithm>
#include <cmath>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "mnemo/detail/lanes.hpp"
#include "mnemo/eval.hpp"
#include "mnemo/memory/params.hpp"
#include "mnemo/memory/dual.hpp"
#include "mnemo/memory/step.hpp"

namespace mnemo::memory {

/// How a call runs.
struct run_options {
    /// Chunk size b: every token of a chunk takes its inner gradient at the memory of the
    /// chunk's start. 1 is the sequential form.
    std::size_t chunk = 1;
    /// Checkpoint interval c in tokens. c >= T keeps every state and recomputes nothing;
    /// smaller c recomputes the states between checkpoints in the backward. 0 chooses: T when
    /// the T states of a sequence (T * state_size * sizeof(T) bytes) fit in
    /// `state_budget_bytes`, else about sqrt(T).
    std::size_t checkpoint = 0;
    /// The outer loss is `loss_scale * sum_t loss_t`, summed over the batch; 0 means
    /// 1 / (B T), the mean over tokens and sequences.
    double loss_scale = 0;
    /// Run the chunked form's compiled step even when `chunk` is 1 (it then computes the
    /// sequential form another way: for tests and ablations).
    bool chunked_form = false;
    /// Runs take the dual form (memory/dual.hpp) where it applies
    /// (`sequence_memory::has_dual_form`) and a call starts at a chunk boundary (in the
    /// sequential form: has 4 tokens or more). False runs the compiled step token by token
    /// (for tests and ablations).
    bool dual_form = true;
    /// Block size of the dual form in tokens, rounded up to a multiple of `chunk`; the result
    /// does not depend on it (up to rounding). 0 chooses: 32 tokens, or one chunk when
    /// `chunk` >= 16. Sequential calls of fewer than 4 tokens run token by token.
    std::size_t dual_block = 0;
    /// The sequences of the batch run in parallel on this many threads (at most one per
    /// sequence; the calling thread is one of them); 0 means std::thread::hardware_concurrency().
    /// Results are deterministic for a given thread count. Each sequence's outputs, states
    /// and adjoints do not depend on it; the loss and the gradient, sums over the sequences,
    /// agree across thread counts up to the order of the floating-point summation.
    std::size_t threads = 1;
    /// With `checkpoint = 0`: the most memory, in bytes, that the kept states of one sequence
    /// may take (per thread) before checkpointing sets in.
    std::size_t state_budget_bytes = std::size_t(64) << 20;
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

    /// Whether runs of this memory can take the dual form (read off the expressions at
    /// compile time: memory/dual.hpp).
    static constexpr bool has_dual_form = has_dual_form_v<Spec>;

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

    /// The checkpoint interval a meta-gradient call with `opt` uses for sequences of `length`
    /// tokens (see run_options::checkpoint): between 1 and `length`.
    static std::size_t checkpoint_interval(const run_options& opt, std::size_t length) {
        if (length == 0) return 1;
        if (opt.checkpoint) return std::min(opt.checkpoint, length);
        if (length <= opt.state_budget_bytes / (state_size * sizeof(T))) return length;
        return std::min(length, std::max<std::size_t>(1, std::size_t(std::ceil(std::sqrt(double(length))))));
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
        set_initial_state(s, p);
        return s;
    }
    /// The same into `s`, reusing its memory.
    static void set_initial_state(state_type& s, const parameters_type& p) {
        s.values.assign(state_size, T(0));
        s.position = 0;
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            ((std::copy(p.template m0<I>().data(), p.template m0<I>().data() + sizes[I], s.values.data() + offset(0, I))),
             ...);
        }(std::make_index_sequence<n>{});
    }

    /// Forward over a batch of sequences: tokens (B, T, d), targets (B, T, d_out). Each
    /// sequence starts from `initial` (one state per sequence) or else from M0.
    result forward(const parameters_type& p, const hyperparameters_type& h, const xt::xtensor<T, 3>& tokens,
                   const xt::xtensor<T, 3>& targets, run_options opt = {},
                   const std::vector<state_type>* initial = nullptr) {
        result r;
        run(r, p, h, tokens, targets, opt, initial, nullptr, false);
        return r;
    }
    /// `forward` into `r`, reusing its memory: called again with the same sizes it allocates
    /// nothing (`r.grads` and `r.initial_adjoints` are left as they are).
    void forward(result& r, const parameters_type& p, const hyperparameters_type& h, const xt::xtensor<T, 3>& tokens,
                 const xt::xtensor<T, 3>& targets, run_options opt = {},
                 const std::vector<state_type>* initial = nullptr) {
        run(r, p, h, tokens, targets, opt, initial, nullptr, false);
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
        result r;
        run(r, p, h, tokens, targets, opt, initial, final_adjoints, true);
        return r;
    }
    /// `meta_gradient` into `r`, reusing its memory: in a training loop that keeps `r`, a
    /// call with the same sizes allocates nothing.
    void meta_gradient(result& r, const parameters_type& p, const hyperparameters_type& h,
                       const xt::xtensor<T, 3>& tokens, const xt::xtensor<T, 3>& targets, run_options opt = {},
                       const std::vector<state_type>* initial = nullptr,
                       const std::vector<state_type>* final_adjoints = nullptr) {
        run(r, p, h, tokens, targets, opt, initial, final_adjoints, true);
    }

private:
    // ------------------------------------------------------------------------------------
    // The compiled steps.
    template <class St, std::size_t... I>
    static auto make_forward(std::index_sequence<I...>) {
        return compile<T>(St::template next_param<I>..., St::template next_surprise<I>..., St::y, St::inner_loss,
                          St::outer_loss);
    }
    // A meta-parameter whose per-token gradient is `outer(a, x)` (a projection of the token)
    // gets it summed over the sequence as one product A^T X: the backward step computes only
    // the vector `a` of each token, not the outer product.
    template <class St>
    using rows_of = detail::batched_rows<std::remove_cvref_t<decltype(St::phi)>, typename symbols::token, meta_list>;
    template <class St, class M>
    static constexpr auto meta_output() {
        return rows_of<St>::template output<M>();
    }

    template <class St, bool Chunked, class... Metas, std::size_t... I>
    static auto make_backward(mnemo::detail::list<Metas...>, std::index_sequence<I...>) {
        if constexpr (Chunked)
            return compile<T>(grad(St::phi, typename symbols::template param<I>{})...,
                              grad(St::phi, typename symbols::template surprise<I>{})...,
                              grad(St::phi, typename symbols::template grad_point<I>{})...,
                              meta_output<St, Metas>()...);
        else
            return compile<T>(grad(St::phi, typename symbols::template param<I>{})...,
                              grad(St::phi, typename symbols::template surprise<I>{})...,
                              meta_output<St, Metas>()...);
    }
    using seq_forward_plan = decltype(make_forward<seq_step>(std::make_index_sequence<n>{}));
    using chunk_forward_plan = decltype(make_forward<chunk_step>(std::make_index_sequence<n>{}));
    using seq_backward_plan = decltype(make_backward<seq_step, false>(meta_list{}, std::make_index_sequence<n>{}));
    using chunk_backward_plan = decltype(make_backward<chunk_step, true>(meta_list{}, std::make_index_sequence<n>{}));

    /// What one thread of a call needs for itself: the compiled steps (a plan computes into
    /// its own arena), the work buffer of a sequence's checkpoints and states, and the sums
    /// of its sequences' gradients and losses.
    struct worker {
        seq_forward_plan seq_fwd;
        chunk_forward_plan chunk_fwd;
        seq_backward_plan seq_bwd;
        chunk_backward_plan chunk_bwd;
        dual_holder_of<has_dual_form, dual_kernels<Spec, T, FirstOrder, meta_list, fixed>> dual;
        std::vector<T> work;
        parameters_type grads;
        T loss = 0;
    };
    /// Worker k runs the k-th block of a batch's sequences; worker 0 runs on the calling
    /// thread. Grown on demand to the largest thread count used so far.
    std::vector<worker> m_workers = std::vector<worker>(1);

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

    // The shapes hold by construction (validated once per call): no checks per token.
    template <class Plan, class... Syms>
    static void call(Plan& plan, const bindings& b, mnemo::detail::list<Syms...>) {
        plan.run_unchecked(typename Plan::pointers{resolve<Syms>(b)...});
    }
    template <class Plan>
    static void call(Plan& plan, const bindings& b) {
        call(plan, b, typename Plan::graph::symbols{});
    }
    /// The same, the plan's first 2n results (the memory tensors' next values or adjoints,
    /// then the surprises') written straight into `out` (a state or adjoint: no copy).
    template <class Plan, class... Syms>
    static void call_into(Plan& plan, const bindings& b, T* out, mnemo::detail::list<Syms...>) {
        typename Plan::destinations dst{};
        for (std::size_t i = 0; i < n; ++i) {
            dst[i] = out + offset(0, i);
            dst[n + i] = out + offset(1, i);
        }
        plan.run_unchecked_into(typename Plan::pointers{resolve<Syms>(b)...}, dst);
    }
    template <class Plan>
    static void call_into(Plan& plan, const bindings& b, T* out) {
        call_into(plan, b, out, typename Plan::graph::symbols{});
    }

    // ------------------------------------------------------------------------------------
    // One token forward: the state `in` -> the next state `out`, another buffer (M, S; G
    // carried over in the chunked form, untouched in the sequential one), y, surprise, loss.
    template <bool Chunked, class Plan>
    void forward_token(Plan& plan, bindings b, const T* in, T* out, T* y, T& surprise, T& loss) {
        b.state = in;
        call_into(plan, b, out);
        if constexpr (Chunked)
            if (out != in) std::copy_n(in + offset(2, 0), memory_size, out + offset(2, 0));
        if (y) std::copy_n(plan.template data<2 * n>(), d_out, y);
        surprise = *plan.template data<2 * n + 1>();
        loss = *plan.template data<2 * n + 2>();
    }

    static bool chunk_start(std::size_t position, std::size_t chunk) { return position % chunk == 0; }
    static void reset_grad_point(T* state) {
        std::copy_n(state + offset(0, 0), memory_size, state + offset(2, 0));
    }

    static void check_finite(const xt::xtensor<T, 3>& a, const char* what) {
        const std::size_t L = a.shape()[1], W = a.shape()[2], n = a.size();
        // One flat pass; the place only when something is not finite. x * 0 is 0 for a
        // finite x and NaN for an infinite or NaN one, so its sum (in lanes, lanes.hpp) is
        // zero exactly when every entry is finite: a loop the compiler vectorises (a test per
        // entry does not), so checking the inputs costs little next to the step.
        const T* x = a.data();
        const bool finite = mnemo::detail::lane_sum<T>(n, [&](std::size_t k) { return x[k] * T(0); }) == T(0);
        if (finite) return;
        for (std::size_t k = 0; k < n; ++k)
            if (!std::isfinite(x[k]))
                throw std::invalid_argument(std::string("mnemo: ") + what + " of sequence " +
                                            std::to_string(k / (L * W)) + ", token " + std::to_string(k / W % L) +
                                            ", feature " + std::to_string(k % W) + " is not finite");
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
        const std::size_t c = checkpoint_interval(opt, len);
        const std::size_t segments = (len + c - 1) / c;
        const std::size_t last_t0 = (segments - 1) * c;  // first token of the last segment
        const std::size_t start_pos = st.position;

        bindings b{&p, &h, nullptr, nullptr, nullptr, nullptr, scale};
        // Checkpoints: the state before tokens 0, c, 2c, ... (only when a backward follows);
        // the last segment needs none, the forward keeps its states. Every part of the work
        // buffer is written before it is read: it is only grown, never cleared.
        using St = std::conditional_t<Chunked, chunk_step, seq_step>;
        constexpr std::size_t width = rows_of<St>::width;
        const std::size_t need = backward ? (segments + c + 3) * state_size + len * width : state_size;
        if (work.size() < need) work.resize(need);
        T* checkpoints = work.data();
        T* seg_states = checkpoints + segments * state_size;  // c states inside a segment
        T* adj = seg_states + c * state_size;                 // adjoint (dM, dS, dG accumulated)
        T* adj_next = adj + state_size;
        T* rows = adj_next + state_size;  // batched metas: one row of vectors per token
        // The states not kept alternate between the result's state and this one.
        T* scratch = backward ? rows + len * width : work.data();

        // The sequential step neither reads nor writes G: its states are M and S.
        constexpr std::size_t live = Chunked ? state_size : 2 * memory_size;
        T* const result_state = st.values.data();
        T* s = result_state;
        for (std::size_t t = 0; t < len; ++t) {
            if (backward && t < last_t0 && t % c == 0) std::copy_n(s, live, checkpoints + (t / c) * state_size);
            if (Chunked && chunk_start(start_pos + t, b_chunk)) reset_grad_point(s);
            b.x = tok + t * d;
            b.target = tgt + t * d_out;
            T token_loss = 0;
            T* yt = y ? y + t * d_out : nullptr;
            if (backward && t >= last_t0) {
                // The last segment's states are kept for the backward: each token writes
                // the next state straight into the next slot (the last into the result).
                T* slot = seg_states + (t - last_t0) * state_size;
                if (t == last_t0) std::copy_n(s, live, slot);
                T* next = t + 1 < len ? slot + state_size : st.values.data();
                forward_token<Chunked>(fwd, b, slot, next, yt, surprise[t], token_loss);
                s = next;
            } else {
                T* next = s == result_state ? scratch : result_state;
                forward_token<Chunked>(fwd, b, s, next, yt, surprise[t], token_loss);
                s = next;
            }
            loss += scale * token_loss;
        }
        // (The sequential form leaves G untouched: only M and S come back.)
        if (s != result_state) std::copy_n(s, live, result_state);
        st.position = start_pos + len;
        if (!backward) return;

        // Backward, segment by segment from the last.
        std::fill_n(adj, state_size, T(0));
        if (final_adj) std::copy_n(final_adj->values.data(), state_size, adj);
        if constexpr (!Chunked) {
            // The sequential step neither reads nor writes G: its adjoint stays 0 in both buffers.
            std::fill_n(adj + offset(2, 0), memory_size, T(0));
            std::fill_n(adj_next + offset(2, 0), memory_size, T(0));
        }
        for (std::size_t sg = segments; sg-- > 0;) {
            const std::size_t t0 = sg * c, t1 = std::min(len, t0 + c);
            // The state before token t of this segment: its first is the checkpoint itself
            // (each is read by one segment only, so it is used in place, not copied), the
            // others are in seg_states.
            const bool recomputed = sg + 1 < segments;
            T* const first = recomputed ? checkpoints + sg * state_size : seg_states;
            auto state_at = [&](std::size_t t) { return t == t0 ? first : seg_states + (t - t0) * state_size; };
            if (recomputed) {
                // Recompute the segment's states, each token writing the next state straight
                // into the next slot.
                for (std::size_t t = t0; t < t1; ++t) {
                    T* slot = state_at(t);
                    if (Chunked && chunk_start(start_pos + t, b_chunk)) reset_grad_point(slot);
                    if (t + 1 < t1) {
                        b.x = tok + t * d;
                        b.target = tgt + t * d_out;
                        T s_unused = 0, l_unused = 0;
                        forward_token<Chunked>(fwd, b, slot, seg_states + (t + 1 - t0) * state_size, nullptr,
                                               s_unused, l_unused);
                    }
                }
            }
            for (std::size_t t = t1; t-- > t0;) {
                b.state = state_at(t);
                b.adjoint = adj;
                b.x = tok + t * d;
                b.target = tgt + t * d_out;
                call_into(bwd, b, adj_next);
                backward_token<Chunked>(bwd, adj, adj_next, grads, rows + t * width);
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
        // The batched metas: grads[M] += A^T X over the tokens.
        rows_of<St>::add(*grads, rows, tok, len, d);
    }

    /// Reads the backward plan's outputs: the new adjoint into adj_next (dG accumulated from
    /// adj), the meta-gradient contributions into grads.
    template <bool Chunked, class Plan>
    static void backward_token(const Plan& plan, const T* adj, T* adj_next, parameters_type* grads, T* row) {
        // dM and dS are in adj_next already (call_into); dG_next = dG + this token's part.
        if constexpr (Chunked) {
            [&]<std::size_t... I>(std::index_sequence<I...>) {
                (
                    [&] {
                        const T* g = plan.template data<2 * n + I>();
                        const T* a = adj + offset(2, I);
                        T* o = adj_next + offset(2, I);
                        for (std::size_t k = 0; k < sizes[I]; ++k) o[k] = a[k] + g[k];
                    }(),
                    ...);
            }(std::make_index_sequence<n>{});
        }
        using St = std::conditional_t<Chunked, chunk_step, seq_step>;
        rows_of<St>::template collect<Chunked ? 3 * n : 2 * n>(plan, *grads, row);
    }

    /// One sequence s of a batch, on worker w: starts from its initial state, runs the
    /// forward (and the backward) with w's plans, writes its outputs, per-token inner losses,
    /// final state (and initial adjoint) into r, and adds its loss and gradient to w's sums.
    /// Workers run different sequences at the same time: only sequence s's parts of r are
    /// written.
    void run_one(worker& w, std::size_t s, const parameters_type& p, const hyperparameters_type& h,
                 const xt::xtensor<T, 3>& tokens, const xt::xtensor<T, 3>& targets, const run_options& opt, T scale,
                 const std::vector<state_type>* initial, const std::vector<state_type>* final_adjoints,
                 bool backward, result& r) {
        const std::size_t L = tokens.shape()[1];
        if (initial) r.states[s] = (*initial)[s];
        else set_initial_state(r.states[s], p);
        const T* tok = tokens.data() + s * L * d;
        const T* tgt = targets.data() + s * L * d_out;
        T* y = r.outputs.data() + s * L * d_out;
        T* sur = r.surprise.data() + s * L;
        const state_type* fa = final_adjoints ? &(*final_adjoints)[s] : nullptr;
        state_type* ia = backward ? &r.initial_adjoints[s] : nullptr;
        if constexpr (has_dual_form) {
            const bool sequential = opt.chunk == 1 && !opt.chunked_form;
            // A sequential call of a few tokens runs faster token by token (measured: the
            // block's products cost more than one to three steps).
            const bool takes_dual = sequential ? L >= 4 : r.states[s].position % opt.chunk == 0;
            if (opt.dual_form && takes_dual) {
                const std::size_t block = dual_block(opt);
                state_type& st = r.states[s];
                if (backward) {
                    ia->values.resize(state_size);
                    ia->position = st.position;
                }
                w.dual.kernels.run_sequence(p, h, tok, tgt, L, opt.chunk, block, !sequential, scale,
                                            st.values.data(), y, sur, w.loss, backward,
                                            fa ? fa->values.data() : nullptr, &w.grads,
                                            backward ? ia->values.data() : nullptr);
                st.position += L;
                if (backward && !initial) add_initial_adjoint(w, r, s);
                return;
            }
        }
        if (opt.chunk == 1 && !opt.chunked_form)
            run_sequence<seq_forward_plan, seq_backward_plan, false>(w.seq_fwd, w.seq_bwd, p, h, tok, tgt, L, opt,
                                                                     scale, r.states[s], y, sur, w.loss, backward,
                                                                     fa, &w.grads, ia, w.work);
        else
            run_sequence<chunk_forward_plan, chunk_backward_plan, true>(w.chunk_fwd, w.chunk_bwd, p, h, tok, tgt, L,
                                                                        opt, scale, r.states[s], y, sur, w.loss,
                                                                        backward, fa, &w.grads, ia, w.work);
        if (backward && !initial) add_initial_adjoint(w, r, s);
    }

    /// The dual form's block in tokens: `dual_block` rounded up to whole chunks; by default 32
    /// tokens, or one chunk from 16 tokens on (measured fastest on the benchmarks).
    static std::size_t dual_block(const run_options& opt) {
        const std::size_t c = opt.chunk;
        if (opt.dual_block == 0 && c >= 16) return c;
        const std::size_t want = opt.dual_block ? opt.dual_block : 32;
        return (want + c - 1) / c * c;
    }

    /// The sequence started from M0: the adjoint of its initial memory is M0's gradient.
    static void add_initial_adjoint(worker& w, result& r, std::size_t s) {
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            ((w.grads.template m0<I>() += view_of_state<I>(r.initial_adjoints[s])), ...);
        }(std::make_index_sequence<n>{});
    }

    /// f(tensor I of ps...) for every tensor I of parameter sets ps.
    template <class F, class... P>
    static void each_tensor(F&& f, P&... ps) {
        auto memory_tensor = [&]<std::size_t I>(std::integral_constant<std::size_t, I>) { f(ps.template m0<I>()...); };
        auto meta_tensor = [&]<class Sym>(Sym) { f(ps[Sym{}]...); };
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            (memory_tensor(std::integral_constant<std::size_t, I>{}), ...);
        }(std::make_index_sequence<n>{});
        [&]<std::size_t... J>(std::index_sequence<J...>) {
            (meta_tensor(mnemo::detail::type_at_t<meta_list, J>{}), ...);
        }(std::make_index_sequence<meta_list::size>{});
    }

    void run(result& r, const parameters_type& p, const hyperparameters_type& h, const xt::xtensor<T, 3>& tokens,
             const xt::xtensor<T, 3>& targets, const run_options& opt, const std::vector<state_type>* initial,
             const std::vector<state_type>* final_adjoints, bool backward) {
        validate(tokens, targets, opt, initial, final_adjoints);
        const std::size_t B = tokens.shape()[0], L = tokens.shape()[1];
        const T scale = opt.loss_scale != 0 ? T(opt.loss_scale) : T(1) / T(B * L);
        // Sized in place: a result of the same sizes keeps its memory.
        const std::array<std::size_t, 3> out_shape{B, L, d_out};
        const std::array<std::size_t, 2> sur_shape{B, L};
        if (!std::equal(out_shape.begin(), out_shape.end(), r.outputs.shape().begin())) r.outputs.resize(out_shape);
        if (!std::equal(sur_shape.begin(), sur_shape.end(), r.surprise.shape().begin())) r.surprise.resize(sur_shape);
        r.states.resize(B);
        if (backward) r.initial_adjoints.resize(B);

        // Worker k runs the sequences [B k / W, B (k + 1) / W).
        const std::size_t threads = opt.threads ? opt.threads : std::size_t(std::thread::hardware_concurrency());
        const std::size_t W = std::max<std::size_t>(1, std::min(threads, B));
        if (m_workers.size() < W) m_workers.resize(W);
        for (std::size_t k = 0; k < W; ++k) {
            m_workers[k].loss = T(0);
            if (backward) each_tensor([](auto& g) { g.fill(T(0)); }, m_workers[k].grads);
        }
        auto block = [&](std::size_t k) {
            for (std::size_t s = B * k / W, e = B * (k + 1) / W; s < e; ++s)
                run_one(m_workers[k], s, p, h, tokens, targets, opt, scale, initial, final_adjoints, backward, r);
        };
        if (W == 1) block(0);
        else {
            std::vector<std::exception_ptr> errors(W);
            auto guarded = [&](std::size_t k) {
                try {
                    block(k);
                } catch (...) {
                    errors[k] = std::current_exception();
                }
            };
            std::vector<std::thread> pool;
            pool.reserve(W - 1);
            try {
                for (std::size_t k = 1; k < W; ++k) pool.emplace_back(guarded, k);
            } catch (...) {  // a thread could not be started: finish the started ones, then fail
                for (auto& t : pool) t.join();
                throw;
            }
            guarded(0);
            for (auto& t : pool) t.join();
            for (const auto& e : errors)
                if (e) std::rethrow_exception(e);
        }

        // The sums over the sequences, in worker order: the same for every run with W workers.
        r.loss = m_workers[0].loss;
        for (std::size_t k = 1; k < W; ++k) r.loss += m_workers[k].loss;
        if (backward) {
            std::swap(r.grads, m_workers[0].grads);
            for (std::size_t k = 1; k < W; ++k)
                each_tensor(
                    [](auto& g, const auto& x) {
                        T* dst = g.data();
                        const T* src = x.data();
                        for (std::size_t i = 0; i < g.size(); ++i) dst[i] += src[i];
                    },
                    r.grads, m_workers[k].grads);
        }
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
