#pragma once
/// \file
/// Checkpoints: the parameters of a `tensor_list`, and an optimizer's state and step count,
/// saved to and loaded from a NumPy `.npz` archive.
///
///     train::save_checkpoint("run/ckpt.npz", params, &opt);   // atomic: all or nothing
///     train::load_checkpoint("run/ckpt.npz", params, &opt);   // checked: all or nothing
///
/// The archive holds one `.npy` entry per tensor, named after it ("M0[0].npy",
/// "layer1.WK.npy"), one per optimizer state tensor ("adamw.m.layer1.WK.npy") and, with an
/// optimizer, "step.npy" (a 0-d int64: `opt->steps()`). `numpy.load(path)` reads it.
///
/// Design note (libzip): an `.npz` is a zip archive of `.npy` files, stored uncompressed by
/// `numpy.savez`. libzip is packaged by Debian (libzip-dev), maintained, checks CRCs and the
/// consistency of the central directory against the local headers (ZIP_CHECKCONS), writes
/// zip64 where an archive needs it, and writes the plain zip that Python's `zipfile` (what
/// `numpy.load` uses) reads. The `.npy` bytes come from xtensor's `xt::dump_npy`; the
/// `.npy` header is parsed here rather than by `xt::load_npy`, so that a damaged or foreign
/// file gives a message that names the entry and what is wrong, and cannot make the reader
/// read out of bounds or allocate a size read from the file.
///
/// Design note (atomic write): the archive is built in memory (a libzip buffer source
/// that `zip_close` writes into), then written here to a new file in the destination's
/// directory (".<name>.tmp-<pid>-<n>-<t>", created with O_EXCL, mode 0666 less the umask
/// like any new file), flushed with fsync, renamed over the destination, and the directory
/// is fsynced. `zip_close` writing to a path would rename its own temporary into place
/// without an fsync of the file or the directory, so a crash could leave a renamed but
/// empty file; writing the bytes ourselves keeps one temporary, one fsync and one rename,
/// all visible here. The cost is the archive held in memory once while it is written
/// (besides the `.npy` bytes): a checkpoint of the size of the parameters and state.
/// A crash at any point leaves either the old file or the new one at `path`, and at worst
/// a stray hidden temporary.
///
/// POSIX only (open, fsync, rename).

#include <zip.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <xtensor/xnpy.hpp> // only here: it brings <regex> and <fstream>

#include "mnemo/detail/xtensor.hpp"
#include "mnemo/train/optim.hpp"
#include "mnemo/train/tensors.hpp"

namespace mnemo::train {

static_assert(
    std::endian::native == std::endian::little,
    "mnemo: checkpoints are written and read as little-endian .npy data ('<f8', '<f4', '<i8').");

/// A checkpoint that cannot be saved or loaded. The message is one line,
/// "mnemo: checkpoint '<path>': <what>".
struct checkpoint_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

namespace detail::ckpt {

[[noreturn]] inline void fail(const std::filesystem::path& path, const std::string& what) {
    throw checkpoint_error("mnemo: checkpoint '" + path.string() + "': " + what);
}

inline std::string errno_string(int e) {
    return std::generic_category().message(e);
}

/// Text read from a file, made fit for a one-line message: other bytes than printable ASCII
/// as \xNN, at most 80 of them.
inline std::string printable(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size() && i < 80; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f) {
            out += char(c);
        } else {
            const char* hex = "0123456789abcdef";
            out += {'\\', 'x', hex[c >> 4], hex[c & 15]};
        }
    }
    if (s.size() > 80)
        out += "...";
    return out;
}

/// The .npy dtype of T: '<f8', '<f4', '<i8'.
template <class T>
constexpr const char* descr() {
    if constexpr (std::is_same_v<T, double>)
        return "<f8";
    else if constexpr (std::is_same_v<T, float>)
        return "<f4";
    else {
        static_assert(std::is_same_v<T, std::int64_t>,
                      "mnemo: a checkpoint holds double, float or int64 values.");
        return "<i8";
    }
}

