// A tour of mnemo's expression language. Every code snippet of docs/expressions.md and
// docs/pitfalls.md that is not taken from the seed problem is quoted from this file, which
// is built and run as a test. Each section prints what it computes.
#include <array>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <mnemo/mnemo.hpp>
#include <xtensor/xio.hpp>
#include <xtensor/xview.hpp>

namespace tour {

int failures = 0;

void expect(bool ok, const char* what) {
    if (!ok) {
        std::printf("FAILED: %s\n", what);
        ++failures;
    }
}

// Symbols: a name and a shape, both part of the type.
inline constexpr auto eta = mnemo::scalar<"eta">;    // shape ()
inline constexpr auto x = mnemo::vector<"x", 3>;     // shape (3), a column vector
inline constexpr auto y = mnemo::vector<"y", 2>;     // shape (2)
inline constexpr auto W = mnemo::matrix<"W", 2, 3>;  // shape (2, 3): 2 rows, 3 columns
inline constexpr auto A = mnemo::matrix<"A", 2, 3>;
inline constexpr auto U = mnemo::matrix<"U", 2, 3>;

// Shapes are checked when an expression is built.
static_assert(std::is_same_v<decltype(W * x)::shape, mnemo::shape<2>>);
static_assert(std::is_same_v<decltype(mnemo::sum(W))::shape, mnemo::shape<>>);

// Constants: exact rationals, normalised.
using namespace mnemo::literals;
inline constexpr auto half = mnemo::c<1, 2>;    // 1/2
inline constexpr auto decay = (1_c - eta) * x;  // 1_c is mnemo::c<1>
static_assert(std::is_same_v<std::remove_const_t<decltype(mnemo::c<2, -4>)>, mnemo::constant<-1, 2>>);

template <class E>
void show(const char* what, E e) {
    std::printf("  %-34s %s\n", what, mnemo::to_string(e).c_str());
}

void constants() {
    std::printf("constants\n");
    show("c<1, 2>", half);
    show("c<2, -4>", mnemo::c<2, -4>);
    show("(1_c - eta) * x", decay);
    show("c<1, 2> + c<1, 3>", half + mnemo::c<1, 3>);
}

void operations() {
    std::printf("operations\n");
    // `*` is the matrix product when its left operand is a matrix...
    show("W * x", W * x);
    show("transpose(W) * y", mnemo::transpose(W) * y);
    show("W * transpose(A)", W * mnemo::transpose(A));
    // ...and elementwise when an operand is a scalar or both are vectors.
    show("eta * x", eta * x);
    show("x * x", x * x);
    show("hadamard(W, A)", mnemo::hadamard(W, A));
    // Scalars broadcast in every elementwise operation.
    show("x + eta", x + eta);
    show("W / eta", W / eta);
    show("outer(y, x)", mnemo::outer(y, x));
    show("dot(x, x)", mnemo::dot(x, x));
    show("mean(W)", mnemo::mean(W));
    show("squared_norm(x)", mnemo::squared_norm(x));
    show("ipow<3>(x)", mnemo::ipow<3>(x));
    show("silu(x)", mnemo::silu(x));
    show("l2_normalize(x)", mnemo::l2_normalize(x));
    show("huber(W * x - y, eta)", mnemo::huber(W * x - y, eta));
}

void folding() {
    std::printf("simplified as built\n");
    show("x - x", x - x);
    show("c<0> * W + A * c<1>", mnemo::c<0> * W + A * mnemo::c<1>);
    show("transpose(transpose(W))", mnemo::transpose(mnemo::transpose(W)));
    show("-(-x)", -(-x));
    show("x / c<4>", x / mnemo::c<4>);
    show("(transpose(A) * W) * x", (mnemo::transpose(A) * W) * x);
    show("outer(y, x) * x", mnemo::outer(y, x) * x);
}

void gradients() {
    std::printf("gradients\n");
    constexpr auto f = mnemo::sum(mnemo::square(W * x - y));
    constexpr auto df_dW = mnemo::grad(f, W);  // an expression of W's shape, (2, 3)
    constexpr auto df_dx = mnemo::grad(f, x);  // an expression of x's shape, (3)
    show("f", f);
    show("grad(f, W)", df_dW);
    show("grad(f, x)", df_dx);

    // A gradient is an expression like any other: differentiate it again. The directional
    // derivative of grad(f, W) along U, differentiated with respect to x:
    constexpr auto mixed = mnemo::grad(mnemo::sum(mnemo::hadamard(df_dW, U)), x);
    show("grad(sum(hadamard(df_dW, U)), x)", mixed);

    // grad returns the short name derivative<F, X>; unwrap_t gives the expression it names.
    using F = std::remove_const_t<decltype(f)>;
    using X = std::remove_const_t<decltype(W)>;
    static_assert(std::is_same_v<decltype(mnemo::grad(f, W)), mnemo::derivative<F, X>>);
    static_assert(std::is_same_v<mnemo::unwrap_t<mnemo::derivative<F, X>>::shape, mnemo::shape<2, 3>>);

    // A gradient that is a leaf, or zero, is returned as such.
    constexpr auto a = mnemo::vector<"a", 3>;
    static_assert(std::is_same_v<decltype(mnemo::grad(mnemo::dot(a, x), x)), std::remove_const_t<decltype(a)>>);
    static_assert(std::is_same_v<decltype(mnemo::grad(f, a)), mnemo::zero_tensor<mnemo::shape<3>>>);
}

void derivative_rules() {
    std::printf("derivative rules (gradient of sum(op(x)) or of a scalar loss)\n");
    show("sum(exp(x))", mnemo::grad(mnemo::sum(mnemo::exp(x)), x));
    show("sum(log(x))", mnemo::grad(mnemo::sum(mnemo::log(x)), x));
    show("sum(sqrt(x))", mnemo::grad(mnemo::sum(mnemo::sqrt(x)), x));
    show("sum(tanh(x))", mnemo::grad(mnemo::sum(mnemo::tanh(x)), x));
    show("sum(sigmoid(x))", mnemo::grad(mnemo::sum(mnemo::sigmoid(x)), x));
    show("sum(softplus(x))", mnemo::grad(mnemo::sum(mnemo::softplus(x)), x));
    show("sum(relu(x))", mnemo::grad(mnemo::sum(mnemo::relu(x)), x));
    show("sum(abs(x))", mnemo::grad(mnemo::sum(mnemo::abs(x)), x));
    show("sum(ipow<3>(x))", mnemo::grad(mnemo::sum(mnemo::ipow<3>(x)), x));
    show("sum(x / eta), wrt eta", mnemo::grad(mnemo::sum(x / eta), eta));
    show("sum(huber(x, eta)), wrt x", mnemo::grad(mnemo::sum(mnemo::huber(x, eta)), x));
    show("sum(huber(x, eta)), wrt eta", mnemo::grad(mnemo::sum(mnemo::huber(x, eta)), eta));
    show("dot(y, W * x), wrt W", mnemo::grad(mnemo::dot(y, W * x), W));
    show("sum(W * transpose(A)), wrt W", mnemo::grad(mnemo::sum(W * mnemo::transpose(A)), W));
}

void evaluation() {
    std::printf("evaluation\n");
    constexpr auto f = mnemo::sum(mnemo::square(W * x - y));
    auto plan = mnemo::compile<double>(f, mnemo::grad(f, W), mnemo::grad(f, x));

    xt::xtensor<double, 2> w = {{1.0, 0.0, 2.0}, {0.0, 1.0, -1.0}};
    xt::xtensor<double, 1> xv = {1.0, 2.0, 3.0};
    xt::xtensor<double, 1> yv = {0.5, -0.5};

    auto [loss, g_w, g_x] = plan(W = w, x = xv, y = yv);
    std::cout << "  loss " << loss << "\n  grad W " << g_w << "\n  grad x " << g_x << '\n';

    // The same evaluation, with the results kept in the plan and read with get<I>().
    plan.run(mnemo::bind(W, w), mnemo::bind(x, xv), mnemo::bind(y, yv));
    const double loss_again = plan.get<0>();
    auto g_w_again = plan.get<1>();
    std::cout << "  loss " << loss_again << ", grad W(1, 2) " << g_w_again(1, 2) << '\n';

    std::printf("  nodes %zu, buffers %zu, arena %zu elements\n", plan.node_count, plan.buffer_count,
                plan.arena_size);

    // A scalar symbol takes a plain number.
    auto scaled = mnemo::compile<double>(mnemo::sum(eta * x));
    auto [s] = scaled(eta = 0.5, x = xv);
    std::cout << "  sum(eta * x) = " << s << '\n';

    expect(loss == 42.5 && loss_again == 42.5, "loss of the evaluation example");
    expect(g_w(0, 2) == 39.0 && g_w(1, 0) == -1.0 && g_x(2) == 27.0, "gradients of the evaluation example");
    expect(s == 3.0, "a scalar bound as a number");
}

void run_time_errors() {
    std::printf("run-time errors\n");
    constexpr auto f = mnemo::sum(W * x);
    auto plan = mnemo::compile<double>(f);
    xt::xtensor<double, 2> w = {{1.0, 0.0, 2.0}, {0.0, 1.0, -1.0}};

    xt::xtensor<double, 1> wrong({3});  // ONE element, holding 3.0
    try {
        plan(W = w, x = wrong);
    } catch (const std::invalid_argument& e) {
        std::cout << "  " << e.what() << '\n';
    }
    xt::xtensor<double, 1> right(std::array<std::size_t, 1>{3});  // three elements
    right.fill(1.0);
    std::cout << "  sum(W * x) = " << std::get<0>(plan(W = w, x = right)) << '\n';

    xt::xtensor<double, 2, xt::layout_type::column_major> w_col = w;
    try {
        plan(W = w_col, x = right);
    } catch (const std::invalid_argument& e) {
        std::cout << "  " << e.what() << '\n';
    }

    int thrown = 0;
    try {
        plan(W = w, x = wrong);
    } catch (const std::invalid_argument&) {
        ++thrown;
    }
    try {
        plan(W = w_col, x = right);
    } catch (const std::invalid_argument&) {
        ++thrown;
    }
    expect(wrong.size() == 1 && thrown == 2, "wrong shapes and layouts are refused");
}

void results_are_views() {
    std::printf("results are views\n");
    constexpr auto f = mnemo::sum(mnemo::square(W * x - y));
    auto plan = mnemo::compile<double>(f, mnemo::grad(f, W));
    xt::xtensor<double, 2> w = {{1.0, 0.0, 2.0}, {0.0, 1.0, -1.0}};
    xt::xtensor<double, 2> w2 = 2.0 * w;
    xt::xtensor<double, 1> xv = {1.0, 2.0, 3.0};
    xt::xtensor<double, 1> yv = {0.5, -0.5};

    auto [loss1, g1] = plan(W = w, x = xv, y = yv);
    xt::xtensor<double, 2> kept = g1;  // a copy: it survives the next call
    auto [loss2, g2] = plan(W = w2, x = xv, y = yv);
    // loss1 is a number, but g1 and g2 view the same buffer: g1 now shows the second result.
    std::cout << "  loss1 " << loss1 << ", loss2 " << loss2 << '\n';
    std::cout << "  g1(0, 0) " << g1(0, 0) << ", g2(0, 0) " << g2(0, 0) << ", kept(0, 0) " << kept(0, 0) << '\n';

    expect(loss1 == 42.5 && loss2 == 184.5, "losses of the two calls");
    expect(g1(0, 0) == 27.0 && kept(0, 0) == 13.0, "results are views; copies survive");
}

void binding_rows() {
    std::printf("binding rows of a (T, d) array\n");
    auto plan = mnemo::compile<double>(mnemo::sum(x));
    xt::xtensor<double, 2> tokens = {{1.0, 2.0, 3.0}, {10.0, 20.0, 30.0}};
    for (std::size_t t = 0; t < tokens.shape()[0]; ++t) {
        // A row of a row-major array is contiguous: bind the view itself, no copy...
        auto row_view = xt::view(tokens, t, xt::all());
        // ...or a copy in a container, or an adaptor of the row's memory.
        xt::xtensor<double, 1> row = row_view;
        auto row_adaptor = xt::adapt(tokens.data() + t * 3, 3, xt::no_ownership(), std::array<std::size_t, 1>{3});
        auto [s1] = plan(x = row_view);
        auto [s2] = plan(x = row);
        auto [s3] = plan(x = row_adaptor);
        std::cout << "  token " << t << ": " << s1 << ' ' << s2 << ' ' << s3 << '\n';
        expect(s1 == s2 && s2 == s3 && s1 == (t == 0 ? 6.0 : 60.0), "rows bound as views, copies and adaptors");
    }
}

void float_plans() {
    std::printf("float plans\n");
    constexpr auto f = mnemo::sum(W * x);
    auto plan = mnemo::compile<float>(f);  // binds float data only
    xt::xtensor<float, 2> w = {{1.0f, 0.0f, 2.0f}, {0.0f, 1.0f, -1.0f}};
    xt::xtensor<float, 1> xv = {1.0f, 2.0f, 3.0f};
    auto [s] = plan(W = w, x = xv);
    std::cout << "  sum(W * x) = " << s << " (float)\n";
    expect(s == 6.0f, "float plan");
}

void products() {
    // Two matrices: `*` is the matrix product, hadamard the elementwise product.
    constexpr auto P = W * mnemo::transpose(A);  // (2, 3) @ (3, 2): shape (2, 2)
    constexpr auto H = mnemo::hadamard(W, A);    // (2, 3) * (2, 3): shape (2, 3)
    static_assert(std::is_same_v<std::remove_const_t<decltype(P)>::shape, mnemo::shape<2, 2>>);
    static_assert(std::is_same_v<std::remove_const_t<decltype(H)>::shape, mnemo::shape<2, 3>>);
}

void with_using_namespace() {
    std::printf("using namespace mnemo\n");
    using namespace mnemo;
    constexpr auto e = tanh(x) + exp(-x);  // mnemo's tanh and exp: x is an expression
    const double t = std::tanh(0.5);       // <cmath>'s
    const double u = tanh(0.5);            // <cmath>'s too: mnemo's needs an expression
    show("tanh(x) + exp(-x)", e);
    std::printf("  %.6f %.6f\n", t, u);
    expect(t == u, "tanh of a number is <cmath>'s");
}

void huber_delta() {
    constexpr auto r = W * x - y;                           // shape (2)
    constexpr auto per_loss = mnemo::huber(r, eta);         // one delta for all entries
    constexpr auto per_entry = mnemo::huber(r, mnemo::vector<"delta", 2>);  // one delta per entry
    static_assert(std::is_same_v<std::remove_const_t<decltype(per_loss)>::shape, mnemo::shape<2>>);
    static_assert(std::is_same_v<std::remove_const_t<decltype(per_entry)>::shape, mnemo::shape<2>>);
}

void kinks_at_zero() {
    std::printf("derivatives at 0\n");
    auto plan = mnemo::compile<double>(mnemo::grad(mnemo::sum(mnemo::relu(x)), x),
                                       mnemo::grad(mnemo::sum(mnemo::abs(x)), x));
    xt::xtensor<double, 1> xv = {-1.0, 0.0, 2.0};
    auto [d_relu, d_abs] = plan(x = xv);
    std::cout << "  at x = " << xv << ": d relu " << d_relu << ", d abs " << d_abs << '\n';
    expect(d_relu(1) == 0.0 && d_abs(1) == 0.0 && d_relu(2) == 1.0 && d_abs(0) == -1.0, "derivatives at 0");
}

}  // namespace tour

int main() {
    tour::constants();
    tour::operations();
    tour::folding();
    tour::gradients();
    tour::derivative_rules();
    tour::evaluation();
    tour::run_time_errors();
    tour::results_are_views();
    tour::binding_rows();
    tour::float_plans();
    tour::products();
    tour::with_using_namespace();
    tour::huber_delta();
    tour::kinks_at_zero();
    if (tour::failures != 0) {
        std::printf("%d check(s) failed\n", tour::failures);
        return 1;
    }
}
