"""The extension exports its init function and no pyce:: symbol (issue 14, item 8; DESIGN §5).

An exported (or merely weak, default-visibility) pyce:: function can be
interposed: the dynamic linker may bind every call to one ISA's copy, and an
AVX-512 copy on a CPU without AVX-512 is a SIGILL. Read from the ELF dynamic
symbol table directly, so no binutils are needed.
"""

import struct
import sys

import pytest

from pyce import _core

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads an ELF shared object")

_SHT_DYNSYM = 11
_SHN_UNDEF = 0


def _defined_dynamic_symbols(path):
    """Names of the symbols an ELF64 little-endian shared object defines in .dynsym."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "expected ELF64 little-endian"
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = []
    for _, sh_type, _, _, offset, size, link, _, _, entsize in sections:
        if sh_type != _SHT_DYNSYM:
            continue
        strtab_offset = sections[link][4]
        for k in range(size // entsize):
            st_name, _, _, st_shndx, _, _ = struct.unpack_from("<IBBHQQ", data, offset + k * entsize)
            if st_shndx == _SHN_UNDEF:
                continue
            end = data.index(b"\0", strtab_offset + st_name)
            names.append(data[strtab_offset + st_name : end].decode())
    return names


def test_module_exports_no_pyce_symbol():
    names = _defined_dynamic_symbols(_core.__file__)
    assert "PyInit__core" in names
    # Itanium mangling: pyce::... is _ZN4pyce..., pyce::f() alone _ZN4pyce1fE...
    pyce_symbols = [n for n in names if "4pyce" in n]
    assert pyce_symbols == [], f"{len(pyce_symbols)} pyce:: symbols exported: {pyce_symbols[:10]}"
