// Checkpoints (mnemo/train/checkpoint.hpp): a round trip is bit for bit (parameters, the
// optimizer's state and its step count; double and float) and the loaded optimizer then
// takes the same next step as the original; a file truncated at any offset, any byte damaged,
// a garbage or non-zip file, a foreign .npy header (fuzzed), a wrong shape, a wrong dtype, a
// missing or an extra entry, an optimizer mismatch: each throws checkpoint_error with its
// one-line message and leaves the caller's tensors and optimizer unchanged, bit for bit; the
// write is atomic (no temporary left, a save over a file replaces it, a failed save leaves
// the old file and no temporary). With MNEMO_CHECKPOINT_NUMPY_DIR set, the case "numpy
// sidecar" writes checkpoints and the values expected in them for
// tests/train/check_checkpoint_numpy.py (CTest test checkpoint_numpy), which reads them with
// numpy.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include <mnemo/memory.hpp>
#include <mnemo/train/checkpoint.hpp>
#include <mnemo/train/optim.hpp>

namespace {

namespace fs = std::filesystem;
namespace mm = mnemo::memory;
namespace tr = mnemo::train;

using memory_params = mm::sequence_memory<
    mm::spec<4, mm::linear<4>, mm::l2_loss, mm::titans_rule, mm::data_gates<4>, mm::mse>,
    double>::parameters_type;

/// A fresh, empty directory, removed with its contents at the end of the scope.
struct temp_dir {
    fs::path path;
    temp_dir() {
        static int n = 0;
        path = fs::temp_directory_path() /
               ("mnemo_test_checkpoint_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::set<std::string> files() const {
        std::set<std::string> out;
        for (const auto& e : fs::directory_iterator(path))
            out.insert(e.path().filename().string());
        return out;
    }
};

/// Deterministic values, different for each tensor and seed, none of them 0.
template <class T>
void fill(const tr::tensor_list<T>& list, double seed) {
    for (std::size_t i = 0; i < list.size(); ++i)
        for (std::size_t k = 0; k < list[i].size; ++k)
            list[i].data[k] = T(std::sin(seed + 0.7 * double(i) + 0.31 * double(k)) + 1.25);
}

/// Every byte of every tensor of a list.
template <class T>
std::vector<std::vector<unsigned char>> bytes_of(const tr::tensor_list<T>& list) {
    std::vector<std::vector<unsigned char>> out;
    for (const auto& v : list) {
        const auto* p = reinterpret_cast<const unsigned char*>(v.data);
        out.emplace_back(p, p + v.size * sizeof(T));
    }
    return out;
}

/// Writes bytes recorded by bytes_of back into the list's tensors.
template <class T>
void restore(const tr::tensor_list<T>& list, const std::vector<std::vector<unsigned char>>& bytes) {
    REQUIRE(bytes.size() == list.size());
    for (std::size_t i = 0; i < list.size(); ++i)
        if (!bytes[i].empty())
            std::memcpy(list[i].data, bytes[i].data(), bytes[i].size());
}

/// A bit-for-bit record of the parameters, and of an optimizer's state and step count.
template <class T>
struct snapshot {
    std::vector<std::vector<unsigned char>> params, state;
    std::size_t steps = 0;
    snapshot(const tr::tensor_list<T>& p, const tr::optimizer<T>* opt) : params(bytes_of(p)) {
        if (opt)
            state = bytes_of(opt->state()), steps = opt->steps();
    }
    bool operator==(const snapshot&) const = default;
};

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_file(const fs::path& p, const std::string& bytes) {
    // A new file rather than a truncated one: ext4 flushes a file truncated and rewritten
    // (auto_da_alloc), which made the loops below wait on the disk.
    fs::remove(p);
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}

/// A zip archive at `p` with the given entries (name, bytes), stored.
void write_zip(const fs::path& p, const std::vector<std::pair<std::string, std::string>>& entries) {
    fs::remove(p); // (as in write_file)
    int err = 0;
    zip_t* za = zip_open(p.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
    REQUIRE(za != nullptr);
    for (const auto& [name, bytes] : entries) {
        zip_source_t* s = zip_source_buffer(za, bytes.data(), bytes.size(), 0);
        REQUIRE(s != nullptr);
        const zip_int64_t i = zip_file_add(za, name.c_str(), s, 0);
        REQUIRE(i >= 0);
        zip_set_file_compression(za, zip_uint64_t(i), ZIP_CM_STORE, 0);
    }
    REQUIRE(zip_close(za) == 0);
}

/// The message of the checkpoint_error that `f` throws ("" if it throws nothing).
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const tr::checkpoint_error& e) {
        return e.what();
    }
    return "";
}

std::string head(const fs::path& p) {
    return "mnemo: checkpoint '" + p.string() + "': ";
}

/// A memory's parameters under "layer1.", an embedding and a scalar, with an AdamW that has
/// taken three steps on made-up gradients.
struct double_model {
    memory_params mem;
    xt::xtensor<double, 2> embed = xt::zeros<double>({3, 5});
    xt::xtensor<double, 0> scale = xt::xtensor<double, 0>(0.0);
    tr::tensor_list<double> params;
    memory_params gmem;
    xt::xtensor<double, 2> gembed = xt::zeros<double>({3, 5});
    xt::xtensor<double, 0> gscale = xt::xtensor<double, 0>(0.0);
    tr::tensor_list<double> grads;
    std::unique_ptr<tr::adamw<double>> opt;

