// EXPECT: a tensor_list<T> holds views of tensors whose elements are T
// A float tensor added to a tensor_list<double> (what an optimizer updates): refused at
// compile time; a converted copy would be updated instead of the tensor.
#include <mnemo/train/tensors.hpp>

#include <xtensor/xtensor.hpp>

int main() {
    xt::xtensor<float, 2> embedding = xt::zeros<float>({3, 4});
    mnemo::train::tensor_list<double> params;
    params.add("embed", embedding);
}
