// The source tree through add_subdirectory: mnemo's headers, and mnemo::train's checkpoints
// (libzip as mnemo's configure step found it), saved and loaded once.
#include <mnemo/mnemo.hpp>
#include <mnemo/train/checkpoint.hpp>

int main() {
    xt::xtensor<double, 2> w = {{1.0, 2.0}, {3.0, 4.0}};
    mnemo::train::tensor_list<double> params;
    params.add("w", w);
    mnemo::train::save_checkpoint("consumer.npz", params);
    w.fill(0.0);
    mnemo::train::load_checkpoint("consumer.npz", params);
    return w(1, 0) == 3.0 && w(1, 1) == 4.0 ? 0 : 1;
}