    explicit double_model(double seed, int steps = 3) {
        params.add(mem, "layer1.").add("embed", embed).add("scale", scale);
        grads.add(gmem, "layer1.").add("embed", gembed).add("scale", gscale);
        fill(params, seed);
        opt = std::make_unique<tr::adamw<double>>(params, tr::adamw_options{.lr = 0.01});
        for (int s = 0; s < steps; ++s)
            step(seed + 10 * s);
    }
    void step(double seed) {
        fill(grads, seed + 100);
        opt->step(grads);
    }
};

} // namespace

TEST_CASE("round trip, double: parameters, AdamW state and step, bit for bit; the next step is the "
          "same") {
    temp_dir dir;
    const fs::path file = dir.path / "ckpt.npz";
    double_model a(1.0);
    const snapshot<double> saved(a.params, a.opt.get());
    REQUIRE(a.opt->steps() == 3);
    REQUIRE(a.params.size() > 3);
    tr::save_checkpoint(file, a.params, a.opt.get());

    double_model b(2.0, 1);
    REQUIRE(!(snapshot<double>(b.params, b.opt.get()) == saved));
    tr::load_checkpoint(file, b.params, b.opt.get());
    CHECK(snapshot<double>(b.params, b.opt.get()) == saved);
    CHECK(b.opt->steps() == 3);

    // The step count and both moments are restored: the fourth step is the same.
    a.step(7.0);
    b.step(7.0);
    CHECK(snapshot<double>(b.params, b.opt.get()) == snapshot<double>(a.params, a.opt.get()));

    // Parameters alone.
    const fs::path only = dir.path / "params.npz";
    tr::save_checkpoint(only, a.params);
    double_model c(3.0, 0);
    tr::load_checkpoint(only, c.params);
    CHECK(bytes_of(c.params) == bytes_of(a.params));
}

TEST_CASE("round trip, float: parameters, SGD momentum and step, bit for bit; the next step is the "
          "same") {
    temp_dir dir;
    const fs::path file = dir.path / "f.npz";
    struct model {
        xt::xtensor<float, 2> w = xt::zeros<float>({4, 3});
        xt::xtensor<float, 1> b = xt::zeros<float>({3});
        xt::xtensor<float, 3> t = xt::zeros<float>({2, 2, 2});
        xt::xtensor<float, 2> gw = xt::zeros<float>({4, 3});
        xt::xtensor<float, 1> gb = xt::zeros<float>({3});
        xt::xtensor<float, 3> gt = xt::zeros<float>({2, 2, 2});
        tr::tensor_list<float> params, grads;
        std::unique_ptr<tr::sgd<float>> opt;
        model(double seed, int steps) {
            params.add("w", w).add("b", b).add("t", t);
            grads.add("w", gw).add("b", gb).add("t", gt);
            fill(params, seed);
            opt = std::make_unique<tr::sgd<float>>(params,
                                                   tr::sgd_options{.lr = 0.05, .momentum = 0.8});
            for (int s = 0; s < steps; ++s)
                step(seed + s);
        }
        void step(double seed) {
            fill(grads, seed + 50);
            opt->step(grads);
        }
    };
    model a(1.0, 2);
    tr::save_checkpoint(file, a.params, a.opt.get());
    model b(5.0, 0);
    tr::load_checkpoint(file, b.params, b.opt.get());
    CHECK(snapshot<float>(b.params, b.opt.get()) == snapshot<float>(a.params, a.opt.get()));
    CHECK(b.opt->steps() == 2);
    // SGD's first step differs from the others (b = g): a restored step count matters.
    a.step(9.0);
    b.step(9.0);
    CHECK(snapshot<float>(b.params, b.opt.get()) == snapshot<float>(a.params, a.opt.get()));
}

