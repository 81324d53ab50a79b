// Divergence: run_options::check_finite (on by default) stops a call whose memory stops
// being finite, with a memory::divergence_error naming the sequence and the token, and
// leaves nothing half-written.
//
// The memory: linear, the l2 inner loss, the Titans rule, data gates, float32, d = 8 (the
// default memory's form, small). Tokens: (4, 64, 8), N(0, 1) entries; in the diverging
// batches some sequences' tokens are scaled by 30 from token 10 on, so that theta |k|^2
// (about 0.1 * 30^2 * 8) is far beyond the bound 2 theta |k|^2 < (2 - alpha)(1 + eta) of a
// stable inner step (docs/memory.md#divergence); the other sequences stay finite (checked).
//
// * Where: the token the error names is found independently, by running the same call
//   with check_finite off and scanning its results for the first token whose inner loss or
//   retrieval is not finite. Every form: sequential token by token, sequential dual, chunk
//   4 token by token and dual; forward and meta_gradient; the layer's forward(context).
// * Threads: with two diverging sequences (1 and 3) on 1, 2 and 4 threads the error names
//   sequence 1, the first in batch order.
// * Nothing half-written: a result that held a successful call is left empty; a layer
//   context holds no forward (its backward refuses).
// * Streaming: a diverging second piece names the token in the call and its stream position.
// * The check changes nothing when nothing diverges (bit for bit against check_finite off).
// * The gates that prevent it: with normalised keys (|k| = 1) and theta_max = 0.45 (2 theta
//   < 1, stable whatever alpha and eta) the same scaled tokens stay finite over 4096 tokens;
//   with theta_max = 10 (2 theta about 10, beyond the bound's 4) they diverge, and the check says so.
//
// Two memory types in this unit (keys normalised or not).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <mnemo/mnemo.hpp>
#include <mnemo/train/init.hpp>

namespace {

namespace mm = mnemo::memory;

constexpr std::size_t d = 8, B = 4, L = 64, onset = 10;
using gates = mm::data_gates<d>;
template <bool Normalize>
using spec_t = mm::spec<d, mm::linear<d>, mm::l2_loss, mm::titans_rule, gates, mm::mse, Normalize>;
using memory_t = mm::sequence_memory<spec_t<false>, float>;
using normalized_t = mm::sequence_memory<spec_t<true>, float>;
using batch = xt::xtensor<float, 3>;

/// The default initialisation (as test_long_sequence.cpp): matrices N(0, 1 / fan_in), the
/// gates' weights N(0, 0.1 / sqrt(d)), ba = -2, be = 1, bt = 0.
template <class Memory>
void init(typename Memory::parameters_type& p, typename Memory::hyperparameters_type& h, double theta_max) {
    p.for_each([&](const std::string& name, auto& t) {
        mnemo::train::random_stream rng(17, name);
        double sd = 0, value = 0;
        if (t.dimension() == 2) sd = 1.0 / std::sqrt(double(t.shape()[1]));
        else if (name == "wa" || name == "we" || name == "wt") sd = 0.1 / std::sqrt(double(d));
        else if (name == "ba") value = -2.0;
        else if (name == "be") value = 1.0;
        for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = float(value + sd * rng.normal());
    });
    h[gates::theta_max] = float(theta_max);
}

/// (B, len, d) N(0, 1) entries; the sequences in `scaled` times 30 from token `onset` on.
batch tokens(std::size_t len, const std::vector<std::size_t>& scaled, const char* name = "tokens") {
    batch a(std::array<std::size_t, 3>{B, len, d});
    mnemo::train::random_stream rng(5, name);
    for (auto& v : a) v = float(rng.normal());
    for (std::size_t s : scaled)
        for (std::size_t t = onset; t < len; ++t)
            for (std::size_t i = 0; i < d; ++i) a(s, t, i) *= 30.0f;
    return a;
}

struct place {
    std::size_t sequence = 0, token = 0;
    bool found = false;
};

/// The first (sequence, token) whose inner loss or retrieval is not finite, from the results.
place first_non_finite(const xt::xtensor<float, 3>& y, const xt::xtensor<float, 2>& sur) {
    const std::size_t nb = y.shape()[0], len = y.shape()[1], w = y.shape()[2];
    for (std::size_t s = 0; s < nb; ++s)
        for (std::size_t t = 0; t < len; ++t) {
            bool bad = !std::isfinite(sur(s, t));
            for (std::size_t i = 0; i < w; ++i) bad = bad || !std::isfinite(y(s, t, i));
            if (bad) return {s, t, true};
        }
    return {};
}

/// Runs `call` and returns its divergence_error (FAIL when it does not throw one).
template <class F>
mm::divergence_error diverges(F&& call) {
    try {
        call();
    } catch (const mm::divergence_error& e) {
        return e;
    }
    FAIL("the call did not stop with divergence_error");
    return mm::divergence_error("");
}

struct form {
    const char* name;
    std::size_t chunk;
    bool dual;
};
constexpr form forms[] = {{"sequential, token by token", 1, false},
                          {"sequential, dual", 1, true},
                          {"chunk 4, token by token", 4, false},
                          {"chunk 4, dual", 4, true}};

mm::run_options options(const form& f, bool check, std::size_t threads = 1) {
    mm::run_options o;
    o.chunk = f.chunk;
    o.dual_form = f.dual;
    o.check_finite = check;
    o.threads = threads;
    return o;
}

/// Every gradient entry of a result, in the parameters' order.
template <class R>
std::vector<float> flat_grads(R r) {
    std::vector<float> out;
    r.grads.for_each([&](const std::string&, auto& g) { out.insert(out.end(), g.begin(), g.end()); });
    return out;
}

/// Bit-identical results (outputs, inner losses, states, loss, gradients)?
template <class R>
bool identical(const R& a, const R& b) {
    if (!(a.outputs == b.outputs) || !(a.surprise == b.surprise) || a.loss != b.loss) return false;
    if (a.states.size() != b.states.size()) return false;
    for (std::size_t s = 0; s < a.states.size(); ++s)
        if (a.states[s].values != b.states[s].values) return false;
    return flat_grads(a) == flat_grads(b);
}

}  // namespace

