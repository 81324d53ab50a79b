// Binding data to symbols: run-time checks of shape and layout (std::invalid_argument naming
// the symbol), the containers and numbers that can be bound, and plans staying usable after
// a failed call. (Binding a number to a tensor symbol, data of the wrong value type, or
// leaving a symbol unbound are compile errors: see tests/compile_fail/.)
#include <doctest/doctest.h>

#include <array>
#include <stdexcept>
#include <string>
#include <vector>

#include <mnemo/mnemo.hpp>
#include <xtensor/xview.hpp>

namespace {

using namespace mnemo;

constexpr auto M = matrix<"M", 3, 4>;
constexpr auto x = vector<"x", 4>;
constexpr auto s = scalar<"s">;

/// The message of the std::invalid_argument thrown by `f`, or "" if it throws nothing.
template <class F>
std::string invalid_argument_message(F&& f) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

xt::xtensor<double, 2> matrix_data(std::size_t rows, std::size_t cols) {
    xt::xtensor<double, 2> a(std::array<std::size_t, 2>{rows, cols});
    for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = 1.0 + double(i);
    return a;
}

xt::xtensor<double, 1> vector_data(std::size_t n) {
    xt::xtensor<double, 1> a(std::array<std::size_t, 1>{n});
    for (std::size_t i = 0; i < n; ++i) a(i) = 0.5 - double(i);
    return a;
}

/// s * sum(M x) computed by hand, M read row-major from `m(i, j)`.
template <class Mat, class Vec>
double reference(const Mat& m, const Vec& v, double sv) {
    double r = 0;
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 4; ++j) r += m(i, j) * v(j);
    return sv * r;
}

}  // namespace

TEST_CASE("a matrix bound to data of the wrong shape: the message names the symbol and both shapes") {
    auto p = compile<double>(s * sum(M * x));
    const auto xv = vector_data(4);
    const auto wrong = matrix_data(4, 3);
    const std::string msg = invalid_argument_message([&] { p(M = wrong, x = xv, s = 1.0); });
    CHECK(contains(msg, "'M'"));
    CHECK(contains(msg, "(3, 4)"));
    CHECK(contains(msg, "(4, 3)"));
    CHECK(msg == "mnemo: symbol 'M' has shape (3, 4) but was bound to data of shape (4, 3)");
    // The `bind(sym, data)` spelling is checked the same way.
    CHECK(invalid_argument_message([&] { p(bind(M, wrong), bind(x, xv), bind(s, 1.0)); }) == msg);
}

TEST_CASE("data of the wrong rank or size") {
    auto p = compile<double>(s * sum(M * x));
    const auto m = matrix_data(3, 4);
    const auto xv = vector_data(4);

    SUBCASE("a vector of the wrong size") {
        const auto x5 = vector_data(5);
        const std::string msg = invalid_argument_message([&] { p(M = m, x = x5, s = 1.0); });
        CHECK(contains(msg, "'x'"));
        CHECK(contains(msg, "(4)"));
        CHECK(contains(msg, "(5)"));
        CHECK_FALSE(contains(msg, "'M'"));  // only the symbol at fault is named
    }
    SUBCASE("a vector bound to a matrix") {
        const auto x41 = matrix_data(4, 1);
        const std::string msg = invalid_argument_message([&] { p(M = m, x = x41, s = 1.0); });
        CHECK(contains(msg, "'x'"));
        CHECK(contains(msg, "(4)"));
        CHECK(contains(msg, "(4, 1)"));
    }
    SUBCASE("a matrix bound to a vector with as many entries") {
        const auto flat = vector_data(12);
        const std::string msg = invalid_argument_message([&] { p(M = flat, x = xv, s = 1.0); });
        CHECK(contains(msg, "'M'"));
        CHECK(contains(msg, "(3, 4)"));
        CHECK(contains(msg, "(12)"));
    }
    SUBCASE("an xarray of the wrong shape") {
        xt::xarray<double> wrong = xt::zeros<double>({3, 5});
        const std::string msg = invalid_argument_message([&] { p(M = wrong, x = xv, s = 1.0); });
        CHECK(contains(msg, "'M'"));
        CHECK(contains(msg, "(3, 4)"));
        CHECK(contains(msg, "(3, 5)"));
        xt::xarray<double> wrong_rank = xt::zeros<double>({3, 4, 1});
        CHECK(contains(invalid_argument_message([&] { p(M = wrong_rank, x = xv, s = 1.0); }), "(3, 4, 1)"));
    }
    SUBCASE("a scalar bound to a one-entry vector") {
        const auto one = vector_data(1);
        const std::string msg = invalid_argument_message([&] { p(M = m, x = xv, s = one); });
        CHECK(contains(msg, "'s'"));
        CHECK(contains(msg, "()"));
        CHECK(contains(msg, "(1)"));
    }
    SUBCASE("a long symbol name is quoted whole") {
        constexpr auto Wq = matrix<"W_query_projection", 2, 2>;
        auto q = compile<double>(sum(Wq));
        const auto wrong = matrix_data(2, 3);
        const std::string msg = invalid_argument_message([&] { q(Wq = wrong); });
        CHECK(contains(msg, "'W_query_projection'"));
        CHECK(contains(msg, "(2, 2)"));
        CHECK(contains(msg, "(2, 3)"));
    }
}