TEST_CASE("a file truncated at any offset, or with any byte damaged, throws and changes nothing") {
    temp_dir dir;
    const fs::path good = dir.path / "good.npz";
    const fs::path bad = dir.path / "bad.npz";
    double_model a(1.0);
    tr::save_checkpoint(good, a.params, a.opt.get());
    const std::string bytes = read_file(good);
    REQUIRE(bytes.size() > 1000);

    double_model b(2.0, 1);
    const snapshot<double> before(b.params, b.opt.get());
    // Every offset from 0 to size - 1 (the named ones of the brief among them: 0, 10, half, size -
    // 1).
    std::size_t failures = 0;
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        write_file(bad, bytes.substr(0, n));
        const std::string msg = error_of([&] { tr::load_checkpoint(bad, b.params, b.opt.get()); });
        if (msg.rfind(head(bad), 0) != 0 || msg.find('\n') != std::string::npos) {
            ++failures;
            MESSAGE("truncated at " << n << ": '" << msg << "'");
        }
        if (!(snapshot<double>(b.params, b.opt.get()) == before)) {
            ++failures;
            MESSAGE("truncated at " << n << ": the targets changed");
        }
    }
    CHECK(failures == 0);
    write_file(bad, "");
    CHECK(error_of([&] { tr::load_checkpoint(bad, b.params, b.opt.get()); }) ==
          head(bad) + "not a readable .npz (zip) archive: Not a zip archive");

    // One byte of the last entry's data flipped: libzip's CRC check.
    const std::size_t last = bytes.rfind("\x93NUMPY");
    REQUIRE(last != std::string::npos);
    const std::size_t data =
        last + 10 + std::uint8_t(bytes[last + 8]) + 256 * std::uint8_t(bytes[last + 9]);
    REQUIRE(data + 8 < bytes.size());
    std::string damaged = bytes;
    damaged[data + 3] ^= 0x10;
    write_file(bad, damaged);
    const std::string msg = error_of([&] { tr::load_checkpoint(bad, b.params, b.opt.get()); });
    CHECK(msg == head(bad) + "entry 'step.npy' cannot be read (the file is damaged): CRC error");
    CHECK(snapshot<double>(b.params, b.opt.get()) == before);

    // A damaged byte in the first entry's .npy header: the CRC check too (not a header message).
    const std::size_t first = bytes.find("\x93NUMPY");
    damaged = bytes;
    damaged[first + 20] ^= 0x01;
    write_file(bad, damaged);
    CHECK(error_of([&] { tr::load_checkpoint(bad, b.params, b.opt.get()); }) ==
          head(bad) + "entry 'layer1.M0[0].npy' cannot be read (the file is damaged): CRC error");

    // Every byte flipped in turn: the load either succeeds with the saved values (a field
    // that libzip does not check, such as a time stamp) or throws a one-line
    // checkpoint_error and changes nothing.
    std::size_t loaded = 0;
    failures = 0;
    const snapshot<double> saved(a.params, a.opt.get());
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        damaged = bytes;
        damaged[n] ^= 0x5a;
        write_file(bad, damaged);
        try {
            tr::load_checkpoint(bad, b.params, b.opt.get());
            ++loaded;
            if (!(snapshot<double>(b.params, b.opt.get()) == saved)) {
                ++failures;
                MESSAGE("byte " << n << " flipped: loaded other values");
            }
            restore(b.params, before.params);
            restore(b.opt->state(), before.state);
            b.opt->set_steps(before.steps);
        } catch (const tr::checkpoint_error& e) {
            const std::string m = e.what();
            if (m.rfind(head(bad), 0) != 0 || m.find('\n') != std::string::npos) {
                ++failures;
                MESSAGE("byte " << n << " flipped: '" << m << "'");
            }
            if (!(snapshot<double>(b.params, b.opt.get()) == before)) {
                ++failures;
                MESSAGE("byte " << n << " flipped: the targets changed");
            }
        }
    }
    CHECK(failures == 0);
    CHECK(loaded < bytes.size() / 10);
    MESSAGE(loaded << " of " << bytes.size()
                   << " one-byte changes load (fields libzip does not check)");

    // The same file undamaged loads.
    tr::load_checkpoint(good, b.params, b.opt.get());
    CHECK(snapshot<double>(b.params, b.opt.get()) == snapshot<double>(a.params, a.opt.get()));
}

