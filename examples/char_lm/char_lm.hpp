// A character language model around a memory that learns at test time
// (docs/tutorial-char-lm.md): a learned embedding, a token shift, one MLP memory layer, a
// linear readout and softmax cross-entropy, trained with mnemo::train's AdamW. Shared by the
// demo (examples/char_lm/main.cpp) and its test (tests/examples/test_char_lm.cpp).
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "mnemo/mnemo.hpp"
#include "mnemo/train.hpp"

namespace char_lm {

namespace mm = mnemo::memory;
namespace train = mnemo::train;

// ----------------------------------------------------------------------------------------
// The text.

/// The output of `bible gen1:1-rev22:21` (Debian's bible-kjv), as it prints it: a heading
/// line per chapter ("Genesis 1"), blank lines, and verses that start with their number
/// ("  1 In the beginning ...") and wrap onto lines of their own.
inline std::string read_command(const std::string& command) {
    std::FILE* pipe = ::popen(command.c_str(), "r");
    if (!pipe) throw std::runtime_error("char_lm: cannot run '" + command + "'");
    std::string out;
    std::array<char, 65536> buf;
    std::size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
    const int status = ::pclose(pipe);
    if (status != 0 || out.empty())
        throw std::runtime_error("char_lm: '" + command + "' failed (is the package bible-kjv installed?)");
    return out;
}

// [clean]
/// The verses of the KJV as plain text, one verse a line: the chapter headings (a line
/// after a blank line that does not start with a verse number) and the verse numbers are
/// dropped, and a verse's wrapped lines are joined with a space.
inline std::string clean_kjv(const std::string& raw) {
    std::string out;
    bool after_blank = true, in_verse = false;
    std::size_t pos = 0;
    while (pos < raw.size()) {
        std::size_t end = raw.find('\n', pos);
        if (end == std::string::npos) end = raw.size();
        const std::string line = raw.substr(pos, end - pos);
        pos = end + 1;
        std::size_t i = 0;
        while (i < line.size() && line[i] == ' ') ++i;
        if (i == line.size()) {  // a blank line
            after_blank = true;
            continue;
        }
        std::size_t j = i;
        while (j < line.size() && line[j] >= '0' && line[j] <= '9') ++j;
        const bool verse_start = i > 0 && j > i && j < line.size() && line[j] == ' ';
        if (verse_start) {
            if (in_verse) out += '\n';
            out += line.substr(j + 1);
            in_verse = true;
        } else if (!after_blank && in_verse) {
            out += ' ' + line.substr(i);  // the verse goes on
        }                                 // else: a chapter heading
        after_blank = false;
    }
    if (in_verse) out += '\n';
    return out;
}
// [clean]

/// The distinct characters of a text and the text as their indices.
struct corpus {
    std::string chars;                  ///< the vocabulary, sorted
    std::array<int, 256> index{};       ///< character -> index (-1: not in the vocabulary)
    std::vector<std::uint8_t> train;    ///< the training text, as indices
    std::vector<std::uint8_t> heldout;  ///< the held-out text (the end of the text)

