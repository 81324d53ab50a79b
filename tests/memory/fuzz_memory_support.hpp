// Random memories for tests/memory/test_fuzz_memories*.cpp. `fuzzmem::choice<Seed>` picks,
// at compile time from its seed (the constexpr splitmix64 stream of
// tests/support/fuzz_expr.hpp), a memory spec: token size d (3 or 4), model (linear, or a
// 2-layer MLP with silu, gelu or gelu_exact, with or without biases, plain or residual;
// hidden size d + 1 or d + 2), inner loss (l2, huber<1, 2>, dot, lp<3>, lp<4>), update rule
// (titans, delta, normalised momentum; Newton-Schulz with 2 steps on linear memories), gates
// (constant or data), outer loss (mse or l1) and key/query normalisation (linear memories).
// `check_memory<Seed>` then draws, at run time and seeded, the batch (B 1-2, T 5-8), the
// data, the meta-parameters, the hyperparameters and the run options (chunk size 1, 2, 3 or
// T, checkpoint interval 0, 2, 3 or T, dual form on or off), several times, and checks the
// meta-gradient against central differences of the memory's own loss (seqtest::fd_check:
// memfd::check_all on every entry of every meta-parameter, double precision; a run above the
// tolerance gets a second opinion with a 4 times smaller step, `small_step`).
//
// Kinks: huber<1, 2> and lp<3> as inner losses (on linear memories, where the inner
// residuals can be read back: seqtest::inner_residuals), and the l1 outer loss, are only
// checked when no point of any entry's stencil leaves the smooth piece
// (seqtest::stencil_crossings); otherwise other data are drawn. The MLP memories use smooth
// losses only (no relu activation).
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <sstream>
#include <string>

#include "memory/test_sequence_support.hpp"
#include "support/fuzz_expr.hpp"

