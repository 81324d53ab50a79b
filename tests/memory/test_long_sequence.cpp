// Long sequences: T = 65536 tokens streamed through a memory in 64 pieces of 1024 tokens,
// each piece starting from the previous piece's final state (`initial`), in float32.
//
// The memories are the library's defaults: what `mnemo_torch.NeuralMemory(64)` and
// `NeuralMemory(64, model="mlp")` build (python/mnemo_torch/_build.py, module.py), which are
// also the benchmarks' seq64 and mlp64 (bench/mnemo_bench/): d = 64, the l2 inner loss, the
// Titans rule, data gates, the mse outer loss, no key normalisation, float32; the MLP is
// `mlp<silu_act, false, 64, 256>` (hidden = 4 d, no biases). (`spec`'s own default gates
// are `const_gates`; the ready-made memories use `data_gates`.) The parameters are
// initialised as `NeuralMemory.reset_parameters` does: matrices (M0's and the projections)
// N(0, 1 / fan_in), the gates' weights N(0, 0.1 / sqrt(d)), ba = -2, be = 1, bt = 0,
// theta_max = 0.1; from mnemo::train::random_stream (reproducible across compilers).
// Tokens and targets are random unit vectors (|x_t| = 1, i.i.d.).
//
// Checked for each memory:
// * every piece's outputs, per-token inner losses and state (M, S, G) are finite;
// * the state stays bounded: ||M||_F and ||S||_F after pieces 4..63 stay below twice their
//   largest value after pieces 0..3 (see `growth` for why 2);
// * the pieces equal one call over all 65536 tokens (outputs, inner losses, final state,
//   loss), within a tolerance derived from the gates' bounds (`forward_tolerance`; the
//   loss also with that of a float sum over T tokens, `summation_tolerance`);
// * a backward: the exact meta-gradient of a 4096-token prefix, run as a full backward
//   across its 4 pieces (final_adjoints), against one meta_gradient call over the prefix
//   (`gradient_tolerance`), a comparison that tells it from the truncated backward (no
//   final_adjoints) by more than 10 times that tolerance; and one meta_gradient over the
//   last piece (tokens 64512..65535, from the streamed state): finite, non-zero, its loss
//   the streamed forward's. For the linear memory, whose backward is cheap (the dual form),
//   also the full backward across all 64 pieces: the exact meta-gradient of the whole
//   65536-token sequence, finite, with the adjoints at the pieces' starts bounded like the
//   states. (The MLP's backward costs about 0.1-0.15 s per piece here: the whole sequence
//   would add 7-10 s to the test for no check the prefix does not make.)
// * The checks can fail: the same streams with an inner step too large (theta_max raised)
//   diverge, and the checks report it (last test case), run with the library's own check
//   off; with it on (run_options::check_finite, the default) the stream stops with
//   divergence_error no later than the first piece these checks find unbounded.
//
// The default MLP memory forgets itself: with ba = -2 the forget gate is about 0.12 per
// token and on i.i.d. tokens the inner updates do not sustain an MLP against it, so its
// state decays into float's subnormal range within the first piece (||M||_F ~ 2e-42,
// entries of a few units of 1.4e-45) and stays there: rounding (1 - alpha) x to the nearest
// subnormal stops the decay at a few units in the last place. From then on its retrievals
// are 0, its meta-gradient from those tokens is exactly 0 (the truncated and the full
// backward agree), and its steps run on subnormal numbers (measured about twice as slow
// per token as a live state; flush-to-zero makes the state exactly 0 and removes that).
// Its state is then bounded trivially, so the same MLP type is also streamed with a weaker
// forget gate (ba = -4) and theta_max = 0.3, where the state stays alive (||M||_F ~ 1):
// the same checks on a state that moves.
//
// Times and peak memory (ru_maxrss, of the process so far) of each T = 65536 run are
// printed as MESSAGEs. Two memory types in this unit (the linear and the MLP memory, float).
#include <doctest/doctest.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include <mnemo/mnemo.hpp>
#include <mnemo/train/init.hpp>

