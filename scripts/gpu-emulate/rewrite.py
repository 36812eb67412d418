# Rewrites gpu/*.cu into host C++ for the emulation (emu.hpp): kernel launches <<<grid, block, smem, stream>>>(args)
# become emu::launch calls, dynamic shared memory one buffer, the PTX exponential (ex2.approx.ftz) exp2f with
# the flush to zero, cp.async a copy that completes at once, mma.sync emu::mma_tf32, the chunk numbering's warp-shuffle scan a host loop.
# Usage: rewrite.py REPO OUT FILE.cu...   (writes OUT/FILE.cpp, OUT/gpu/common.cuh and OUT/gpu/mma.cuh)
import os
import re
import sys

repo, out = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(out, "gpu"), exist_ok=True)
common = open(os.path.join(repo, "gpu", "common.cuh")).read()
ex2 = 'asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));'
assert ex2 in common, "common.cuh's ex2_ftz changed: update rewrite.py"
common = common.replace(ex2, "y = exp2f(x); if (y < 1.17549435e-38f) y = 0.f;")
# cp.async as a copy that completes at once (zero-filled where !ok); commit and wait become no-ops. A valid
# ordering of the real copies, so it checks the arithmetic and indices, not a missing wait.
for width in (4, 8, 16):
    asm = ('asm volatile("cp.async.%s.shared.global [%%0], [%%1], %d, %%2;\\n" ::"r"(s), "l"(gmem), "r"(ok ? %d : 0) : "memory");'
           % ("ca" if width < 16 else "cg", width, width))
    assert asm in common, "common.cuh's cp%d changed: update rewrite.py" % width
    common = common.replace(asm, "(void)s; if (ok) std::memcpy(smem, gmem, %d); else std::memset(smem, 0, %d);" % (width, width))
for asm in ('asm volatile("cp.async.commit_group;\\n" ::: "memory");', 'asm volatile("cp.async.wait_group %0;\\n" ::"n"(N) : "memory");'):
    assert asm in common, "common.cuh's cp.async commit / wait changed: update rewrite.py"
    common = common.replace(asm, "")
open(os.path.join(out, "gpu", "common.cuh"), "w").write(common)
# mma.sync as emu::mma_tf32 (a warp exchange, emu.hpp).
mma = open(os.path.join(repo, "gpu", "mma.cuh")).read()
mma_asm = re.compile(r'  asm\("mma\.sync\.aligned\.m16n8k8\.row\.col\.f32\.tf32\.tf32\.f32.*?\);\n', re.S)
assert len(mma_asm.findall(mma)) == 1, "mma.cuh's mma_tf32 changed: update rewrite.py"
mma = mma_asm.sub("  ::emu::mma_tf32(d, a, b0, b1);\n", mma)
open(os.path.join(out, "gpu", "mma.cuh"), "w").write(mma)


def launch(m):
    return "::emu::launch([&] { %s(%s); }, %s);" % (m.group(1), m.group(3), m.group(2))


for name in sys.argv[3:]:
    s = open(os.path.join(repo, "gpu", name)).read()
    s = re.sub(r"extern __shared__ (?:__align__\(\d+\) )?(\w+) (\w+)\[\];", r"\1* \2 = ::emu::dyn_smem<\1>();", s)
    s = re.sub(r"([A-Za-z_][\w:]*(?:<[^<>;]*>)?)<<<([^;]*?)>>>\(([^;]*?)\);", launch, s, flags=re.S)
    if name == "chunk_offsets.cu":
        scan = "::emu::launch([&] { chunk_offsets_kernel(in.cu_seqlens, in.N(), C, chunk_offsets); }, 1, kScanThreads, 0, stream);"
        assert scan in s, "prepare_chunk_offsets changed: update rewrite.py"
        s = s.replace(scan, "{ (void)stream; chunk_offsets[0] = 0; for (std::int64_t n = 0; n < in.N(); ++n) "
                      "chunk_offsets[n + 1] = chunk_offsets[n] + static_cast<std::int32_t>((in.cu_seqlens[n + 1] - "
                      "in.cu_seqlens[n] + C - 1) / C); }")
    open(os.path.join(out, name.replace(".cu", ".cpp")), "w").write('#include "emu.hpp"\n' + s)
