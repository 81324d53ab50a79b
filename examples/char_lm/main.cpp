// The char_lm demo (docs/tutorial-char-lm.md): a character language model with a memory
// that learns at test time, trained on the King James Bible (Debian's bible-kjv), against
// the same model with no inner updates and a bigram count model.
//
//   char_lm [--out DIR] [--text FILE] [--steps N] [--batch B] [--seq T] [--lr X]
//           [--theta-max X] [--seed N] [--threads N] [--checkpoint N] [--shift-init 0|1] [--eval-windows N]
//
// Writes DIR/summary.json, DIR/train_loss.csv and DIR/loss_by_position.csv (default DIR:
// demo/char_lm under the working directory); examples/char_lm/plot.py draws them.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "char_lm.hpp"

extern "C" void openblas_set_num_threads(int);

namespace {

struct options {
    std::string out = "demo/char_lm";
    std::string text;  // empty: run `bible gen1:1-rev22:21`
    char_lm::config cfg;
    std::size_t eval_windows = 0;  // 0: the whole held-out text
    double heldout = 0.05;
};

[[noreturn]] void usage(const std::string& why) {
    std::fprintf(stderr,
                 "char_lm: %s\nusage: char_lm [--out DIR] [--text FILE] [--steps N] [--batch B] [--seq T] [--lr X]\n"
                 "               [--theta-max X] [--seed N] [--threads N] [--checkpoint N] [--shift-init 0|1] [--eval-windows N]\n",
                 why.c_str());
    std::exit(2);
}

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 >= argc) usage("missing value after " + a);
        const std::string v = argv[++i];
        auto num = [&] {
            char* end = nullptr;
            const double x = std::strtod(v.c_str(), &end);
            if (end == v.c_str() || *end) usage("bad number '" + v + "' for " + a);
            return x;
        };
        auto count = [&] {
            const double x = num();
            if (x < 0 || x != std::floor(x)) usage("bad count '" + v + "' for " + a);
            return std::size_t(x);
        };
        if (a == "--out") o.out = v;
        else if (a == "--text") o.text = v;
        else if (a == "--steps") o.cfg.steps = count();
        else if (a == "--batch") o.cfg.batch = count();
        else if (a == "--seq") o.cfg.seq = count();
        else if (a == "--lr") o.cfg.lr = num();
        else if (a == "--theta-max") o.cfg.theta_max = num();
        else if (a == "--seed") o.cfg.seed = count();
        else if (a == "--threads") o.cfg.threads = count();
        else if (a == "--checkpoint") o.cfg.checkpoint = count();
        else if (a == "--shift-init") o.cfg.shift_init = count() != 0;
        else if (a == "--eval-windows") o.eval_windows = count();
        else usage("unknown option " + a);
    }
    if (o.cfg.steps < 2 || o.cfg.batch < 1 || o.cfg.seq < 2) usage("need steps >= 2, batch >= 1, seq >= 2");
    o.cfg.warmup = std::max<std::size_t>(1, o.cfg.steps / 10);
    return o;
}

/// The progress of one model's training: one line rewritten on a terminal, plain lines
/// (every tenth of the run) otherwise.
struct progress_display {
    std::string name;
    bool tty = ::isatty(::fileno(stderr));
    void operator()(const char_lm::progress& p) const {
        if (tty) {
            std::fprintf(stderr, "\r%-18s step %5zu/%zu  loss %.4f  lr %.2e  %6.1f s  %7.0f tokens/s", name.c_str(),
                         p.step, p.steps, p.loss, p.lr, p.seconds, p.tokens_per_s);
            if (p.step == p.steps) std::fprintf(stderr, "\n");
        } else if (p.step == 1 || p.step == p.steps || p.step % std::max<std::size_t>(1, p.steps / 10) == 0) {
            std::fprintf(stderr, "%s: step %zu/%zu loss %.4f lr %.2e %.1f s %.0f tokens/s\n", name.c_str(), p.step,
                         p.steps, p.loss, p.lr, p.seconds, p.tokens_per_s);
        }
    }
};

struct trained {
    char_lm::training_result training;
    char_lm::evaluation eval;
};

trained run_model(const options& o, const char_lm::corpus& c, bool inner_updates, const std::string& name) {
    char_lm::config cfg = o.cfg;
    cfg.inner_updates = inner_updates;
    char_lm::model m(c.vocab(), cfg);
    trained t;
    t.training = char_lm::train_model(m, c.train, progress_display{name});
    t.eval = char_lm::evaluate(m, c.heldout, cfg.seq, o.eval_windows);
    return t;
}

}  // namespace