/// One entry to read or write: its name in the archive and the tensor it comes from or goes to.
struct entry {
    std::string name; ///< "<tensor>.npy"
    void* data;
    std::vector<std::size_t> shape;
    std::size_t bytes; ///< of the data
    const char* descr;
};

/// The entries of a checkpoint, in order: the parameters, the optimizer's state, "step.npy".
template <class T>
std::vector<entry> entries(const std::filesystem::path& path, const tensor_list<T>& params,
                           const optimizer<T>* opt, std::int64_t* step) {
    std::vector<entry> out;
    auto add = [&](const tensor_list<T>& list) {
        for (const auto& v : list)
            out.push_back({v.name + ".npy", v.data, v.shape, v.size * sizeof(T), descr<T>()});
    };
    add(params);
    if (opt) {
        add(opt->state());
        out.push_back({"step.npy", step, {}, sizeof(std::int64_t), descr<std::int64_t>()});
    }
    for (std::size_t i = 0; i < out.size(); ++i)
        for (std::size_t j = 0; j < i; ++j)
            if (out[i].name == out[j].name)
                fail(path, "two entries named '" + out[i].name + "'");
    return out;
}

// ---- writing

template <class V>
std::string npy_bytes(const entry& e) {
    std::size_t n = e.bytes / sizeof(V);
    return xt::dump_npy(xt::adapt(static_cast<V*>(e.data), n, xt::no_ownership(), e.shape));
}

struct zip_source_deleter {
    void operator()(zip_source_t* s) const { zip_source_free(s); }
};
struct zip_deleter {
    void operator()(zip_t* z) const { zip_discard(z); }
};

/// The bytes of a zip archive of `files` (name, bytes), each stored uncompressed.
inline std::string zip_bytes(const std::filesystem::path& path,
                             const std::vector<std::pair<std::string, std::string>>& files) {
    zip_error_t ze;
    zip_error_init(&ze);
    auto libzip_fail = [&](const std::string& what, const char* msg) {
        std::string m = what + ": " + msg;
        zip_error_fini(&ze);
        fail(path, m);
    };
    zip_source_t* raw = zip_source_buffer_create(nullptr, 0, 0, &ze);
    if (!raw)
        libzip_fail("libzip cannot make a buffer", zip_error_strerror(&ze));
    std::unique_ptr<zip_source_t, zip_source_deleter> src(raw);
    std::unique_ptr<zip_t, zip_deleter> za(zip_open_from_source(src.get(), ZIP_TRUNCATE, &ze));
    if (!za)
        libzip_fail("libzip cannot open a buffer", zip_error_strerror(&ze));
    zip_source_keep(src.get()); // the archive holds one reference, src the other
    zip_error_fini(&ze);
    for (const auto& [name, bytes] : files) {
        zip_source_t* s = zip_source_buffer(za.get(), bytes.data(), bytes.size(), 0);
        if (!s)
            fail(path, "libzip: " + std::string(zip_strerror(za.get())));
        const zip_int64_t index = zip_file_add(za.get(), name.c_str(), s, ZIP_FL_ENC_UTF_8);
        if (index < 0) {
            zip_source_free(s);
            fail(path, "libzip cannot add '" + name + "': " + zip_strerror(za.get()));
        }
        if (zip_set_file_compression(za.get(), zip_uint64_t(index), ZIP_CM_STORE, 0) < 0)
            fail(path, "libzip: " + std::string(zip_strerror(za.get())));
    }
    if (zip_close(za.get()) < 0)
        fail(path, "libzip cannot write the archive: " + std::string(zip_strerror(za.get())));
    za.release(); // zip_close freed it
    auto source_fail = [&](const char* what) {
        fail(path, std::string("libzip cannot ") + what +
                       " the archive's buffer: " + zip_error_strerror(zip_source_error(src.get())));
    };
    if (zip_source_open(src.get()) < 0)
        source_fail("open");
    std::string out;
    if (zip_source_seek(src.get(), 0, SEEK_END) < 0)
        source_fail("seek in");
    const zip_int64_t size = zip_source_tell(src.get());
    if (size < 0 || zip_source_seek(src.get(), 0, SEEK_SET) < 0)
        source_fail("seek in");
    out.resize(std::size_t(size));
    std::size_t done = 0;
    while (done < out.size()) {
        const zip_int64_t n = zip_source_read(src.get(), out.data() + done, out.size() - done);
        if (n <= 0)
            source_fail("read");
        done += std::size_t(n);
    }
    zip_source_close(src.get());
    return out;
}

