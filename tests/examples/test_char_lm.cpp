// The char_lm demo's model (examples/char_lm/char_lm.hpp), in a fixed small configuration.
//
// Checked here:
//  - the text's cleaning (headings and verse numbers dropped, wrapped lines joined);
//  - the analytic gradient of the model's own parts (the embedding's scatter through the
//    token shift, the readout, the softmax cross-entropy) and of a few of the memory's
//    meta-parameters, against central finite differences of the loss, in double;
//  - a second backward gives the same gradients (the persistent buffers are overwritten,
//    not accumulated);
//  - training: the loss falls, stays finite, and two runs with the same seed give
//    bit-identical losses (and a different seed different ones);
//  - a non-finite loss stops training with the optimizer's train::non_finite_error.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "examples/char_lm/char_lm.hpp"

namespace {

// The output of `bible gen1:1-1:8`, as the program reads it.
const char* const raw_text =
    "\nGenesis 1\n\n"
    "  1 In the beginning God created the heaven and the earth.\n"
    "  2 And the earth was without form, and void; and darkness was upon the face of\n"
    "the deep. And the Spirit of God moved upon the face of the waters.\n"
    "  3 And God said, Let there be light: and there was light.\n"
    "  4 And God saw the light, that it was good: and God divided the light from the\n"
    "darkness.\n"
    "  5 And God called the light Day, and the darkness he called Night. And the\n"
    "evening and the morning were the first day.\n"
    "  6 And God said, Let there be a firmament in the midst of the waters, and let\n"
    "it divide the waters from the waters.\n"
    "  7 And God made the firmament, and divided the waters which were under the\n"
    "firmament from the waters which were above the firmament: and it was so.\n"
    "  8 And God called the firmament Heaven. And the evening and the morning were\n"
    "the second day.\n";

char_lm::corpus small_corpus() {
    const std::string text = char_lm::clean_kjv(raw_text);
    std::string repeated;
    for (int i = 0; i < 4; ++i) repeated += text;
    return char_lm::make_corpus(repeated, 0.25);  // the last copy is held out
}

char_lm::config small_config() {
    char_lm::config c;
    c.batch = 4;
    c.seq = 24;
    c.steps = 60;
    c.warmup = 5;
    c.lr = 1e-2;
    c.threads = 2;
    c.checkpoint = 5;  // checkpoints that do not divide the length
    c.seed = 7;
    return c;
}

double loss_of(char_lm::model& m, const std::vector<std::uint8_t>& w, std::size_t B, std::size_t T) {
    return m.run(w.data(), B, T, false);
}

}  // namespace

TEST_CASE("char_lm: the KJV's headings and verse numbers are dropped, wrapped lines joined") {
    const std::string text = char_lm::clean_kjv(raw_text);
    CHECK(text.substr(0, 58) == "In the beginning God created the heaven and the earth.\nAnd");
    CHECK(text.find("Genesis") == std::string::npos);
    CHECK(text.find("face of the deep.") != std::string::npos);
    CHECK(text.find('1') == std::string::npos);
    std::size_t lines = 0;
    for (char ch : text) lines += ch == '\n';
    CHECK(lines == 8);
    CHECK(text.back() == '\n');
}

TEST_CASE("char_lm: the model's gradient agrees with central differences") {
    const auto c = small_corpus();
    char_lm::config cfg = small_config();
    char_lm::model m(c.vocab(), cfg);
    const std::size_t B = 2, T = 12;
    mnemo::train::random_stream rng(3, "fd");
    std::vector<std::uint8_t> w;
    char_lm::sample_windows(c.train, B, T, rng, w);
    // Move the parameters away from their initial values (zero gate weights, a zero bias):
    // a few training steps.
    for (std::size_t s = 0; s < 3; ++s) {
        m.run(w.data(), B, T, true);
        for (std::size_t i = 0; i < m.params.size(); ++i)
            for (std::size_t k = 0; k < m.params[i].size; ++k) m.params[i].data[k] -= 0.05 * m.grads[i].data[k];
    }
    m.run(w.data(), B, T, true);

    // The entries: embedding rows of the first token's oldest character c_{-2} (which enters
    // only through the token shift's last part, unless it occurs again), of c_{-1}, of c_0,
    // of a late character of the second window; readout entries; a few meta-parameters of
    // the memory.
    const std::size_t W = char_lm::window(T), e = char_lm::e;
    struct entry {
        std::string name;
        std::size_t index;
    };
    const std::vector<entry> entries = {
        {"embed", std::size_t(w[0]) * e + 0}, {"embed", std::size_t(w[0]) * e + 5},
        {"embed", std::size_t(w[1]) * e + 9}, {"embed", std::size_t(w[2]) * e + 3},
        {"embed", std::size_t(w[2 * W - 3]) * e + 7},
        {"readout.Wo", 2 * char_lm::dk + 1}, {"readout.Wo", std::size_t(w[5]) * char_lm::dk + 9},
        {"readout.Wx", std::size_t(w[7]) * char_lm::d + 20}, {"readout.Wx", 1 * char_lm::d + 40},
        {"readout.b", w[4]}, {"readout.b", 0},
        {"mem.WK", 17}, {"mem.WV", 40}, {"mem.M0[1]", 100}, {"mem.bt", 0}, {"mem.wa", 3},
    };
    std::vector<double> analytic;
    double worst = 0;
    for (const auto& en : entries) analytic.push_back(m.grads.at(en.name).data[en.index]);
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto& en = entries[i];
        double& p = m.params.at(en.name).data[en.index];
        // The 4-point central stencil: truncation error O(h^4).
        const double p0 = p, h = 1e-4;
        auto at = [&](double x) {
            p = x;
            return loss_of(m, w, B, T);
        };
        const double fd = (8 * (at(p0 + h) - at(p0 - h)) - (at(p0 + 2 * h) - at(p0 - 2 * h))) / (12 * h);
        p = p0;
        const double a = analytic[i];
        INFO(en.name << "[" << en.index << "]: analytic " << a << ", central difference " << fd);
        CHECK(std::abs(a) > 1e-7);  // not a trivially zero entry
        CHECK(std::abs(a - fd) <= 1e-6 * std::abs(fd) + 1e-10);
        worst = std::max(worst, std::abs(a - fd) / std::abs(fd));
    }
    MESSAGE("largest relative difference from central differences: " << worst);
}

