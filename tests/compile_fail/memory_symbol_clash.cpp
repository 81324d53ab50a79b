// EXPECT: symbol_of_one_part<mnemo::symbol<mnemo::fixed_string<6>[{]"theta"[}], mnemo::shape<> >, mnemo::memory::part::the_gates, mnemo::memory::part::the_update_rule>
// A rule with a learned scalar of its own named `theta`, next to the constant gates, whose
// `theta` is a hyperparameter: without the check, the rule's theta silently became the
// gates' (bound, never learned). The error names the symbol and both parts.
#include <mnemo/mnemo.hpp>

namespace mm = mnemo::memory;

struct my_rule {
    static constexpr auto theta = mnemo::scalar<"theta">;
    template <class P, class S, class G, class Gates>
    static constexpr auto apply(P p, S s, G g, Gates gt) {
        auto s_next = gt.eta * s - theta * g;
        return mm::make_update((mnemo::c<1> - gt.alpha) * p + s_next, s_next);
    }
};
using spec = mm::spec<4, mm::linear<4>, mm::l2_loss, my_rule, mm::const_gates, mm::mse>;

int main() { [[maybe_unused]] mm::sequence_memory<spec, double> memory; }
