// Batches and heads are independent runs added up.
//
// * A batch of 3 sequences (different tokens and targets) with the default loss_scale
//   1/(B T) equals the 3 sequences run one by one with loss_scale 1/(B T): the batch loss
//   and gradient are the sums of the single ones, and outputs, per-token inner losses, final
//   states and initial adjoints are the single ones (1e-12 of each tensor's scale). Also with
//   chunk 4, and with per-sequence initial states and final adjoints. The default loss is
//   the mean over tokens and sequences of the per-token loss recomputed from the outputs.
// * multi_head_memory<Spec, 2> with two different parameter sets equals two sequence_memory
//   runs on the target slices with loss_scale 1/(B T H) (1e-12); its default loss is the
//   mean over all features of all heads; its gradients equal central finite differences of
//   its loss (B = 2, T = 5; 1e-6, floor 1e-6).
//
// One memory type: linear memory, data gates, d = 8 (seq_gated's), double; the multi-head
// memory runs the same sequence_memory type.
#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"
#include "support/memory_fd.hpp"

using namespace seqtest;

namespace {

using problem_t = decltype(reference::make_seq_gated());
using spec_t = reference::linear_data<8>;
using memory_t = problem_t::memory_type;
using state_t = memory_t::state_type;
using params_t = memory_t::parameters_type;

/// Three different sequences of length L: (3, L, 8).
xt::xtensor<double, 3> three(std::size_t L, double phase) {
    xt::xtensor<double, 3> a(std::array<std::size_t, 3>{3, L, 8});
    for (std::size_t s = 0; s < 3; ++s)
        for (std::size_t n = 0; n < L * 8; ++n) a.data()[s * L * 8 + n] = det(n, phase + 2.1 * double(s), 1.0 - 0.2 * double(s));
    return a;
}

void check_batch(memory_t& memory, const problem_t& p, mm::run_options opt, const std::vector<state_t>* initial,
                 const std::vector<state_t>* final_adjoints, const std::string& label) {
    const std::size_t L = 16, B = 3;
    const auto tokens = three(L, 4.5), targets = three(L, 8.5);
    REQUIRE(opt.loss_scale == 0);
    const auto batch = memory.meta_gradient(p.params, p.hyper, tokens, targets, opt, initial, final_adjoints);

    // The default loss: mean over sequences and tokens of mean_i (y - target)^2.
    double direct = 0;
    for (std::size_t n = 0; n < batch.outputs.size(); ++n) {
        const double e = batch.outputs.data()[n] - targets.data()[n];
        direct += e * e / 8.0;
    }
    direct /= double(B * L);

    opt.loss_scale = 1.0 / double(B * L);
    worst w;
    w.update(scaled_err(double(batch.loss), direct), "loss recomputed from the outputs");
    double loss = 0;
    params_t grads;
    for (std::size_t s = 0; s < B; ++s) {
        const std::string seq = "sequence " + std::to_string(s) + ": ";
        std::vector<state_t> init, fin;
        if (initial) init = {(*initial)[s]};
        if (final_adjoints) fin = {(*final_adjoints)[s]};
        const auto r = memory.meta_gradient(p.params, p.hyper, sequence_of(tokens, s), sequence_of(targets, s), opt,
                                            initial ? &init : nullptr, final_adjoints ? &fin : nullptr);
        loss += r.loss;
        add_into(grads, r.grads);
        w.update(scaled_err(flat(sequence_of(batch.outputs, s)), flat(r.outputs)), seq + "outputs");
        std::vector<double> sb(batch.surprise.data() + s * L, batch.surprise.data() + (s + 1) * L);
        w.update(scaled_err(sb, flat(r.surprise)), seq + "surprise");
        w.update(compare_states(std::vector<state_t>{batch.states[s]}, r.states), seq + "final ");
        w.update(compare_states(std::vector<state_t>{batch.initial_adjoints[s]}, r.initial_adjoints),
                 seq + "initial adjoint ");
    }
    w.update(scaled_err(double(batch.loss), loss), "sum of the losses");
    w.update(compare_params(batch.grads, grads), "sum of the gradients: ");
    MESSAGE(label << ": batch of 3 vs one by one, worst " << w.err << " at " << w.where);
    CHECK(w.err <= 1e-12);
    // The sequences differ (otherwise the test would not see a mixed-up sequence index).
    CHECK(scaled_err(flat(sequence_of(batch.outputs, 0)), flat(sequence_of(batch.outputs, 1))) > 1e-3);
    CHECK(scaled_err(flat(sequence_of(batch.outputs, 1)), flat(sequence_of(batch.outputs, 2))) > 1e-3);
}

/// The parameters of head 1: the reference values with other phases.
params_t other_params() {
    params_t q;
    fill_by_name(q, [](const std::string& name, std::size_t i) {
        const double r = reference_value(name, i, 0.1);
        return name == "ba" || name == "be" || name == "bt" ? r + 0.3 : r + det(i, 13.5, 0.05);
    });
    return q;
}

}  // namespace