TEST_CASE("char_lm: a second backward writes the same gradients") {
    const auto c = small_corpus();
    char_lm::model m(c.vocab(), small_config());
    mnemo::train::random_stream rng(5, "twice");
    std::vector<std::uint8_t> w;
    char_lm::sample_windows(c.train, 3, 16, rng, w);
    const double l1 = m.run(w.data(), 3, 16, true);
    std::vector<std::vector<double>> first;
    for (const auto& g : m.grads) first.emplace_back(g.data, g.data + g.size);
    const double l2 = m.run(w.data(), 3, 16, true);
    CHECK(l1 == l2);
    for (std::size_t i = 0; i < m.grads.size(); ++i) {
        INFO(m.grads[i].name);
        CHECK(std::vector<double>(m.grads[i].data, m.grads[i].data + m.grads[i].size) == first[i]);
    }
}

TEST_CASE("char_lm: training lowers the loss, stays finite and is reproducible") {
    const auto c = small_corpus();
    auto run = [&](std::uint64_t seed, bool inner) {
        char_lm::config cfg = small_config();
        cfg.seed = seed;
        cfg.inner_updates = inner;
        char_lm::model m(c.vocab(), cfg);
        auto r = char_lm::train_model(m, c.train);
        const auto ev = char_lm::evaluate(m, c.heldout, cfg.seq);
        return std::pair{r.losses, ev.bits_per_char};
    };
    for (bool inner : {true, false}) {
        INFO("inner updates: " << inner);
        const auto result = run(7, inner);  // no structured binding: doctest's macros capture
        const std::vector<double>& a = result.first;
        const double bits = result.second;
        const auto b = run(7, inner).first;
        REQUIRE(a.size() == 60);
        double first = 0, last = 0;
        for (std::size_t s = 0; s < 5; ++s) {
            first += a[s] / 5;
            last += a[a.size() - 1 - s] / 5;
        }
        for (double l : a) CHECK(std::isfinite(l));
        CHECK(std::isfinite(bits));
        CHECK(last < first - 0.5);          // from about ln(V) = 3.3 nats
        CHECK(a == b);                      // bit for bit
        CHECK(run(8, inner).first != a);    // and the seed matters
    }
}

TEST_CASE("char_lm: a non-finite loss stops training with the optimizer's error") {
    const auto c = small_corpus();
    char_lm::model m(c.vocab(), small_config());
    m.bo(0) = std::numeric_limits<double>::infinity();
    const std::vector<double> before(m.E.begin(), m.E.end());
    try {
        char_lm::train_model(m, c.train);
        FAIL("training went on");
    } catch (const mnemo::train::non_finite_error& e) {
        CHECK(e.step == 1);
        CHECK(std::string(e.what()).find("step 1") != std::string::npos);
    }
    CHECK(std::vector<double>(m.E.begin(), m.E.end()) == before);  // the refused step wrote nothing
}

TEST_CASE("char_lm: a memory that diverges stops training at its step, naming the window and the token") {
    const auto c = small_corpus();
    auto cfg = small_config();
    cfg.theta_max = 1e6;  // an inner step far too large: the memory overflows within the first window
    char_lm::model m(c.vocab(), cfg);
    const std::vector<double> before(m.E.begin(), m.E.end());
    try {
        char_lm::train_model(m, c.train);
        FAIL("training went on");
    } catch (const mnemo::train::non_finite_error& e) {
        const std::string what = e.what();
        CAPTURE(what);
        CHECK(e.step == 1);
        CHECK(what.find("step 1 refused") != std::string::npos);
        CHECK(what.find("the memory diverged in sequence ") != std::string::npos);
        CHECK(what.find(" at token ") != std::string::npos);
    }
    CHECK(std::vector<double>(m.E.begin(), m.E.end()) == before);
}