namespace {

namespace mm = mnemo::memory;

constexpr std::size_t d = 64, hidden = 4 * d;
using linear_spec = mm::spec<d, mm::linear<d>, mm::l2_loss, mm::titans_rule, mm::data_gates<d>, mm::mse>;
using mlp_spec =
    mm::spec<d, mm::mlp<mm::silu_act, false, d, hidden>, mm::l2_loss, mm::titans_rule, mm::data_gates<d>, mm::mse>;
using gates = mm::data_gates<d>;

constexpr std::size_t T_total = 65536, piece_len = 1024, n_pieces = T_total / piece_len;
constexpr std::size_t prefix_pieces = 4;  // the backward comparison: 4096 tokens
constexpr double unit_roundoff = 0x1.0p-24;  // float32

// ---------------------------------------------------------------------------------------
// Measurements

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
/// Peak resident memory of the process so far (ru_maxrss, KiB on Linux), in MiB.
double peak_rss_mib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) / 1024.0;
}

// ---------------------------------------------------------------------------------------
// Data

/// The default initialisation (NeuralMemory.reset_parameters), with `theta_max` and `ba`.
template <class Memory>
void init_default(typename Memory::parameters_type& p, typename Memory::hyperparameters_type& h, double theta_max,
                  double ba) {
    p.for_each([&](const std::string& name, auto& t) {
        mnemo::train::random_stream rng(2026, name);
        double sd = 0, value = 0;
        if (t.dimension() == 2) sd = 1.0 / std::sqrt(double(t.shape()[1]));
        else if (name == "wa" || name == "we" || name == "wt") sd = 0.1 / std::sqrt(double(d));
        else if (name == "ba") value = ba;
        else if (name == "be") value = 1.0;
        else if (name == "bt") value = 0.0;
        else FAIL("meta-parameter " << name << " has no default initialisation here");
        for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = float(value + sd * rng.normal());
    });
    h[gates::theta_max] = float(theta_max);
}

/// (1, len, width) random unit vectors.
xt::xtensor<float, 3> unit_vectors(std::size_t len, std::size_t width, const char* name) {
    xt::xtensor<float, 3> a(std::array<std::size_t, 3>{1, len, width});
    mnemo::train::random_stream rng(7, name);
    std::vector<double> x(width);
    for (std::size_t t = 0; t < len; ++t) {
        double n2 = 0;
        for (auto& v : x) {
            v = rng.normal();
            n2 += v * v;
        }
        for (std::size_t i = 0; i < width; ++i) a.data()[t * width + i] = float(x[i] / std::sqrt(n2));
    }
    return a;
}

/// Tokens [t0, t1) of a (1, T, w) batch into `out` (resized only when the size changes).
void time_slice(const xt::xtensor<float, 3>& a, std::size_t t0, std::size_t t1, xt::xtensor<float, 3>& out) {
    const std::size_t w = a.shape()[2];
    const std::array<std::size_t, 3> sh{1, t1 - t0, w};
    if (!std::equal(sh.begin(), sh.end(), out.shape().begin())) out.resize(sh);
    std::copy_n(a.data() + t0 * w, (t1 - t0) * w, out.data());
}

// ---------------------------------------------------------------------------------------
// Metrics

bool all_finite(const float* a, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        if (!std::isfinite(a[i])) return false;
    return true;
}
template <class A>
bool all_finite(const A& a) {
    return all_finite(a.data(), a.size());
}
double norm2(const float* a, std::size_t n) {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += double(a[i]) * double(a[i]);
    return std::sqrt(s);
}
/// max_i |a_i - b_i| / max_i max(|a_i|, |b_i|) (tests/memory/test_sequence_support.hpp's
/// metric): 0 when both are zero, +inf when an entry is not finite.
double scaled_err(const float* a, const float* b, std::size_t n) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
        num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
        den = std::max({den, std::fabs(double(a[i])), std::fabs(double(b[i]))});
    }
    return num == 0 ? 0.0 : num / den;
}
/// ||a - b||_2 / ||b||_2.
double norm_err(const std::vector<double>& a, const std::vector<double>& b) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return num == 0 ? 0.0 : den == 0 ? std::numeric_limits<double>::infinity() : std::sqrt(num / den);
}

