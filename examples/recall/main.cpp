// The flagship demo: a memory meta-trained to memorize in context (docs/tutorial-recall.md).
//
//     build/examples/recall [--steps 3000] [--seed 1] [--out build/demo/recall] [--quick]
//
// Trains four variants with the same budget, seed and batches (the exact meta-gradient;
// first-order; W_K and W_V frozen at their initial values; no memory), prints a table of
// recall accuracy and error by the number of pairs N, and writes `summary.json`,
// `curves.json` and each variant's checkpoint (parameters and AdamW state, `<variant>.npz`)
// into the output folder; examples/recall/plot.py draws the pictures from the JSON files.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include "recall.hpp"

namespace {

/// One line per variant: a bar on a terminal, a few plain lines otherwise.
class progress_line {
public:
    explicit progress_line(std::string name) : m_name(std::move(name)), m_tty(isatty(fileno(stderr))) {}

    void operator()(std::size_t step, std::size_t steps, double loss, std::size_t tokens, double seconds) {
        m_ema = step == 1 ? loss : 0.95 * m_ema + 0.05 * loss;
        const double rate = tokens / std::max(seconds, 1e-9);
        const double left = seconds / double(step) * double(steps - step);
        if (m_tty) {
            if (step % 10 != 0 && step != steps) return;
            constexpr int width = 24;
            const int full = int(width * step / steps);
            std::fprintf(stderr, "\r%-12s [%s%s] %5zu/%zu  loss %.4f  %6.0fk tok/s  %3.0f s left ", m_name.c_str(),
                         std::string(full, '#').c_str(), std::string(width - full, '.').c_str(), step, steps, m_ema,
                         rate / 1e3, left);
            if (step == steps) std::fprintf(stderr, "\n");
        } else if (step == steps || step % std::max<std::size_t>(steps / 4, 1) == 0) {
            std::fprintf(stderr, "%-12s step %zu/%zu  loss %.4f  %.0fk tok/s  %.0f s left\n", m_name.c_str(), step, steps,
                         m_ema, rate / 1e3, left);
        }
    }

private:
    std::string m_name;
    bool m_tty;
    double m_ema = 0;
};

}  // namespace