namespace fuzzmem {

namespace mm = mnemo::memory;
using mnemo_test::fuzz::below;
using mnemo_test::fuzz::fork;
using mnemo_test::fuzz::splitmix64;

template <std::uint64_t R, std::size_t D, std::size_t H, bool LinearOnly>
struct model_choice {
    static constexpr int i = LinearOnly ? 0 : int(below(R, 8));
    template <class Act>
    using mlp = mm::mlp<Act, false, D, H>;
    using type = std::conditional_t<
        i <= 2, mm::linear<D>,
        std::conditional_t<
            i == 3, mlp<mm::silu_act>,
            std::conditional_t<
                i == 4, mlp<mm::gelu_act>,
                std::conditional_t<i == 5, mlp<mm::gelu_exact_act>,
                                   std::conditional_t<i == 6, mm::mlp<mm::silu_act, true, D, H>,
                                                      mm::residual<mlp<mm::gelu_exact_act>>>>>>>;
    static constexpr bool linear = i <= 2;
    static constexpr bool bias = i == 6;
    static constexpr const char* names[] = {"linear", "linear", "linear", "mlp<silu>", "mlp<gelu>",
                                            "mlp<gelu_exact>", "mlp<silu, bias>", "residual<mlp<gelu_exact>>"};
    static constexpr const char* name = names[i];
};

/// The inner losses: every one on linear memories, the smooth ones on MLPs.
template <std::uint64_t R, bool Linear>
struct loss_choice {
    static constexpr int pick = int(below(R, 5));
    static constexpr int i = Linear ? pick : (pick == 1 || pick == 3 ? 0 : pick);
    using type = std::conditional_t<
        i == 0, mm::l2_loss,
        std::conditional_t<i == 1, mm::huber_loss<1, 2>,
                           std::conditional_t<i == 2, mm::dot_loss,
                                              std::conditional_t<i == 3, mm::lp_loss<3>, mm::lp_loss<4>>>>>;
    static constexpr bool huber = i == 1, lp3 = i == 3;
    static constexpr const char* names[] = {"l2_loss", "huber_loss<1, 2>", "dot_loss", "lp_loss<3>", "lp_loss<4>"};
    static constexpr const char* name = names[i];
};

/// Newton-Schulz on linear memories only: it orthogonalises matrices (an MLP's biases are
/// vectors), and through an MLP its second derivatives take about a minute to compile.
template <std::uint64_t R, bool Linear>
struct rule_choice {
    static constexpr int pick = int(below(R, 4));
    static constexpr int i = !Linear && pick == 3 ? 0 : pick;
    using type = std::conditional_t<
        i == 0, mm::titans_rule,
        std::conditional_t<i == 1, mm::delta_rule,
                           std::conditional_t<i == 2, mm::normalized_momentum_rule, mm::newton_schulz_rule<2>>>>;
    static constexpr const char* names[] = {"titans_rule", "delta_rule", "normalized_momentum_rule",
                                            "newton_schulz_rule<2>"};
    static constexpr const char* name = names[i];
};

/// The memory of a seed; with `LinearOnly`, a linear one.
template <std::uint64_t Seed, bool LinearOnly = false>
struct choice {
    static constexpr std::uint64_t r = splitmix64(Seed ^ 0xbb67ae8584caa73bULL);
    static constexpr std::size_t d = 3 + below(fork(r, 1), 2);
    static constexpr std::size_t h = d + 1 + below(fork(r, 2), 2);
    using model = model_choice<fork(r, 3), d, h, LinearOnly>;
    using loss = loss_choice<fork(r, 4), model::linear>;
    using rule = rule_choice<fork(r, 5), model::linear>;
    static constexpr bool data_gates = below(fork(r, 6), 2) == 0;
    using gates = std::conditional_t<data_gates, mm::data_gates<d>, mm::const_gates>;
    static constexpr bool l1 = below(fork(r, 7), 3) == 0;
    using outer = std::conditional_t<l1, mm::l1, mm::mse>;
    // Normalised keys and queries on linear memories, except with a kinked inner loss (whose
    // residuals are read back without the normalisation). Through an MLP, the second
    // derivatives of the normalisation take 1-1.5 min and 2-2.6 GB to compile.
    static constexpr bool inner_kinks = loss::huber || loss::lp3;
    static constexpr bool normalize = model::linear && !inner_kinks && below(fork(r, 8), 3) == 0;
    using spec = mm::spec<d, typename model::type, typename loss::type, typename rule::type, gates, outer, normalize>;