/// Writes `bytes` to `path` atomically: a new file in the same directory, fsync, rename over
/// `path`, fsync of the directory. On an error the temporary is removed and nothing at `path`
/// changes.
inline void write_atomically(const std::filesystem::path& path, std::string_view bytes) {
    const std::string base = path.filename().string();
    if (base.empty() || base == "." || base == "..")
        fail(path, "not a file name");
    const std::filesystem::path dir =
        path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    static std::atomic<unsigned long> counter{0};
    std::string tmp;
    int fd = -1;
    for (int attempt = 0; attempt < 64 && fd < 0; ++attempt) {
        const auto t = std::chrono::steady_clock::now().time_since_epoch().count();
        tmp = (dir / ("." + base + ".tmp-" + std::to_string(::getpid()) + "-" +
                      std::to_string(counter++) + "-" +
                      std::to_string(static_cast<unsigned long long>(t) % 1000000007ull)))
                  .string();
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0)
        fail(path,
             "cannot create a temporary file in '" + dir.string() + "': " + errno_string(errno));

    struct cleanup {
        int& fd;
        const std::string& tmp;
        bool armed = true;
        ~cleanup() {
            if (fd >= 0)
                ::close(fd);
            if (armed)
                ::unlink(tmp.c_str());
        }
    } guard{fd, tmp};
    auto sys_fail = [&](const std::string& what) { fail(path, what + ": " + errno_string(errno)); };

    std::size_t done = 0;
    while (done < bytes.size()) {
        const ::ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            sys_fail("writing '" + tmp + "' failed");
        done += std::size_t(n);
    }
    if (::fsync(fd) != 0)
        sys_fail("fsync of '" + tmp + "' failed");
    const int closed = ::close(fd);
    fd = -1;
    if (closed != 0)
        sys_fail("closing '" + tmp + "' failed");
    if (::rename(tmp.c_str(), path.c_str()) != 0)
        sys_fail("cannot rename '" + tmp + "' to it");
    guard.armed = false;
    // The rename is durable once the directory is synced. Some file systems cannot fsync a
    // directory (EINVAL): there the rename is as durable as they make it.
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        sys_fail("saved, but the directory '" + dir.string() + "' cannot be opened to sync it");
    const int synced = ::fsync(dfd);
    const int e = errno;
    ::close(dfd);
    if (synced != 0 && e != EINVAL && e != ENOTSUP) {
        errno = e;
        sys_fail("saved, but the fsync of the directory '" + dir.string() + "' failed");
    }
}

// ---- reading

/// A .npy header's dictionary: {'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }.
struct npy_header {
    std::string descr;
    bool fortran_order = false;
    std::vector<std::size_t> shape;
};

