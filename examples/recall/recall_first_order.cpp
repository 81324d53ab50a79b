// The first-order memory of the recall demo, compiled on its own.
#include "recall.hpp"

namespace recall {
// Both variants train the same parameters (asserted here, where both memory types are
// instantiated anyway: in recall.hpp it would instantiate the first-order memory's steps in
// every unit, 7 s of compile time in recall_full.cpp).
static_assert(std::is_same_v<parameters, memory<true>::parameters_type>);
template outcome train<true>(const config&, variant, const progress_fn&);
}
