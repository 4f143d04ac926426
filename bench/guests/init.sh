#!/bin/sh
# SPDX-License-Identifier: MIT
# /init of the real guests (busybox sh; kit.sh puts it in the initramfs).
# Mounts proc, sys and devtmpfs, prints SAMEPAGE-GUEST-READY on the serial
# console, then runs the workload named on the kernel command line:
#   samepage.work=idle   (default) nothing: sleeps until the host kills it
#   samepage.work=io     the I/O guest: see io() below; then powers off
#   samepage.work=mem    the memory guest: see mem() below (migrations)
#   samepage.work=churn  the churning guest: see churn() below (SMP writers)
#   samepage.mib=N       MiB of guest memory mem() and churn() fill and check
#                        (default 64)
#   samepage.seconds=N   how long the I/O and churn loops run (default 60)
#   samepage.blocks=N    MiB of /dev/vda it writes and re-reads (default 16)
#   samepage.corrupt=1   changes a byte on the disk behind the checksums
#                        (to test the check itself)
# Every line meant for the host starts with SAMEPAGE-.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp

arg() { # arg NAME DEFAULT: samepage.NAME=VALUE from the kernel command line
	v=$(tr ' ' '\n' </proc/cmdline | sed -n "s/^samepage\.$1=//p" | tail -n 1)
	echo "${v:-$2}"
}
now() { cut -d. -f1 /proc/uptime; }

echo "SAMEPAGE-GUEST-READY uptime=$(cut -d' ' -f1 /proc/uptime)"

# The I/O guest: writes BLOCKS blocks of 1 MiB to /dev/vda with O_DIRECT,
# then re-reads all of them twice (O_DIRECT, then through the page cache)
# and compares their md5 with the one taken before the write, round after
# round for SECONDS.  Even blocks
# are one page repeated (the host merges them, and the buffers they pass
# through, at once), odd blocks are random; both change every round, so a
# lost or misplaced write shows as a wrong checksum.
# The virtio modules of kit.sh (virtio-blk, virtio-balloon), in order.
modules() {
	while read -r m; do insmod /lib/modules/"$m" || echo "SAMEPAGE-$1-WARN insmod $m failed"; done \
		</lib/modules/order
}

io() {
	secs=$(arg seconds 60) blocks=$(arg blocks 16)
	modules IO
	i=0
	while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
	if [ ! -b /dev/vda ]; then
		echo "SAMEPAGE-IO-RESULT rounds=0 blocks=0 bad=0 ioerr=1 reason=no-/dev/vda"
		return
	fi
	have=$(($(cat /sys/block/vda/size) / 2048))
	if [ "$have" -lt "$blocks" ]; then
		echo "SAMEPAGE-IO-RESULT rounds=0 blocks=0 bad=0 ioerr=1 reason=disk-of-${have}MiB-for-${blocks}"
		return
	fi
	mkdir -p /tmp/sums
	# At least one round: now() is whole seconds, and a second may end
	# between the two reads of a one-second run.
	end=$(($(now) + secs)) round=0 bad=0 ioerr=0 total=0
	while [ $round = 0 ] || [ "$(now)" -lt $end ]; do
		round=$((round + 1)) rbad=0 rerr=0 b=0
		while [ $b -lt $blocks ]; do
			if [ $((b % 2)) = 0 ]; then
				yes "samepage round $round block $b" | head -c 4096 >/tmp/p1
				for n in 1 2 4 8 16 32 64 128; do cat /tmp/p$n /tmp/p$n >/tmp/p$((n * 2)); done
				mv /tmp/p256 /tmp/blk
			else
				head -c 1048576 /dev/urandom >/tmp/blk
			fi
			md5sum </tmp/blk >/tmp/sums/$b
			dd if=/tmp/blk of=/dev/vda bs=1M seek=$b count=1 oflag=direct conv=notrunc,fsync \
				status=none || rerr=$((rerr + 1))
			b=$((b + 1))
		done
		# samepage.corrupt=1 (the checker's own test): one byte of block 1
		# changes behind the checksum's back in round 1.
		if [ "$round" = 1 ] && [ "$(arg corrupt 0)" = 1 ] && [ "$blocks" -gt 1 ]; then
			printf X | dd of=/dev/vda bs=1 seek=$((1048576 + 100)) conv=notrunc,fsync status=none
		fi
		# Re-read: with O_DIRECT (into dd's buffer), then through the page
		# cache after dropping it, so the reads land in freshly freed guest
		# pages, which the host had merged meanwhile.
		for how in iflag=direct cached; do
			[ $how = cached ] && sync && echo 3 >/proc/sys/vm/drop_caches
			b=0
			while [ $b -lt $blocks ]; do
				rm -f /tmp/rd
				flag=$how
				[ $how = cached ] && flag=
				if dd if=/dev/vda of=/tmp/rd bs=1M skip=$b count=1 $flag status=none; then
					[ "$(md5sum </tmp/rd)" = "$(cat /tmp/sums/$b)" ] || {
						rbad=$((rbad + 1))
						echo "SAMEPAGE-IO-BAD round=$round block=$b read=$how"
					}
				else
					rerr=$((rerr + 1))
				fi
				b=$((b + 1))
			done
		done
		bad=$((bad + rbad)) ioerr=$((ioerr + rerr)) total=$((total + 2 * blocks))
		echo "SAMEPAGE-IO round=$round verified=$((2 * blocks)) bad=$rbad ioerr=$rerr uptime=$(now)"
	done
	echo "SAMEPAGE-IO-RESULT rounds=$round blocks=$total bad=$bad ioerr=$ioerr"
}