/// Parses the dictionary of a .npy header; returns an empty string or what is wrong with it.
/// Reads only inside `s`.
inline std::string parse_npy_dict(std::string_view s, npy_header& h) {
    std::size_t i = 0;
    auto ws = [&] {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
            ++i;
    };
    auto eat = [&](char c) {
        ws();
        if (i < s.size() && s[i] == c)
            return ++i, true;
        return false;
    };
    auto quoted = [&](std::string& out) {
        ws();
        if (i >= s.size() || (s[i] != '\'' && s[i] != '"'))
            return false;
        const char q = s[i++];
        const std::size_t j = s.find(q, i);
        if (j == std::string_view::npos)
            return false;
        out = std::string(s.substr(i, j - i));
        i = j + 1;
        return true;
    };
    auto word = [&](std::string_view w) {
        ws();
        if (s.substr(i, w.size()) != w)
            return false;
        i += w.size();
        return true;
    };
    auto integer = [&](std::size_t& v) {
        ws();
        const std::size_t start = i;
        v = 0;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
            const std::size_t d = std::size_t(s[i] - '0');
            if (v > (std::numeric_limits<std::size_t>::max() - d) / 10)
                return false;
            v = v * 10 + d;
            ++i;
        }
        return i > start;
    };
    if (!eat('{'))
        return "the header is not a dictionary";
    bool has_descr = false, has_order = false, has_shape = false;
    while (!eat('}')) {
        std::string key;
        if (!quoted(key) || !eat(':'))
            return "cannot parse the header's dictionary";
        if (key == "descr" && !has_descr) {
            if (!quoted(h.descr))
                return "the header's 'descr' is not a string";
            has_descr = true;
        } else if (key == "fortran_order" && !has_order) {
            if (word("True"))
                h.fortran_order = true;
            else if (word("False"))
                h.fortran_order = false;
            else
                return "the header's 'fortran_order' is neither True nor False";
            has_order = true;
        } else if (key == "shape" && !has_shape) {
            if (!eat('('))
                return "the header's 'shape' is not a tuple";
            while (!eat(')')) {
                std::size_t n = 0;
                if (!integer(n) || h.shape.size() >= 64)
                    return "the header's 'shape' is not a tuple of integers";
                h.shape.push_back(n);
                if (!eat(',')) {
                    if (!eat(')'))
                        return "the header's 'shape' is not a tuple of integers";
                    break;
                }
            }
            has_shape = true;
        } else {
            return "the header has an unexpected or repeated key '" + printable(key) + "'";
        }
        if (!eat(',')) {
            if (!eat('}'))
                return "cannot parse the header's dictionary";
            break;
        }
    }
    ws();
    if (i != s.size())
        return "the header has text after its dictionary";
    if (!has_descr || !has_order || !has_shape)
        return "the header lacks 'descr', 'fortran_order' or 'shape'";
    return {};
}

/// An open entry of an archive, closed at the end of the scope.
struct zip_file_closer {
    void operator()(zip_file_t* f) const { zip_fclose(f); }
};

