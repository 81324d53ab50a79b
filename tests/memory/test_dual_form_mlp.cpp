// The dual form of two-layer MLP memories (memory/dual_mlp.hpp) against the plain chunked
// form (the compiled step token by token, checked against finite differences by the
// reference problems), in double:
//
// * where it applies (`W2 act(W1 k)`, no bias; a rule linear in the gradient; plain
//   losses: read off the types and expressions), chunked runs take it and `run_options::
//   dual_form = false` runs the plain step. Both give the same loss, outputs, inner losses,
//   final states (G included), gradients, initial adjoints and token gradients to 1e-12 of
//   each tensor's scale, for chunks that divide the length, that do not, of 1 (with
//   `chunked_form`) and beyond the length; first-order meta-gradients; from given states
//   with final adjoints; with threads (other activations, rules, losses and gates:
//   test_dual_form_mlp_activations.cpp, _relu.cpp, _rules.cpp, _gates.cpp);
// * sequential runs (chunk 1) take it by forward substitution over blocks of tokens (each
//   token's gradient at the memory after the token before) and equal the compiled step
//   token by token to 1e-12, for blocks of 1 to beyond the length, first order, from
//   states, with threads; chunked runs in blocks of several chunks likewise (the blocks
//   split at the last chunk's start, where the state's G is taken);
// * a sequence whose tape would exceed `run_options::state_budget_bytes` takes the compiled
//   step; MLPs with a bias, a residual or three layers do not take the form;
// * a control: the comparison fails when one run's parameters differ;
// * the token gradient and a meta-gradient of the dual path against central differences
//   of its own loss;
// * a call starting inside a chunk takes the plain form; streamed pieces chained through
//   states and adjoints equal one call.
#include <doctest/doctest.h>

#include "memory/dual_form_mlp_support.hpp"
#include "support/fd.hpp"

#include <map>

using namespace mlpdual;

static_assert(mm::has_mlp_dual_form_v<mlp_spec<>>);
static_assert(mm::has_dual_form_v<mlp_spec<>> && !mm::has_linear_dual_form_v<mlp_spec<>>);
static_assert(mm::has_mlp_dual_form_v<mlp_spec<mm::relu_act, mm::delta_rule, mm::huber_loss<1, 2>, mm::const_gates>>);
static_assert(!mm::has_mlp_dual_form_v<mlp_spec<mm::silu_act, mm::normalized_momentum_rule>>);
static_assert(!mm::has_dual_form_v<mm::spec<D, mm::mlp<mm::silu_act, true, D, H>, mm::l2_loss, mm::titans_rule,
                                            mm::data_gates<D>, mm::mse>>);
static_assert(!mm::has_dual_form_v<mm::spec<D, mm::residual<mm::mlp<mm::silu_act, false, D, H>>, mm::l2_loss,
                                            mm::titans_rule, mm::data_gates<D>, mm::mse>>);
static_assert(!mm::has_dual_form_v<mm::spec<D, mm::mlp<mm::silu_act, false, D, H, H>, mm::l2_loss, mm::titans_rule,
                                            mm::data_gates<D>, mm::mse>>);
static_assert(mm::sequence_memory<mlp_spec<>>::has_dual_form && mm::sequence_memory<mlp_spec<>>::has_sequential_dual_form);

TEST_CASE("MLP dual form equals the plain chunked form") {
    for (std::size_t chunk : {1, 2, 3, 4, 5, 11, 16}) CHECK(check<mlp_spec<>>(chunk) <= 1e-12);
    CHECK(check<mlp_spec<>>(4, 16) <= 1e-12);  // chunks that divide the length
}

TEST_CASE("MLP dual form: sequential runs by substitution equal the compiled step") {
    for (std::size_t block : {0, 1, 2, 4, 5, 16}) CHECK(check_sequential<mlp_spec<>>(11, block) <= 1e-12);
    CHECK(check_sequential<mlp_spec<>>(37) <= 1e-12);  // blocks of 16: 16, 16, 5
    CHECK(check_sequential<mlp_spec<>, true>(11, 4) <= 1e-12);
    CHECK(check_sequential<mlp_spec<>>(13, 4, 1, true) <= 1e-12);
    CHECK(check_sequential<mlp_spec<>>(13, 0, 2, true) <= 1e-12);
}