/// The growth of a quantity sampled at every piece's end (or start): its largest value
/// over samples [4, n) divided by its largest over samples [0, 4) (the reference).
///
/// Why twice the reference bounds a memory that does not diverge: the tokens are i.i.d., and
/// the memory forgets at least a fraction alpha_min ~ 0.1 of its past per token (the forget
/// gate; momentum eta <= 0.75 keeps about 1 / (1 - eta) = 4 tokens), so after a few tens of
/// tokens its state no longer depends on M0: from the first piece's end (1024 tokens) on, a
/// stable memory's norms are samples of a stationary process. The largest of 60 such samples
/// exceeds the largest of the first 4 only by extreme-value growth, for light tails about
/// sqrt(log 64 / log 4) ~ 1.7 in the worst case of independent normal samples far out in
/// the tail, and much less for norms of 4096-entry states, which fluctuate little. A
/// memory that does not stay bounded grows at least like a random walk, sqrt(t): between
/// the reference (tokens <= 4096) and the end (65536) by a factor 4, and a diverging one
/// geometrically, to Inf within a piece. Twice the reference sits between the two.
double growth(const std::vector<double>& v) {
    double ref = 0, later = 0;
    for (std::size_t k = 0; k < v.size(); ++k) (k < 4 ? ref : later) = std::max(k < 4 ? ref : later, v[k]);
    if (!std::isfinite(ref) || !std::isfinite(later)) return std::numeric_limits<double>::infinity();
    if (ref == 0) return later == 0 ? 0.0 : std::numeric_limits<double>::infinity();
    return later / ref;
}
constexpr double max_growth = 2.0;

/// Bounds of the data gates over unit tokens (|x| = 1, so |w . x| <= |w|):
/// alpha >= sigmoid(ba - |wa|), eta <= sigmoid(be + |we|), theta <= theta_max sigmoid(bt + |wt|).
struct gate_bounds {
    double alpha_min, eta_max, theta_max;
    /// The gain of the state recurrence to an error made at every token: a unit error in M
    /// decays as (1 - alpha)^n (sum 1 / alpha), one in S as eta^n and reaches M through
    /// M += S (sum 1 / (alpha (1 - eta))). (The inner step's own Jacobian, I - theta H with H
    /// the inner loss's Hessian in M, is taken as non-expanding: true for the l2 loss of a
    /// linear memory with theta |k|^2 <= 1.)
    double gain() const { return 1.0 / alpha_min + 1.0 / (alpha_min * (1.0 - eta_max)); }
};
template <class Params, class Hyper>
gate_bounds bounds_of(const Params& p, const Hyper& h) {
    auto norm = [](const auto& t) { return norm2(t.data(), t.size()); };
    auto sigmoid = [](double z) { return 1.0 / (1.0 + std::exp(-z)); };
    return {sigmoid(double(p.template get<"ba">()()) - norm(p.template get<"wa">())),
            sigmoid(double(p.template get<"be">()()) + norm(p.template get<"we">())),
            double(h[gates::theta_max]) * sigmoid(double(p.template get<"bt">()()) + norm(p.template get<"wt">()))};
}