    std::size_t vocab() const { return chars.size(); }
};

/// The corpus of `text`: its last `heldout_fraction` is held out.
inline corpus make_corpus(const std::string& text, double heldout_fraction) {
    corpus c;
    std::array<bool, 256> seen{};
    for (unsigned char ch : text) seen[ch] = true;
    c.index.fill(-1);
    for (int ch = 0; ch < 256; ++ch)
        if (seen[ch]) {
            c.index[ch] = int(c.chars.size());
            c.chars += char(ch);
        }
    if (c.chars.size() > 255) throw std::runtime_error("char_lm: more than 255 distinct characters");
    const std::size_t split = text.size() - std::size_t(double(text.size()) * heldout_fraction);
    for (std::size_t i = 0; i < text.size(); ++i)
        (i < split ? c.train : c.heldout).push_back(std::uint8_t(c.index[(unsigned char)text[i]]));
    return c;
}

// ----------------------------------------------------------------------------------------
// The model.

// [model]
constexpr std::size_t e = 16;        // embedding size
constexpr std::size_t shift = 2;     // previous characters in a token
constexpr std::size_t d = (shift + 1) * e;  // token size: [E c_t ; E c_{t-1} ; E c_{t-2}]
constexpr std::size_t dk = 32;       // the memory's key, value and retrieval size
constexpr std::size_t hidden = 64;   // the MLP memory's hidden size
using memory_spec = mm::spec<d, mm::residual<mm::mlp<mm::silu_act, false, dk, hidden>>, mm::l2_loss,
                             mm::titans_rule, mm::data_gates<d>, mm::mse, /*NormalizeKQ=*/true>;
using memory_type = mm::sequence_memory<memory_spec, double>;
using gates = mm::data_gates<d>;
// [model]

struct config {
    std::size_t batch = 8;    ///< sequences per step
    std::size_t seq = 256;    ///< tokens per sequence
    std::size_t steps = 1500; ///< optimizer steps
    std::size_t warmup = 150; ///< warm-up steps of the schedule (the program: steps / 10)
    double lr = 2e-2;         ///< AdamW's peak learning rate
    double weight_decay = 0.01;
    double clip = 1.0;        ///< global gradient norm
    double theta_max = 0.5;   ///< the inner learning rate's bound
    bool inner_updates = true;  ///< false: theta_max = 0 and no forgetting (the memory stays M0)
    std::size_t threads = 2;  ///< the memory's batch threads
    bool shift_init = true;   ///< projections set up for the token shift (see shift_projections)
    std::size_t checkpoint = 16;  ///< the memory's checkpoint interval (0: the library chooses)
    std::uint64_t seed = 1;
};

/// The characters of a window of the text for one sequence of T tokens: c_{-shift}, ...,
/// c_{-1}, c_0, ..., c_T. Token t (0 <= t < T) reads c_t, c_{t-1}, ..., c_{t-shift} and
/// predicts c_{t+1}.
constexpr std::size_t window(std::size_t T) { return T + shift + 1; }

/// The model: tokens of the embeddings of the current and the `shift` previous characters,
/// the memory, a linear readout of the memory's retrieval and of the token.
class model {
public:
    const std::size_t V;
    const config cfg;

    memory_type memory;
    memory_type::parameters_type mem;
    memory_type::hyperparameters_type hyper;
    xt::xtensor<double, 2> E;    ///< (V, e): the embedding
    xt::xtensor<double, 2> Wo;   ///< (V, dk): the readout of the memory's retrieval
    xt::xtensor<double, 2> Wx;   ///< (V, d): the readout of the token (a path around the memory)
    xt::xtensor<double, 1> bo;   ///< (V): the readout's bias

    // The gradients: persistent buffers, so that the views of `grads` stay valid.
    memory_type::layer_gradients mem_grads;
    xt::xtensor<double, 2> dE, dWo, dWx;
    xt::xtensor<double, 1> dbo;

    train::tensor_list<double> params, grads;

    model(std::size_t vocab, const config& c)
        : V(vocab), cfg(c), E(matrix(V, e)), Wo(matrix(V, dk)), Wx(matrix(V, d)), bo(vector(V)), dE(matrix(V, e)),
          dWo(matrix(V, dk)), dWx(matrix(V, d)), dbo(vector(V)) {
        // [lists]
        params.add(mem, "mem.").add("embed", E).add("readout.Wo", Wo).add("readout.Wx", Wx).add("readout.b", bo);
        // The layer's gradients are written into mem_grads.grads by every backward: it is
        // kept, so views of it stay valid across steps. Its for_each order is that of mem.
        grads.add(mem_grads.grads, "mem.").add("embed", dE).add("readout.Wo", dWo).add("readout.Wx", dWx)
            .add("readout.b", dbo);
        // [lists]
        params.check_same_layout(grads, "the gradients");
        initialize();
    }

    /// Seeded initial values (mnemo::train::initialize, by name).
    void initialize() {
        // [init]
        std::vector<train::init_rule> rules = {
            {"embed", train::normal{0, 1 / std::sqrt(double(d))}},  // tokens of norm about 1
            {"mem.WK", train::xavier_normal{}},
            {"mem.WV", train::xavier_normal{}},
            {"mem.WQ", train::xavier_normal{}},
            {"mem.M0[0]", train::xavier_normal{}},  // W1 (hidden, dk)
            {"mem.M0[1]", train::xavier_normal{}},  // W2 (dk, hidden)
            {"mem.wa", train::zeros{}},
            {"mem.we", train::zeros{}},
            {"mem.wt", train::zeros{}},
            {"mem.ba", train::constant{-4.0}},  // forget little: alpha about 0.018
            {"mem.be", train::constant{0.0}},   // momentum eta = 0.5
            {"mem.bt", train::constant{0.0}},   // theta = theta_max / 2
            {"readout.Wo", train::xavier_normal{}},
            {"readout.Wx", train::xavier_normal{}},
            {"readout.b", train::zeros{}},
        };
        hyper[gates::theta_max] = cfg.theta_max;
        if (!cfg.inner_updates) {
            // No inner updates: theta = 0, so S stays 0, and no forgetting (alpha =
            // sigmoid(-40) ~ 4e-18, and 1 - alpha rounds to 1): M_t = M0 at every token.
            hyper[gates::theta_max] = 0.0;
            for (auto& r : rules)
                if (r.pattern == "mem.ba") r.init = train::constant{-40.0};
        }
        // [init]
        train::initialize(params, cfg.seed, rules);
        if (cfg.shift_init) shift_projections();
    }

