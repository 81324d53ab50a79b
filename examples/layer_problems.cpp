// Prints the three layer problems, one JSON line each: the loss and its exact gradient
// with respect to every meta-parameter and to the tokens ("X"), through every inner update
// of every layer.
#include <cstdio>

#include "layer_problems.hpp"

namespace {

void print(const std::string& name, const layers::gradients& g, const std::vector<std::string>& keys) {
    std::printf("{\"problem\": \"%s\", \"loss\": %.17g, \"grads\": {", name.c_str(), g.loss);
    bool first = true;
    for (const auto& key : keys) {
        auto it = g.grads.find(key);
        if (it == g.grads.end()) continue;
        std::printf("%s\"%s\": [", first ? "" : ", ", key.c_str());
        for (std::size_t i = 0; i < it->second.size(); ++i) std::printf("%s%.17g", i ? ", " : "", it->second[i]);
        std::printf("]");
        first = false;
    }
    std::printf("}}\n");
}

}  // namespace

int main() {
    std::vector<std::string> one = layers::key_order("");
    one.push_back("X");
    for (const auto& [name, chunk, T] : {std::tuple{"layer_vjp", 1, 12}, std::tuple{"layer_vjp_chunked", 4, 16}}) {
        const layers::vjp_problem p(name, std::size_t(T), std::size_t(chunk));
        layers::vjp_problem::memory_type memory;
        layers::gradients g;
        p.run(memory, &g);
        print(p.name, g, one);
    }
    const layers::stack_problem p;
    layers::stack_problem::model m;
    layers::gradients g;
    p.run(m, &g);
    std::vector<std::string> keys = layers::key_order("layer1.");
    for (const auto& k : layers::key_order("layer2.")) keys.push_back(k);
    keys.push_back("X");
    print(p.name, g, keys);
}