# The memory guest: fills MIB MiB of tmpfs (guest RAM) with blocks of
# 1 MiB, even ones a few pages repeated (the host merges them), odd ones
# random, takes their md5, then checks them every second for ever, one
# SAMEPAGE-MEM line a round: a page lost or misplaced by the host (a
# migration, a merge, a balloon) shows as bad > 0.
mem() {
	mib=$(arg mib 64) i=0
	modules MEM # a virtio-balloon device, when the host gives one
	mkdir -p /tmp/m
	while [ $i -lt "$mib" ]; do
		if [ $((i % 2)) = 0 ]; then
			yes "samepage mem $((i % 4))" | head -c 1048576 >/tmp/m/$i
		else
			head -c 1048576 /dev/urandom >/tmp/m/$i
		fi
		i=$((i + 1))
	done
	md5sum /tmp/m/* >/tmp/mem.sums
	round=0
	while :; do
		round=$((round + 1))
		bad=$(md5sum -c /tmp/mem.sums 2>/dev/null | grep -vc ': OK$')
		echo "SAMEPAGE-MEM round=$round blocks=$mib bad=$bad uptime=$(now)"
		sleep 1
	done
}

# The churning guest: one writer per CPU (-smp N: every vCPU writes guest
# RAM at once), each with its own MIB / N blocks of 1 MiB in /tmp, round
# after round for SECONDS: checks the blocks it wrote the round before
# (merged since, as like blocks are alike in every guest), then writes them
# all again (the guest frees and reuses its pages: the host sees writes to
# merged pages).  Even blocks are one line repeated, the same in every
# guest and every third round; odd blocks are random.
churn_writer() { # churn_writer ID BLOCKS END
	id=$1 n=$2 end=$3 round=0 bad=0
	while [ $round = 0 ] || [ "$(now)" -lt "$end" ]; do
		round=$((round + 1)) rbad=0 b=0
		[ $round = 1 ] || rbad=$(md5sum -c /tmp/c/$id.sums 2>/dev/null | grep -vc ': OK$')
		bad=$((bad + rbad))
		while [ $b -lt "$n" ]; do
			if [ $((b % 2)) = 0 ]; then
				yes "samepage churn $((round % 3)) block $b" | head -c 1048576 >/tmp/c/$id-$b
			else
				head -c 1048576 /dev/urandom >/tmp/c/$id-$b
			fi
			b=$((b + 1))
		done
		md5sum /tmp/c/$id-* >/tmp/c/$id.sums
		echo "SAMEPAGE-CHURN cpu=$id round=$round bad=$rbad uptime=$(now)"
	done
	# and once more after the last write
	rbad=$(md5sum -c /tmp/c/$id.sums 2>/dev/null | grep -vc ': OK$')
	echo "SAMEPAGE-CHURN-DONE cpu=$id rounds=$round bad=$((bad + rbad))"
}

churn() {
	secs=$(arg seconds 60) mib=$(arg mib 64) cpus=$(grep -c ^processor /proc/cpuinfo)
	mkdir -p /tmp/c
	end=$(($(now) + secs)) k=0
	while [ $k -lt "$cpus" ]; do
		churn_writer $k $((mib / cpus)) $end &
		k=$((k + 1))
	done
	wait
}

case $(arg work idle) in
mem)
	mem
	;;
churn)
	churn
	sync
	poweroff -f
	;;
io)
	io
	sync
	poweroff -f
	;;
*)
	while :; do sleep 3600; done
	;;
esac
