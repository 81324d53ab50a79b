#pragma once
/// \file
/// A test-time memory over whole sequences: the forward through every inner update and the
/// exact backward through every inner update, with checkpointing; as a layer (tokens in,
/// retrievals out; upstream adjoint in, gradients of the meta-parameters, the tokens and
/// the initial states out) and with a built-in outer loss (`meta_gradient`).
///
/// Design note: one code path. A sequence's forward records a tape (below) and writes its
/// retrievals; its backward reads the tape and an upstream adjoint dY of the retrievals.
/// `meta_gradient` is the layer with a loss on top: per sequence, forward, dY from the
/// outer loss (outer_step), backward, all on one thread with one reused tape (so its memory
/// is that of one sequence per thread); the layer's `forward(context, ...)` keeps a tape
/// per sequence in the caller's context until `backward(context, dY)`.
///
/// No graph is kept. The state (memory, surprise, and in the chunked form the
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
#include "mnemo/memory/dual_mlp.hpp"
#include "mnemo/memory/step.hpp"

namespace mnemo::memory {

namespace detail {
template <class E>
inline constexpr bool always_false = false;
}  // namespace detail

/// A batch given to a memory: tokens, targets or an upstream adjoint, an
/// `xt::xtensor<T, 3>` of shape (B, T, width) with T the memory's scalar type. Anything
/// else is refused at compile time (a (T, d) tensor would otherwise be converted into a
/// (B, T, d) one of garbage shape; another element type would be copied silently).
template <class T>
class batch_ref {
public:
    batch_ref(const xt::xtensor<T, 3>& a) : m_a(&a) {}
    template <class E>
    batch_ref(const E&) : m_a(nullptr) {
        static_assert(detail::always_false<E>,
                      "mnemo: tokens, targets and upstream adjoints are xt::xtensor<T, 3> of shape (B, T, width), "
                      "T the memory's scalar type: one sequence (T, d) is a batch of one (reshape it to (1, T, d)); "
                      "another element type or an xtensor expression is not converted implicitly (copy it into an "
                      "xt::xtensor<T, 3> first).");
    }
    operator const xt::xtensor<T, 3>&() const { return *m_a; }

private:
    const xt::xtensor<T, 3>* m_a;
};

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
    /// Runs take the dual form (memory/dual.hpp, memory/dual_mlp.hpp) where it applies
    /// (`sequence_memory::has_dual_form`) and a call starts at a chunk boundary (in the
    /// sequential form: has 4 tokens or more). False runs the compiled step token by token
    /// (for tests and ablations).
    bool dual_form = true;
    /// Block size of the dual form in tokens, rounded up to a multiple of `chunk`; the result
    /// does not depend on it (up to rounding). 0 chooses: one chunk when `chunk` >= 16; for
    /// sequential runs 16 tokens (linear memories: 32 through the layer's
    /// `forward(context)`, whose tapes are kept for a later backward); else 32 tokens for
    /// linear memories, one chunk for MLP memories. Sequential calls of fewer than 4 tokens
    /// run token by token.
    std::size_t dual_block = 0;
    /// The sequences of the batch run in parallel on this many threads (at most one per
    /// sequence; the calling thread is one of them); 0 means std::thread::hardware_concurrency().
    /// Results are deterministic for a given thread count. Each sequence's outputs, states
    /// and adjoints do not depend on it; the loss and the gradient, sums over the sequences,
    /// agree across thread counts up to the order of the floating-point summation.
    std::size_t threads = 1;
    /// With `checkpoint = 0`: the most memory, in bytes, that the kept states of one sequence
    /// may take (per thread) before checkpointing sets in. An MLP memory's dual form, whose
    /// tape keeps O(h) numbers a token and a state per block, runs only where that tape fits
    /// (about 2000 tokens of d 64, h 256 in 64 MiB); longer calls take the compiled step.
    std::size_t state_budget_bytes = std::size_t(64) << 20;
    /// `meta_gradient` also returns the gradient of the loss with respect to the tokens
    /// (`result::token_grads`, (B, T, d)). The layer's `backward` does unless told not to
    /// (`backward_options`).
    bool token_gradient = false;
    /// Stop a memory that diverges (docs/memory.md#divergence): after each sequence's
    /// forward, and before its backward, every token's inner loss and retrieval and the
    /// state after the call (memory and surprise) are checked; the first that is not finite
    /// stops the call with `divergence_error`, naming the sequence and the token. The
    /// call's result (or the layer's context) is then left empty: nothing half-written.
    /// Its cost is one pass over the retrievals and one over the state per sequence. False:
    /// a diverged memory's values come back as IEEE arithmetic makes them (NaN, inf).
    bool check_finite = true;
};

/// A memory that diverged in a call with `run_options::check_finite`: the first token of
/// the first sequence (in batch order) whose inner loss or retrieval is not finite, or, when
/// they all are, the call's last token, after which the state is not.
struct divergence_error : std::runtime_error {
    using std::runtime_error::runtime_error;
    std::size_t sequence = 0;  ///< the sequence's index in the batch
    std::size_t token = 0;     ///< the token's index in the call
    std::size_t position = 0;  ///< the token's position in the stream (the call's start + token)
};

/// What a layer's `backward` computes besides the gradients of the meta-parameters and of
/// the initial states.
struct backward_options {
    /// The gradient to the tokens, dL/dX (B, T, d): needed when the tokens come from a
    /// layer being trained; tokens that are data can skip it.
    bool token_gradient = true;
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
    static_assert(detail::parts_disjoint<Spec>(), "mnemo: two parts of this memory share a symbol (above).");

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

