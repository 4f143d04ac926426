// SPDX-License-Identifier: MIT
/*
 * dup.js - what Node.js saves and pays under merging (BENCHMARKS.md,
 * "Language runtimes"): MIB MiB of 256 KiB Buffers holding 128 contents,
 * the same in every process, checked as it goes amid garbage (objects and
 * strings) for SECONDS seconds.  The Buffers' memory is malloc's (256 KiB
 * blocks, which glibc maps by themselves).  Prints "rounds N bad M";
 * exits 1 if a sum was ever wrong.
 *
 * Usage: node bench/runtimes/dup.js MIB SECONDS
 */
'use strict';
const mib = +process.argv[2] || 64, secs = +process.argv[3] || 20;
const SIZE = 262144, CONTENTS = 128;
function fill(b, k) {
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(((k * 2654435761) ^ i) >>> 0, i);
}
function sum(b) {
  let s = 0;
  for (let i = 0; i < b.length; i += 4) s = (s + b.readUInt32LE(i)) >>> 0;
  return s;
}
const want = [];
const scratch = Buffer.alloc(SIZE);
for (let k = 0; k < CONTENTS; k++) { fill(scratch, k); want.push(sum(scratch)); }
const bufs = [];
for (let k = 0; k < mib * 4; k++) {
  const b = Buffer.allocUnsafeSlow(SIZE);
  fill(b, k % CONTENTS);
  bufs.push(b);
}
const objs = [];
for (let i = 0; i < 300000; i++) objs.push({ a: i % 1000, s: 'v' + (i % 1000) });
const end = Date.now() + secs * 1000;
let rounds = 0, bad = 0;
while (Date.now() < end) {
  const k = (Math.random() * bufs.length) | 0;
  if (sum(bufs[k]) !== want[k % CONTENTS]) bad++;
  const g = [];
  for (let i = 0; i < 2000; i++) g.push({ x: i, y: 'g' + i });
  objs[(Math.random() * objs.length) | 0] = { a: rounds % 1000, s: 'v' + (rounds % 1000) };
  rounds++;
}
for (let k = 0; k < bufs.length; k++) if (sum(bufs[k]) !== want[k % CONTENTS]) bad++;
console.log(`rounds ${rounds} bad ${bad}`);
process.exit(bad ? 1 : 0);
