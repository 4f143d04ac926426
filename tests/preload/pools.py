# SPDX-License-Identifier: MIT
"""pools.py - a real program that forks the way Python does (test_preload's
"pools" case): threads writing into mergeable buffers, then multiprocessing
pools with each start method (fork; spawn; forkserver, itself a forked
server), workers that live long enough to merge their own memory and are
then terminated, and a subprocess.  Prints "done" if every result is right.

Under merge-any in a samepaged domain this hung 6 runs in 6 before the
fix of RELIABILITY.md finding 22: a worker's merge windows write-protected
its parent's pages, and the parent's next write there waited forever."""
import multiprocessing as mp
import subprocess
import threading
import time

MIB = 1 << 20


def work(x):
    b = bytearray(b"x" * MIB)
    c = [bytearray(b"y" * MIB) for _ in range(8)]  # merges in the worker
    time.sleep(0.3)
    c[0][5] = 1
    return sum(b[::4096]) + x


def main():
    bufs = [bytearray(b"A" * MIB) for _ in range(200)]

    def writer(i):
        for k in range(50):
            bufs[(i * 25 + k) % 200][k] = i

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        for k in range(50):
            assert bufs[(i * 25 + k) % 200][k] in range(8), "a thread's write was lost"
    for method in ("fork", "spawn", "forkserver"):
        with mp.get_context(method).Pool(4) as pool:
            got = pool.map(work, range(24))
        assert got == [ord("x") * 256 + x for x in range(24)], (method, got)
    out = subprocess.run(["/bin/echo", "ok"], capture_output=True, check=True).stdout
    assert out == b"ok\n", out
    print("done")


if __name__ == "__main__":
    main()