/// Reads entry `index` (`e.name`) of `za` into `out` (e.bytes bytes), checking it against
/// `e`: a .npy array of dtype e.descr, shape e.shape, C order, no more and no less data.
///
/// Design note: the entry is read to its end (a bounded amount of it) even when its header
/// is wrong, because libzip checks the CRC only there: a damaged header is then reported
/// as damage ("CRC error"), and a header that is intact but not what is expected (another
/// dtype or shape) as such.
inline void read_entry(const std::filesystem::path& path, zip_t* za, zip_uint64_t index,
                       const entry& e, char* out) {
    const std::string head = "entry '" + e.name + "' ";
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(za, index, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
        fail(path, head + "cannot be read: " + zip_strerror(za));
    std::unique_ptr<zip_file_t, zip_file_closer> f(zip_fopen_index(za, index, 0));
    if (!f)
        fail(path, head + "cannot be read: " + zip_strerror(za));
    // Reads n bytes; false at the end of the entry.
    auto read = [&](char* dst, std::size_t n) {
        std::size_t done = 0;
        while (done < n) {
            const zip_int64_t r = zip_fread(f.get(), dst + done, n - done);
            if (r < 0)
                fail(path,
                     head + "cannot be read (the file is damaged): " + zip_file_strerror(f.get()));
            if (r == 0)
                return false;
            done += std::size_t(r);
        }
        return true;
    };
    constexpr std::uint64_t max_header = 1 << 16;
    const std::uint64_t size = st.size;
    // The first thing wrong with the entry ("" if nothing), its data read into `out` if nothing.
    auto check = [&]() -> std::string {
        const std::string bad = head + "is not a valid .npy array: ";
        char prefix[12];
        if (size < 10 || !read(prefix, 10))
            return bad + "it is shorter than a .npy header";
        if (std::memcmp(prefix, "\x93NUMPY", 6) != 0)
            return bad + "no .npy magic string";
        const int major = static_cast<unsigned char>(prefix[6]);
        const int minor = static_cast<unsigned char>(prefix[7]);
        if (major < 1 || major > 3 || minor != 0)
            return bad + "unsupported .npy version " + std::to_string(major) + "." +
                   std::to_string(minor);
        std::uint64_t header_len = std::uint8_t(prefix[8]) | std::uint64_t(std::uint8_t(prefix[9]))
                                                                 << 8;
        std::uint64_t prefix_len = 10;
        if (major >= 2) {
            if (size < 12 || !read(prefix + 10, 2))
                return bad + "it is shorter than a .npy header";
            header_len |= std::uint64_t(std::uint8_t(prefix[10])) << 16 |
                          std::uint64_t(std::uint8_t(prefix[11])) << 24;
            prefix_len = 12;
        }
        if (header_len > max_header)
            return bad + "a header of " + std::to_string(header_len) +
                   " bytes (at most 65536 expected)";
        if (header_len > size - prefix_len)
            return bad + "the header (" + std::to_string(header_len) +
                   " bytes) is longer than the entry";
        std::string text(std::size_t(header_len), '\0');
        if (!read(text.data(), text.size()))
            return bad + "it ends inside its header";
        npy_header h;
        if (const std::string err = parse_npy_dict(text, h); !err.empty())
            return bad + err;
        if (h.descr != e.descr)
            return head + "has dtype '" + printable(h.descr) + "', expected '" + e.descr + "'";
        if (h.shape != e.shape)
            return head + "has shape " + shape_string(h.shape) + ", expected " +
                   shape_string(e.shape);
        if (h.fortran_order && h.shape.size() > 1)
            return head + "is in Fortran order, expected C order";
        const std::uint64_t data_len = size - prefix_len - header_len;
        if (data_len != e.bytes)
            return head + "holds " + std::to_string(data_len) + " data bytes, expected " +
                   std::to_string(e.bytes) + " for shape " + shape_string(e.shape) + " of '" +
                   e.descr + "'";
        if (!read(out, e.bytes))
            return head + "is truncated";
        return {};
    };
    std::string problem = check();
    // To the end (libzip checks the CRC there), reading at most as much as a right entry has.
    std::uint64_t extra = 0;
    char buf[4096];
    for (std::uint64_t left = e.bytes + max_header + 13; left > 0;) {
        const std::size_t n = std::size_t(std::min<std::uint64_t>(left, sizeof buf));
        const zip_int64_t r = zip_fread(f.get(), buf, n);
        if (r < 0)
            fail(path,
                 head + "cannot be read (the file is damaged): " + zip_file_strerror(f.get()));
        if (r == 0)
            break;
        extra += std::uint64_t(r);
        left -= std::uint64_t(r);
    }
    if (problem.empty() && extra > 0)
        problem = head + "has more data than its size says";
    if (!problem.empty())
        fail(path, problem);
}

} // namespace detail::ckpt

/// Saves `params`, and with `opt` its state and step count, to the .npz file `path`
/// (entries "<name>.npy", the optimizer's "<kind>.<buffer>.<name>.npy", "step.npy").
/// Atomic: a temporary file in the same directory, fsync, rename over `path`, fsync of the
/// directory; on an error the temporary is removed, `path` is left as it was and
/// `checkpoint_error` is thrown.
template <class T>
void save_checkpoint(const std::filesystem::path& path, const tensor_list<T>& params,
                     const std::type_identity_t<optimizer<T>>* opt = nullptr) {
    namespace ck = detail::ckpt;
    std::int64_t step = opt ? std::int64_t(opt->steps()) : 0;
    const std::vector<ck::entry> entries = ck::entries(path, params, opt, &step);
    if (entries.empty())
        ck::fail(path, "nothing to save (no tensors and no optimizer)");
    std::vector<std::pair<std::string, std::string>> files;
    files.reserve(entries.size());
    for (const auto& e : entries)
        files.emplace_back(e.name,
                           e.data == &step ? ck::npy_bytes<std::int64_t>(e) : ck::npy_bytes<T>(e));
    ck::write_atomically(path, ck::zip_bytes(path, files));
}