TEST_CASE("a batch of 3 sequences equals the sequences one by one") {
    auto p = reference::make_seq_gated();
    memory_t memory;
    check_batch(memory, p, {.chunk = 1}, nullptr, nullptr, "chunk 1");
    check_batch(memory, p, {.chunk = 4}, nullptr, nullptr, "chunk 4");

    // Per-sequence initial states (each sequence's own prefix, positions 3, 5, 7) and final
    // adjoints.
    std::vector<state_t> initial, adj;
    for (std::size_t s = 0; s < 3; ++s) {
        const std::size_t len = 3 + 2 * s;
        const auto pre = memory.forward(p.params, p.hyper, det_batch(1, len, 8, 1.5 + double(s), 1.0),
                                        det_batch(1, len, 8, 2.5 + double(s), 1.0), {.chunk = 4});
        initial.push_back(pre.states[0]);
        state_t a;
        a.values.resize(memory_t::state_size);
        for (std::size_t n = 0; n < a.values.size(); ++n) a.values[n] = det(n, 3.5 * double(s), 0.05);
        a.position = len + 16;
        adj.push_back(a);
    }
    check_batch(memory, p, {.chunk = 4}, &initial, &adj, "chunk 4, initial states and final adjoints");
    check_batch(memory, p, {.chunk = 1}, &initial, &adj, "chunk 1, initial states and final adjoints");
}

TEST_CASE("two heads equal two separate memories on the target slices") {
    auto p = reference::make_seq_gated();
    mm::multi_head_memory<spec_t, 2> heads;
    memory_t single;
    const std::vector<params_t> params{p.params, other_params()};
    const std::size_t B = 2, L = 16, H = 2;
    const auto tokens = det_batch(B, L, 8, 4.5, 1.0);
    const auto targets = det_batch(B, L, 16, 8.5, 1.0);  // (B, T, H * 8)

    for (std::size_t chunk : {1, 4}) {
        CAPTURE(chunk);
        const auto r = heads.meta_gradient(params, p.hyper, tokens, targets, {.chunk = chunk});
        REQUIRE(r.grads.size() == H);
        REQUIRE(r.states.size() == H);
        worst w;
        double loss = 0;
        for (std::size_t h = 0; h < H; ++h) {
            xt::xtensor<double, 3> slice(std::array<std::size_t, 3>{B, L, 8});
            for (std::size_t s = 0; s < B; ++s)
                for (std::size_t t = 0; t < L; ++t)
                    for (std::size_t i = 0; i < 8; ++i) slice(s, t, i) = targets(s, t, 8 * h + i);
            const auto s = single.meta_gradient(params[h], p.hyper, tokens, slice,
                                                {.chunk = chunk, .loss_scale = 1.0 / double(B * L * H)});
            loss += s.loss;
            const std::string head = "head " + std::to_string(h) + ": ";
            w.update(compare_params(r.grads[h], s.grads), head + "grad ");
            w.update(compare_states(r.states[h], s.states), head + "final ");
            std::vector<double> y;
            for (std::size_t b = 0; b < B; ++b)
                for (std::size_t t = 0; t < L; ++t)
                    for (std::size_t i = 0; i < 8; ++i) y.push_back(r.outputs(b, t, 8 * h + i));
            w.update(scaled_err(y, flat(s.outputs)), head + "outputs");
        }
        w.update(scaled_err(double(r.loss), loss), "sum of the head losses");
        // The default loss: mean over sequences, tokens and all H * 8 features.
        double direct = 0;
        for (std::size_t n = 0; n < r.outputs.size(); ++n) {
            const double e = r.outputs.data()[n] - targets.data()[n];
            direct += e * e;
        }
        direct /= double(B * L * H * 8);
        w.update(scaled_err(double(r.loss), direct), "loss recomputed from the outputs");
        MESSAGE("chunk " << chunk << ": 2 heads vs 2 memories, worst " << w.err << " at " << w.where);
        CHECK(w.err <= 1e-12);
        // The heads differ.
        CHECK(compare_params(r.grads[0], r.grads[1]).err > 1e-3);
    }
}

TEST_CASE("two heads: gradients equal finite differences of the multi-head loss") {
    auto p = reference::make_seq_gated();
    mm::multi_head_memory<spec_t, 2> heads;
    std::vector<params_t> params{p.params, other_params()};
    const auto tokens = det_batch(2, 5, 8, 4.5, 1.0);
    const auto targets = det_batch(2, 5, 16, 8.5, 1.0);
    for (std::size_t chunk : {1, 2}) {
        CAPTURE(chunk);
        const auto r = heads.meta_gradient(params, p.hyper, tokens, targets, {.chunk = chunk});
        CHECK(scaled_err(double(r.loss), double(heads.forward(params, p.hyper, tokens, targets, {.chunk = chunk}).loss)) <=
              1e-14);
        worst w;
        for (std::size_t h = 0; h < 2; ++h) {
            const auto e = memfd::check_all(
                params[h], r.grads[h],
                [&] { return double(heads.forward(params, p.hyper, tokens, targets, {.chunk = chunk}).loss); }, 1e-6);
            w.update(e.err, "head " + std::to_string(h) + ": " + e.where);
        }
        MESSAGE("chunk " << chunk << ": multi-head gradients vs fd, worst " << w.err << " at " << w.where);
        CHECK(w.err <= 1e-6);
    }
}
