// SPDX-License-Identifier: MIT
/*
 * Heap.java - a JVM under merging (test_preload's jvm case), run as a
 * single-file source program: 96 arrays of 1 MiB, each all one byte value
 * (pages alike within and across JVMs, wherever the heap puts them), that
 * four threads check, rewrite with another value, copy (the copy replaces
 * the array: the GC moves and frees) and surround with garbage for SECONDS
 * seconds; then every byte is checked.  Prints "ok ROUNDS" and exits 0, or
 * "bad N" and exits 1.  Each thread owns the arrays i % 4 == its number.
 *
 * Usage: java Heap.java SECONDS
 */
import java.util.Arrays;
import java.util.Random;
import java.util.concurrent.atomic.AtomicLong;

public class Heap {
	public static void main(String[] args) throws Exception {
		final long end = System.nanoTime() + Long.parseLong(args[0]) * 1_000_000_000L;
		final int n = 96, threads = 4;
		final byte[][] arrays = new byte[n][];
		final byte[] want = new byte[n];
		for (int i = 0; i < n; i++) {
			arrays[i] = new byte[1 << 20];
			want[i] = (byte) (i % 5);
			Arrays.fill(arrays[i], want[i]);
		}
		final AtomicLong bad = new AtomicLong(), rounds = new AtomicLong();
		Thread[] t = new Thread[threads];
		for (int k = 0; k < threads; k++) {
			final int me = k;
			t[k] = new Thread(() -> {
				Random r = new Random(me);
				int[] garbage = null;
				while (System.nanoTime() < end) {
					int i = r.nextInt(n / threads) * threads + me;
					byte[] b = arrays[i];
					for (int j = 0; j < b.length; j += 512)
						if (b[j] != want[i]) {
							bad.incrementAndGet();
							break;
						}
					if (r.nextInt(8) == 0) {
						want[i] = (byte) r.nextInt(5);
						Arrays.fill(b, want[i]);
					}
					if (r.nextInt(16) == 0)
						arrays[i] = b.clone();
					garbage = new int[1024 + r.nextInt(8192)];
					Arrays.fill(garbage, 7); /* pages alike: they merge, then are reused */
					rounds.incrementAndGet();
				}
			});
			t[k].start();
		}
		for (Thread x : t)
			x.join();
		for (int i = 0; i < n; i++)
			for (byte v : arrays[i])
				if (v != want[i]) {
					bad.incrementAndGet();
					break;
				}
		System.out.println(bad.get() == 0 ? "ok " + rounds.get() : "bad " + bad.get());
		System.exit(bad.get() == 0 ? 0 : 1);
	}
}
