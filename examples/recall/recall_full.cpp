// The exact meta-gradient memory of the recall demo, compiled on its own.
#include "recall.hpp"

namespace recall {
template outcome train<false>(const config&, variant, const progress_fn&);
}
