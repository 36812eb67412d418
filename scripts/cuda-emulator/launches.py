#!/usr/bin/env python3
"""Rewrites a .cu file's kernel launches `kernel<...><<<grid, block, 0, stream>>>(args);` as
`::emu::launch(grid, block, [&] { kernel<...>(args); });` so that g++ compiles it against include/gpu/common.cuh.
Usage: launches.py IN.cu OUT.cpp (prints how many launches it rewrote; 0 is an error)."""
import re
import sys

source = open(sys.argv[1]).read()
launch = re.compile(r'([A-Za-z_][A-Za-z_0-9]*<[^<>;]*>)<<<(.+?), (\w+), 0, stream>>>\((.*?)\);', re.S)
out, count = launch.subn(lambda m: f'::emu::launch({m.group(2)}, {m.group(3)}, [&] {{ {m.group(1)}({m.group(4)}); }});',
                         source)
print(f"{sys.argv[1]}: {count} launches rewritten", file=sys.stderr)
if count == 0 or "<<<" in out:
    sys.exit("no launch rewritten, or one left")
open(sys.argv[2], "w").write(out)