    // [shift_init]
    /// The projections set up for the token shift: the key reads the previous characters'
    /// parts of the token, the value the current character's part, and the query the parts
    /// one character later, through the key's matrices. With shift = 2 the memory then
    /// stores (c_{t-2} c_{t-1} -> c_t) at token t, and the query of (c_{t-1} c_t) finds what
    /// followed these two characters before. Training can move them anywhere.
    void shift_projections() {
        auto& WK = mem.get<"WK">();
        auto& WV = mem.get<"WV">();
        auto& WQ = mem.get<"WQ">();
        for (std::size_t r = 0; r < dk; ++r)
            for (std::size_t i = 0; i < e; ++i) {
                // Part j of a token (columns j e .. j e + e - 1) is the character c_{t-j}.
                for (std::size_t j = 0; j < shift; ++j) WQ(r, j * e + i) = WK(r, (j + 1) * e + i);
                WQ(r, shift * e + i) = 0;  // query: c_t .. c_{t-shift+1}
                WK(r, i) = 0;              // key: c_{t-1} .. c_{t-shift}
                for (std::size_t j = 1; j <= shift; ++j) WV(r, j * e + i) = 0;  // value: c_t
            }
    }
    // [shift_init]

    /// What the optimizer must not touch: with no inner updates, the gates (their gradients
    /// are zero; frozen, the forget gate's bias keeps its -40 against the weight decay).
    std::vector<std::string> frozen() const {
        if (cfg.inner_updates) return {};
        return {"mem.wa", "mem.ba", "mem.we", "mem.be", "mem.wt", "mem.bt"};
    }

    /// The mean cross-entropy (nats) of the next character over `B` windows of `window(T)`
    /// indices each (`windows`, row after row). With `backward`, also every gradient into
    /// `grads`. With `per_position` (T values), adds each position's summed loss to it.
    double run(const std::uint8_t* windows, std::size_t B, std::size_t T, bool backward,
               double* per_position = nullptr) {
        resize(B, T);
        // [forward]
        // The tokens: x_t = [E c_t ; E c_{t-1} ; E c_{t-2}] (the token shift).
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t t = 0; t < T; ++t) {
                const std::uint8_t* c = windows + b * window(T) + t + shift;  // c[-j] = c_{t-j}
                for (std::size_t j = 0; j <= shift; ++j) std::copy_n(&E(c[-std::ptrdiff_t(j)], 0), e, &X(b, t, j * e));
            }
        mm::run_options opt;
        opt.threads = cfg.threads;
        opt.checkpoint = cfg.checkpoint;
        const xt::xtensor<double, 3>& Y = memory.forward(ctx, mem, hyper, X, opt);
        // logits = Wo y + Wx x + b, one row per token.
        const std::size_t N = B * T;
        gemm(false, true, N, V, dk, 1.0, Y.data(), Wo.data(), 0.0, logits.data());
        gemm(false, true, N, V, d, 1.0, X.data(), Wx.data(), 1.0, logits.data());
        // [forward]
        // [loss]
        // Softmax cross-entropy, and its gradient dL/dlogits = (softmax - onehot) / N.
        double loss = 0;
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t t = 0; t < T; ++t) {
                double* z = &logits((b * T + t), 0);
                const std::size_t target = windows[b * window(T) + t + shift + 1];  // c_{t+1}
                double zmax = -INFINITY;
                for (std::size_t v = 0; v < V; ++v) zmax = std::max(zmax, z[v] += bo(v));
                double s = 0;
                for (std::size_t v = 0; v < V; ++v) s += std::exp(z[v] - zmax);
                const double lse = zmax + std::log(s);
                const double l = lse - z[target];
                loss += l;
                if (per_position) per_position[t] += l;
                if (backward) {
                    for (std::size_t v = 0; v < V; ++v) z[v] = std::exp(z[v] - lse) / double(N);
                    z[target] -= 1 / double(N);
                }
            }
        loss /= double(N);
        // [loss]
        // A non-finite loss (a diverging memory) is left to the optimizer to refuse: the
        // memory's backward would refuse its non-finite dY with another error.
        if (!backward || !std::isfinite(loss)) return loss;
        // [backward]
        const double* dz = logits.data();  // now dL/dlogits
        gemm(true, false, V, dk, N, 1.0, dz, Y.data(), 0.0, dWo.data());
        gemm(true, false, V, d, N, 1.0, dz, X.data(), 0.0, dWx.data());
        dbo.fill(0);
        for (std::size_t k = 0; k < N; ++k)
            for (std::size_t v = 0; v < V; ++v) dbo(v) += dz[k * V + v];
        // dY = dL/dY = dlogits Wo; the memory's backward: every meta-gradient, and dL/dX.
        gemm(false, false, N, dk, V, 1.0, dz, Wo.data(), 0.0, dY.data());
        memory.backward(ctx, dY, mem_grads);
        // dL/dX: through the memory, and through the readout's path around it.
        xt::xtensor<double, 3>& dX = mem_grads.tokens;
        gemm(false, false, N, d, V, 1.0, dz, Wx.data(), 1.0, dX.data());
        // The embedding's gradient: each token's parts scattered into the rows of c_t,
        // c_{t-1}, c_{t-2}.
        dE.fill(0);
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t t = 0; t < T; ++t) {
                const std::uint8_t* c = windows + b * window(T) + t + shift;
                for (std::size_t j = 0; j <= shift; ++j) {
                    const double* g = &dX(b, t, j * e);
                    double* row = &dE(c[-std::ptrdiff_t(j)], 0);
                    for (std::size_t i = 0; i < e; ++i) row[i] += g[i];
                }
            }
        // [backward]
        return loss;
    }

