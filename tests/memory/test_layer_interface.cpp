// The layer interface of sequence_memory: forward(context, ...) -> Y, backward(context, dY)
// -> gradients of the meta-parameters, of the tokens and of the initial states.
// * meta_gradient is the layer with its outer loss on top: its loss, outputs, gradients,
//   token gradient (run_options::token_gradient) and initial adjoints equal the layer's
//   with dY = d(loss)/dY written out by hand here, in every form (dual and compiled steps,
//   sequential and chunked, checkpointing, threads, first order) (1e-12); without the token
//   gradient (backward_options) the same gradients, exactly;
// * the token gradient of meta_gradient against central differences of its loss;
// * streaming: two calls chained through the states and the adjoints equal one call;
// * heads: the multi-head layer's backward equals the heads' meta-gradients;
// * bad input: a context without a forward or used twice, dY of the wrong shape or not
//   finite, an empty batch: one-line errors, before any work, leaving the caller's
//   gradients (and a still usable context) as they were;
// * the context keeps its own copy of the parameters;
// * parameters named one way: get<"name">() for every tensor, a named mutable walk.
#include <doctest/doctest.h>

#include "support/fd.hpp"
#include "test_sequence_support.hpp"

namespace {

using seqtest::compare_params;
using seqtest::scaled_err;
namespace mm = mnemo::memory;

using spec = reference::linear_data<8>;
using memory_type = mm::sequence_memory<spec, double>;
using params_type = memory_type::parameters_type;
using G = mm::data_gates<8>;

struct data {
    params_type params;
    memory_type::hyperparameters_type hyper;
    xt::xtensor<double, 3> tokens, targets;
};

/// B sequences of L tokens with the reference values (sequence s's tokens shifted in phase).
data make_data(std::size_t B, std::size_t L, double theta_max = 0.1) {
    auto p = reference::make_seq_gated();
    data d;
    d.params = p.params;
    d.hyper[G::theta_max] = theta_max;
    d.tokens = seqtest::det_batch(B, L, 8, 4.5, 1.0);
    d.targets = seqtest::det_batch(B, L, 8, 8.5, 1.0);
    return d;
}

/// The mse outer loss of Y and its upstream adjoint, written out: L = (1/(B T)) sum_t
/// mean_i (y - target)^2, dY = 2 (y - target) / (B T d_out).
double mse_and_adjoint(const xt::xtensor<double, 3>& Y, const xt::xtensor<double, 3>& targets,
                       xt::xtensor<double, 3>& dY) {
    const double bt = double(Y.shape()[0] * Y.shape()[1]), w = double(Y.shape()[2]);
    dY = xt::zeros_like(Y);
    double loss = 0;
    for (std::size_t k = 0; k < Y.size(); ++k) {
        const double r = Y.data()[k] - targets.data()[k];
        loss += r * r / (bt * w);
        dY.data()[k] = 2 * r / (bt * w);
    }
    return loss;
}

template <class Memory, class Data>
void check_layer_equals_meta_gradient(Memory& memory, const Data& d, mm::run_options opt, double tol) {
    opt.token_gradient = true;
    const auto r = memory.meta_gradient(d.params, d.hyper, d.tokens, d.targets, opt);
    typename Memory::context ctx;
    const auto& Y = memory.forward(ctx, d.params, d.hyper, d.tokens, opt);
    xt::xtensor<double, 3> dY;
    const double loss = mse_and_adjoint(Y, d.targets, dY);
    const auto g = memory.backward(ctx, dY);
    CHECK(scaled_err(loss, double(r.loss)) <= tol);
    CHECK(scaled_err(seqtest::flat(Y), seqtest::flat(r.outputs)) == 0);  // one code path: the same numbers
    const auto wg = compare_params(g.grads, r.grads);
    CHECK_MESSAGE(wg.err <= tol, "grads " << wg.where << " " << wg.err);
    CHECK(scaled_err(seqtest::flat(g.tokens), seqtest::flat(r.token_grads)) <= tol);
    CHECK(seqtest::compare_states(g.initial_adjoints, r.initial_adjoints).err <= tol);
    CHECK(seqtest::squared_norm(g.grads) > 0);
    CHECK(xt::sum(xt::abs(g.tokens))() > 0);
    // Without the token gradient (backward_options): the same gradients, no dX.
    memory.forward(ctx, d.params, d.hyper, d.tokens, opt);
    typename Memory::layer_gradients g2;
    memory.backward(ctx, dY, g2, nullptr, {.token_gradient = false});
    const auto wg2 = compare_params(g2.grads, g.grads);
    CHECK_MESSAGE(wg2.err == 0, "grads without dX " << wg2.where << " " << wg2.err);
    CHECK(seqtest::compare_states(g2.initial_adjoints, g.initial_adjoints).err == 0);
    CHECK(g2.tokens.size() == 0);
}

}  // namespace