/// Pieces against one call (forward): the linear memory's run the same per-token arithmetic
/// (the pieces start on block boundaries of its dual form, 1024 being a multiple of its
/// 16-token blocks) except that a call's projections (and the dual form's block products)
/// are BLAS products whose rounding may depend on their size; the MLP's pieces take its dual
/// form and the one call (its tape over the state budget) the compiled step, the same inner
/// products summed in another order. Either way a relative difference of at most gamma_n =
/// n u per entry, n the longest inner product of a step (d, or the MLP's hidden size). Carried along the sequence
/// by the state recurrence such errors add up to at most gain() times that, whatever T.
double forward_tolerance(const gate_bounds& g, std::size_t longest_product) {
    return double(longest_product) * unit_roundoff * g.gain();
}
/// A sum of n float terms taken in two orders differs by rounding, at most gamma_n = n u of
/// the sum of the terms' magnitudes, and with high probability by lambda sqrt(n) u of it
/// (Higham and Mary's probabilistic bound, lambda a small constant: 3 here). The loss is
/// a float sum over the call's tokens of positive terms (the mse): at most gamma_T of it.
double summation_tolerance(std::size_t n) { return double(n) * unit_roundoff; }
/// The meta-gradient of the prefix, pieces (full backward across calls) against one call:
/// every per-token term differs as in `forward_tolerance` (its states and adjoints: the
/// adjoints' recurrence is the transpose of the states', with the same gain), and the
/// T_p = 4096 terms are summed in another order (products over each piece's 1024 tokens,
/// added up, instead of one over 4096): lambda sqrt(T_p) u of the sum of their magnitudes,
/// which exceeds the magnitude of the sum by up to sqrt(T_p) when the terms' signs are as
/// random as the tokens': 3 T_p u of the gradient's norm.
double gradient_tolerance(const gate_bounds& g, std::size_t longest_product, std::size_t T_p) {
    return forward_tolerance(g, longest_product) + 3.0 * summation_tolerance(T_p);
}
/// Whether every entry of a state is subnormal or zero (|x| < FLT_MIN).
template <class S>
bool subnormal(const S& state) {
    return std::all_of(state.values.begin(), state.values.end(),
                       [](float x) { return std::fabs(x) < std::numeric_limits<float>::min(); });
}

// ---------------------------------------------------------------------------------------
// Streaming

template <class Memory>
struct stream_report {
    using state_t = typename Memory::state_type;
    bool finite = true;
    std::string first_non_finite;
    std::size_t pieces_run = 0;
    std::size_t diverged_at = std::size_t(-1);  // the token named by the library's divergence_error
    std::vector<double> m_norm, s_norm;  // ||M||_F, ||S||_F after each piece
    double loss = 0;
    std::vector<float> piece_loss, outputs, surprise;
    std::vector<std::vector<state_t>> before;  // the state before piece k (kept pieces only)
    std::vector<state_t> final_states;
    double seconds = 0, peak_rss = 0;
    bool bounded() const { return finite && growth(m_norm) <= max_growth && growth(s_norm) <= max_growth; }
};

/// Streams tokens [0, pieces * piece_len) in pieces; `keep(k)`: keep the state before
/// piece k. Stops at the first piece with anything not finite (the library refuses a
/// non-finite initial state, rightly). `library_check`: the library's own check
/// (run_options::check_finite, on by default) runs too, and its divergence_error ends the
/// stream as the test's checks would; off, only the test's checks (on the results) run.
template <class Memory, class Keep>
stream_report<Memory> stream(Memory& memory, const typename Memory::parameters_type& p,
                             const typename Memory::hyperparameters_type& h, const xt::xtensor<float, 3>& tokens,
                             const xt::xtensor<float, 3>& targets, std::size_t pieces, Keep&& keep,
                             bool library_check = true) {
    constexpr std::size_t m = Memory::memory_size;
    stream_report<Memory> rep;
    rep.before.resize(pieces);
    mm::run_options opt;
    opt.loss_scale = 1.0 / double(T_total);  // the pieces' losses add up to the whole's
    opt.check_finite = library_check;
    xt::xtensor<float, 3> tok, tgt;
    typename Memory::result r;
    std::vector<typename Memory::state_type> carry;
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t k = 0; k < pieces; ++k) {
        time_slice(tokens, k * piece_len, (k + 1) * piece_len, tok);
        time_slice(targets, k * piece_len, (k + 1) * piece_len, tgt);
        if (keep(k)) rep.before[k] = k ? carry : std::vector{Memory::initial_state(p)};
        try {
            memory.forward(r, p, h, tok, tgt, opt, k ? &carry : nullptr);
        } catch (const mm::divergence_error& e) {
            ++rep.pieces_run;
            rep.finite = false;
            rep.first_non_finite = "piece " + std::to_string(k) + ", library: " + e.what();
            rep.diverged_at = k * piece_len + e.token;
            break;
        }
        ++rep.pieces_run;
        const auto& v = r.states[0].values;
        const char* bad = !all_finite(r.outputs) ? "outputs" : !all_finite(r.surprise) ? "inner losses"
                          : !all_finite(v.data(), v.size())                          ? "state"
                          : !std::isfinite(r.loss)                                   ? "loss"
                                                                                     : nullptr;
        if (bad) {
            rep.finite = false;
            rep.first_non_finite = std::string(bad) + " of piece " + std::to_string(k);
            break;
        }
        rep.loss += double(r.loss);
        rep.piece_loss.push_back(r.loss);
        rep.outputs.insert(rep.outputs.end(), r.outputs.data(), r.outputs.data() + r.outputs.size());
        rep.surprise.insert(rep.surprise.end(), r.surprise.data(), r.surprise.data() + r.surprise.size());
        rep.m_norm.push_back(norm2(v.data(), m));
        rep.s_norm.push_back(norm2(v.data() + m, m));
        carry = r.states;
    }
    rep.seconds = seconds_since(t0);
    rep.peak_rss = peak_rss_mib();
    rep.final_states = carry;
    return rep;
}

