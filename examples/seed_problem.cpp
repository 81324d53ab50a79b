// mnemo's first example: the meta-gradient of one Titans memory step, printed as the JSON
// line of the reference problem `seed`. See seed_problem.hpp for the model, written as
// expressions, and docs/getting-started.md for a walk through it.
#include <cstdio>

#include "seed_problem.hpp"

namespace {
void print_list(const char* key, const auto& g, bool last) {
    std::printf("\"%s\": [", key);
    for (std::size_t i = 0; i < g.size(); ++i) std::printf("%s%.17g", i ? ", " : "", g.data()[i]);
    std::printf("]%s", last ? "" : ", ");
}
}  // namespace

int main() {
    auto plan = seed::make_plan();  // compiled once; reusable without allocation
    const seed::data values;
    auto [loss, g_m0, g_wk, g_wv, g_wq] = seed::evaluate(plan, values);

    std::printf("{\"problem\": \"seed\", \"loss\": %.17g, \"grads\": {", loss);
    print_list("M0[0]", g_m0, false);
    print_list("WK", g_wk, false);
    print_list("WV", g_wv, false);
    print_list("WQ", g_wq, true);
    std::printf("}}\n");
}
