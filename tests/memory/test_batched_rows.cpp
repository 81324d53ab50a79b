// Per-token meta-gradients that are a product with the token are batched
// (memory/step.hpp, `batched_rows`): a step computes only `a`, one number or one vector per
// token, and the sum over the tokens is one product A^T X. Which metas are batched is read
// off the gradient's expression at compile time:
//   - the projections W_K, W_V, W_Q: `outer(a, x)`, a row of d numbers;
//   - a data-dependent gate's weights (`sigmoid(w . x + b)`): `s * x`, one number;
//   - not the gates' biases, whose gradient is a scalar of its own.
// The static_asserts fail if the pattern is no longer recognised (the gradients would
// still be right, only slower: the reference and finite-difference tests check the
// values). The run-time case checks `add` against the sum over the tokens written out.
#include <doctest/doctest.h>

#include "memory/test_sequence_support.hpp"

using namespace seqtest;

namespace {

constexpr std::size_t D = 4;
using spec = mm::spec<D, mm::linear<D>, mm::l2_loss, mm::titans_rule, mm::data_gates<D>, mm::mse>;
using memory_t = mm::sequence_memory<spec, double>;
using sy = mm::step_symbols<spec>;
using gates = mm::data_gates<D>;
template <class Step>
using rows_of_step =
    mm::detail::batched_rows<std::remove_cvref_t<decltype(Step::phi)>, typename sy::token, memory_t::meta_list>;
using wa = std::remove_cv_t<decltype(gates::wa)>;
using we = std::remove_cv_t<decltype(gates::we)>;
using wt = std::remove_cv_t<decltype(gates::wt)>;
using ba = std::remove_cv_t<decltype(gates::ba)>;

template <class Rows>
constexpr bool layout_as_expected() {
    static_assert(Rows::template batched<sy::wk> && Rows::template rows_of<sy::wk>() == D);
    static_assert(Rows::template batched<sy::wv> && Rows::template rows_of<sy::wv>() == D);
    static_assert(Rows::template batched<sy::wq> && Rows::template rows_of<sy::wq>() == D);
    static_assert(Rows::template batched<wa> && Rows::template rows_of<wa>() == 1);
    static_assert(Rows::template batched<we> && Rows::template rows_of<we>() == 1);
    static_assert(Rows::template batched<wt> && Rows::template rows_of<wt>() == 1);
    static_assert(!Rows::template batched<ba> && Rows::template rows_of<ba>() == 0);
    static_assert(Rows::width == 3 * D + 3);
    // The token gradient: every term batched, once per meta that multiplies the token.
    static_assert(!Rows::has_token_rest);
    static_assert(Rows::template token_uses<sy::wk> == 1 && Rows::template token_uses<sy::wv> == 1 &&
                  Rows::template token_uses<sy::wq> == 1);
    static_assert(Rows::template token_uses<wa> == 1 && Rows::template token_uses<we> == 1 &&
                  Rows::template token_uses<wt> == 1);
    static_assert(Rows::template token_uses<ba> == 0);
    return true;
}
// The sequential and the chunked step.
static_assert(layout_as_expected<rows_of_step<mm::step<spec, false, false>>>());
static_assert(layout_as_expected<rows_of_step<mm::step<spec, true, false>>>());

// The token gradient of the other memories the library ships: no term left per token.
template <class Spec>
constexpr bool token_gradient_batched() {
    using step_t = mm::step<Spec, false, false>;
    using m = mm::sequence_memory<Spec, double>;
    return !mm::detail::batched_rows<std::remove_cvref_t<decltype(step_t::phi)>,
                                     typename mm::step_symbols<Spec>::token, typename m::meta_list>::has_token_rest;
}
static_assert(token_gradient_batched<mm::spec<D, mm::linear<D>, mm::l2_loss, mm::titans_rule, mm::const_gates, mm::mse>>());
static_assert(token_gradient_batched<mm::spec<D, mm::mlp<mm::silu_act, false, D, 8>, mm::l2_loss, mm::titans_rule,
                                              mm::data_gates<D>, mm::mse>>());
static_assert(token_gradient_batched<mm::spec<D, mm::linear<D>, mm::l2_loss, mm::delta_rule, mm::data_gates<D>,
                                              mm::mse, true>>());  // normalised keys and queries

// A token that also enters outside a projection or a gate's weights (here a gate reads
// sum(x)): that part of its gradient is the step's, per token (checked against finite
// differences below).
struct sum_gates {
    static constexpr auto eta = mnemo::scalar<"eta">;
    static constexpr auto alpha = mnemo::scalar<"alpha">;
    static constexpr auto theta = mnemo::scalar<"theta">;
    using fixed = mnemo::type_list<std::remove_cv_t<decltype(eta)>, std::remove_cv_t<decltype(alpha)>,
                                   std::remove_cv_t<decltype(theta)>>;
    template <class X>
    static constexpr auto make(X x) {
        return mm::make_gates(eta, alpha * mnemo::sigmoid(mnemo::sum(x)), theta);
    }
};
using spec_rest = mm::spec<D, mm::linear<D>, mm::l2_loss, mm::titans_rule, sum_gates, mm::mse>;
static_assert(!token_gradient_batched<spec_rest>());

}  // namespace