TEST_CASE("meta_gradient is the layer with its outer loss on top, in every form") {
    memory_type memory;
    struct config {
        const char* name;
        std::size_t B, L, chunk, checkpoint, threads;
        bool dual;
    };
    for (const config c : {config{"dual form, sequential", 1, 16, 1, 0, 1, true},
                           config{"compiled steps, sequential", 1, 16, 1, 0, 1, false},
                           config{"compiled steps, checkpoints every 5", 1, 16, 1, 5, 1, false},
                           config{"dual form, chunks of 4", 2, 16, 4, 0, 1, true},
                           config{"compiled steps, chunks of 4, checkpoints every 3", 2, 14, 4, 3, 1, false},
                           config{"dual form, 3 sequences on 2 threads", 3, 12, 1, 0, 2, true},
                           config{"compiled steps, 3 sequences on 2 threads", 3, 12, 2, 0, 2, false}}) {
        CAPTURE(c.name);
        const auto d = make_data(c.B, c.L);
        mm::run_options opt;
        opt.chunk = c.chunk;
        opt.checkpoint = c.checkpoint;
        opt.threads = c.threads;
        opt.dual_form = c.dual;
        check_layer_equals_meta_gradient(memory, d, opt, 1e-12);
    }
    SUBCASE("first order") {
        mm::sequence_memory<spec, double, true> first_order;
        const auto d = make_data(2, 12);
        mm::run_options opt;
        check_layer_equals_meta_gradient(first_order, d, opt, 1e-12);
        opt.dual_form = false;
        check_layer_equals_meta_gradient(first_order, d, opt, 1e-12);
    }
}

TEST_CASE("the token gradient of meta_gradient against finite differences of its loss") {
    memory_type memory;
    auto d = make_data(2, 9);
    for (std::size_t chunk : {1, 3}) {
        mm::run_options opt;
        opt.chunk = chunk;
        opt.token_gradient = true;
        const auto r = memory.meta_gradient(d.params, d.hyper, d.tokens, d.targets, opt);
        double worst = 0;
        for (std::size_t k = 0; k < d.tokens.size(); ++k) {
            const double fd = mnemo_test::fd::central_diff(
                d.tokens.data()[k], [&] { return double(memory.forward(d.params, d.hyper, d.tokens, d.targets, opt).loss); });
            worst = std::max(worst, mnemo_test::fd::rel_err(fd, r.token_grads.data()[k], 1e-6));
        }
        MESSAGE("chunk " << chunk << ": worst relative error of dL/dX " << worst);
        CHECK(worst <= 1e-7);
    }
}

