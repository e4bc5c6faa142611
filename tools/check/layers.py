#!/usr/bin/env python3
"""The layers test: proves that the build's include folders make wrong-way includes fail.

Usage: layers.py SRC_ROOT BUILD_ROOT CC [CC_ARGS...] -- LAYER=dir:dir... [LAYER=...]

Each LAYER=dirs argument is a layer (or backend) as meson.build compiles it: the folders of its
include path, relative to the source root (and the same folders of the build root, where
generated headers live). For every layer this script compiles, with exactly those folders:
  - one of the layer's own headers, which must compile (so the probe itself works), and
  - one header of every layer it must not see (above it, or another backend), which must fail
    with "file not found".
It also fails on any `#include "../…"` in the sources: a relative path would walk around the
include folders. Exit 0 when every probe behaves; otherwise it lists each wrong one.
"""
import os
import re
import subprocess
import sys
import tempfile

# One header that stands for each layer: what a wrong-way include would name.
WITNESS = {
    'core': 'core.h',
    'io': 'safetensors_internal.h',
    'graph': 'graph.h',
    'memory': 'engram_store.h',
    'runtime': 'plan.h',
    'models': 'models.h',
    'cpu': 'cpu_kernels.h',
    'vulkan': 'vk_internal.h',
    'opencl': 'cl_common.h',
}
# What each layer may see (itself included); every other witness must fail to be found.
ALLOWED = {
    'core': {'core'},
    'io': {'core', 'io'},
    'graph': {'core', 'graph'},
    'memory': {'core', 'io', 'memory'},
    'runtime': {'core', 'io', 'graph', 'memory', 'runtime'},
    'models': {'models'},
    'cpu': {'cpu'},
    'vulkan': {'vulkan'},
    'opencl': {'opencl'},
}
SOURCE_DIRS = ['core', 'io', 'graph', 'memory', 'runtime', 'models', 'backends', 'include', 'tools',
               'examples', 'tests']


def compile_probe(cmd, flags, header):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'probe.c')
        with open(src, 'w') as f:
            f.write('#include "%s"\nint vn_probe_;\n' % header)
        r = subprocess.run(cmd + flags + ['-fsyntax-only', '-D_GNU_SOURCE', src],
                           capture_output=True, text=True)
        return r.returncode, r.stderr


def main():
    args = sys.argv[1:]
    sep = args.index('--')
    src_root, build_root, cmd = args[0], args[1], args[2:sep]
    layers = {}
    for spec in args[sep + 1:]:
        name, dirs = spec.split('=', 1)
        layers[name] = [d for d in dirs.split(':') if d]
    problems = []
    probes = 0
    for name, dirs in layers.items():
        flags = []
        for d in dirs:
            flags += ['-I' + os.path.join(build_root, d), '-I' + os.path.join(src_root, d)]
        for other, header in WITNESS.items():
            if other in ('cpu', 'vulkan', 'opencl') and other not in layers:
                continue  # a backend that this build leaves out
            rc, err = compile_probe(cmd, flags, header)
            probes += 1
            if other in ALLOWED[name]:
                if rc != 0:
                    problems.append('%s: its own or an allowed header "%s" did not compile:\n%s'
                                    % (name, header, err.strip()[:600]))
            elif rc == 0:
                problems.append('%s can include "%s" of %s: the include path goes the wrong way'
                                % (name, header, other))
            elif 'No such file' not in err and 'not found' not in err:
                problems.append('%s including "%s" failed for another reason than not finding '
                                'it:\n%s' % (name, header, err.strip()[:600]))
    relative = re.compile(r'^\s*#\s*include\s*"\.\./', re.M)
    for top in SOURCE_DIRS:
        for dirpath, _, files in os.walk(os.path.join(src_root, top)):
            for fn in files:
                if fn.endswith(('.c', '.h')):
                    path = os.path.join(dirpath, fn)
                    with open(path, encoding='utf-8', errors='replace') as f:
                        if relative.search(f.read()):
                            problems.append('%s: #include "../..." walks around the layer '
                                            'include folders' % os.path.relpath(path, src_root))
    for p in problems:
        print('layers: ' + p)
    print('layers: %d probes over %d layers, %d problem(s)' % (probes, len(layers), len(problems)))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
