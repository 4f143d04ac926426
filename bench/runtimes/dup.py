# SPDX-License-Identifier: MIT
"""dup.py - what Python saves and pays under merging (BENCHMARKS.md,
"Language runtimes"): MIB MiB of 1 MiB bytearrays holding 16 contents, the
same in every process, checked by CRC32 as it goes amid garbage for
SECONDS seconds.  The arrays are malloc's: made from a 1 MiB bytes object
that is then freed, which raises glibc's mmap threshold above 1 MiB, so
that they sit in malloc's heap (GLIBC_TUNABLES=glibc.malloc.mmap_threshold
keeps it down).  Prints "rounds N bad M"; exits 1 if a CRC was ever wrong.

Usage: python3 bench/runtimes/dup.py MIB SECONDS
"""
import random
import sys
import time
import zlib

MIB, SECS = int(sys.argv[1]), float(sys.argv[2])
CONTENTS = 16


def content(k):
    return bytes([k]) * 4096 + bytes(range(256)) * (1020 * 4)


want = [zlib.crc32(content(k)) for k in range(CONTENTS)]
bufs = [bytearray(content(k % CONTENTS)) for k in range(MIB)]
end = time.time() + SECS
rounds = bad = 0
while time.time() < end:
    k = random.randrange(MIB)
    if zlib.crc32(bufs[k]) != want[k % CONTENTS]:
        bad += 1
    garbage = [bytes(200) for _ in range(200)]
    rounds += 1
bad += sum(zlib.crc32(bufs[k]) != want[k % CONTENTS] for k in range(MIB))
print("rounds %d bad %d" % (rounds, bad))
sys.exit(1 if bad else 0)
