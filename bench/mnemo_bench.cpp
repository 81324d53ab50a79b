// mnemo_bench --config NAME [--threads N] [--json] [--seconds S] [--tokens T] [--checkpoint C]
//             [--dual-block N] [--no-dual] [--mode meta|dx|layer|layer_nodx] [--optimizer]
//
// Times one meta-gradient step of a benchmark configuration (seed, seq64, batch64, mlp64, mlpchunk64,
// chunk64, big256): warm-up, then timed steps for a few seconds. With --json it prints one
// line: name, threads, median and minimum seconds per step, runs, loss, tokens per second,
// peak RSS, and GFLOP/s (the nominal 54 B T d^2 operations of a step per median time).
// --threads N runs the sequences of the batch on N threads (run_options::threads); OpenBLAS
// always runs on one thread (per worker). --tokens overrides the sequence length and
// --checkpoint the checkpoint interval (memory measurements); --dual-block the block size
// of the dual form (run_options::dual_block) and --no-dual runs the compiled step token by
// token instead (run_options::dual_form = false): for tuning and ablations. --mode dx also
// returns the gradient with respect to the tokens (run_options::token_gradient); --mode
// layer times the layer interface: forward(context), dY of the mse loss, backward(context,
// dY) with the gradients of the meta-parameters, the tokens and the initial states, and
// --mode layer_nodx the same without the tokens' (tokens that are data).
// --optimizer adds one mnemo::train::adamw step (lr 1e-6) to every step: a training step.
//
// --config sgemm256 times one single-thread OpenBLAS sgemm, C = A B with n = 256, instead;
// its "gflops" is 2 n^3 per median time (loss and tokens_per_s are 0).
#include <cstdio>
#include <cstring>
#include <string>

#include "mnemo_bench/common.hpp"

extern "C" void openblas_set_num_threads(int);

namespace {
int usage(const char* argv0) {
    std::fprintf(stderr,
                 "usage: %s --config seed|seq64|batch64|mlp64|chunk64|big256|mlpchunk64|sgemm256 [--threads N] [--json] [--seconds S] "
                 "[--tokens T] [--checkpoint C] [--runs N] [--dual-block N] [--no-dual] [--mode meta|dx|layer|layer_nodx] [--optimizer]\n",
                 argv0);
    return 2;
}
}  // namespace

int main(int argc, char** argv) {
    bench::options o;
    bool json = false;
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            auto next = [&]() -> std::string {
                if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
                return argv[++i];
            };
            // A number, whole: "12x" or "abc" is an error naming the option.
            auto number = [&](auto convert) {
                const std::string v = next();
                std::size_t used = 0;
                try {
                    const auto x = convert(v, &used);
                    if (used == v.size()) return x;
                } catch (const std::exception&) {
                }
                throw std::invalid_argument(a + " takes a number, not '" + v + "'");
            };
            auto to_int = [](const std::string& v, std::size_t* u) { return std::stoi(v, u); };
            auto to_size = [](const std::string& v, std::size_t* u) {
                if (v.find('-') != std::string::npos) throw std::invalid_argument(v);
                return std::size_t(std::stoul(v, u));
            };
            auto to_double = [](const std::string& v, std::size_t* u) { return std::stod(v, u); };
            if (a == "--config") o.config = next();
            else if (a == "--threads") o.threads = number(to_int);
            else if (a == "--json") json = true;
            else if (a == "--seconds") o.seconds = number(to_double);
            else if (a == "--tokens") o.tokens = number(to_size);
            else if (a == "--checkpoint") o.checkpoint = number(to_size);
            else if (a == "--runs") o.max_runs = number(to_int);
            else if (a == "--dual-block") o.dual_block = number(to_size);
            else if (a == "--no-dual") o.dual_form = false;
            else if (a == "--optimizer") o.optimizer = true;
            else if (a == "--mode") {
                o.mode = next();
                if (o.mode != "meta" && o.mode != "dx" && o.mode != "layer" && o.mode != "layer_nodx")
                    throw std::invalid_argument("--mode takes meta, dx, layer or layer_nodx, not '" + o.mode + "'");
            }
            else return usage(argv[0]);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mnemo_bench: %s\n", e.what());
        return usage(argv[0]);
    }
    if (o.threads < 1) return usage(argv[0]);
    // The parallelism is over sequences (one worker per thread); every BLAS call stays on the
    // thread that makes it, also with --threads 1 (the products here are small).
    openblas_set_num_threads(1);

    bench::result r;
    if (o.config == "seed") r = bench::run_seed(o);
    else if (o.config == "seq64") r = bench::run_linear64(o, "seq64", 1, 1);
    else if (o.config == "batch64") r = bench::run_linear64(o, "batch64", 16, 1);
    else if (o.config == "chunk64") r = bench::run_linear64(o, "chunk64", 16, 16);
    else if (o.config == "mlp64") r = bench::run_mlp64(o);
    else if (o.config == "mlpchunk64") r = bench::run_mlpchunk64(o);
    else if (o.config == "big256") r = bench::run_big256(o);
    else if (o.config == "sgemm256") r = bench::run_sgemm256(o);
    else return usage(argv[0]);

    if (json)
        std::printf("{\"name\": \"%s\", \"mode\": \"%s\", \"optimizer\": %s, \"threads\": %d, \"median_s\": %.6g, "
                    "\"min_s\": %.6g, \"runs\": %d, \"loss\": %.6g, \"tokens_per_s\": %.6g, \"peak_rss_mb\": %.1f, "
                    "\"gflops\": %.6g}\n",
                    r.name.c_str(), r.mode.c_str(), o.optimizer ? "true" : "false", r.threads, r.median_s, r.min_s, r.runs, r.loss, r.tokens_per_s,
                    r.peak_rss_mb, r.gflops);
    else if (o.config == "sgemm256")
        std::printf("%s: n=%zu threads=%d  median %.3f ms  min %.3f ms  (%d runs)  %.1f GFLOP/s  peak RSS %.1f MB\n",
                    r.name.c_str(), r.d, r.threads, r.median_s * 1e3, r.min_s * 1e3, r.runs, r.gflops, r.peak_rss_mb);
    else
        std::printf("%s: B=%zu T=%zu d=%zu threads=%d  median %.3f ms  min %.3f ms  (%d runs)  loss %.6g  %.0f "
                    "tokens/s  %.2f GFLOP/s (nominal)  peak RSS %.1f MB\n",
                    r.name.c_str(), r.batch, r.length, r.d, r.threads, r.median_s * 1e3, r.min_s * 1e3, r.runs,
                    r.loss, r.tokens_per_s, r.gflops, r.peak_rss_mb);
    return 0;
}