int main(int argc, char** argv) {
    const options o = parse(argc, argv);
    openblas_set_num_threads(1);  // the memory runs the batch on its own threads
    try {
        std::string text;
        if (o.text.empty()) {
            text = char_lm::clean_kjv(char_lm::read_command("bible gen1:1-rev22:21"));
        } else {
            std::ifstream in(o.text, std::ios::binary);
            if (!in) usage("cannot read " + o.text);
            text.assign(std::istreambuf_iterator<char>(in), {});
        }
        const char_lm::corpus c = char_lm::make_corpus(text, o.heldout);
        std::filesystem::create_directories(o.out);
        std::fprintf(stderr, "text: %zu characters (%zu training, %zu held out), %zu distinct\n", text.size(),
                     c.train.size(), c.heldout.size(), c.vocab());

        const auto t0 = std::chrono::steady_clock::now();
        const trained mem = run_model(o, c, true, "memory");
        const trained frozen = run_model(o, c, false, "no inner updates");
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const char_lm::evaluation bigram =
            char_lm::evaluate_bigram(c.train, c.vocab(), c.heldout, o.cfg.seq, o.eval_windows);

        std::printf("held-out bits per character (%zu characters):\n", mem.eval.characters);
        std::printf("  %-18s %.4f\n", "memory", mem.eval.bits_per_char);
        std::printf("  %-18s %.4f\n", "no inner updates", frozen.eval.bits_per_char);
        std::printf("  %-18s %.4f\n", "bigram", bigram.bits_per_char);
        std::printf("training: %zu steps of %zu x %zu tokens per model, %.1f s and %.1f s (%.0f and %.0f tokens/s);"
                    " %.1f s in all with the evaluations\n",
                    o.cfg.steps, o.cfg.batch, o.cfg.seq, mem.training.seconds, frozen.training.seconds,
                    mem.training.tokens_per_s, frozen.training.tokens_per_s, seconds);

        {
            std::ofstream f(o.out + "/train_loss.csv");
            f << "step,memory,no_inner_updates\n";
            for (std::size_t s = 0; s < mem.training.losses.size(); ++s)
                f << s + 1 << ',' << mem.training.losses[s] << ',' << frozen.training.losses[s] << '\n';
        }
        {
            std::ofstream f(o.out + "/loss_by_position.csv");
            f << "position,memory,no_inner_updates,bigram\n";
            for (std::size_t t = 0; t < o.cfg.seq; ++t)
                f << t << ',' << mem.eval.by_position[t] / std::log(2.0) << ','
                  << frozen.eval.by_position[t] / std::log(2.0) << ',' << bigram.by_position[t] / std::log(2.0) << '\n';
        }
        {
            std::ofstream f(o.out + "/summary.json");
            f.precision(6);
            f << "{\n  \"bits_per_char\": {\"memory\": " << mem.eval.bits_per_char
              << ", \"no_inner_updates\": " << frozen.eval.bits_per_char << ", \"bigram\": " << bigram.bits_per_char
              << "},\n  \"steps\": " << o.cfg.steps << ",\n  \"seconds\": " << seconds
              << ",\n  \"train_seconds\": {\"memory\": " << mem.training.seconds
              << ", \"no_inner_updates\": " << frozen.training.seconds << "}"
              << ",\n  \"tokens_per_s\": {\"memory\": " << mem.training.tokens_per_s
              << ", \"no_inner_updates\": " << frozen.training.tokens_per_s << "},\n  \"final_train_loss\": {\"memory\": "
              << mem.training.losses.back() << ", \"no_inner_updates\": " << frozen.training.losses.back()
              << "},\n  \"heldout_characters\": " << mem.eval.characters << ",\n  \"vocab\": " << c.vocab()
              << ",\n  \"train_characters\": " << c.train.size() << ",\n  \"config\": {\"batch\": " << o.cfg.batch
              << ", \"seq\": " << o.cfg.seq << ", \"lr\": " << o.cfg.lr << ", \"warmup\": " << o.cfg.warmup
              << ", \"weight_decay\": " << o.cfg.weight_decay << ", \"clip\": " << o.cfg.clip
              << ", \"theta_max\": " << o.cfg.theta_max << ", \"seed\": " << o.cfg.seed
              << ", \"threads\": " << o.cfg.threads << ", \"checkpoint\": " << o.cfg.checkpoint
              << ", \"shift_init\": " << (o.cfg.shift_init ? "true" : "false") << ", \"embed\": " << char_lm::e << ", \"shift\": " << char_lm::shift << ", \"d\": " << char_lm::d
              << ", \"dk\": " << char_lm::dk << ", \"hidden\": " << char_lm::hidden << "}\n}\n";
        }
        std::fprintf(stderr, "wrote %s/{summary.json,train_loss.csv,loss_by_position.csv}\n", o.out.c_str());
    } catch (const mnemo::train::non_finite_error& e) {
        std::fprintf(stderr, "char_lm: training stopped at step %zu: %s\n", e.step, e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "char_lm: %s\n", e.what());
        return 1;
    }
    return 0;
}