    /// Whether runs of this memory can take a dual form (read off the expressions at
    /// compile time): a linear memory's (memory/dual.hpp) or a two-layer MLP memory's
    /// (memory/dual_mlp.hpp), sequential and chunked runs.
    static constexpr bool has_dual_form = has_dual_form_v<Spec>;
    /// Whether sequential runs take it too (by forward substitution over each block): the
    /// same as `has_dual_form`.
    static constexpr bool has_sequential_dual_form = has_dual_form_v<Spec>;

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

    /// The bytes one sequence's tape takes in the MLP dual form for a call of `length` tokens
    /// with `opt` (0 for other memories, whose tapes keep O(d) numbers a token); the form
    /// runs where they fit `run_options::state_budget_bytes`.
    static std::size_t dual_tape_bytes(const run_options& opt, std::size_t length) {
        if constexpr (has_mlp_dual_form_v<Spec>)
            return dual_type::tape_bytes(length, opt.chunk, dual_block(opt, false));
        else
            return 0;
    }

    /// What a forward or meta-gradient call returns.
    struct result {
        T loss = 0;                        ///< loss_scale * sum of the per-token outer losses
        xt::xtensor<T, 3> outputs;         ///< (B, T, d_out): the retrievals y_t
        xt::xtensor<T, 2> surprise;        ///< (B, T): the inner loss at each token
        std::vector<state_type> states;    ///< each sequence's state after its last token
        parameters_type grads;             ///< meta-gradient (meta_gradient only)
        std::vector<state_type> initial_adjoints;  ///< adjoint of each initial state (meta_gradient)
        xt::xtensor<T, 3> token_grads;     ///< (B, T, d): dL/dX (meta_gradient with token_gradient)
    };

    /// What a layer's backward returns: the gradient of the upstream loss with respect to
    /// every meta-parameter, to the tokens, and to each sequence's initial state.
    struct layer_gradients {
        parameters_type grads;                     ///< dL/d(meta-parameters)
        xt::xtensor<T, 3> tokens;                  ///< dL/dX, (B, T, d)
        std::vector<state_type> initial_adjoints;  ///< dL/d(initial state), per sequence
    };

    class context;

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
    result forward(const parameters_type& p, const hyperparameters_type& h, batch_ref<T> tokens,
                   batch_ref<T> targets, run_options opt = {},
                   const std::vector<state_type>* initial = nullptr) {
        result r;
        run(r, p, h, tokens, targets, opt, initial, nullptr, false);
        return r;
    }
    /// `forward` into `r`, reusing its memory: called again with the same sizes it allocates
    /// nothing (`r.grads` and `r.initial_adjoints` are left as they are).
    void forward(result& r, const parameters_type& p, const hyperparameters_type& h, batch_ref<T> tokens,
                 batch_ref<T> targets, run_options opt = {},
                 const std::vector<state_type>* initial = nullptr) {
        run(r, p, h, tokens, targets, opt, initial, nullptr, false);
    }

    /// Forward and backward: the exact gradient of the outer loss with respect to every
    /// meta-parameter. `final_adjoints` (optional) are the adjoints of the final states from
    /// a later call of the same sequences (full backpropagation across calls); without
    /// them the backward stops at this call's end. The adjoint of each initial state is
    /// returned; when a sequence started from M0 it is also added to the gradient of M0.
    result meta_gradient(const parameters_type& p, const hyperparameters_type& h, batch_ref<T> tokens,
                         batch_ref<T> targets, run_options opt = {},
                         const std::vector<state_type>* initial = nullptr,
                         const std::vector<state_type>* final_adjoints = nullptr) {
        result r;
        run(r, p, h, tokens, targets, opt, initial, final_adjoints, true);
        return r;
    }
    /// `meta_gradient` into `r`, reusing its memory: in a training loop that keeps `r`, a
    /// call with the same sizes allocates nothing.
    void meta_gradient(result& r, const parameters_type& p, const hyperparameters_type& h,
                       batch_ref<T> tokens, batch_ref<T> targets, run_options opt = {},
                       const std::vector<state_type>* initial = nullptr,
                       const std::vector<state_type>* final_adjoints = nullptr) {
        run(r, p, h, tokens, targets, opt, initial, final_adjoints, true);
    }

    // ------------------------------------------------------------------------------------
    // The layer interface.

    /// The forward of a layer: the retrievals Y (B, T, d_out) of tokens (B, T, d), each
    /// sequence from `initial` (one state per sequence) or else from M0. `ctx` keeps what
    /// `backward` needs (checkpoints, no graph), a copy of the parameters, options and
    /// tokens, the retrievals (returned), the inner losses and the final states; reused
    /// with the same sizes, it allocates nothing.
    const xt::xtensor<T, 3>& forward(context& ctx, const parameters_type& p, const hyperparameters_type& h,
                                     batch_ref<T> tokens, run_options opt = {},
                                     const std::vector<state_type>* initial = nullptr);