int main(int argc, char** argv) {
    cxxopts::Options cli("recall", "In-context associative recall, meta-trained four ways.");
    cli.add_options()("steps", "training steps per variant", cxxopts::value<std::size_t>()->default_value("3000"))(
        "seed", "seed of the initial parameters and of the data", cxxopts::value<std::uint64_t>()->default_value("1"))(
        "out", "folder of summary.json and curves.json", cxxopts::value<std::string>()->default_value("demo/recall"))(
        "threads", "threads per step", cxxopts::value<std::size_t>()->default_value("2"))(
        "quick", "a few steps and a small evaluation (a smoke test)")("h,help", "this help");
    recall::config cfg;
    std::filesystem::path out;
    try {
        const auto args = cli.parse(argc, argv);
        if (args.count("help")) {
            std::cout << cli.help() << "\n";
            return 0;
        }
        cfg.steps = args["steps"].as<std::size_t>();
        cfg.seed = args["seed"].as<std::uint64_t>();
        cfg.threads = args["threads"].as<std::size_t>();
        out = args["out"].as<std::string>();
        if (args.count("quick")) {
            cfg.steps = 20;
            cfg.warmup = 5;
            cfg.eval_sequences = 16;
        }
        if (cfg.steps <= cfg.warmup)
            throw std::invalid_argument("--steps must be more than the " + std::to_string(cfg.warmup) + " warm-up steps");
        if (cfg.threads == 0) throw std::invalid_argument("--threads must be at least 1");
    } catch (const std::exception& e) {
        std::cerr << "recall: " << e.what() << "\n";
        return 2;
    }

    try {
        std::filesystem::create_directories(out);
    } catch (const std::exception& e) {
        std::cerr << "recall: cannot make the folder " << out << ": " << e.what() << "\n";
        return 1;
    }
    cfg.checkpoints = out.string();
    const std::vector<recall::variant> variants = {recall::variant::full, recall::variant::first_order,
                                                   recall::variant::frozen_kv, recall::variant::no_memory};
    std::map<std::string, recall::outcome> results;
    for (auto v : variants) {
        progress_line bar(recall::name_of(v));
        results[recall::name_of(v)] = v == recall::variant::first_order ? recall::train<true>(cfg, v, std::ref(bar))
                                                                         : recall::train<false>(cfg, v, std::ref(bar));
    }

    // The table: accuracy and normalised error by N.
    std::printf("\nrecall of held-out sequences (%zu per N; key size %zu; %zu steps of %zu sequences)\n",
                cfg.eval_sequences, recall::key_size, cfg.steps, cfg.batch);
    std::printf("%-12s", "accuracy");
    for (auto N : cfg.eval_pairs) std::printf("  N=%-5zu", N);
    std::printf("\n");
    for (auto v : variants) {
        std::printf("%-12s", recall::name_of(v));
        for (auto N : cfg.eval_pairs) std::printf("  %6.1f%%", 100 * results[recall::name_of(v)].scores[N].accuracy);
        std::printf("\n");
    }
    std::printf("%-12s", "error");
    for (auto N : cfg.eval_pairs) std::printf("  N=%-5zu", N);
    std::printf("\n");
    for (auto v : variants) {
        std::printf("%-12s", recall::name_of(v));
        for (auto N : cfg.eval_pairs) std::printf("  %7.4f", results[recall::name_of(v)].scores[N].error);
        std::printf("\n");
    }

    nlohmann::json summary, curves;
    summary["key_size"] = recall::key_size;
    summary["steps"] = cfg.steps;
    summary["batch"] = cfg.batch;
    summary["seed"] = cfg.seed;
    summary["eval_sequences"] = cfg.eval_sequences;
    double total = 0, memory = 0, loss = 0, optimizer = 0, data = 0;
    for (auto v : variants) {
        const auto& r = results[recall::name_of(v)];
        nlohmann::json acc, err;
        for (auto N : cfg.eval_pairs) {
            acc[std::to_string(N)] = r.scores.at(N).accuracy;
            err[std::to_string(N)] = r.scores.at(N).error;
        }
        summary["variants"][recall::name_of(v)] = {{"accuracy", acc}, {"error", err}, {"train_seconds", r.seconds},
                                                  {"tokens_per_second", r.tokens / r.seconds}};
        curves[recall::name_of(v)] = r.loss;
        total += r.seconds, memory += r.memory_seconds, loss += r.loss_seconds, optimizer += r.optimizer_seconds;
        data += r.data_seconds;
    }
    // Where a training step's time goes, over all the variants.
    summary["time_split"] = {{"meta_gradient", memory / total}, {"outer_loss", loss / total},
                             {"optimizer", optimizer / total}, {"data", data / total},
                             {"other", 1 - (memory + loss + optimizer + data) / total}, {"seconds", total}};
    std::printf("\na training step: %.1f%% meta-gradient (the layer's forward and backward), %.1f%% outer loss and "
                "dL/dY, %.1f%% optimizer, %.1f%% data, %.1f%% the rest (%.1f s of training in all)\n",
                100 * memory / total, 100 * loss / total, 100 * optimizer / total, 100 * data / total,
                100 * (1 - (memory + loss + optimizer + data) / total), total);
    try {
        std::ofstream(out / "summary.json") << summary.dump(2) << "\n";
        std::ofstream(out / "curves.json") << curves.dump() << "\n";
    } catch (const std::exception& e) {
        std::cerr << "recall: cannot write into " << out << ": " << e.what() << "\n";
        return 1;
    }
    std::printf("wrote %s, %s and the checkpoints %s/{full,first_order,frozen_kv,no_memory}.npz\n",
                (out / "summary.json").c_str(), (out / "curves.json").c_str(), out.c_str());
    return 0;
}