TEST_CASE("streaming: two layer calls chained through states and adjoints equal one call") {
    memory_type memory;
    const auto d = make_data(2, 16);
    struct config {
        std::size_t chunk, split;
        bool dual;
    };
    for (const config c : {config{1, 7, true}, config{1, 6, false}, config{4, 8, true}, config{4, 6, false}}) {
        CAPTURE(c.chunk);
        CAPTURE(c.split);
        CAPTURE(c.dual);
        mm::run_options opt;
        opt.chunk = c.chunk;
        opt.dual_form = c.dual;
        memory_type::context whole;
        const auto& Y = memory.forward(whole, d.params, d.hyper, d.tokens, opt);
        xt::xtensor<double, 3> dY;
        mse_and_adjoint(Y, d.targets, dY);
        const auto g = memory.backward(whole, dY);

        memory_type::context first, second;
        const auto x1 = seqtest::slice_time(d.tokens, 0, c.split), x2 = seqtest::slice_time(d.tokens, c.split, 16);
        memory.forward(first, d.params, d.hyper, x1, opt);
        memory.forward(second, d.params, d.hyper, x2, opt, &first.states());
        const auto g2 = memory.backward(second, seqtest::slice_time(dY, c.split, 16));
        const auto g1 = memory.backward(first, seqtest::slice_time(dY, 0, c.split), &g2.initial_adjoints);
        auto sum = g1.grads;
        seqtest::add_into(sum, g2.grads);
        CHECK(compare_params(sum, g.grads).err <= 1e-12);
        std::vector<double> dx = seqtest::flat(seqtest::slice_time(g.tokens, 0, c.split));
        CHECK(scaled_err(seqtest::flat(g1.tokens), dx) <= 1e-12);
        dx = seqtest::flat(seqtest::slice_time(g.tokens, c.split, 16));
        CHECK(scaled_err(seqtest::flat(g2.tokens), dx) <= 1e-12);
        CHECK(seqtest::compare_states(second.states(), whole.states()).err <= 1e-12);
        CHECK(seqtest::compare_states(g1.initial_adjoints, g.initial_adjoints).err <= 1e-12);
    }
}

TEST_CASE("heads: the multi-head layer's backward equals the heads' meta-gradients") {
    mm::multi_head_memory<spec, 2, double> heads;
    const auto d = make_data(2, 10);
    std::vector<params_type> params(2, d.params);
    params[1].get<"WK">() *= 0.5;
    const auto targets = seqtest::det_batch(2, 10, 16, 8.5, 1.0);
    const auto r = heads.meta_gradient(params, d.hyper, d.tokens, targets);
    decltype(heads)::context ctx;
    const auto& Y = heads.forward(ctx, params, d.hyper, d.tokens);
    CHECK(scaled_err(seqtest::flat(Y), seqtest::flat(r.outputs)) == 0);
    xt::xtensor<double, 3> dY;
    mse_and_adjoint(Y, targets, dY);
    const auto g = heads.backward(ctx, dY);
    REQUIRE(g.grads.size() == 2);
    for (std::size_t h = 0; h < 2; ++h) CHECK(compare_params(g.grads[h], r.grads[h]).err <= 1e-12);
    // dX sums the heads': each head's own layer backward, with its slice of dY.
    xt::xtensor<double, 3> dx = xt::zeros_like(d.tokens);
    for (std::size_t h = 0; h < 2; ++h) {
        memory_type one;
        memory_type::context c;
        one.forward(c, params[h], d.hyper, d.tokens);
        xt::xtensor<double, 3> slice(std::array<std::size_t, 3>{2, 10, 8});
        for (std::size_t s = 0; s < 2; ++s)
            for (std::size_t t = 0; t < 10; ++t)
                for (std::size_t i = 0; i < 8; ++i) slice(s, t, i) = dY(s, t, 8 * h + i);
        dx += one.backward(c, slice).tokens;
    }
    CHECK(scaled_err(seqtest::flat(g.tokens), seqtest::flat(dx)) <= 1e-14);
}