    /// The backward of the layer's forward held by `ctx`: given the upstream adjoint
    /// `dY` = dL/dY (B, T, d_out) and, optionally, the adjoints of the final states
    /// (`final_adjoints`, from the backward of a later call of the same sequences), writes
    /// into `g` the gradient of L with respect to every meta-parameter (M0's includes the
    /// adjoint of the initial state of the sequences that started from it), to the tokens,
    /// and to each sequence's initial state. It differentiates at the forward's parameters,
    /// options and tokens (copied by the forward); a context serves one backward. Reused
    /// with the same sizes, `g` allocates nothing.
    ///
    /// With `{.token_gradient = false}` (`backward_options`) the gradient to the tokens is
    /// not computed (`g.tokens` is left empty, shape (0, 0, 0)): tokens that are data, not
    /// the output of a layer being trained, save about a tenth of the backward.
    void backward(context& ctx, batch_ref<T> dY, layer_gradients& g,
                  const std::vector<state_type>* final_adjoints = nullptr, backward_options bo = {});
    layer_gradients backward(context& ctx, batch_ref<T> dY,
                             const std::vector<state_type>* final_adjoints = nullptr, backward_options bo = {}) {
        layer_gradients g;
        backward(ctx, dY, g, final_adjoints, bo);
        return g;
    }

private:
    // ------------------------------------------------------------------------------------
    // The compiled steps.
    template <class St, std::size_t... I>
    static auto make_forward(std::index_sequence<I...>) {
        return compile<T>(St::template next_param<I>..., St::template next_surprise<I>..., St::y, St::inner_loss);
    }
    // A meta-parameter whose per-token gradient is `outer(a, x)` (a projection of the token)
    // gets it summed over the sequence as one product A^T X: the backward step computes only
    // the vector `a` of each token, not the outer product. The token gradient's terms
    // through such metas are the products A M; its other terms, if any, are the step's last
    // output.
    template <class St>
    using rows_of = detail::batched_rows<std::remove_cvref_t<decltype(St::phi)>, typename symbols::token, meta_list>;
    template <class St, class M>
    static constexpr auto meta_output() {
        return rows_of<St>::template output<M>();
    }
    template <class St, class... E>
    static auto with_token_rest(E... e) {
        if constexpr (rows_of<St>::has_token_rest) return compile<T>(e..., typename rows_of<St>::token_rest{});
        else return compile<T>(e...);
    }

    template <class St, bool Chunked, class... Metas, std::size_t... I>
    static auto make_backward(mnemo::detail::list<Metas...>, std::index_sequence<I...>) {
        if constexpr (Chunked)
            return with_token_rest<St>(grad(St::phi, typename symbols::template param<I>{})...,
                                       grad(St::phi, typename symbols::template surprise<I>{})...,
                                       grad(St::phi, typename symbols::template grad_point<I>{})...,
                                       meta_output<St, Metas>()...);
        else
            return with_token_rest<St>(grad(St::phi, typename symbols::template param<I>{})...,
                                       grad(St::phi, typename symbols::template surprise<I>{})...,
                                       meta_output<St, Metas>()...);
    }
    using seq_forward_plan = decltype(make_forward<seq_step>(std::make_index_sequence<n>{}));
    using chunk_forward_plan = decltype(make_forward<chunk_step>(std::make_index_sequence<n>{}));
    using seq_backward_plan = decltype(make_backward<seq_step, false>(meta_list{}, std::make_index_sequence<n>{}));
    using chunk_backward_plan = decltype(make_backward<chunk_step, true>(meta_list{}, std::make_index_sequence<n>{}));
    using outer = outer_step<Spec>;
    using outer_plan = decltype(compile<T>(outer::loss, outer::dloss));
    using dual_type = std::conditional_t<has_linear_dual_form_v<Spec>, dual_kernels<Spec, T, FirstOrder, meta_list, fixed>,
                                         mlp_dual_kernels<Spec, T, FirstOrder, meta_list, fixed>>;

    template <bool Applies, class K>
    struct dual_tape_of {
        struct type {};
    };
    template <class K>
    struct dual_tape_of<true, K> {
        using type = typename K::tape;
    };

    /// How a sequence's forward ran, and what its backward reads: the checkpoints and the
    /// last segment's states (the compiled steps), or the dual form's tape.
    enum class form : unsigned char { sequential, chunked, dual };
    struct tape {
        form how = form::sequential;
        std::size_t len = 0, start = 0, interval = 1, chunk = 1;
        std::vector<T> states;
        typename dual_tape_of<has_dual_form, dual_type>::type dual;
    };

    /// What one thread of a call needs for itself: the compiled steps (a plan computes into
    /// its own arena), a tape and scratch for one sequence at a time, the upstream adjoint
    /// of one sequence (meta_gradient), and the sums of its sequences' gradients and losses.
    struct worker {
        seq_forward_plan seq_fwd;
        chunk_forward_plan chunk_fwd;
        seq_backward_plan seq_bwd;
        chunk_backward_plan chunk_bwd;
        outer_plan out;
        dual_holder_of<has_dual_form, dual_type> dual;
        tape own;
        std::vector<T> scratch;
        std::vector<T> dy;
        parameters_type grads;
        T loss = 0;
    };
    /// Worker k runs the k-th block of a batch's sequences; worker 0 runs on the calling
    /// thread. Grown on demand to the largest thread count used so far.
    std::vector<worker> m_workers = std::vector<worker>(1);

public:
    /// A layer's forward, kept for its backward (see `forward(context&, ...)`).
    class context {
    public:
        /// The retrievals Y of the forward, (B, T, d_out).
        const xt::xtensor<T, 3>& outputs() const { return m_outputs; }
        /// The inner loss at each token, (B, T).
        const xt::xtensor<T, 2>& surprise() const { return m_surprise; }
        /// Each sequence's state after its last token (to stream the next call from).
        const std::vector<state_type>& states() const { return m_states; }
        /// Whether it holds a forward whose backward has not been taken yet.
        bool ready() const { return m_ready; }