TEST_CASE("a memory that diverges stops the call at the sequence and token its results show") {
    memory_t memory;
    memory_t::parameters_type p;
    memory_t::hyperparameters_type h;
    init<memory_t>(p, h, 0.1);
    const batch x = tokens(L, {2}), tgt = tokens(L, {}, "targets"), calm = tokens(L, {});
    for (const form& f : forms) {
        CAPTURE(f.name);
        for (bool backward : {false, true}) {
            CAPTURE(backward);
            auto call = [&](memory_t::result& r, const batch& tok, bool check) {
                if (backward) memory.meta_gradient(r, p, h, tok, tgt, options(f, check));
                else memory.forward(r, p, h, tok, tgt, options(f, check));
            };
            memory_t::result unchecked;
            call(unchecked, x, false);
            const place at = first_non_finite(unchecked.outputs, unchecked.surprise);
            REQUIRE(at.found);  // the batch diverges ...
            CHECK(at.sequence == 2);  // ... in the scaled sequence only
            CHECK(at.token >= onset);
            memory_t::result r;
            call(r, calm, true);  // a successful call first: the failed one must clear it
            REQUIRE(r.outputs.size() == B * L * d);
            const auto e = diverges([&] { call(r, x, true); });
            CAPTURE(e.what());
            CHECK(e.sequence == at.sequence);
            CHECK(e.token == at.token);
            CHECK(e.position == at.token);
            CHECK(std::string(e.what()).find("sequence 2 at token " + std::to_string(at.token) + " ") !=
                  std::string::npos);
            CHECK(r.outputs.size() == 0);  // nothing half-written
            CHECK(r.surprise.size() == 0);
            CHECK(r.states.empty());
            CHECK(r.initial_adjoints.empty());
        }
    }
}

TEST_CASE("the check changes nothing when nothing diverges") {
    memory_t memory;
    memory_t::parameters_type p;
    memory_t::hyperparameters_type h;
    init<memory_t>(p, h, 0.1);
    const batch x = tokens(L, {}), tgt = tokens(L, {}, "targets");
    for (const form& f : forms) {
        CAPTURE(f.name);
        const auto a = memory.meta_gradient(p, h, x, tgt, options(f, true));
        const auto b = memory.meta_gradient(p, h, x, tgt, options(f, false));
        CHECK(std::isfinite(a.loss));
        CHECK(identical(a, b));
    }
}

TEST_CASE("on threads the error names the first diverging sequence in batch order") {
    memory_t memory;
    memory_t::parameters_type p;
    memory_t::hyperparameters_type h;
    init<memory_t>(p, h, 0.1);
    const batch x = tokens(L, {1, 3}), tgt = tokens(L, {}, "targets");
    const auto unchecked = memory.forward(p, h, x, tgt, options(forms[1], false));
    const place at = first_non_finite(unchecked.outputs, unchecked.surprise);
    REQUIRE(at.found);
    CHECK(at.sequence == 1);
    for (std::size_t threads : {1, 2, 4}) {
        CAPTURE(threads);
        memory_t::result r;
        const auto e = diverges([&] { memory.meta_gradient(r, p, h, x, tgt, options(forms[1], true, threads)); });
        CHECK(e.sequence == 1);
        CHECK(e.token == at.token);
        CHECK(r.outputs.size() == 0);
    }
}

