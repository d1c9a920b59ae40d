#include "memory.hpp"

namespace cr::memory {

img::VmaKind classify(const Mapping& m) {
    if (m.path == "[vdso]") return img::VmaKind::Vdso;
    if (m.path == "[vvar]") return img::VmaKind::Vvar;
    if (m.path == "[vvar_vclock]") return img::VmaKind::VvarVclock;
    if (m.path == "[vsyscall]") return img::VmaKind::Vsyscall;
    if (m.path == "[heap]") return img::VmaKind::Heap;
    if (m.path == "[stack]") return img::VmaKind::Stack;
    if (m.shared && (m.path.empty() || m.path.rfind("/dev/zero", 0) == 0))
        return img::VmaKind::SharedAnon;
    if (m.path.empty() || m.path.rfind("[anon:", 0) == 0) return img::VmaKind::Anon;
    return img::VmaKind::File;
}

bool is_special(img::VmaKind k) {
    return k == img::VmaKind::Vdso || k == img::VmaKind::Vvar || k == img::VmaKind::VvarVclock ||
           k == img::VmaKind::Vsyscall;
}

}  // namespace cr::memory

CR_DECLARE_HANDLER(cr::memory::MemoryHandler)
