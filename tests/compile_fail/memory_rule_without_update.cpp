// EXPECT: an update rule's apply[(]p, s, g, gates[)] must return make_update[(]p_next, s_next[)]
// A rule that returns the next parameter alone instead of make_update(p_next, s_next).
#include <mnemo/mnemo.hpp>

namespace mm = mnemo::memory;

struct my_rule {
    template <class P, class S, class G, class Gates>
    static constexpr auto apply(P p, S, G g, Gates gt) {
        return (mnemo::c<1> - gt.alpha) * p - gt.theta * g;
    }
};
using spec = mm::spec<4, mm::linear<4>, mm::l2_loss, my_rule, mm::const_gates, mm::mse>;

int main() { [[maybe_unused]] mm::sequence_memory<spec, double> memory; }