    private:
        friend class sequence_memory;
        parameters_type m_params;
        hyperparameters_type m_hyper;
        run_options m_opt;
        xt::xtensor<T, 3> m_tokens;
        xt::xtensor<T, 3> m_outputs;
        xt::xtensor<T, 2> m_surprise;
        std::vector<state_type> m_states;
        std::vector<tape> m_tapes;
        bool m_from_m0 = true;
        bool m_ready = false;
    };

private:
    // ------------------------------------------------------------------------------------
    // Binding every symbol of a plan to its data.
    struct bindings {
        const parameters_type* params;
        const hyperparameters_type* hyper;
        const T* state;    // M, S, G
        const T* adjoint;  // dM, dS (backward only)
        const T* x;
        const T* dy;       // dY (backward only)
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
        else if constexpr (std::is_same_v<Sym, typename symbols::retrieval_adjoint>) return b.dy;
        else if constexpr (ip < n) return b.state + offset(0, ip);
        else if constexpr (is < n) return b.state + offset(1, is);
        else if constexpr (ig < n) return b.state + offset(2, ig);
        else if constexpr (iap < n) return b.adjoint + offset(0, iap);
        else if constexpr (ias < n) return b.adjoint + offset(1, ias);
        else if constexpr (mnemo::detail::contains_type_v<fixed, Sym>) return &(*b.hyper)[Sym{}];
        else return (*b.params)[Sym{}].data();
    }

    /// The plan's first 2n results (the memory tensors' next values or adjoints, then the
    /// surprises') written straight into `out` (a state or adjoint: no copy). The shapes
    /// hold by construction (validated once per call): no checks per token.
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
    // carried over in the chunked form, untouched in the sequential one), y, surprise.
    template <bool Chunked, class Plan>
    static void forward_token(Plan& plan, bindings b, const T* in, T* out, T* y, T& surprise) {
        b.state = in;
        call_into(plan, b, out);
        if constexpr (Chunked)
            if (out != in) std::copy_n(in + offset(2, 0), memory_size, out + offset(2, 0));
        if (y) std::copy_n(plan.template data<2 * n>(), d_out, y);
        surprise = *plan.template data<2 * n + 1>();
    }

    static bool chunk_start(std::size_t position, std::size_t chunk) { return position % chunk == 0; }
    static void reset_grad_point(T* state) {
        std::copy_n(state + offset(0, 0), memory_size, state + offset(2, 0));
    }