TEST_CASE("garbage: no file, not a zip, entries that are not .npy arrays, fuzzed .npy headers") {
    temp_dir dir;
    xt::xtensor<double, 2> w = xt::zeros<double>({3, 5});
    tr::tensor_list<double> params;
    params.add("w", w);
    fill(params, 1.0);
    const auto before = bytes_of(params);
    auto load = [&](const fs::path& p) {
        return error_of([&] { tr::load_checkpoint(p, params); });
    };

    CHECK(load(dir.path / "none.npz") == head(dir.path / "none.npz") + "no such file");
    const fs::path text = dir.path / "text.npz";
    write_file(text,
               "this is not a zip archive, just some text that is long enough to look like one\n");
    CHECK(load(text) == head(text) + "not a readable .npz (zip) archive: Not a zip archive");

    const fs::path z = dir.path / "z.npz";
    write_zip(z, {{"w.npy", "not an array"}});
    CHECK(load(z) == head(z) + "entry 'w.npy' is not a valid .npy array: no .npy magic string");
    write_zip(z, {{"w.npy", "\x93NUM"}});
    CHECK(load(z) ==
          head(z) + "entry 'w.npy' is not a valid .npy array: it is shorter than a .npy header");

    // A real .npy header, with short data, long data, another version, a bad header length.
    xt::xtensor<double, 2> ref = xt::zeros<double>({3, 5});
    const std::string npy = xt::dump_npy(ref);
    write_zip(z, {{"w.npy", npy.substr(0, npy.size() - 8)}});
    CHECK(load(z) ==
          head(z) + "entry 'w.npy' holds 112 data bytes, expected 120 for shape (3, 5) of '<f8'");
    write_zip(z, {{"w.npy", npy + "12345678"}});
    CHECK(load(z) ==
          head(z) + "entry 'w.npy' holds 128 data bytes, expected 120 for shape (3, 5) of '<f8'");
    std::string v9 = npy;
    v9[6] = 9;
    write_zip(z, {{"w.npy", v9}});
    CHECK(load(z) ==
          head(z) + "entry 'w.npy' is not a valid .npy array: unsupported .npy version 9.0");
    std::string huge = npy;
    huge[8] = '\xff', huge[9] = '\xff';
    write_zip(z, {{"w.npy", huge}});
    CHECK(load(z) == head(z) + "entry 'w.npy' is not a valid .npy array: the header (65535 bytes) "
                               "is longer than the entry");
    std::string v2 = npy.substr(0, 8) + std::string("\x76\0\0\0", 4) +
                     npy.substr(10); // version 2: 4-byte length
    v2[6] = 2;
    write_zip(z, {{"w.npy", v2}});
    CHECK(load(z) == "");              // still a valid .npy: version 2 has a 4-byte header length
    CHECK(bytes_of(params) != before); // (it loaded: the zeros of ref)
    fill(params, 1.0);

    // Fortran order of a matrix is refused; of a vector it is the same layout.
    std::string fortran = npy;
    const std::size_t f = fortran.find("False");
    REQUIRE(f != std::string::npos);
    fortran.replace(f, 5, "True ");
    write_zip(z, {{"w.npy", fortran}});
    CHECK(load(z) == head(z) + "entry 'w.npy' is in Fortran order, expected C order");

    // Fuzzed headers: every byte of the header replaced by each of a few characters, and
    // random headers. Each load either succeeds (a harmless change) or throws
    // checkpoint_error with a one-line message; nothing else (no other exception, no crash).
    const std::string alphabet = "{}():,'\" 0123456789TFx<f8\n\x93\xff";
    std::size_t other = 0, loaded = 0;
    for (std::size_t pos = 0; pos < 128; ++pos)
        for (char c : alphabet) {
            std::string m = npy;
            m[pos] = c;
            write_zip(z, {{"w.npy", m}});
            try {
                tr::load_checkpoint(z, params);
                ++loaded;
            } catch (const tr::checkpoint_error& e) {
                if (std::string(e.what()).find('\n') != std::string::npos)
                    ++other;
            } catch (...) {
                ++other;
            }
        }
    std::uint64_t s = 12345;
    for (int round = 0; round < 400; ++round) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        std::string m = npy.substr(0, 10);
        const std::size_t len = (s >> 33) % 160;
        for (std::size_t k = 0; k < len; ++k) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            m += alphabet[(s >> 33) % alphabet.size()];
        }
        m[8] = char(len & 0xff), m[9] = char(len >> 8);
        write_zip(z, {{"w.npy", m + std::string(120, '\0')}});
        try {
            tr::load_checkpoint(z, params);
            ++loaded;
        } catch (const tr::checkpoint_error& e) {
            if (std::string(e.what()).find('\n') != std::string::npos)
                ++other;
        } catch (...) {
            ++other;
        }
    }
    CHECK(other == 0);
    MESSAGE(loaded << " of the fuzzed files loaded (harmless changes: spaces, padding)");
}

