// Prints the five reference problems, one JSON line each: the outer loss and its exact
// gradient with respect to every meta-parameter, through every inner update.
#include <cstdio>
#include <map>

#include "reference_problems.hpp"

int main() {
    for (const auto& name : reference::names()) {
        reference::with_problem(name, [&](auto& p) {
            typename std::remove_reference_t<decltype(p)>::memory_type memory;
            const auto r = p.meta_gradient(memory);
            std::map<std::string, std::vector<double>> grads;
            r.grads.for_each([&](const std::string& key, const auto& g) {
                grads[key].assign(g.data(), g.data() + g.size());
            });
            std::printf("{\"problem\": \"%s\", \"loss\": %.17g, \"grads\": {", p.name.c_str(), double(r.loss));
            bool first = true;
            for (const auto& key : reference::key_order()) {
                auto it = grads.find(key);
                if (it == grads.end()) continue;
                std::printf("%s\"%s\": [", first ? "" : ", ", key.c_str());
                for (std::size_t i = 0; i < it->second.size(); ++i)
                    std::printf("%s%.17g", i ? ", " : "", it->second[i]);
                std::printf("]");
                first = false;
            }
            std::printf("}}\n");
        });
    }
}