/// Every gradient tensor of a parameter set, flat, as doubles, in `for_each` order.
template <class P>
std::vector<std::vector<double>> flat_params(const P& g) {
    std::vector<std::vector<double>> out;
    g.for_each([&](const std::string&, const auto& t) { out.emplace_back(t.data(), t.data() + t.size()); });
    return out;
}
template <class P>
std::vector<std::string> names_of(const P& g) {
    std::vector<std::string> out;
    g.for_each([&](const std::string& name, const auto&) { out.push_back(name); });
    return out;
}

/// The full backward across pieces [0, count) (meta_gradient from the last piece to the
/// first, each with the state before it and the next piece's initial adjoints): the sum of
/// the pieces' gradients (in double), and ||adjoint of M||, ||adjoint of S|| at every
/// piece's start, the last piece's first. `finite`: gradients, outputs, inner losses and
/// adjoints of every piece.
template <class Memory>
struct backward_report {
    std::vector<std::vector<double>> grads;
    std::vector<double> adj_m, adj_s;
    double loss = 0;
    bool finite = true;
    double seconds = 0;
};
template <class Memory>
backward_report<Memory> full_backward(Memory& memory, const typename Memory::parameters_type& p,
                                      const typename Memory::hyperparameters_type& h,
                                      const xt::xtensor<float, 3>& tokens, const xt::xtensor<float, 3>& targets,
                                      const stream_report<Memory>& fwd, std::size_t count, double loss_scale,
                                      bool truncated = false) {
    constexpr std::size_t m = Memory::memory_size;
    backward_report<Memory> rep;
    mm::run_options opt;
    opt.loss_scale = loss_scale;
    xt::xtensor<float, 3> tok, tgt;
    typename Memory::result r;
    std::vector<typename Memory::state_type> adj;
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t k = count; k-- > 0;) {
        time_slice(tokens, k * piece_len, (k + 1) * piece_len, tok);
        time_slice(targets, k * piece_len, (k + 1) * piece_len, tgt);
        REQUIRE(!fwd.before[k].empty());
        memory.meta_gradient(r, p, h, tok, tgt, opt, k ? &fwd.before[k] : nullptr,
                             k + 1 < count && !truncated ? &adj : nullptr);
        const auto g = flat_params(r.grads);
        if (rep.grads.empty()) rep.grads.assign(g.size(), {});
        for (std::size_t i = 0; i < g.size(); ++i) {
            rep.grads[i].resize(g[i].size(), 0.0);
            for (std::size_t j = 0; j < g[i].size(); ++j) rep.grads[i][j] += g[i][j];
        }
        adj = r.initial_adjoints;  // a copy: the next call reads it while writing its own
        const auto& a = adj[0].values;
        rep.finite = rep.finite && all_finite(r.outputs) && all_finite(r.surprise) && std::isfinite(r.loss) &&
                     all_finite(a.data(), a.size());
        r.grads.for_each([&](const std::string&, const auto& t) { rep.finite = rep.finite && all_finite(t); });
        rep.adj_m.push_back(norm2(a.data(), m));
        rep.adj_s.push_back(norm2(a.data() + m, m));
        rep.loss += double(r.loss);
        if (!rep.finite) break;
    }
    rep.seconds = seconds_since(t0);
    return rep;
}