    static std::string describe() {
        std::ostringstream s;
        s << "spec<" << d << ", " << model::name;
        if (!model::linear) s << " (hidden " << h << ")";
        s << ", " << loss::name << ", " << rule::name << ", " << (data_gates ? "data_gates" : "const_gates") << ", "
          << (l1 ? "l1" : "mse") << (normalize ? ", normalize_kq" : "") << ">";
        return s.str();
    }
};

struct summary {
    std::size_t memories = 0, runs = 0, skipped = 0, second_opinions = 0;
    double worst = 0;
    std::string where;
};

/// Fills the problem from the data seed: the batch (B, T), tokens and targets in [-1, 1], the
/// meta-parameters by name, the hyperparameters.
template <class C, class P>
void draw(P& p, std::uint64_t data_seed, std::size_t B, std::size_t T) {
    mnemo_test::fuzz::rng g{data_seed};
    constexpr std::size_t d = C::d;
    using memory_t = typename P::memory_type;
    p.tokens = xt::xtensor<double, 3>(std::array<std::size_t, 3>{B, T, d});
    p.targets = xt::xtensor<double, 3>(std::array<std::size_t, 3>{B, T, memory_t::d_out});
    for (auto& v : p.tokens) v = g.uniform(-1.0, 1.0);
    for (auto& v : p.targets) v = g.uniform(-1.0, 1.0);
    const double proj = 0.8 / std::sqrt(double(d));
    seqtest::fill_by_name(p.params, [&](const std::string& name, std::size_t) {
        if (name.rfind("M0[", 0) == 0) return g.uniform(-0.3, 0.3);
        if (name == "WK" || name == "WV" || name == "WQ") return g.uniform(-proj, proj);
        if (name == "ba") return g.uniform(-2.5, -1.5);  // forget little
        if (name == "be") return g.uniform(0.0, 1.5);
        if (name == "bt") return g.uniform(-0.5, 0.5);
        return g.uniform(-0.3, 0.3);  // the gates' weights
    });
    if constexpr (C::data_gates) {
        p.hyper[C::gates::theta_max] = g.uniform(0.1, 0.3);
    } else {
        p.hyper[mm::const_gates::eta] = g.uniform(0.5, 0.9);
        p.hyper[mm::const_gates::alpha] = g.uniform(0.01, 0.2);
        p.hyper[mm::const_gates::theta] = g.uniform(0.05, 0.3);
    }
}

/// The pieces of the kinked losses of `C` (empty when there is none): the Huber branch or
/// the sign of every inner residual, the sign of every y - target of an l1 outer loss.
template <class C, class P>
std::vector<int> sides(const P& p) {
    std::vector<int> s;
    if constexpr (C::l1) s = seqtest::outer_signs(p);
    if constexpr (C::loss::huber)
        for (double r : seqtest::inner_residuals(p)) s.push_back((r > 0.5) - (r < -0.5));
    if constexpr (C::loss::lp3)
        for (double r : seqtest::inner_residuals(p)) s.push_back((r > 0) - (r < 0));
    return s;
}

/// The relative step of the second opinion, 4 times smaller than fd::default_h: some
/// memories (Newton-Schulz iterations of a normalised surprise on normalised keys, say) have
/// derivatives of high order large enough for the truncation error at 1e-3 to pass 1e-6
/// while the differences still converge, as h^4, to the exact meta-gradient.
inline constexpr double small_step = 2.5e-4;

/// Checks the meta-gradient of the memory of `Seed` against central differences of its loss,
/// for `runs` random run options, with relative tolerance `tol` (floor 1e-6): with
/// memfd::check_all (seqtest::fd_check), and, for a run that fails it, with memfd::check_all's two steps
/// (reported as a second opinion).
template <std::uint64_t Seed, bool LinearOnly>
void check_memory(summary& sm, std::size_t runs, double tol = 1e-6) {
    using C = choice<Seed, LinearOnly>;
    using Spec = typename C::spec;
    using problem = seqtest::custom_problem<Spec>;
    using memory_t = typename problem::memory_type;
    ++sm.memories;
    const std::string spec_name = C::describe();
    for (std::size_t run = 0; run < runs; ++run) {
        mnemo_test::fuzz::rng g{splitmix64(Seed * 0x1000 + run * 0x10 + 0xfeed)};
        // Kinked inner losses: one sequence (inner_residuals reads the first only).
        const std::size_t B = C::inner_kinks ? 1 : 1 + std::size_t(g.uniform(0, 2));
        const std::size_t T = 5 + std::size_t(g.uniform(0, 4));
        problem p(T, 0.1);
        const std::size_t chunks[] = {1, 2, 3, T};
        p.options.chunk = chunks[std::size_t(g.uniform(0, 4))];
        const std::size_t checkpoints[] = {0, 2, 3, T};
        p.options.checkpoint = checkpoints[std::size_t(g.uniform(0, 4))];
        p.options.dual_form = g.uniform(0, 1) < 0.5;
        p.options.threads = 1;
        std::uint64_t data_seed = 0;
        bool smooth = false;
        std::string first;
        for (int attempt = 0; attempt < 8 && !smooth; ++attempt) {
            data_seed = splitmix64(g.state + std::uint64_t(attempt));
            draw<C>(p, data_seed, B, T);
            if constexpr (C::l1 || C::inner_kinks) {
                smooth = seqtest::stencil_crossings(p, [](const problem& q) { return sides<C>(q); }, first) == 0;
            } else {
                smooth = true;
            }
        }
        std::ostringstream label;
        label << "memory seed " << Seed << ": " << spec_name << ", B " << B << ", T " << T << ", chunk "
              << p.options.chunk << ", checkpoint " << p.options.checkpoint << ", dual_form "
              << (p.options.dual_form ? "on" : "off") << (memory_t::has_dual_form ? " (applies)" : " (n/a)")
              << ", data seed " << data_seed;
        if (!smooth) {
            ++sm.skipped;
            MESSAGE(label.str() << ": skipped, every draw puts a stencil across a kink (" << first << ")");
            continue;
        }
        try {
            // memfd::check_all, with the step of fd::central_diff (1e-3 relative).
            auto w = seqtest::fd_check(p, label.str());
            if (!(w.err <= tol)) {
                // A second opinion with a 4x smaller step, entry by entry (see small_step).
                memory_t memory;
                const auto r = memory.meta_gradient(p.params, p.hyper, p.tokens, p.targets, p.options);
                const auto w2 = memfd::check_all(
                    p.params, r.grads,
                    [&] { return double(memory.forward(p.params, p.hyper, p.tokens, p.targets, p.options).loss); },
                    1e-6, small_step);
                MESSAGE(label.str() << ": with the step " << mnemo_test::fd::default_h << " the worst error is "
                                    << w.err << " at " << w.where << "; the best of the steps "
                                    << mnemo_test::fd::default_h << " and " << small_step << ", entry by entry: "
                                    << w2.err << " at " << w2.where);
                ++sm.second_opinions;
                w = w2;
            }
            CHECK_MESSAGE(w.err <= tol, label.str() << ": worst relative error " << w.err << " at " << w.where);
            ++sm.runs;
            if (!(w.err <= sm.worst)) {
                sm.worst = w.err;
                sm.where = label.str() + " at " + w.where;
            }
        } catch (const std::exception& e) {
            FAIL_CHECK(label.str() << ": threw " << e.what());
        }
    }
}

/// The two memories of a unit: the seed `First`'s, any memory, and the seed `First + 1`'s, a
/// linear memory. A memory type costs 10-30 s of compile time and the unit about 1.5 GB of
/// compiler memory; two MLP memories may take more than 2 GB, one MLP and one linear memory
/// stay under it.
template <std::uint64_t First>
void check_memories(summary& sm, std::size_t runs) {
    check_memory<First, false>(sm, runs);
    check_memory<First + 1, true>(sm, runs);
}

inline void report(const summary& sm, std::uint64_t first, std::size_t runs) {
    constexpr std::size_t n = 2;
    MESSAGE("fuzzed memories, seeds [" << first << ", " << first + n << "): " << sm.memories << " memories, "
                                       << sm.runs << " runs checked, " << sm.skipped << " skipped (kinks), "
                                       << sm.second_opinions
                                       << " with a second opinion at the smaller step; worst relative error of the "
                                          "meta-gradient against central differences "
                                       << sm.worst << " (" << sm.where << ")");
    CHECK(sm.memories == n);
    CHECK(sm.runs + sm.skipped == n * runs);
    CHECK(sm.skipped * 3 <= n * runs);
}

/// One unit of the fuzz tests (tests/memory/test_fuzz_memories*.cpp): the two memories of
/// the seeds MNEMO_FUZZ_SEED + 2 Unit and + 1 (see check_memories), each run `runs` times
/// with seeded random batches and run options (run time only).
template <std::size_t Unit>
void run_unit() {
    constexpr std::size_t runs = 8;
    constexpr std::uint64_t first = std::uint64_t(MNEMO_FUZZ_SEED) + 2 * Unit;
    summary sm;
    check_memories<first>(sm, runs);
    report(sm, first, runs);
}

}  // namespace fuzzmem