TEST_CASE("a matrix must be bound to contiguous row-major data") {
    auto p = compile<double>(s * sum(M * x));
    const auto m = matrix_data(3, 4);
    const auto xv = vector_data(4);

    SUBCASE("a column-major xtensor") {
        const xt::xtensor<double, 2, xt::layout_type::column_major> cm = m;
        const std::string msg = invalid_argument_message([&] { p(M = cm, x = xv, s = 1.0); });
        CHECK(contains(msg, "'M'"));
        CHECK(contains(msg, "row-major"));
    }
    SUBCASE("a column-major xarray") {
        const xt::xarray<double, xt::layout_type::column_major> cm = m;
        const std::string msg = invalid_argument_message([&] { p(M = cm, x = xv, s = 1.0); });
        CHECK(contains(msg, "'M'"));
        CHECK(contains(msg, "row-major"));
    }
    SUBCASE("a transposed view") {
        const auto mt = matrix_data(4, 3);
        const auto view = xt::transpose(mt);  // shape (3, 4), but column-major storage
        const std::string msg = invalid_argument_message([&] { p(M = view, x = xv, s = 1.0); });
        CHECK(contains(msg, "'M'"));
        CHECK(contains(msg, "row-major"));
    }
    SUBCASE("a block of a larger matrix (rows not adjacent)") {
        const auto big = matrix_data(3, 6);
        const auto block = xt::view(big, xt::all(), xt::range(1, 5));
        const std::string msg = invalid_argument_message([&] { p(M = block, x = xv, s = 1.0); });
        CHECK(contains(msg, "'M'"));
        CHECK(contains(msg, "row-major"));
    }
    SUBCASE("a strided vector view") {
        const auto big = matrix_data(4, 2);
        const auto column = xt::view(big, xt::all(), 1);
        const std::string msg = invalid_argument_message([&] { p(M = m, x = column, s = 1.0); });
        CHECK(contains(msg, "'x'"));
        CHECK(contains(msg, "row-major"));
    }
}

