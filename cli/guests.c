// SPDX-License-Identifier: MIT
/*
 * guests.c - VM monitors whose guest memory no KSM can merge.
 *
 * The kernel's KSM merges private memory only: vma_ksm_compatible()
 * refuses shared mappings (VM_SHARED, VM_MAYSHARE) and hugetlbfs
 * (VM_HUGETLB), and QEMU's madvise(MADV_MERGEABLE) on such guest RAM
 * succeeds and does nothing.  libsamepage refuses the same memory.  Guest
 * RAM is shared with a memory backend's share=on (libvirt's <access
 * mode='shared'/>, which vhost-user and virtiofs need), and hugetlbfs with
 * -mem-path on a hugetlbfs mount (libvirt's <hugepages/>): the VM is then
 * out of KSM's reach whatever the knobs say.  "Why does KSM save nothing
 * for my VMs?" has this answer more often than any knob.
 *
 * libsamepage merges anonymous memory only: guest RAM in a private file
 * mapping (-mem-path on tmpfs, a memory-backend-file with share=off),
 * whose written pages the kernel's KSM merges, is out of its reach too.
 *
 * The other way a VM stays out: its private guest RAM never marked
 * mergeable ("mg"), QEMU's -machine mem-merge=off (libvirt's
 * <nosharepages/>).
 *
 * Read from /proc/PID/smaps of every VM monitor this user can read: the
 * "VmFlags:" line of each area ("sh" shared, "ht" hugetlbfs, "mg" marked
 * mergeable) with its Rss, Anonymous and *_Hugetlb lines.
 */
#include "ksmctl.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tune.h"

/* A shared area this large in a VM monitor is guest RAM (or a device's
 * RAM), not a library or a ring: QEMU's smallest RAM block is 16 MiB of
 * VGA memory. */
#define GUEST_AREA_MIN_KB (16 * 1024)

/* QEMU (ksmtuned's match), Cloud Hypervisor (its 15-character comm),
 * Firecracker, crosvm. */
static bool vm_monitor(const char *comm)
{
	static const char *const others[] = {"cloud-hyperviso", "firecracker", "crosvm"};

	if (tune_is_qemu(comm))
		return true;
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
		if (!strcmp(comm, others[i]))
			return true;
	return false;
}

/* One of libsamepage's own files: a private engine's memfds
 * (memfd:samepage-pool, -index), samepaged's NAME.pool, NAME.index,
 * NAME.guard and NAME.PID.ledger.
 * Its mappings are the library's, not guest memory: the pool's view and
 * the index are shared, merged pages private mappings of the pool. */
static bool samepage_file(const char *path)
{
	static const char *const ends[] = {".pool", ".index", ".guard", ".ledger"};
	size_t n = strlen(path);

	if (strstr(path, "/memfd:samepage-"))
		return true;
	if (n > 10 && !strcmp(path + n - 10, " (deleted)"))
		n -= 10;
	for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++)
		if (n >= strlen(ends[i]) &&
		    !strncmp(path + n - strlen(ends[i]), ends[i], strlen(ends[i])))
			return true;
	return false;
}

/* One area's lines, summed into g at its "VmFlags:" line. */
struct area {
	bool open, private, file, ours;
	long long size_kb, rss_kb, anon_kb, huge_kb;
};

static void area_done(struct guest_memory *g, const struct area *a, const char *flags)
{
	if (a->ours)
		return;
	if (procfs_vmflag(flags, "mg"))
		g->marked_kb += a->anon_kb;
	if (procfs_vmflag(flags, "ht"))
		g->hugetlb_kb += a->huge_kb;
	else if (!a->private && a->size_kb >= GUEST_AREA_MIN_KB) /* "s" in maps: may share */
		g->shared_kb += a->rss_kb;
	else if (a->size_kb >= GUEST_AREA_MIN_KB) {
		g->private_kb += a->anon_kb;
		if (a->file)
			g->file_kb += a->anon_kb;
	}
}

static int read_smaps(const char *path, struct guest_memory *g)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	struct area a = {0};

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		struct procfs_map m;
		long long *v = NULL;
		const char *key = line;

		if (!strncmp(line, "VmFlags:", 8)) {
			if (a.open)
				area_done(g, &a, line + 8);
			a.open = false;
			continue;
		}
		if (!strncmp(key, "Size:", 5))
			v = &a.size_kb, key += 5;
		else if (!strncmp(key, "Rss:", 4))
			v = &a.rss_kb, key += 4;
		else if (!strncmp(key, "Anonymous:", 10))
			v = &a.anon_kb, key += 10;
		else if (!strncmp(key, "Shared_Hugetlb:", 15) ||
			 !strncmp(key, "Private_Hugetlb:", 16)) {
			a.huge_kb += strtoll(strchr(key, ':') + 1, NULL, 10);
			continue;
		}
		if (v) {
			*v = strtoll(key, NULL, 10);
		} else if (procfs_parse_map(line, &m) == 0) {
			a = (struct area){.open = true,
					  .private = m.perms[3] == 'p',
					  .file = m.path[0] == '/',
					  .ours = samepage_file(m.path)};
		}
	}
	free(line);
	fclose(f);
	return 0;
}

int guest_list_collect(const char *proc_root, struct guest_list *l)
{
	int *pids, n = procfs_pids(proc_root, &pids);

	memset(l, 0, sizeof(*l));
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		char path[PATH_MAX], comm[64];
		struct guest_memory g = {0};

		if (procfs_comm(procfs_path(path, sizeof(path), proc_root, pids[i], "comm"), comm,
				sizeof(comm)) ||
		    !vm_monitor(comm))
			continue;
		if (read_smaps(procfs_path(path, sizeof(path), proc_root, pids[i], "smaps"), &g))
			continue; /* another user's, or gone */
		ksm_process_init(&g.p, pids[i]);
		procfs_escape(comm, g.p.comm, sizeof(g.p.comm));
		ksm_process_read_cgroup(proc_root, &g.p);
		ksm_process_read_vm(proc_root, &g.p);
		if (l->n % 16 == 0) {
			struct guest_memory *ng = realloc(l->g, (size_t)(l->n + 16) * sizeof(*ng));
			if (!ng) {
				free(pids);
				guest_list_free(l);
				return -ENOMEM;
			}
			l->g = ng;
		}
		l->g[l->n++] = g;
	}
	free(pids);
	return 0;
}

long long guest_unmergeable_kb(const struct guest_memory *g, bool anon_only)
{
	long long kb = g->shared_kb + g->hugetlb_kb + (anon_only ? g->file_kb : 0);
	return kb >= GUEST_AREA_MIN_KB ? kb : 0;
}

long long guest_mergeable_kb(const struct guest_memory *g, bool anon_only)
{
	return g->private_kb - (anon_only ? g->file_kb : 0);
}

long long guest_opted_out_kb(const struct guest_memory *g)
{
	if (guest_unmergeable_kb(g, false) || g->marked_kb || g->private_kb < GUEST_AREA_MIN_KB)
		return 0;
	return g->private_kb;
}

void guest_list_free(struct guest_list *l)
{
	free(l->g);
	memset(l, 0, sizeof(*l));
}