TEST_CASE("MLP dual form: chunked runs in blocks of several chunks") {
    for (std::size_t chunk : {2, 3}) {
        CHECK(check<mlp_spec<>>(chunk, 11, 1, false, 2 * chunk) <= 1e-12);
        CHECK(check<mlp_spec<>>(chunk, 11, 1, true, 3 * chunk) <= 1e-12);
    }
    CHECK(check<mlp_spec<>, true>(2, 11, 1, false, 6) <= 1e-12);
    CHECK(check<mlp_spec<>>(1, 11, 1, true, 5) <= 1e-12);  // chunk 1, chunked_form
}

TEST_CASE("MLP dual form: first order, from given states with final adjoints, threads") {
    for (std::size_t chunk : {3, 4}) CHECK(check<mlp_spec<>, true>(chunk) <= 1e-12);
    for (std::size_t chunk : {3, 4}) CHECK(check<mlp_spec<>>(chunk, 11, 1, true) <= 1e-12);
    CHECK(check<mlp_spec<>>(4, 13, 2, true) <= 1e-12);
}

TEST_CASE("MLP dual form: the comparison can fail") {
    using memory_t = mm::sequence_memory<mlp_spec<>>;
    memory_t::parameters_type p, q;
    memory_t::hyperparameters_type h;
    fill<memory_t, mlp_spec<>>(p, h);
    fill<memory_t, mlp_spec<>>(q, h);
    q[mm::data_gates<D>::wt].data()[1] += 1e-6;
    const auto tokens = det_batch(2, 11, D, 4.5, 1.0), targets = det_batch(2, 11, D, 8.5, 1.0);
    memory_t memory;
    mm::run_options opt;
    opt.chunk = 4;
    const auto dual = memory.meta_gradient(p, h, tokens, targets, opt);
    opt.dual_form = false;
    const auto plain = memory.meta_gradient(q, h, tokens, targets, opt);
    const worst w = compare_results(dual, plain, true);
    MESSAGE("worst with a gate's weight moved by 1e-6: " << w.err << " at " << w.where);
    CHECK(w.err > 1e-9);
}

TEST_CASE("MLP dual form against central differences of its own loss") {
    using memory_t = mm::sequence_memory<mlp_spec<>>;
    memory_t::parameters_type p;
    memory_t::hyperparameters_type h;
    fill<memory_t, mlp_spec<>>(p, h);
    auto tokens = det_batch(1, 9, D, 4.5, 1.0);
    const auto targets = det_batch(1, 9, D, 8.5, 1.0);
    memory_t memory;
    mm::run_options opt;
    opt.chunk = 4;
    opt.token_gradient = true;
    const auto r = memory.meta_gradient(p, h, tokens, targets, opt);
    auto loss = [&] { return double(memory.forward(p, h, tokens, targets, opt).loss); };
    double worst_x = 0;
    for (std::size_t k = 0; k < tokens.size(); ++k) {
        const double fd = mnemo_test::fd::central_diff(tokens.data()[k], loss);
        worst_x = std::max(worst_x, mnemo_test::fd::rel_err(fd, r.token_grads.data()[k], 1e-6));
    }
    // The meta-parameters through both layers' inner gradients: W_K, W_V, the gates, M0.
    double worst_p = 0;
    std::size_t checked = 0;
    std::vector<std::string> names;
    p.for_each([&](const std::string& name, const auto&) { names.push_back(name); });
    std::size_t k = 0;
    p.for_each_mutable([&](auto& t) {
        const std::string& name = names[k++];
        std::vector<double> g;
        r.grads.for_each([&](const std::string& n2, const auto& gt) {
            if (n2 == name) g.assign(gt.data(), gt.data() + gt.size());
        });
        for (std::size_t i = 0; i < t.size(); i += 3) {
            const double fd = mnemo_test::fd::central_diff(t.data()[i], loss);
            worst_p = std::max(worst_p, mnemo_test::fd::rel_err(fd, g[i], 1e-6));
            ++checked;
        }
    });
    MESSAGE("worst relative error: dL/dX " << worst_x << ", " << checked << " meta-gradient entries " << worst_p);
    CHECK(worst_x <= 1e-7);
    CHECK(worst_p <= 1e-7);
}

