// The first-order memory of the recall demo, compiled on its own.
#include "recall.hpp"

namespace recall {
template outcome train<true>(const config&, variant, const progress_fn&);
}