std::string growth_string(const std::vector<double>& v) {
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    char buf[96];
    std::snprintf(buf, sizeof buf, "from %.3g to %.3g (growth %.3f)", *lo, *hi, growth(v));
    return buf;
}

/// Everything above for one memory and one setting of theta_max and ba.
template <class Spec>
void long_sequence(const std::string& label, double theta_max, double ba, bool whole_backward) {
    using memory_t = mm::sequence_memory<Spec, float>;
    constexpr std::size_t dout = memory_t::d_out;
    constexpr std::size_t longest = memory_t::n == 1 ? d : hidden;
    CAPTURE(label);
    memory_t memory;
    typename memory_t::parameters_type p;
    typename memory_t::hyperparameters_type h;
    init_default<memory_t>(p, h, theta_max, ba);
    const auto tokens = unit_vectors(T_total, d, "tokens");
    const auto targets = unit_vectors(T_total, dout, "targets");
    const gate_bounds gb = bounds_of(p, h);
    MESSAGE(label << ": gates alpha >= " << gb.alpha_min << ", eta <= " << gb.eta_max << ", theta <= "
                  << gb.theta_max << "; gain " << gb.gain());

    // Streamed forward (what streaming users run), keeping the states a backward needs.
    const std::size_t rss_before = std::size_t(peak_rss_mib());
    const auto fwd = stream(memory, p, h, tokens, targets, n_pieces, [&](std::size_t k) {
        return whole_backward || k < prefix_pieces || k == n_pieces - 1;
    });
    INFO("first non-finite: " << fwd.first_non_finite);
    REQUIRE(fwd.finite);
    REQUIRE(fwd.pieces_run == n_pieces);
    MESSAGE(label << ": T = " << T_total << " in " << n_pieces << " pieces: " << fwd.seconds << " s ("
                  << 1e6 * fwd.seconds / double(T_total) << " us per token), peak RSS " << fwd.peak_rss
                  << " MiB (" << rss_before << " MiB before); ||M||_F " << growth_string(fwd.m_norm) << ", ||S||_F "
                  << growth_string(fwd.s_norm)
                  << std::string(subnormal(fwd.final_states[0]) ? "; the state is subnormal (every |entry| < FLT_MIN)"
                                                                : ""));
    CHECK(growth(fwd.m_norm) <= max_growth);
    CHECK(growth(fwd.s_norm) <= max_growth);

    // One call over the whole sequence.
    mm::run_options opt;
    opt.loss_scale = 1.0 / double(T_total);
    const auto t0 = std::chrono::steady_clock::now();
    const auto whole = memory.forward(p, h, tokens, targets, opt);
    const double t_whole = seconds_since(t0);
    const auto& sw = whole.states[0].values;
    const double e_out = scaled_err(fwd.outputs.data(), whole.outputs.data(), whole.outputs.size());
    const double e_sur = scaled_err(fwd.surprise.data(), whole.surprise.data(), whole.surprise.size());
    const double e_state = scaled_err(fwd.final_states[0].values.data(), sw.data(), sw.size());
    const float loss_whole = whole.loss, loss_pieces = float(fwd.loss);
    const double e_loss = scaled_err(&loss_pieces, &loss_whole, 1);
    const double tol = forward_tolerance(gb, longest);
    MESSAGE(label << ": one call over T = " << T_total << ": " << t_whole << " s, peak RSS " << peak_rss_mib()
                  << " MiB; pieces vs one call: outputs " << e_out << ", inner losses " << e_sur << ", final state "
                  << e_state << ", loss " << e_loss << " (tolerance " << tol << ")");
    CHECK(all_finite(whole.outputs));
    CHECK(all_finite(whole.surprise));
    CHECK(all_finite(sw.data(), sw.size()));
    CHECK(e_out <= tol);
    CHECK(e_sur <= tol);
    if (subnormal(fwd.final_states[0]) && subnormal(whole.states[0])) {
        // Float's rounding is absolute in the subnormal range (steps of 1.4e-45): the relative
        // bound does not apply; both states have decayed there.
        MESSAGE(label << ": both final states are subnormal; compared as such");
    } else {
        CHECK(e_state <= tol);
    }
    CHECK(e_loss <= tol + summation_tolerance(T_total));

    // The meta-gradient of the 4096-token prefix: pieces (full backward across calls)
    // against one call.
    {
        const std::size_t Tp = prefix_pieces * piece_len;
        const auto pieces = full_backward(memory, p, h, tokens, targets, fwd, prefix_pieces, 1.0 / double(Tp));
        xt::xtensor<float, 3> tok, tgt;
        time_slice(tokens, 0, Tp, tok);
        time_slice(targets, 0, Tp, tgt);
        mm::run_options po;
        po.loss_scale = 1.0 / double(Tp);
        const auto one = memory.meta_gradient(p, h, tok, tgt, po);
        const auto g1 = flat_params(one.grads);
        const auto names = names_of(one.grads);
        REQUIRE(pieces.finite);
        REQUIRE(g1.size() == pieces.grads.size());
        double worst = 0;
        std::string where, all;
        for (std::size_t i = 0; i < g1.size(); ++i) {
            const double e = norm_err(pieces.grads[i], g1[i]);
            all += " " + names[i] + " " + std::to_string(e);
            if (!(e <= worst)) worst = e, where = names[i];
            double n = 0;
            for (double x : g1[i]) n += x * x;
            INFO("gradient " << names[i]);
            CHECK(n > 0);  // a norm-wise comparison of zeros says nothing
        }
        const double gtol = gradient_tolerance(gb, longest, Tp);
        MESSAGE(label << ": meta-gradient of tokens [0, " << Tp << "): " << prefix_pieces
                      << " pieces (full backward across calls) vs one call, norm-wise:" << all << " (worst " << worst
                      << " at " << where << ", tolerance " << gtol << ")");
        CHECK(worst <= gtol);
        // The comparison tells a full backward from a truncated one (no final_adjoints: the
        // paths through the states between pieces dropped), by far.
        const auto trunc = full_backward(memory, p, h, tokens, targets, fwd, prefix_pieces, 1.0 / double(Tp), true);
        double trunc_worst = 0;
        std::string trunc_where;
        for (std::size_t i = 0; i < g1.size(); ++i) {
            const double e = norm_err(trunc.grads[i], g1[i]);
            if (!(e <= trunc_worst)) trunc_worst = e, trunc_where = names[i];
        }
        // (Unless the states between the pieces are subnormal: the paths through them then
        // carry nothing, and the truncated backward is the full one.)
        bool live = false;
        for (std::size_t k = 1; k < prefix_pieces; ++k) live = live || !subnormal(fwd.before[k][0]);
        MESSAGE(label << ": truncated backward (no final_adjoints) vs one call: worst " << trunc_worst << " at "
                      << trunc_where << std::string(live ? "" : " (the states between the pieces are subnormal)"));
        if (live) CHECK(trunc_worst > 10 * gtol);
    }

    // One backward over the last piece, from the streamed state (truncated at its start).
    {
        xt::xtensor<float, 3> tok, tgt;
        time_slice(tokens, T_total - piece_len, T_total, tok);
        time_slice(targets, T_total - piece_len, T_total, tgt);
        const auto t1 = std::chrono::steady_clock::now();
        const auto r = memory.meta_gradient(p, h, tok, tgt, opt, &fwd.before[n_pieces - 1]);
        const double t_last = seconds_since(t1);
        bool finite = all_finite(r.outputs) && all_finite(r.surprise) && std::isfinite(r.loss) &&
                      all_finite(r.initial_adjoints[0].values.data(), r.initial_adjoints[0].values.size());
        double g2 = 0;
        r.grads.for_each([&](const std::string&, const auto& t) {
            finite = finite && all_finite(t);
            const double n = norm2(t.data(), t.size());
            g2 += n * n;
        });
        // A state of subnormal numbers only (the default MLP's, above) has gradients that
        // underflow to exactly zero: no gradient reaches the meta-parameters from tokens
        // that far from M0. Any state with normal numbers has a gradient.
        const bool dead = subnormal(fwd.before[n_pieces - 1][0]);
        MESSAGE(label << ": meta_gradient over the last piece (tokens " << T_total - piece_len << ".." << T_total - 1
                      << "): " << t_last << " s, |grad| " << std::sqrt(g2)
                      << std::string(dead ? " (the state before it is subnormal, every |entry| < FLT_MIN)" : ""));
        CHECK(finite);
        if (!dead) CHECK(g2 > 0);
        // Its forward is the streamed forward's last piece.
        const float l_stream = fwd.piece_loss.back();
        CHECK(scaled_err(&r.loss, &l_stream, 1) <= tol);
    }

    // The exact meta-gradient of the whole sequence, in pieces (the linear memory).
    if (whole_backward) {
        const auto bw = full_backward(memory, p, h, tokens, targets, fwd, n_pieces, 1.0 / double(T_total));
        REQUIRE(bw.finite);
        const float lb = float(bw.loss), lf = float(fwd.loss);
        MESSAGE(label << ": full backward across all " << n_pieces << " pieces (the meta-gradient of all " << T_total
                      << " tokens): " << bw.seconds << " s, peak RSS " << peak_rss_mib() << " MiB; ||dM||_F at the "
                      << "pieces' starts " << growth_string(bw.adj_m) << ", ||dS||_F " << growth_string(bw.adj_s)
                      << "; loss " << lb << " (forward " << lf << ")");
        // The adjoint at a piece's start is the gradient of the loss of the tokens after it
        // with respect to the state: a stationary quantity away from the sequence's end (its
        // recurrence is the transpose of the states'), bounded as the states are (`growth`:
        // the reference is the 4 piece starts nearest the end, computed first).
        CHECK(growth(bw.adj_m) <= max_growth);
        CHECK(growth(bw.adj_s) <= max_growth);
        CHECK(scaled_err(&lb, &lf, 1) <= tol);
    }
}