TEST_CASE("MLP memories: calls inside a chunk take the plain form; streaming") {
    using memory_t = mm::sequence_memory<mlp_spec<>>;
    memory_t::parameters_type p;
    memory_t::hyperparameters_type h;
    fill<memory_t, mlp_spec<>>(p, h);
    const auto tokens = det_batch(1, 14, D, 4.5, 1.0), targets = det_batch(1, 14, D, 8.5, 1.0);
    memory_t memory;
    // Sequential: a call of fewer than 4 tokens runs the compiled step, bit for bit.
    const auto few = slice_time(tokens, 0, 3), few_t = slice_time(targets, 0, 3);
    const auto s1 = memory.meta_gradient(p, h, few, few_t, {.chunk = 1});
    const auto s2 = memory.meta_gradient(p, h, few, few_t, {.chunk = 1, .dual_form = false});
    CHECK(compare_results(s1, s2, true).err == 0);
    const auto s3 = memory.meta_gradient(p, h, tokens, targets, {.chunk = 1});
    const auto s4 = memory.meta_gradient(p, h, tokens, targets, {.chunk = 1, .dual_form = false});
    CHECK(compare_results(s3, s4, true).err > 0);  // the dual form ran (equal to 1e-12 above)
    // A tape over the state budget: the compiled step (with its checkpoints), bit for bit.
    const std::size_t tape = memory_t::dual_tape_bytes({.chunk = 1}, 14);
    CHECK(tape > 0);
    const auto s5 = memory.meta_gradient(p, h, tokens, targets, {.chunk = 1, .state_budget_bytes = tape - 1});
    CHECK(compare_results(s5, s4, true).err == 0);
    const auto s6 = memory.meta_gradient(p, h, tokens, targets, {.chunk = 1, .state_budget_bytes = tape});
    CHECK(compare_results(s6, s3, true).err == 0);
    // Streamed in pieces (calls starting on and off chunk boundaries), backward from the
    // last piece: equal to one call.
    mm::run_options opt;
    opt.chunk = 4;
    const auto full = memory.meta_gradient(p, h, tokens, targets, opt);
    const std::size_t begin[] = {0, 4, 6, 14};
    std::vector<memory_t::state_type> states{memory_t::initial_state(p)};
    std::vector<std::vector<memory_t::state_type>> starts;
    for (std::size_t k = 0; k < 3; ++k) {
        starts.push_back(states);
        states = memory.forward(p, h, slice_time(tokens, begin[k], begin[k + 1]),
                                slice_time(targets, begin[k], begin[k + 1]), opt, &states)
                     .states;
    }
    CHECK(compare_states(states, full.states).err <= 1e-12);
    const std::vector<memory_t::state_type>* adj = nullptr;
    std::vector<memory_t::state_type> next_adj;
    std::map<std::string, std::vector<double>> sum;  // the pieces' gradients, summed by name
    for (std::size_t k = 3; k-- > 0;) {
        mm::run_options o = opt;
        o.loss_scale = 1.0 / 14.0;  // each piece's loss is its share of the mean over 14 tokens
        const auto r = memory.meta_gradient(p, h, slice_time(tokens, begin[k], begin[k + 1]),
                                            slice_time(targets, begin[k], begin[k + 1]), o, &starts[k], adj);
        r.grads.for_each([&](const std::string& name, const auto& g) {
            auto& v = sum[name];
            v.resize(g.size());
            for (std::size_t i = 0; i < g.size(); ++i) v[i] += double(g.data()[i]);
        });
        next_adj = r.initial_adjoints;
        adj = &next_adj;
    }
    worst wg;
    full.grads.for_each([&](const std::string& name, const auto& g) {
        // (M0 is the first piece's given state: its gradient is that piece's initial adjoint.)
        if (name.rfind("M0[", 0) == 0) return;
        wg.update(scaled_err(sum[name], std::vector<double>(g.data(), g.data() + g.size())), name);
    });
    MESSAGE("streamed pieces against one call: gradients " << wg.err << " at " << wg.where);
    CHECK(wg.err <= 1e-12);
    CHECK(compare_states(next_adj, full.initial_adjoints).err <= 1e-12);
}
