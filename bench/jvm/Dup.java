// SPDX-License-Identifier: MIT
/*
 * Dup.java - what a JVM pays for merging (BENCHMARKS.md, "JVMs"): MIB MiB
 * of byte arrays from one seed, checked by CRC32 and rewritten (a bit
 * flipped in a copy) for SECONDS seconds amid garbage of int arrays filled
 * alike, with a collection every 2,000 rounds; the rounds done are the
 * figure.  Under G1 with -Xmx1g the heap's bookkeeping is committed and
 * uncommitted 4 KiB at a time, hundreds of times a second.  Prints
 * "rounds N bad M"; exits 1 if a checksum was ever wrong.
 *
 * Usage: java -Xmx1g bench/jvm/Dup.java MIB SECONDS
 */
import java.util.*;
import java.util.zip.CRC32;
public class Dup {
    public static void main(String[] a) throws Exception {
        int mib = Integer.parseInt(a[0]);
        int secs = Integer.parseInt(a[1]);
        // 'image' data the same in every JVM: byte arrays of 64 KiB filled from a fixed seed
        List<byte[]> keep = new ArrayList<>();
        Random r = new Random(42);
        for (int i = 0; i < mib * 16; i++) {
            byte[] b = new byte[65536];
            r.nextBytes(b);
            keep.add(b);
        }
        long[] sums = new long[keep.size()];
        for (int i = 0; i < keep.size(); i++) { CRC32 c = new CRC32(); c.update(keep.get(i)); sums[i] = c.getValue(); }
        // churn: garbage + rewrites, checked
        long end = System.currentTimeMillis() + secs * 1000L;
        long rounds = 0, bad = 0;
        Random w = new Random();
        List<int[]> garbage = new ArrayList<>();
        while (System.currentTimeMillis() < end) {
            for (int k = 0; k < 64; k++) {
                int i = w.nextInt(keep.size());
                byte[] b = keep.get(i);
                CRC32 c = new CRC32(); c.update(b);
                if (c.getValue() != sums[i]) { bad++; System.out.println("BAD " + i); }
                if (w.nextInt(4) == 0) { // rewrite with a fresh copy (moves, GC)
                    byte[] n = b.clone(); n[w.nextInt(n.length)] ^= 1;
                    CRC32 d = new CRC32(); d.update(n); sums[i] = d.getValue(); keep.set(i, n);
                }
                int[] g = new int[1024 + w.nextInt(8192)]; Arrays.fill(g, 7); garbage.add(g);
                if (garbage.size() > 2000) garbage.clear();
            }
            rounds++;
            if (rounds % 2000 == 0) System.gc();
        }
        for (int i = 0; i < keep.size(); i++) { CRC32 c = new CRC32(); c.update(keep.get(i)); if (c.getValue() != sums[i]) { bad++; System.out.println("BAD-END " + i); } }
        System.out.println("rounds " + rounds + " bad " + bad);
        System.exit(bad == 0 ? 0 : 1);
    }
}