private:
    static xt::xtensor<double, 2> matrix(std::size_t r, std::size_t c) {
        return xt::zeros<double>(std::array<std::size_t, 2>{r, c});
    }
    static xt::xtensor<double, 1> vector(std::size_t n) { return xt::zeros<double>(std::array<std::size_t, 1>{n}); }

    memory_type::context ctx;
    xt::xtensor<double, 3> X, dY;
    xt::xtensor<double, 2> logits;

    void resize(std::size_t B, std::size_t T) {
        if (X.shape(0) == B && X.shape(1) == T && X.size() > 0) return;
        X = xt::zeros<double>(std::array<std::size_t, 3>{B, T, d});
        dY = xt::zeros<double>(std::array<std::size_t, 3>{B, T, dk});
        logits = matrix(B * T, V);
    }

    /// C (m, n) = alpha op(A) op(B) + beta C, row-major, contiguous.
    static void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, double alpha, const double* a,
                     const double* b, double beta, double* c) {
        cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n),
                    int(k), alpha, a, ta ? int(m) : int(k), b, tb ? int(k) : int(n), beta, c, int(n));
    }
};

// ----------------------------------------------------------------------------------------
// Training and evaluation.

/// `B` random windows of `window(T)` indices from `text`, from the stream `rng`.
inline void sample_windows(const std::vector<std::uint8_t>& text, std::size_t B, std::size_t T,
                           train::random_stream& rng, std::vector<std::uint8_t>& out) {
    if (text.size() <= window(T)) throw std::invalid_argument("char_lm: the text is shorter than a window");
    out.resize(B * window(T));
    for (std::size_t b = 0; b < B; ++b) {
        const std::size_t s = rng.below(text.size() - window(T) + 1);
        std::copy_n(text.data() + s, window(T), out.data() + b * window(T));
    }
}

struct progress {
    std::size_t step = 0, steps = 0;
    double loss = 0, lr = 0, seconds = 0, tokens_per_s = 0;
};

struct training_result {
    std::vector<double> losses;  ///< the training loss of every step (nats)
    std::size_t steps = 0;
    double seconds = 0, tokens_per_s = 0;
};