/// Loads the .npz file `path` into `params` (and `opt`'s state and step count): the file
/// must hold exactly the entries that `save_checkpoint(path, params, opt)` writes, each with
/// T's dtype ('<f8' for double, '<f4' for float), the tensor's shape and C order. The whole
/// file is read and checked before anything is written: on any error `checkpoint_error` is
/// thrown and `params` and `opt` are unchanged.
template <class T>
void load_checkpoint(const std::filesystem::path& path, const tensor_list<T>& params,
                     std::type_identity_t<optimizer<T>>* opt = nullptr) {
    namespace ck = detail::ckpt;
    std::int64_t step = 0;
    const std::vector<ck::entry> entries = ck::entries(path, params, opt, &step);

    int code = 0;
    std::unique_ptr<zip_t, ck::zip_deleter> za(
        zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code));
    if (!za) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, code);
        const std::string msg = zip_error_strerror(&ze);
        zip_error_fini(&ze);
        if (code == ZIP_ER_NOENT)
            ck::fail(path, "no such file");
        ck::fail(path, "not a readable .npz (zip) archive: " + msg);
    }
    const zip_int64_t count = zip_get_num_entries(za.get(), 0);
    if (count < 0)
        ck::fail(path, "not a readable .npz (zip) archive: " + std::string(zip_strerror(za.get())));
    std::vector<std::string> names;
    for (zip_int64_t i = 0; i < count; ++i) {
        const char* name = zip_get_name(za.get(), zip_uint64_t(i), 0);
        if (!name)
            ck::fail(path,
                     "entry " + std::to_string(i) + " has no name: " + zip_strerror(za.get()));
        for (const auto& n : names)
            if (n == name)
                ck::fail(path, "two entries named '" + ck::printable(n) + "'");
        names.emplace_back(name);
    }
    auto index_of = [&](const std::string& name) {
        for (std::size_t i = 0; i < names.size(); ++i)
            if (names[i] == name)
                return i;
        return names.size();
    };
    auto expected = [&](const std::string& name) {
        for (const auto& e : entries)
            if (e.name == name)
                return true;
        return false;
    };
    const bool file_has_step = index_of("step.npy") < names.size();
    std::string first_extra;
    for (const auto& n : names)
        if (!expected(n)) {
            first_extra = n;
            break;
        }
    for (const auto& e : entries)
        if (index_of(e.name) == names.size()) {
            std::string why;
            if (opt && !file_has_step)
                why = " (the file was saved without an optimizer)";
            else if (!first_extra.empty())
                why = " (the file has '" + ck::printable(first_extra) + "', which is not expected)";
            ck::fail(path, "no entry '" + e.name + "'" + why);
        }
    if (!first_extra.empty())
        ck::fail(path, "unexpected entry '" + ck::printable(first_extra) + "'" +
                           (!opt && file_has_step
                                ? " (the file holds an optimizer's state: pass the optimizer)"
                                : ""));

    // Everything is read into temporaries and checked before anything is copied.
    std::vector<std::vector<char>> values(entries.size());
    for (std::size_t k = 0; k < entries.size(); ++k) {
        values[k].resize(entries[k].bytes);
        ck::read_entry(path, za.get(), zip_uint64_t(index_of(entries[k].name)), entries[k],
                       values[k].data());
    }
    if (opt) {
        std::memcpy(&step, values.back().data(), sizeof step);
        if (step < 0)
            ck::fail(path,
                     "entry 'step.npy' holds " + std::to_string(step) + ", expected a count >= 0");
    }
    for (std::size_t k = 0; k < entries.size(); ++k)
        if (entries[k].bytes > 0 && entries[k].data != &step)
            std::memcpy(entries[k].data, values[k].data(), entries[k].bytes);
    if (opt)
        opt->set_steps(std::size_t(step));
}

} // namespace mnemo::train