TEST_CASE("containers, contiguous views and numbers that bind") {
    const auto m = matrix_data(3, 4);
    const auto xv = vector_data(4);
    auto p = compile<double>(s * sum(M * x));
    const double expected = reference(m, xv, 2.5);

    SUBCASE("xtensor, and a scalar as a double, a float or an int") {
        CHECK(std::get<0>(p(M = m, x = xv, s = 2.5)) == doctest::Approx(expected).epsilon(1e-15));
        CHECK(std::get<0>(p(M = m, x = xv, s = 2.5f)) == doctest::Approx(expected).epsilon(1e-15));
        CHECK(std::get<0>(p(M = m, x = xv, s = 3)) == doctest::Approx(reference(m, xv, 3.0)).epsilon(1e-15));
    }
    SUBCASE("a scalar as a 0-dimensional tensor") {
        xt::xtensor<double, 0> s0;
        s0() = 2.5;
        CHECK(std::get<0>(p(M = m, x = xv, s = s0)) == doctest::Approx(expected).epsilon(1e-15));
    }
    SUBCASE("xarray and xtensor_fixed") {
        const xt::xarray<double> ma = m;
        const xt::xtensor_fixed<double, xt::xshape<4>> xf = xv;
        CHECK(std::get<0>(p(M = ma, x = xf, s = 2.5)) == doctest::Approx(expected).epsilon(1e-15));
    }
    SUBCASE("an adaptor over a std::vector") {
        std::vector<double> storage(m.begin(), m.end());
        const auto ma = xt::adapt(storage, std::array<std::size_t, 2>{3, 4});
        CHECK(std::get<0>(p(M = ma, x = xv, s = 2.5)) == doctest::Approx(expected).epsilon(1e-15));
    }
    SUBCASE("a column-major vector: one dimension has one layout") {
        const xt::xtensor<double, 1, xt::layout_type::column_major> xc = xv;
        CHECK(std::get<0>(p(M = m, x = xc, s = 2.5)) == doctest::Approx(expected).epsilon(1e-15));
    }
    SUBCASE("contiguous views start at their own first entry") {
        // Rows 1..3 of a (4, 4) matrix, and row 2 of a matrix as the vector.
        const auto big = matrix_data(4, 4);
        const auto rows = xt::view(big, xt::range(1, 4), xt::all());
        const auto holder = matrix_data(3, 4);
        const auto row = xt::view(holder, 2, xt::all());
        const xt::xtensor<double, 2> rows_copy = rows;
        const xt::xtensor<double, 1> row_copy = row;
        CHECK(std::get<0>(p(M = rows, x = row, s = 2.5)) ==
              doctest::Approx(reference(rows_copy, row_copy, 2.5)).epsilon(1e-15));
    }
}

TEST_CASE("a float plan with float data, and a number bound to a float scalar") {
    auto p = compile<float>(s * sum(M * x));
    const xt::xtensor<float, 2> m = matrix_data(3, 4);
    const xt::xtensor<float, 1> xv = vector_data(4);
    const auto [r] = p(M = m, x = xv, s = 0.5);  // a double number is converted
    static_assert(std::is_same_v<std::remove_cv_t<decltype(r)>, float>);
    CHECK(r == doctest::Approx(reference(m, xv, 0.5)).epsilon(1e-6));
    const xt::xtensor<float, 2> wrong = xt::zeros<float>({4, 4});
    CHECK(contains(invalid_argument_message([&] { p(M = wrong, x = xv, s = 0.5f); }), "'M'"));
}

TEST_CASE("a plan works again after a failed call") {
    const auto m = matrix_data(3, 4);
    const auto xv = vector_data(4);
    const auto wrong_m = matrix_data(4, 3);
    const auto wrong_x = vector_data(3);
    const xt::xtensor<double, 2, xt::layout_type::column_major> column_major_m = m;
    auto p = compile<double>(s * sum(M * x), M * x);

    auto [r0, y0] = p(M = m, x = xv, s = 2.0);
    const double first = r0;
    const xt::xtensor<double, 1> first_y = y0;
    CHECK(first == doctest::Approx(reference(m, xv, 2.0)).epsilon(1e-15));

    // Each kind of failure, with the faulty symbol first, last, or in the middle.
    CHECK_THROWS_AS(p(M = wrong_m, x = xv, s = 2.0), std::invalid_argument);
    CHECK_THROWS_AS(p(M = m, x = wrong_x, s = 2.0), std::invalid_argument);
    CHECK_THROWS_AS(p(x = xv, s = 2.0, M = column_major_m), std::invalid_argument);
    // A failed call stops before computing anything: the last results are still there.
    CHECK(p.get<0>() == first);

    // Correct data again: correct results, as from a fresh plan.
    const auto m2 = matrix_data(3, 4) * 0.5;
    const xt::xtensor<double, 2> m2c = m2;
    auto [r1, y1] = p(M = m2c, x = xv, s = -1.0);
    CHECK(r1 == doctest::Approx(reference(m2c, xv, -1.0)).epsilon(1e-15));
    auto fresh = compile<double>(s * sum(M * x), M * x);
    auto [r2, y2] = fresh(M = m2c, x = xv, s = -1.0);
    CHECK(r1 == r2);
    for (std::size_t i = 0; i < 3; ++i) CHECK(y1(i) == y2(i));
    // And the first data again gives the first results.
    auto [r3, y3] = p(M = m, x = xv, s = 2.0);
    CHECK(r3 == first);
    for (std::size_t i = 0; i < 3; ++i) CHECK(y3(i) == first_y(i));
}