// [train]
/// Trains `m` for `m.cfg.steps` AdamW steps on random windows of `text`. A non-finite loss
/// or gradient, or a memory that diverges in the forward (its divergence_error names the
/// window and the token), stops it with the optimizer's train::non_finite_error (naming the
/// step), the parameters unchanged.
inline training_result train_model(model& m, const std::vector<std::uint8_t>& text,
                                   const std::function<void(const progress&)>& report = {}) {
    const config& c = m.cfg;
    train::adamw_options ao;
    ao.lr = c.lr;
    ao.weight_decay = c.weight_decay;
    train::step_options so;
    so.clip_norm = c.clip;
    so.lr_schedule = {c.warmup, c.steps, 0.1};  // linear warm-up, then cosine down to lr / 10
    so.frozen = m.frozen();
    train::adamw<double> opt(m.params, ao, so);

    train::random_stream rng(c.seed, "batches");
    std::vector<std::uint8_t> windows;
    training_result r;
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t s = 0; s < c.steps; ++s) {
        sample_windows(text, c.batch, c.seq, rng, windows);
        const double lr = opt.learning_rate();
        double loss = 0;
        try {
            loss = m.run(windows.data(), c.batch, c.seq, /*backward=*/true);
        } catch (const mm::divergence_error& e) {
            opt.refuse_step(e.what());  // the memory diverged (run_options::check_finite)
        }
        opt.step(m.grads, loss);  // throws train::non_finite_error
        r.losses.push_back(loss);
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        r.steps = s + 1;
        r.tokens_per_s = double(r.steps * c.batch * c.seq) / r.seconds;
        if (report) report({r.steps, c.steps, loss, lr, r.seconds, r.tokens_per_s});
    }
    return r;
}
// [train]

struct evaluation {
    double nats = 0;               ///< mean cross-entropy per character
    double bits_per_char = 0;
    std::vector<double> by_position;  ///< mean cross-entropy (nats) at each position 0 .. T-1
    std::size_t characters = 0;    ///< characters predicted
};

/// The model on consecutive windows of `T` characters of `text` (at most `max_windows`;
/// 0: all), each sequence starting from the memory's M0.
inline evaluation evaluate(model& m, const std::vector<std::uint8_t>& text, std::size_t T,
                           std::size_t max_windows = 0, std::size_t batch = 32) {
    std::size_t W = text.size() < window(T) ? 0 : (text.size() - shift - 1) / T;
    if (max_windows && W > max_windows) W = max_windows;
    if (W == 0) throw std::invalid_argument("char_lm: the held-out text is shorter than a window");
    evaluation ev;
    ev.by_position.assign(T, 0.0);
    std::vector<std::uint8_t> windows;
    double total = 0;
    for (std::size_t w0 = 0; w0 < W; w0 += batch) {
        const std::size_t B = std::min(batch, W - w0);
        windows.resize(B * window(T));
        for (std::size_t b = 0; b < B; ++b)
            std::copy_n(text.data() + (w0 + b) * T, window(T), windows.data() + b * window(T));
        total += m.run(windows.data(), B, T, false, ev.by_position.data()) * double(B * T);
    }
    ev.characters = W * T;
    for (auto& p : ev.by_position) p /= double(W);
    ev.nats = total / double(ev.characters);
    ev.bits_per_char = ev.nats / std::log(2.0);
    return ev;
}

/// An add-one-smoothed bigram model counted on `train_text`, on the same characters as
/// `evaluate` (character c_{t+1} of each window from c_t).
inline evaluation evaluate_bigram(const std::vector<std::uint8_t>& train_text, std::size_t V,
                                  const std::vector<std::uint8_t>& text, std::size_t T, std::size_t max_windows = 0) {
    std::vector<double> counts(V * V, 1.0), rows(V, double(V));
    for (std::size_t i = 0; i + 1 < train_text.size(); ++i) {
        counts[train_text[i] * V + train_text[i + 1]] += 1;
        rows[train_text[i]] += 1;
    }
    std::size_t W = text.size() < window(T) ? 0 : (text.size() - shift - 1) / T;
    if (max_windows && W > max_windows) W = max_windows;
    evaluation ev;
    ev.by_position.assign(T, 0.0);
    double total = 0;
    for (std::size_t w = 0; w < W; ++w)
        for (std::size_t t = 0; t < T; ++t) {
            const std::size_t cur = text[w * T + t + shift], next = text[w * T + t + shift + 1];
            const double l = -std::log(counts[cur * V + next] / rows[cur]);
            total += l;
            ev.by_position[t] += l;
        }
    ev.characters = W * T;
    for (auto& p : ev.by_position) p /= double(W);
    ev.nats = total / double(ev.characters);
    ev.bits_per_char = ev.nats / std::log(2.0);
    return ev;
}

}  // namespace char_lm
