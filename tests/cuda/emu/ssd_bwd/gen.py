# Host-emulation copy of kernels/cuda/ssd_fast_bwd.cu: launches → emu_launch, dynamic shared
# memory → the emulator's buffer. Usage: gen.py REPO_ROOT OUT.cpp
import re, sys
b = open(sys.argv[1] + '/kernels/cuda/ssd_fast_bwd.cu').read()
b = b.replace('extern __shared__ __align__(16) unsigned char sf_sm[];', 'unsigned char *sf_sm = emu_smem;')
b, n = re.subn(r'([A-Za-z_]\w*(?:<[^<>;]*>)?)<<<(.*?)>>>\(', r'emu_launch(\1, \2, ', b, flags=re.S)
b = b.replace('extern "C" ', '')
open(sys.argv[2], 'w').write(b)
print('launches rewritten:', n)