TEST_CASE("wrong shape, wrong dtype, a missing entry, an extra entry: named, nothing changed") {
    temp_dir dir;
    const fs::path file = dir.path / "c.npz";
    xt::xtensor<double, 2> a = xt::zeros<double>({3, 5}), b = xt::zeros<double>({5, 3}),
                           c = xt::zeros<double>({2, 2});
    xt::xtensor<double, 0> s = xt::xtensor<double, 0>(0.0);

    tr::tensor_list<double> ab, ba, abc, as;
    ab.add("a", a).add("b", b);
    ba.add("a", b).add("b", a); // the same names, the shapes swapped
    abc.add("a", a).add("b", b).add("c", c);
    as.add("a", a).add("b", s);
    fill(abc, 1.0);
    fill(as, 1.0);
    const auto before = bytes_of(abc);
    const auto before_s = bytes_of(as);

    tr::save_checkpoint(file, ab);
    CHECK(error_of([&] { tr::load_checkpoint(file, ba); }) ==
          head(file) + "entry 'a.npy' has shape (3, 5), expected (5, 3)");
    CHECK(error_of([&] { tr::load_checkpoint(file, as); }) ==
          head(file) + "entry 'b.npy' has shape (5, 3), expected ()");
    CHECK(bytes_of(as) == before_s); // 'a' is valid, but nothing is copied
    CHECK(error_of([&] { tr::load_checkpoint(file, abc); }) == head(file) + "no entry 'c.npy'");
    CHECK(bytes_of(abc) == before);

    tr::save_checkpoint(file, abc);
    fill(ab, 7.0);
    const auto before_ab = bytes_of(ab);
    CHECK(error_of([&] { tr::load_checkpoint(file, ab); }) ==
          head(file) + "unexpected entry 'c.npy'");
    CHECK(bytes_of(ab) == before_ab);

    // Saved as float, loaded as double.
    xt::xtensor<float, 2> fa = xt::zeros<float>({3, 5}), fb = xt::zeros<float>({5, 3});
    tr::tensor_list<float> fab;
    fab.add("a", fa).add("b", fb);
    fill(fab, 3.0);
    tr::save_checkpoint(file, fab);
    CHECK(error_of([&] { tr::load_checkpoint(file, ab); }) ==
          head(file) + "entry 'a.npy' has dtype '<f4', expected '<f8'");
    CHECK(bytes_of(ab) == before_ab);
    tr::load_checkpoint(file, fab); // as float it loads

    // A parameter named like the step entry cannot be saved with an optimizer.
    tr::tensor_list<double> st;
    st.add("step", s);
    tr::adamw<double> opt(st);
    CHECK(error_of([&] { tr::save_checkpoint(file, st, &opt); }) ==
          head(file) + "two entries named 'step.npy'");
    tr::load_checkpoint(file, fab); // the file is still the float one
}