TEST_CASE("bad input to the layer: clear errors before any work") {
    memory_type memory;
    const auto d = make_data(2, 6);
    memory_type::context ctx;
    xt::xtensor<double, 3> dY = xt::ones<double>({2, 6, 8});
    memory_type::layer_gradients g;
    auto check_throws = [&](auto&& call, const std::string& message) {
        try {
            call();
            FAIL("no exception; expected: " << message);
        } catch (const std::invalid_argument& e) {
            CHECK(std::string(e.what()) == message);
        }
    };
    check_throws([&] { memory.backward(ctx, dY, g); },
                 "mnemo: backward: the context holds no forward to differentiate (none was run, or its backward "
                 "was already taken: a context serves one backward; run forward again)");
    memory.forward(ctx, d.params, d.hyper, d.tokens);
    memory.backward(ctx, dY, g);  // the first backward
    const auto kept = g;
    check_throws([&] { memory.backward(ctx, dY, g); },
                 "mnemo: backward: the context holds no forward to differentiate (none was run, or its backward "
                 "was already taken: a context serves one backward; run forward again)");
    memory.forward(ctx, d.params, d.hyper, d.tokens);
    xt::xtensor<double, 3> short_dY = xt::ones<double>({2, 5, 8});
    check_throws([&] { memory.backward(ctx, short_dY, g); },
                 "mnemo: backward: dY is (2, 5, 8); the forward's retrievals are (2, 6, 8)");
    xt::xtensor<double, 3> bad = dY;
    bad(1, 3, 2) = std::numeric_limits<double>::quiet_NaN();
    check_throws([&] { memory.backward(ctx, bad, g); }, "mnemo: dY entry of sequence 1, token 3, feature 2 is not finite");
    bad(1, 3, 2) = std::numeric_limits<double>::infinity();
    check_throws([&] { memory.backward(ctx, bad, g); }, "mnemo: dY entry of sequence 1, token 3, feature 2 is not finite");
    std::vector<memory_type::state_type> one_adjoint(1, memory_type::initial_state(d.params));
    check_throws([&] { memory.backward(ctx, dY, g, &one_adjoint); }, "mnemo: final adjoints: 1 given for 2 sequences");
    // Nothing was written, and the context still holds its forward.
    CHECK(seqtest::identical(g.grads, kept.grads));
    CHECK(seqtest::flat(g.tokens) == seqtest::flat(kept.tokens));
    CHECK(ctx.ready());
    memory.backward(ctx, dY, g);
    CHECK(seqtest::identical(g.grads, kept.grads));  // the same forward, the same backward
    CHECK(!ctx.ready());

    xt::xtensor<double, 3> empty(std::array<std::size_t, 3>{0, 6, 8});
    check_throws([&] { memory.forward(ctx, d.params, d.hyper, empty); },
                 "mnemo: a batch needs at least one sequence (tokens are (0, 6, 8))");
    check_throws([&] { memory.meta_gradient(d.params, d.hyper, empty, empty); },
                 "mnemo: a batch needs at least one sequence (tokens are (0, 6, 8))");
}

TEST_CASE("the context differentiates at its forward's parameters") {
    memory_type memory;
    auto d = make_data(1, 8);
    memory_type::context ctx;
    const auto& Y = memory.forward(ctx, d.params, d.hyper, d.tokens);
    xt::xtensor<double, 3> dY;
    mse_and_adjoint(Y, d.targets, dY);
    memory_type::context ctx2;
    memory.forward(ctx2, d.params, d.hyper, d.tokens);
    d.params.get<"WK">() *= 2.0;  // an optimizer step between forward and backward
    d.tokens *= 3.0;
    const auto g = memory.backward(ctx, dY);
    auto reference_data = make_data(1, 8);
    memory_type::context ctx3;
    memory.forward(ctx3, reference_data.params, reference_data.hyper, reference_data.tokens);
    CHECK(seqtest::identical(g.grads, memory.backward(ctx3, dY).grads));
}

TEST_CASE("parameters: one way to name every tensor, and a named mutable walk") {
    params_type p = make_data(1, 1).params;
    using sy = mm::step_symbols<spec>;
    CHECK(&p.get<"WK">() == &p[sy::wk{}]);
    CHECK(&p.get<"WQ">() == &p[sy::wq{}]);
    CHECK(&p.get<"wa">() == &p[G::wa]);
    CHECK(&p.get<"bt">() == &p[G::bt]);
    CHECK(&p.get<"M0[0]">() == &p.m0<0>());
    CHECK(params_type::has_named("WV"));
    CHECK(params_type::has_named("M0[0]"));
    CHECK(!params_type::has_named("M0[1]"));
    CHECK(!params_type::has_named("theta"));
    const std::vector<std::string> names = params_type::names();
    std::vector<std::string> walked;
    p.for_each([&](const std::string& name, auto& t) {  // mutable, with names
        walked.push_back(name);
        t *= 2.0;
    });
    CHECK(walked == names);
    CHECK(walked.size() == 10);
    CHECK(p.get<"ba">()() == doctest::Approx(-4.0).epsilon(1e-15));
}
