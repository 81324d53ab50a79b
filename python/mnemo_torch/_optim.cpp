// The kernel of mnemo_torch.AdamW: mnemo::train::adamw_update (the update of mnemo's own
// optimizer) over a list of tensors in one call, loaded with ctypes. It includes no torch
// header, so it compiles in about a second; the Python side checks devices, dtypes, shapes
// and contiguity before it hands over the pointers.
#include <cmath>
#include <cstddef>

#include "mnemo/train/optim.hpp"

namespace {

// The squared l2 norms of the gradients, added in double. Returns the index of the first
// tensor whose sum is not finite (a NaN or an infinity in it, or an overflow), or n.
template <class T>
std::size_t squared_norm(std::size_t n, const void* const* grads, const std::size_t* sizes, double* sq) {
    double total = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double s = mnemo::train::squared_norm(static_cast<const T*>(grads[i]), sizes[i]);
        if (!std::isfinite(s)) return i;
        total += s;
    }
    *sq = total;
    return n;
}

template <class T>
void update(std::size_t n, void* const* params, const void* const* grads, void* const* m, void* const* v,
            const std::size_t* sizes, double scale, double lr, double beta1, double beta2, double eps,
            double weight_decay, std::size_t step) {
    const mnemo::train::adamw_options o{lr, beta1, beta2, eps, weight_decay};
    for (std::size_t i = 0; i < n; ++i)
        mnemo::train::adamw_update(static_cast<T*>(params[i]), static_cast<const T*>(grads[i]),
                                   static_cast<T*>(m[i]), static_cast<T*>(v[i]), sizes[i], T(scale), o, lr, step);
}

}  // namespace

extern "C" {

int mnemo_abi_version() { return 1; }

std::size_t mnemo_squared_norm_f32(std::size_t n, const void* const* g, const std::size_t* sizes, double* sq) {
    return squared_norm<float>(n, g, sizes, sq);
}
std::size_t mnemo_squared_norm_f64(std::size_t n, const void* const* g, const std::size_t* sizes, double* sq) {
    return squared_norm<double>(n, g, sizes, sq);
}
void mnemo_adamw_f32(std::size_t n, void* const* p, const void* const* g, void* const* m, void* const* v,
                     const std::size_t* sizes, double scale, double lr, double beta1, double beta2, double eps,
                     double weight_decay, std::size_t step) {
    update<float>(n, p, g, m, v, sizes, scale, lr, beta1, beta2, eps, weight_decay, step);
}
void mnemo_adamw_f64(std::size_t n, void* const* p, const void* const* g, void* const* m, void* const* v,
                     const std::size_t* sizes, double scale, double lr, double beta1, double beta2, double eps,
                     double weight_decay, std::size_t step) {
    update<double>(n, p, g, m, v, sizes, scale, lr, beta1, beta2, eps, weight_decay, step);
}

}  // extern "C"