TEST_CASE("the layer's forward(context): the same error, and the context holds no forward") {
    memory_t memory;
    memory_t::parameters_type p;
    memory_t::hyperparameters_type h;
    init<memory_t>(p, h, 0.1);
    const batch x = tokens(L, {2}), calm = tokens(L, {});
    for (const form& f : forms) {
        CAPTURE(f.name);
        memory_t::context ctx;
        const place at = [&] {
            const auto& y = memory.forward(ctx, p, h, x, options(f, false));
            return first_non_finite(y, ctx.surprise());
        }();
        REQUIRE(at.found);
        memory.forward(ctx, p, h, calm, options(f, true));
        const auto e = diverges([&] { memory.forward(ctx, p, h, x, options(f, true)); });
        CHECK(e.sequence == at.sequence);
        CHECK(e.token == at.token);
        CHECK(ctx.outputs().size() == 0);
        CHECK(ctx.states().empty());
        const batch dY = xt::zeros<float>(std::array<std::size_t, 3>{B, L, d});
        CHECK_THROWS_AS(memory.backward(ctx, dY), std::invalid_argument);
    }
}

TEST_CASE("streaming: a diverging second piece names the token in the call and in the stream") {
    memory_t memory;
    memory_t::parameters_type p;
    memory_t::hyperparameters_type h;
    init<memory_t>(p, h, 0.1);
    const batch x = tokens(L, {2}), tgt = tokens(L, {}, "targets");
    const std::size_t cut = onset;  // the first piece ends where the scaled tokens start
    auto piece = [&](const batch& a, std::size_t t0, std::size_t t1) {
        batch out(std::array<std::size_t, 3>{B, t1 - t0, d});
        for (std::size_t s = 0; s < B; ++s)
            for (std::size_t t = t0; t < t1; ++t)
                for (std::size_t i = 0; i < d; ++i) out(s, t - t0, i) = a(s, t, i);
        return out;
    };
    const auto first = memory.forward(p, h, piece(x, 0, cut), piece(tgt, 0, cut), options(forms[1], true));
    // Where the second piece diverges, from its own results with the check off (the same
    // call: where a form's values overflow depends on its blocks' alignment in the stream).
    const auto unchecked =
        memory.forward(p, h, piece(x, cut, L), piece(tgt, cut, L), options(forms[1], false), &first.states);
    const place at = first_non_finite(unchecked.outputs, unchecked.surprise);
    REQUIRE(at.found);
    CHECK(at.sequence == 2);
    memory_t::result r;
    const auto e = diverges([&] {
        memory.forward(r, p, h, piece(x, cut, L), piece(tgt, cut, L), options(forms[1], true), &first.states);
    });
    CHECK(e.sequence == at.sequence);
    CHECK(e.token == at.token);
    CHECK(e.position == cut + at.token);
    CHECK(std::string(e.what()).find("at token " + std::to_string(at.token) + " (stream position " +
                                     std::to_string(cut + at.token) + ")") != std::string::npos);
    CHECK(r.states.empty());
}

TEST_CASE("the gates that prevent it: normalised keys and 2 theta_max < 1") {
    normalized_t memory;
    normalized_t::parameters_type p;
    normalized_t::hyperparameters_type h;
    constexpr std::size_t long_len = 4096;
    const batch x = tokens(long_len, {0, 1, 2, 3}), tgt = tokens(long_len, {}, "targets");
    init<normalized_t>(p, h, 0.45);
    for (const form& f : forms) {
        CAPTURE(f.name);
        const auto r = memory.forward(p, h, x, tgt, options(f, false));
        CHECK_FALSE(first_non_finite(r.outputs, r.surprise).found);
        for (const auto& st : r.states)
            for (float v : st.values) REQUIRE(std::isfinite(v));
        CHECK_NOTHROW(memory.forward(p, h, x, tgt, options(f, true)));
    }
    // 2 theta (about 10) far beyond (2 - alpha)(1 + eta) <= 4: the same keys of norm 1 diverge.
    init<normalized_t>(p, h, 10.0);
    const auto r = memory.forward(p, h, x, tgt, options(forms[1], false));
    const place at = first_non_finite(r.outputs, r.surprise);
    CHECK(at.found);
    const auto e = diverges([&] { memory.forward(p, h, x, tgt, options(forms[1], true)); });
    CHECK(e.sequence == at.sequence);
    CHECK(e.token == at.token);
}