TEST_CASE("optimizer mismatch: AdamW file into SGD, with an optimizer into none, none into one") {
    temp_dir dir;
    const fs::path with = dir.path / "with.npz";
    const fs::path without = dir.path / "without.npz";
    double_model a(1.0);
    tr::save_checkpoint(with, a.params, a.opt.get());
    tr::save_checkpoint(without, a.params);

    double_model b(2.0, 1);
    tr::sgd<double> sgd(b.params);
    sgd.set_steps(5);
    const snapshot<double> before(b.params, &sgd);
    CHECK(error_of([&] { tr::load_checkpoint(with, b.params, &sgd); }) ==
          head(with) + "no entry 'sgd.momentum.layer1.M0[0].npy' (the file has "
                       "'adamw.m.layer1.M0[0].npy', which is not expected)");
    CHECK(snapshot<double>(b.params, &sgd) == before);

    const snapshot<double> before_b(b.params, b.opt.get());
    CHECK(error_of([&] { tr::load_checkpoint(with, b.params); }) ==
          head(with) + "unexpected entry 'adamw.m.layer1.M0[0].npy' (the file holds an optimizer's "
                       "state: pass the optimizer)");
    CHECK(error_of([&] { tr::load_checkpoint(without, b.params, b.opt.get()); }) ==
          head(without) +
              "no entry 'adamw.m.layer1.M0[0].npy' (the file was saved without an optimizer)");
    CHECK(snapshot<double>(b.params, b.opt.get()) == before_b);
}

TEST_CASE(
    "atomic write: no temporary left, a save replaces the file, a failed save leaves the old one") {
    temp_dir dir;
    const fs::path file = dir.path / "ckpt.npz";
    double_model a(1.0);
    tr::save_checkpoint(file, a.params, a.opt.get());
    CHECK(dir.files() == std::set<std::string>{"ckpt.npz"});

    // Over an existing checkpoint: replaced.
    const std::string first = read_file(file);
    a.step(4.0);
    tr::save_checkpoint(file, a.params, a.opt.get());
    CHECK(dir.files() == std::set<std::string>{"ckpt.npz"});
    CHECK(read_file(file) != first);
    double_model b(2.0, 0);
    tr::load_checkpoint(file, b.params, b.opt.get());
    CHECK(snapshot<double>(b.params, b.opt.get()) == snapshot<double>(a.params, a.opt.get()));
    CHECK(b.opt->steps() == 4);

    // Into a directory that does not exist: throws, creates nothing.
    const fs::path nowhere = dir.path / "no" / "such" / "dir" / "ckpt.npz";
    CHECK(error_of([&] { tr::save_checkpoint(nowhere, a.params, a.opt.get()); }) ==
          head(nowhere) + "cannot create a temporary file in '" + nowhere.parent_path().string() +
              "': No such file or directory");
    CHECK(!fs::exists(dir.path / "no"));
    CHECK(dir.files() == std::set<std::string>{"ckpt.npz"});

    // A save that fails after its temporary was written (the destination is a directory, so
    // the rename fails): the temporary is removed.
    fs::create_directory(dir.path / "taken.npz");
    const std::string msg =
        error_of([&] { tr::save_checkpoint(dir.path / "taken.npz", a.params); });
    CHECK(msg.rfind(head(dir.path / "taken.npz") + "cannot rename '", 0) == 0);
    CHECK(msg.find("Is a directory") != std::string::npos);
    CHECK(dir.files() == std::set<std::string>{"ckpt.npz", "taken.npz"});
    CHECK(fs::is_empty(dir.path / "taken.npz"));

    // A save refused before writing leaves the old file as it was.
    const std::string current = read_file(file);
    tr::tensor_list<double> none;
    CHECK(error_of([&] { tr::save_checkpoint(file, none); }) ==
          head(file) + "nothing to save (no tensors and no optimizer)");
    CHECK(read_file(file) == current);

    // A file name in the current directory (no directory part) works too.
    const fs::path cwd = fs::current_path();
    fs::current_path(dir.path);
    tr::save_checkpoint("here.npz", a.params);
    fs::current_path(cwd);
    CHECK(dir.files() == std::set<std::string>{"ckpt.npz", "here.npz", "taken.npz"});
}

