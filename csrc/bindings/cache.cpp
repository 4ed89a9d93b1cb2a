// pyce._core.empty / cache_info / empty_cache / set_cache_limit: NumPy arrays
// whose memory comes from the buffer cache (csrc/runtime/buffer_cache.hpp).

// Python 3.11's tracemalloc.h (included by Python.h) declares
// PyTraceMalloc_Track without extern "C", so C++ would look for a mangled
// name; including Python.h first inside extern "C" gives the C one.
extern "C" {
#include <Python.h>
}

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <limits>
#include <vector>

#include "bindings/register.hpp"
#include "runtime/buffer_cache.hpp"

namespace pyce {

namespace py = pybind11;

namespace {

// NumPy reports its data buffers to tracemalloc in this domain
// (numpy.lib.tracemalloc_domain); ours go there too, so that tracemalloc
// sees a cached array exactly as it sees one from np.empty.
constexpr unsigned int kNumpyTraceDomain = 389047;

void release_capsule(void* p) {
    Block* block = static_cast<Block*>(p);
    PyTraceMalloc_Untrack(kNumpyTraceDomain, reinterpret_cast<std::uintptr_t>(block->data));
    release_block(*block);
    delete block;
}

// An uninitialised C-contiguous array (like np.empty) whose buffer returns to
// the cache when the last array viewing it is gone: the capsule is the base
// of the array and of every view NumPy makes of it.
py::array cached_empty(const std::vector<py::ssize_t>& shape, const py::dtype& dtype) {
    std::size_t nbytes = std::size_t(dtype.itemsize());
    for (py::ssize_t n : shape) {
        if (n < 0) throw py::value_error("negative dimension in shape");
        if (n != 0 && nbytes > std::numeric_limits<std::size_t>::max() / std::size_t(n))
            throw py::value_error("array is too big");
        nbytes *= std::size_t(n);
    }
    Block* block = new Block(acquire_block(nbytes));
    PyTraceMalloc_Track(kNumpyTraceDomain, reinterpret_cast<std::uintptr_t>(block->data), nbytes);
    py::capsule owner(block, &release_capsule);
    return py::array(dtype, shape, block->data, owner);
}

}  // namespace

void register_cache(py::module_& m) {
    m.def(
        "empty", &cached_empty, py::arg("shape"), py::arg("dtype"),
        "An uninitialised C-contiguous array whose memory comes from, and returns to, pyce's buffer cache.");
    m.def(
        "cache_info",
        [] {
            const CacheStats s = cache_stats();
            py::dict d;
            d["limit_bytes"] = s.limit;
            d["cached_bytes"] = s.cached_bytes;
            d["cached_buffers"] = s.cached_blocks;
            d["hits"] = s.hits;
            d["misses"] = s.misses;
            return d;
        },
        "The buffer cache's limit, what it holds now, and its hit and miss counts.");
    m.def("empty_cache", &empty_cache, "Return every cached buffer to the operating system.");
    m.def(
        "set_cache_limit", [](std::size_t nbytes) { set_cache_limit(nbytes); }, py::arg("nbytes"),
        "Most bytes of freed buffers the cache keeps (0 disables it).");
}

}  // namespace pyce
