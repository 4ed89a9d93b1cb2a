#include "runtime/dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include "kernels/kernel_list.hpp"
#include "runtime/cpu_features.hpp"

namespace pyce {

// Each kernel source registers itself into its ISA's table (kernels/*.cpp,
// listed in kernels/kernel_list.hpp).
#define PYCE_DECLARE_REGISTER(topic) void register_##topic##_kernels(KernelTable& table);
#define PYCE_CALL_REGISTER(topic) register_##topic##_kernels(table);
#define PYCE_DECLARE_ISA(isa)                                        \
    namespace isa {                                                  \
    PYCE_KERNEL_TOPICS(PYCE_DECLARE_REGISTER)                        \
    inline void register_all(KernelTable& table, const char* name) { \
        table.name = name;                                           \
        PYCE_KERNEL_TOPICS(PYCE_CALL_REGISTER)                       \
    }                                                                \
    }
PYCE_DECLARE_ISA(baseline)
#ifdef PYCE_HAVE_AVX2
PYCE_DECLARE_ISA(avx2)
#endif
#ifdef PYCE_HAVE_AVX512
PYCE_DECLARE_ISA(avx512)
#endif
#undef PYCE_DECLARE_ISA
#undef PYCE_CALL_REGISTER
#undef PYCE_DECLARE_REGISTER

namespace {

struct Tables {
    KernelTable baseline_table, avx2_table, avx512_table;
    bool has_avx2 = false, has_avx512 = false;

    Tables() {
        baseline::register_all(baseline_table, "baseline");
#ifdef PYCE_HAVE_AVX2
        if (cpu_features().avx2_fma) {
            avx2::register_all(avx2_table, "avx2");
            has_avx2 = true;
        }
#endif
#ifdef PYCE_HAVE_AVX512
        if (cpu_features().avx512) {
            avx512::register_all(avx512_table, "avx512");
            has_avx512 = true;
        }
#endif
    }

    const KernelTable* find(const std::string& name) const {
        if (name == "baseline") return &baseline_table;
        if (name == "avx2" && has_avx2) return &avx2_table;
        if (name == "avx512" && has_avx512) return &avx512_table;
        return nullptr;
    }
};

const Tables& tables() {
    static const Tables t;
    return t;
}

std::string env_capability() {
    const char* value = std::getenv("PYCE_CPU_CAPABILITY");
    return value ? std::string(value) : std::string();
}

std::string supported_list() {
    std::string out;
    for (const auto& name : supported_capabilities()) out += (out.empty() ? "" : ", ") + name;
    return out;
}

// The best table, unless PYCE_CPU_CAPABILITY asks for a (lower) one. An
// unknown or unsupported value is an error at import rather than a silent
// fallback: a CI job that forces an ISA must really run it.
const KernelTable* initial_table() {
    const std::string forced = forced_capability();
    if (!forced.empty()) {
        const KernelTable* t = tables().find(forced);
        if (!t)
            throw std::invalid_argument("PYCE_CPU_CAPABILITY=" + forced +
                                        " is not supported here; choose one of: " + supported_list());
        return t;
    }
    return tables().find(supported_capabilities().front());
}

std::atomic<const KernelTable*>& current() {
    static std::atomic<const KernelTable*> table{initial_table()};
    return table;
}

}  // namespace

const KernelTable& kernels() { return *current().load(std::memory_order_acquire); }

std::vector<std::string> supported_capabilities() {
    std::vector<std::string> names;
    if (tables().has_avx512) names.push_back("avx512");
    if (tables().has_avx2) names.push_back("avx2");
    names.push_back("baseline");
    return names;
}

void set_capability(const std::string& name) {
    const KernelTable* t = tables().find(name);
    if (!t)
        throw std::invalid_argument("CPU capability '" + name +
                                    "' is not supported here; choose one of: " + supported_list());
    current().store(t, std::memory_order_release);
}

std::string forced_capability() {
    // Read once: what was honoured at start-up, even if the variable changes later.
    static const std::string forced = env_capability();
    return forced;
}

}  // namespace pyce