    // ------------------------------------------------------------------------------------
    // Validation: every argument is checked before any work, so that a bad one leaves the
    // caller's results as they were.
    static std::string shape_string(const xt::xtensor<T, 3>& a) {
        // (Appended piece by piece: g++ 12 warns falsely (-Wrestrict) on "(" + std::string.)
        std::string r(1, '(');
        for (std::size_t k = 0; k < 3; ++k) {
            if (k) r += ", ";
            r += std::to_string(a.shape()[k]);
        }
        r += ')';
        return r;
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

    /// True when the n entries at x are all finite (one vectorised pass, as check_finite).
    static bool all_finite(const T* x, std::size_t n) {
        return mnemo::detail::lane_sum<T>(n, [&](std::size_t k) { return x[k] * T(0); }) == T(0);
    }

    /// `run_options::check_finite` after the forward of sequence `s` (len tokens, ending in
    /// the state `st`): its retrievals `y`, inner losses `sur` and state.
    static void check_diverged(std::size_t s, std::size_t len, const state_type& st, const T* y, const T* sur) {
        const std::size_t start = st.position - len;
        const bool outputs_finite = all_finite(sur, len) && all_finite(y, len * d_out);
        const bool state_finite = all_finite(st.values.data(), 2 * memory_size);
        if (outputs_finite && state_finite) return;
        auto fail = [&](std::size_t t, const std::string& what) {
            divergence_error e("mnemo: the memory diverged in sequence " + std::to_string(s) + " at token " +
                               std::to_string(t) + " (stream position " + std::to_string(start + t) + "): " + what +
                               " (run_options::check_finite; the gates that keep a memory finite: "
                               "docs/memory.md#divergence)");
            e.sequence = s;
            e.token = t;
            e.position = start + t;
            throw e;
        };
        if (!outputs_finite)
            for (std::size_t t = 0; t < len; ++t) {
                if (!std::isfinite(sur[t])) fail(t, "its inner loss is " + std::to_string(sur[t]));
                for (std::size_t i = 0; i < d_out; ++i)
                    if (!std::isfinite(y[t * d_out + i]))
                        fail(t, "its retrieval's entry " + std::to_string(i) + " is " + std::to_string(y[t * d_out + i]));
            }
        for (std::size_t k = 0; k < 2 * memory_size; ++k)
            if (!std::isfinite(st.values[k]))
                fail(len - 1, std::string("the ") + (k < memory_size ? "memory" : "surprise") +
                                  " after it is not finite (entry " + std::to_string(k % memory_size) + ")");
    }

    static void check_states(const std::vector<state_type>* v, std::size_t B, const char* what) {
        if (!v) return;
        if (v->size() != B)
            throw std::invalid_argument(std::string("mnemo: ") + what + ": " + std::to_string(v->size()) +
                                        " given for " + std::to_string(B) + " sequences");
        for (std::size_t s = 0; s < v->size(); ++s) {
            if ((*v)[s].values.size() != state_size)
                throw std::invalid_argument(std::string("mnemo: ") + what + " of sequence " + std::to_string(s) +
                                            " has the wrong size (" + std::to_string((*v)[s].values.size()) +
                                            " values, not " + std::to_string(state_size) + ")");
            for (T e : (*v)[s].values)
                if (!std::isfinite(e))
                    throw std::invalid_argument(std::string("mnemo: ") + what + " of sequence " + std::to_string(s) +
                                                " is not finite");
        }
    }

    static void check_tokens(const xt::xtensor<T, 3>& tokens, const run_options& opt,
                             const std::vector<state_type>* initial) {
        const auto& ts = tokens.shape();
        if (ts[2] != d)
            throw std::invalid_argument("mnemo: tokens have width " + std::to_string(ts[2]) + ", the memory needs " +
                                        std::to_string(d));
        if (ts[0] == 0) throw std::invalid_argument("mnemo: a batch needs at least one sequence (tokens are " +
                                                    shape_string(tokens) + ")");
        if (ts[1] == 0) throw std::invalid_argument("mnemo: sequences must have at least one token");
        if (opt.chunk == 0) throw std::invalid_argument("mnemo: the chunk size must be at least 1");
        check_states(initial, ts[0], "initial states");
        check_finite(tokens, "token");
    }

    static void check_targets(const xt::xtensor<T, 3>& tokens, const xt::xtensor<T, 3>& targets) {
        const auto& ts = tokens.shape();
        const auto& gs = targets.shape();
        if (gs[2] != d_out)
            throw std::invalid_argument("mnemo: targets have width " + std::to_string(gs[2]) +
                                        ", the memory's output size is " + std::to_string(d_out));
        if (gs[0] != ts[0])
            throw std::invalid_argument("mnemo: " + std::to_string(ts[0]) + " token sequences but " +
                                        std::to_string(gs[0]) + " target sequences");
        if (gs[1] != ts[1])
            throw std::invalid_argument("mnemo: the sequences have " + std::to_string(ts[1]) + " tokens but " +
                                        std::to_string(gs[1]) + " targets");
        check_finite(targets, "target");
    }

    // ------------------------------------------------------------------------------------
    // One sequence: its forward (recording the tape) and its backward (reading it).

    /// The form a sequence's run takes.
    static form form_of(const run_options& opt, std::size_t len, std::size_t position) {
        const bool sequential = opt.chunk == 1 && !opt.chunked_form;
        if constexpr (has_dual_form) {
            // A sequential call of a few tokens runs faster token by token (measured: the
            // block's products cost more than one to three steps).
            // An MLP memory's tape holds O(h) numbers a token and a state per block: longer
            // sequences take the compiled step, whose checkpoints keep the budget.
            const bool takes_dual = (sequential ? has_sequential_dual_form && len >= 4 : position % opt.chunk == 0) &&
                                    dual_tape_bytes(opt, len) <= opt.state_budget_bytes;
            if (opt.dual_form && takes_dual) return form::dual;
        }
        return sequential ? form::sequential : form::chunked;
    }

    /// The dual form's block in tokens: `dual_block` rounded up to whole chunks. By default
    /// (measured fastest on the benchmarks): one chunk from 16 tokens on; for sequential runs
    /// 16 tokens when the tape is the worker's own, reused sequence after sequence and so in
    /// cache (`meta_gradient`: batch64 7.3 ms against 7.7 with 32), 32 when it is kept for a
    /// later backward (the layer's `forward(context)`, one tape per sequence, read back from
    /// memory: fewer block starts pay there, 8.8 ms against 9.0 with 16); 32 tokens for
    /// chunks of 2 to 15.
    static std::size_t dual_block(const run_options& opt, bool tape_kept) {
        const std::size_t c = opt.chunk;
        if (opt.dual_block == 0 && c >= 16) return c;
        if constexpr (!has_linear_dual_form_v<Spec>) {
            // MLP memories: chunked runs in blocks of one chunk, sequential ones of 16 tokens.
            if (opt.dual_block == 0) return c == 1 ? 16 : c;
        }
        const std::size_t want = opt.dual_block ? opt.dual_block : (c == 1 && !tape_kept ? 16 : 32);
        return (want + c - 1) / c * c;
    }

    /// Forward of one sequence, tokens `tok` (len, d), from the state `st` (replaced by the
    /// final state): the retrievals into `y` (len, d_out), the inner losses into `sur`. With
    /// `record`, `tp` keeps what the backward needs; without, it is only scratch.
    void forward_one(worker& w, tape& tp, bool record, const parameters_type& p, const hyperparameters_type& h,
                     const T* tok, std::size_t len, const run_options& opt, state_type& st, T* y, T* sur) {
        tp.how = form_of(opt, len, st.position);
        tp.len = len;
        tp.start = st.position;
        tp.chunk = opt.chunk;
        if constexpr (has_dual_form) {
            if (tp.how == form::dual) {
                // A tape other than the worker's own is a layer context's, kept until a later
                // backward.
                const bool tape_kept = &tp != &w.own;
                w.dual.kernels.forward(tp.dual, p, h, tok, len, opt.chunk, dual_block(opt, tape_kept),
                                       !(opt.chunk == 1 && !opt.chunked_form),
                                       st.values.data(), y, sur, record);
                st.position += len;
                return;
            }
        }
        if (tp.how == form::sequential)
            forward_steps<false>(w.seq_fwd, w, tp, record, p, h, tok, len, opt, st, y, sur);
        else
            forward_steps<true>(w.chunk_fwd, w, tp, record, p, h, tok, len, opt, st, y, sur);
    }

    /// Backward of the sequence recorded in `tp`: upstream adjoint `dy` (len, d_out), final
    /// adjoint `fa` (or none); adds the meta-gradient to w.grads, writes the initial adjoint
    /// into `ia` and, with `dx`, the token gradient (len, d).
    void backward_one(worker& w, tape& tp, const parameters_type& p, const hyperparameters_type& h, const T* tok,
                      const T* dy, const state_type* fa, state_type& ia, T* dx) {
        ia.values.resize(state_size);
        ia.position = tp.start;
        if constexpr (has_dual_form) {
            if (tp.how == form::dual) {
                w.dual.kernels.backward(tp.dual, p, h, tok, dy, fa ? fa->values.data() : nullptr, &w.grads,
                                        ia.values.data(), dx);
                return;
            }
        }
        if (tp.how == form::sequential)
            backward_steps<false>(w.seq_fwd, w.seq_bwd, w, tp, p, h, tok, dy, fa, ia, dx);
        else
            backward_steps<true>(w.chunk_fwd, w.chunk_bwd, w, tp, p, h, tok, dy, fa, ia, dx);
    }

    /// The compiled step token by token. Checkpoints (with `record`): the state before
    /// tokens 0, c, 2c, ... of every segment but the last, whose states the forward keeps
    /// itself. Every part of a buffer is written before it is read: buffers are only grown,
    /// never cleared.
    template <bool Chunked, class FwdPlan>
    void forward_steps(FwdPlan& fwd, worker& w, tape& tp, bool record, const parameters_type& p,
                       const hyperparameters_type& h, const T* tok, std::size_t len, const run_options& opt,
                       state_type& st, T* y, T* surprise) {
        const std::size_t b_chunk = opt.chunk;
        const std::size_t c = record ? checkpoint_interval(opt, len) : len;
        const std::size_t segments = (len + c - 1) / c;
        const std::size_t last_t0 = (segments - 1) * c;  // first token of the last segment
        const std::size_t start_pos = st.position;
        tp.interval = c;
        bindings b{&p, &h, nullptr, nullptr, nullptr, nullptr};
        if (record && tp.states.size() < (segments + c) * state_size) tp.states.resize((segments + c) * state_size);
        if (w.scratch.size() < state_size) w.scratch.resize(state_size);
        T* checkpoints = tp.states.data();
        T* seg_states = checkpoints + segments * state_size;  // c states inside a segment
        // The states not kept alternate between the result's state and the scratch state.
        T* const scratch = w.scratch.data();

        // The sequential step neither reads nor writes G: its states are M and S.
        constexpr std::size_t live = Chunked ? state_size : 2 * memory_size;
        T* const result_state = st.values.data();
        T* s = result_state;
        for (std::size_t t = 0; t < len; ++t) {
            if (record && t < last_t0 && t % c == 0) std::copy_n(s, live, checkpoints + (t / c) * state_size);
            if (Chunked && chunk_start(start_pos + t, b_chunk)) reset_grad_point(s);
            b.x = tok + t * d;
            T* yt = y + t * d_out;
            if (record && t >= last_t0) {
                // The last segment's states are kept for the backward: each token writes
                // the next state straight into the next slot (the last into the result).
                T* slot = seg_states + (t - last_t0) * state_size;
                if (t == last_t0) std::copy_n(s, live, slot);
                T* next = t + 1 < len ? slot + state_size : st.values.data();
                forward_token<Chunked>(fwd, b, slot, next, yt, surprise[t]);
                s = next;
            } else {
                T* next = s == result_state ? scratch : result_state;
                forward_token<Chunked>(fwd, b, s, next, yt, surprise[t]);
                s = next;
            }
        }
        // (The sequential form leaves G untouched: only M and S come back.)
        if (s != result_state) std::copy_n(s, live, result_state);
        st.position = start_pos + len;
    }

    /// Backward of the compiled steps, segment by segment from the last.
    template <bool Chunked, class FwdPlan, class BwdPlan>
    void backward_steps(FwdPlan& fwd, BwdPlan& bwd, worker& w, tape& tp, const parameters_type& p,
                        const hyperparameters_type& h, const T* tok, const T* dy, const state_type* final_adj,
                        state_type& initial_adj, T* dx) {
        using St = std::conditional_t<Chunked, chunk_step, seq_step>;
        using rows_t = rows_of<St>;
        constexpr std::size_t width = rows_t::width;
        const std::size_t len = tp.len, c = tp.interval, b_chunk = tp.chunk, start_pos = tp.start;
        const std::size_t segments = (len + c - 1) / c;
        bindings b{&p, &h, nullptr, nullptr, nullptr, nullptr};
        // Scratch: the adjoint (dM, dS, dG accumulated), the next one, the batched metas'
        // rows (one per token), the stack of their products.
        const std::size_t need = 2 * state_size + len * width + rows_t::stack_size(d);
        if (w.scratch.size() < need) w.scratch.resize(need);
        T* adj = w.scratch.data();
        T* adj_next = adj + state_size;
        T* rows = adj_next + state_size;
        T* stack = rows + len * width;
        T* checkpoints = tp.states.data();
        T* seg_states = checkpoints + segments * state_size;

        std::fill_n(adj, state_size, T(0));
        if (final_adj) std::copy_n(final_adj->values.data(), state_size, adj);
        if constexpr (!Chunked) {
            // The sequential step neither reads nor writes G: its adjoint stays 0 in both buffers.
            std::fill_n(adj + offset(2, 0), memory_size, T(0));
            std::fill_n(adj_next + offset(2, 0), memory_size, T(0));
        }
        if (dx && !rows_t::has_token_rest) std::fill_n(dx, len * d, T(0));
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
                        T s_unused = 0;
                        forward_token<Chunked>(fwd, b, slot, seg_states + (t + 1 - t0) * state_size, nullptr,
                                               s_unused);
                    }
                }
            }
            for (std::size_t t = t1; t-- > t0;) {
                b.state = state_at(t);
                b.adjoint = adj;
                b.x = tok + t * d;
                b.dy = dy + t * d_out;
                call_into(bwd, b, adj_next);
                backward_token<Chunked>(bwd, adj, adj_next, &w.grads, rows + t * width);
                if constexpr (rows_t::has_token_rest)
                    if (dx) std::copy_n(bwd.template data<(Chunked ? 3 * n : 2 * n) + meta_list::size>(), d, dx + t * d);
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
        initial_adj.values.assign(adj, adj + state_size);
        initial_adj.position = start_pos;
        // The batched metas: grads[M] += A^T X over the tokens; dX += A M.
        rows_t::add(w.grads, rows, tok, len, d, stack);
        if (dx) rows_t::add_token(p, rows, len, d, dx, stack);
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

    /// The outer loss of a sequence's retrievals `y` (len, d_out) against `tgt`: returns
    /// `scale` times its sum over the tokens; with `dy`, writes the upstream adjoint
    /// dY = scale * d loss / d y (len, d_out).
    static T outer_losses(outer_plan& plan, const T* y, const T* tgt, std::size_t len, T scale, T* dy) {
        T loss = 0;
        for (std::size_t t = 0; t < len; ++t) {
            call_outer(plan, y + t * d_out, tgt + t * d_out, typename outer_plan::graph::symbols{});
            loss += scale * *plan.template data<0>();
            if (dy) {
                const T* g = plan.template data<1>();
                T* o = dy + t * d_out;
                for (std::size_t i = 0; i < d_out; ++i) o[i] = scale * g[i];
            }
        }
        return loss;
    }
    template <class Plan, class... Syms>
    static void call_outer(Plan& plan, const T* y, const T* tgt, mnemo::detail::list<Syms...>) {
        static_assert(((std::is_same_v<Syms, typename symbols::retrieval> || std::is_same_v<Syms, typename symbols::target>) && ...),
                      "mnemo: an outer loss reads only the retrieval y and the target (a loss with learned "
                      "parameters of its own belongs above the memory: use the layer interface).");
        plan.run_unchecked(
            typename Plan::pointers{(std::is_same_v<Syms, typename symbols::retrieval> ? y : tgt)...});
    }

    /// The sequence started from M0: the adjoint of its initial memory is M0's gradient.
    /// (A loop: xtensor's `+=` of an adapted view computes into a temporary.)
    static void add_initial_adjoint(parameters_type& grads, const state_type& ia) {
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            (
                [&] {
                    T* g = grads.template m0<I>().data();
                    const T* a = ia.values.data() + offset(0, I);
                    for (std::size_t k = 0; k < sizes[I]; ++k) g[k] += a[k];
                }(),
                ...);
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

    template <class A>
    static void resize_to(A& a, const std::array<std::size_t, A::rank>& shape) {
        if (!std::equal(shape.begin(), shape.end(), a.shape().begin())) a.resize(shape);
    }

    /// Runs `one(worker, s)` for the B sequences on opt.threads workers (worker k runs the
    /// sequences [B k / W, B (k + 1) / W); worker 0 on the calling thread), with each
    /// worker's loss and gradient sums cleared first (`backward`: the gradients too).
    /// Returns the number of workers used. An exception on any thread is rethrown here,
    /// after every thread has finished.
    template <class F>
    std::size_t for_each_sequence(std::size_t B, const run_options& opt, bool backward, F&& one) {
        const std::size_t threads = opt.threads ? opt.threads : std::size_t(std::thread::hardware_concurrency());
        const std::size_t W = std::max<std::size_t>(1, std::min(threads, B));
        if (m_workers.size() < W) m_workers.resize(W);
        for (std::size_t k = 0; k < W; ++k) {
            m_workers[k].loss = T(0);
            if (backward) each_tensor([](auto& g) { g.fill(T(0)); }, m_workers[k].grads);
        }
        auto block = [&](std::size_t k) {
            for (std::size_t s = B * k / W, e = B * (k + 1) / W; s < e; ++s) one(m_workers[k], s);
        };
        if (W == 1) {
            block(0);
            return W;
        }
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
        return W;
    }

    /// The sums over the workers, in worker order: the same for every run with W workers.
    void gather(std::size_t W, T* loss, parameters_type* grads) {
        if (loss) {
            *loss = m_workers[0].loss;
            for (std::size_t k = 1; k < W; ++k) *loss += m_workers[k].loss;
        }
        if (!grads) return;
        // Copied, not swapped: the caller's gradient tensors keep their buffers from call to
        // call, so views into them (an optimizer's train::tensor_list) stay valid.
        each_tensor([](auto& g, const auto& x) { std::copy(x.data(), x.data() + x.size(), g.data()); }, *grads,
                    m_workers[0].grads);
        for (std::size_t k = 1; k < W; ++k)
            each_tensor(
                [](auto& g, const auto& x) {
                    T* dst = g.data();
                    const T* src = x.data();
                    for (std::size_t i = 0; i < g.size(); ++i) dst[i] += src[i];
                },
                *grads, m_workers[k].grads);
    }

    /// `forward` and `meta_gradient`: the layer with the outer loss on top.
    void run(result& r, const parameters_type& p, const hyperparameters_type& h, const xt::xtensor<T, 3>& tokens,
             const xt::xtensor<T, 3>& targets, const run_options& opt, const std::vector<state_type>* initial,
             const std::vector<state_type>* final_adjoints, bool backward) {
        check_tokens(tokens, opt, initial);
        check_targets(tokens, targets);
        check_states(final_adjoints, tokens.shape()[0], "final adjoints");
        const std::size_t B = tokens.shape()[0], L = tokens.shape()[1];
        const T scale = opt.loss_scale != 0 ? T(opt.loss_scale) : T(1) / T(B * L);
        const bool want_dx = backward && opt.token_gradient;
        // Sized in place: a result of the same sizes keeps its memory.
        resize_to(r.outputs, {B, L, d_out});
        resize_to(r.surprise, {B, L});
        if (want_dx) resize_to(r.token_grads, {B, L, d});
        r.states.resize(B);
        if (backward) r.initial_adjoints.resize(B);

        std::size_t W = 0;
        try {
            W = for_each_sequence(B, opt, backward, [&](worker& w, std::size_t s) {
                if (initial) r.states[s] = (*initial)[s];
                else set_initial_state(r.states[s], p);
                const T* tok = tokens.data() + s * L * d;
                T* y = r.outputs.data() + s * L * d_out;
                forward_one(w, w.own, backward, p, h, tok, L, opt, r.states[s], y, r.surprise.data() + s * L);
                if (opt.check_finite) check_diverged(s, L, r.states[s], y, r.surprise.data() + s * L);
                if (backward && w.dy.size() < L * d_out) w.dy.resize(L * d_out);
                w.loss += outer_losses(w.out, y, targets.data() + s * L * d_out, L, scale,
                                       backward ? w.dy.data() : nullptr);
                if (!backward) return;
                const state_type* fa = final_adjoints ? &(*final_adjoints)[s] : nullptr;
                backward_one(w, w.own, p, h, tok, w.dy.data(), fa, r.initial_adjoints[s],
                             want_dx ? r.token_grads.data() + s * L * d : nullptr);
                if (!initial) add_initial_adjoint(w.grads, r.initial_adjoints[s]);
            });
        } catch (...) {
            r = result{};  // nothing half-written: the caller gets no part of a failed call
            throw;
        }
        gather(W, &r.loss, backward ? &r.grads : nullptr);
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

template <class Spec, class T, bool FirstOrder>
const xt::xtensor<T, 3>& sequence_memory<Spec, T, FirstOrder>::forward(context& ctx, const parameters_type& p,
                                                                     const hyperparameters_type& h,
                                                                     batch_ref<T> tokens_arg, run_options opt,
                                                                     const std::vector<state_type>* initial) {
    const xt::xtensor<T, 3>& tokens = tokens_arg;
    check_tokens(tokens, opt, initial);
    const std::size_t B = tokens.shape()[0], L = tokens.shape()[1];
    ctx.m_ready = false;
    // The context's own copies: the backward differentiates at exactly these.
    each_tensor([](auto& dst, const auto& src) { std::copy_n(src.data(), src.size(), dst.data()); }, ctx.m_params, p);
    ctx.m_hyper = h;
    ctx.m_opt = opt;
    resize_to(ctx.m_tokens, {B, L, d});
    std::copy_n(tokens.data(), tokens.size(), ctx.m_tokens.data());
    resize_to(ctx.m_outputs, {B, L, d_out});
    resize_to(ctx.m_surprise, {B, L});
    ctx.m_states.resize(B);
    ctx.m_tapes.resize(B);
    ctx.m_from_m0 = initial == nullptr;
    try {
        for_each_sequence(B, opt, false, [&](worker& w, std::size_t s) {
            if (initial) ctx.m_states[s] = (*initial)[s];
            else set_initial_state(ctx.m_states[s], ctx.m_params);
            T* y = ctx.m_outputs.data() + s * L * d_out;
            T* sur = ctx.m_surprise.data() + s * L;
            forward_one(w, ctx.m_tapes[s], true, ctx.m_params, ctx.m_hyper, ctx.m_tokens.data() + s * L * d, L, opt,
                        ctx.m_states[s], y, sur);
            if (opt.check_finite) check_diverged(s, L, ctx.m_states[s], y, sur);
        });
    } catch (...) {
        // Nothing half-written: the context holds no forward (its backward refuses).
        resize_to(ctx.m_outputs, {0, 0, 0});
        resize_to(ctx.m_surprise, {0, 0});
        ctx.m_states.clear();
        throw;
    }
    ctx.m_ready = true;
    return ctx.m_outputs;
}

template <class Spec, class T, bool FirstOrder>
void sequence_memory<Spec, T, FirstOrder>::backward(context& ctx, batch_ref<T> dY_arg, layer_gradients& g,
                                                    const std::vector<state_type>* final_adjoints,
                                                    backward_options bo) {
    const xt::xtensor<T, 3>& dY = dY_arg;
    if (!ctx.m_ready)
        throw std::invalid_argument(
            "mnemo: backward: the context holds no forward to differentiate (none was run, or its backward was "
            "already taken: a context serves one backward; run forward again)");
    const std::size_t B = ctx.m_tokens.shape()[0], L = ctx.m_tokens.shape()[1];
    if (dY.shape()[0] != B || dY.shape()[1] != L || dY.shape()[2] != d_out)
        throw std::invalid_argument("mnemo: backward: dY is " + shape_string(dY) +
                                    "; the forward's retrievals are " + shape_string(ctx.m_outputs));
    check_finite(dY, "dY entry");
    check_states(final_adjoints, B, "final adjoints");
    ctx.m_ready = false;
    if (bo.token_gradient) resize_to(g.tokens, {B, L, d});
    else resize_to(g.tokens, {0, 0, 0});
    g.initial_adjoints.resize(B);
    const std::size_t W = for_each_sequence(B, ctx.m_opt, true, [&](worker& w, std::size_t s) {
        const state_type* fa = final_adjoints ? &(*final_adjoints)[s] : nullptr;
        backward_one(w, ctx.m_tapes[s], ctx.m_params, ctx.m_hyper, ctx.m_tokens.data() + s * L * d,
                     dY.data() + s * L * d_out, fa, g.initial_adjoints[s],
                     bo.token_gradient ? g.tokens.data() + s * L * d : nullptr);
        if (ctx.m_from_m0) add_initial_adjoint(w.grads, g.initial_adjoints[s]);
    });
    gather(W, nullptr, &g.grads);
}

}  // namespace mnemo::memory