/// The same streams with an inner step too large: the checks must report it.
template <class Spec>
void diverging(const std::string& label, double theta_max, double ba) {
    using memory_t = mm::sequence_memory<Spec, float>;
    CAPTURE(label);
    memory_t memory;
    typename memory_t::parameters_type p;
    typename memory_t::hyperparameters_type h;
    init_default<memory_t>(p, h, theta_max, ba);
    const auto tokens = unit_vectors(8 * piece_len, d, "tokens");
    const auto targets = unit_vectors(8 * piece_len, memory_t::d_out, "targets");
    // The test's own checks on the results, then the library's (run_options::check_finite):
    // both must see it, the library in the same piece as the test's checks or earlier (it
    // also looks at the state).
    const auto own = stream(memory, p, h, tokens, targets, 8, [](std::size_t) { return false; }, false);
    const auto lib = stream(memory, p, h, tokens, targets, 8, [](std::size_t) { return false; }, true);
    for (const auto* rep : {&own, &lib})
        MESSAGE(label << " (theta_max " << theta_max << ", ba " << ba << "), "
                      << std::string(rep == &own ? "the test's checks" : "the library's check") << ": " << rep->pieces_run
                      << " pieces run; " << (rep->finite ? "finite" : "non-finite: " + rep->first_non_finite)
                      << ", bounded " << rep->bounded());
    CHECK_FALSE(own.bounded());
    CHECK_FALSE(lib.bounded());
    if (!own.finite) {
        CHECK_FALSE(lib.finite);
        CHECK(lib.diverged_at < T_total);
        CHECK(lib.pieces_run <= own.pieces_run);
    }
}

}  // namespace

TEST_CASE("linear memory (the defaults): 65536 tokens in 64 pieces, finite, bounded, equal to one call") {
    long_sequence<linear_spec>("linear", 0.1, -2.0, true);
}

TEST_CASE("MLP memory (the defaults): 65536 tokens in 64 pieces, finite, bounded, equal to one call") {
    long_sequence<mlp_spec>("mlp", 0.1, -2.0, false);
}

TEST_CASE("MLP memory with a weaker forget gate (ba = -4, theta_max = 0.3): a live state over 65536 tokens") {
    long_sequence<mlp_spec>("mlp, ba -4, theta_max 0.3", 0.3, -4.0, false);
}

TEST_CASE("the checks fail on diverging memories (an inner step too large)") {
    diverging<linear_spec>("linear", 4.0, -2.0);
    diverging<mlp_spec>("mlp", 1.0, -3.0);
}