TEST_CASE("batched rows: A^T X per meta-parameter equals the sum over the tokens") {
    using rows = rows_of_step<mm::step<spec, false, false>>;
    constexpr std::size_t W = rows::width, count = 5;
    std::vector<double> a(count * W), x(count * D);
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = std::sin(0.7 * double(i) + 0.3);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::cos(1.3 * double(i) - 0.2);
    memory_t::parameters_type grads;
    fill_by_name(grads, [](const std::string&, std::size_t) { return 0.25; });  // add accumulates

    const double before_ba = grads[gates::ba]();
    std::vector<double> stack(rows::stack_size(D));
    rows::add(grads, a.data(), x.data(), count, D, stack.data());

    // The offset of a meta in a row: offset[j] for the j-th of the meta list.
    auto offset_of = []<class M>(M) {
        return []<class... X>(mnemo::detail::list<X...>) {
            std::size_t j = 0, k = 0;
            ((std::is_same_v<X, M> ? (j = k++) : k++), ...);
            return rows::offset[j];
        }(memory_t::meta_list{});
    };
    double worst = 0;
    auto check_vector = [&]<class M>(M) {  // grads[M][i] = 0.25 + sum_t a[t, o] x[t, i]
        const std::size_t o = offset_of(M{});
        for (std::size_t i = 0; i < D; ++i) {
            double s = 0.25;
            for (std::size_t t = 0; t < count; ++t) s += a[t * W + o] * x[t * D + i];
            worst = std::max(worst, std::fabs(grads[M{}](i) - s));
        }
    };
    auto check_matrix = [&]<class M>(M) {  // grads[M](r, i) = 0.25 + sum_t a[t, o + r] x[t, i]
        const std::size_t o = offset_of(M{});
        for (std::size_t r = 0; r < D; ++r)
            for (std::size_t i = 0; i < D; ++i) {
                double s = 0.25;
                for (std::size_t t = 0; t < count; ++t) s += a[t * W + o + r] * x[t * D + i];
                worst = std::max(worst, std::fabs(grads[M{}](r, i) - s));
            }
    };
    check_vector(wa{});
    check_vector(we{});
    check_vector(wt{});
    check_matrix(sy::wk{});
    check_matrix(sy::wv{});
    check_matrix(sy::wq{});
    CHECK(worst < 1e-14);
    CHECK(grads[gates::ba]() == before_ba);  // not batched: add leaves it alone
}

TEST_CASE("a token gradient with a part per token: against finite differences") {
    using memory_rest = mm::sequence_memory<spec_rest, double>;
    memory_rest memory;
    memory_rest::parameters_type p;
    memory_rest::hyperparameters_type h;
    fill_by_name(p, [](const std::string& name, std::size_t i) { return reference_value(name, i, 0.1); });
    h[sum_gates::eta] = 0.9;
    h[sum_gates::alpha] = 0.2;
    h[sum_gates::theta] = 0.1;
    auto x = det_batch(2, 9, D, 4.5, 1.0);
    const auto target = det_batch(2, 9, D, 8.5, 1.0);
    // (No structured bindings: clang 14 cannot capture them in doctest's CAPTURE lambdas.)
    for (const auto& config : {std::pair{1, true}, std::pair{1, false}, std::pair{3, true}, std::pair{3, false}}) {
        const int chunk = config.first;
        const bool dual = config.second;
        CAPTURE(chunk);
        CAPTURE(dual);
        mm::run_options opt;
        opt.chunk = std::size_t(chunk);
        opt.dual_form = dual;
        opt.token_gradient = true;
        const auto r = memory.meta_gradient(p, h, x, target, opt);
        double worst = 0;
        for (std::size_t k = 0; k < x.size(); ++k) {
            const double fd = mnemo_test::fd::central_diff(
                x.data()[k], [&] { return double(memory.forward(p, h, x, target, opt).loss); });
            worst = std::max(worst, mnemo_test::fd::rel_err(fd, r.token_grads.data()[k], 1e-6));
        }
        MESSAGE("worst relative error of dL/dX " << worst);
        CHECK(worst <= 1e-7);
    }
}
