#!/usr/bin/env bash
# CI step (issue 20, item 3): every per-ISA kernel object keeps what it
# compiles inside its ISA namespace. Fails when `nm` finds an external symbol
# of namespace pyce that is not in pyce::baseline / pyce::avx2 / pyce::avx512
# defined in more than one kernel object: such a symbol (an inline function
# in a header, a template instance) is compiled with each ISA's flags, and
# the linker keeps one copy for all -- an AVX-512 one on a CPU without it is
# a SIGILL.
#
# Self-contained: configures its own build directory (build/isa-symbols, or
# $PYCE_ISA_SYMBOLS_BUILD) and compiles only the kernel objects. Needs cmake,
# a C++ compiler, nm (binutils), python3 with pybind11 installed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${PYCE_ISA_SYMBOLS_BUILD:-$repo/build/isa-symbols}"
python="${PYTHON:-python3}"

generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$repo" -B "$build" "${generator[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=Release \
        -DPython_EXECUTABLE="$(command -v "$python")" \
        -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" >/dev/null
fi
# One object library per ISA (CMakeLists.txt's pyce_add_isa): pyce_kernels_<isa>.
targets=$(find "$build/CMakeFiles" -maxdepth 1 -type d -name 'pyce_kernels_*.dir' -exec basename {} .dir \; | sort)
[ -n "$targets" ] || { echo "isa_symbols: no pyce_kernels_* targets found" >&2; exit 1; }
# shellcheck disable=SC2086
cmake --build "$build" -j "${PYCE_BUILD_JOBS:-2}" --target $targets

objects=$(find "$build" -path '*pyce_kernels_*.dir*' \( -name '*.o' -o -name '*.obj' \) | sort)
[ -n "$objects" ] || { echo "isa_symbols: no kernel objects under $build" >&2; exit 1; }

# shellcheck disable=SC2086
for obj in $objects; do
    nm -C --defined-only --extern-only "$obj" | sed "s|^|$obj\t|"
done | "$python" -c '
import re, sys
from collections import defaultdict

isa = re.compile(r"pyce::(baseline|avx2|avx512)::")
where = defaultdict(set)
n_objects = set()
for line in sys.stdin:
    obj, _, rest = line.rstrip("\n").partition("\t")
    n_objects.add(obj)
    parts = rest.split(" ", 2)
    if len(parts) < 3:
        continue
    name = parts[2]
    for prefix in ("vtable for ", "typeinfo for ", "typeinfo name for ", "guard variable for ", "VTT for "):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if name.startswith("pyce::") and not isa.match(name):
        where[name].add(obj)
shared = {name: objs for name, objs in where.items() if len(objs) > 1}
print(f"isa_symbols: {len(n_objects)} kernel objects, {len(where)} non-ISA pyce:: symbols, "
      f"{len(shared)} defined in more than one object")
for name, objs in sorted(shared.items()):
    print(f"  {name}: {len(objs)} objects, e.g. {sorted(objs)[0]}")
sys.exit(1 if shared else 0)
'