namespace {

/// "name<TAB>dtype<TAB>d0,d1<TAB>v0 v1 ..." per tensor, the values as C hex floats (exact).
template <class T>
void write_sidecar(std::ofstream& out, const tr::tensor_list<T>& list, const char* dtype) {
    for (const auto& v : list) {
        out << v.name << ".npy\t" << dtype << "\t";
        for (std::size_t i = 0; i < v.shape.size(); ++i)
            out << (i ? "," : "") << v.shape[i];
        out << "\t";
        char buf[64];
        for (std::size_t k = 0; k < v.size; ++k) {
            std::snprintf(buf, sizeof buf, "%a", double(v.data[k]));
            out << (k ? " " : "") << buf;
        }
        out << "\n";
    }
}

} // namespace

TEST_CASE("numpy sidecar: checkpoints and the values expected in them") {
    const char* env = std::getenv("MNEMO_CHECKPOINT_NUMPY_DIR");
    temp_dir scratch;
    const fs::path dir = env ? fs::path(env) : scratch.path;
    fs::create_directories(dir);

    double_model a(1.0);
    tr::save_checkpoint(dir / "double_adamw.npz", a.params, a.opt.get());
    {
        std::ofstream out(dir / "double_adamw.txt");
        write_sidecar(out, a.params, "<f8");
        write_sidecar(out, a.opt->state(), "<f8");
        out << "step.npy\t<i8\t\t" << a.opt->steps() << "\n";
    }
    xt::xtensor<float, 2> w = xt::zeros<float>({2, 3});
    xt::xtensor<float, 1> b = xt::zeros<float>({3});
    xt::xtensor<float, 0> s = xt::xtensor<float, 0>(0.0f);
    tr::tensor_list<float> fl;
    fl.add("w", w).add("b", b).add("s", s);
    fill(fl, 2.0);
    tr::save_checkpoint(dir / "float.npz", fl);
    {
        std::ofstream out(dir / "float.txt");
        write_sidecar(out, fl, "<f4");
    }
    // The C++ side reads back what it wrote.
    double_model c(5.0, 0);
    tr::load_checkpoint(dir / "double_adamw.npz", c.params, c.opt.get());
    CHECK(snapshot<double>(c.params, c.opt.get()) == snapshot<double>(a.params, a.opt.get()));
}

TEST_CASE(
    "numpy written: the checkpoint re-saved by numpy.savez and numpy.savez_compressed loads") {
    // tests/train/check_checkpoint_numpy.py re-saves double_adamw.npz with numpy and runs this.
    const char* env = std::getenv("MNEMO_CHECKPOINT_NUMPY_DIR");
    if (!env) {
        MESSAGE("run by the CTest test checkpoint_numpy (MNEMO_CHECKPOINT_NUMPY_DIR is not set)");
        return;
    }
    const fs::path dir(env);
    const double_model a(1.0);
    for (const char* name : {"from_numpy.npz", "from_numpy_compressed.npz"}) {
        INFO(name);
        double_model b(5.0, 1);
        REQUIRE(fs::exists(dir / name));
        tr::load_checkpoint(dir / name, b.params, b.opt.get());
        CHECK(snapshot<double>(b.params, b.opt.get()) == snapshot<double>(a.params, a.opt.get()));
        CHECK(b.opt->steps() == 3);
    }
}
