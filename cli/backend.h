/* SPDX-License-Identifier: MIT */
/*
 * backend.h - where ksmctl's verbs get and put KSM state.
 *
 * Every verb works on a struct ksm_backend and never on paths, so the same
 * verbs drive the kernel's KSM (backend-kernel.c: /sys/kernel/mm/ksm and
 * /proc) and samepaged's (backend-samepaged.c: its control socket, with
 * `ksmctl --user`).  A back-end speaks the kernel's names
 * and text formats of include/samepage.h's knob table: read("run") gives
 * "1", write("run", "2") unmerges.  The ops are deliberately few; verbs
 * derive everything else (ratios, savings, ordering rules) from them.
 */
#ifndef KSMCTL_BACKEND_H
#define KSMCTL_BACKEND_H

#include <stddef.h>

#include "procfs.h"

/* Why libsamepage keeps pages out of merging, from its one list (the
 * counter pages_kept_NAME is KEPT_NAME; KEPT_WHY[] has doctor's words). */
enum {
#define SAMEPAGE_KEPT(n, promises, why) KEPT_##n,
#include "../lib/kept.def"
	KEPT_REASONS
};

/* One process's KSM accounting.  -1 means "this kernel does not report it". */
struct ksm_process {
	int pid;
	/* Names as printable text (procfs_escape: any byte that is not printable
	 * UTF-8 is "\xHH"), safe in every output format. */
	char comm[PROCFS_ESCAPED_SIZE(16)];
	char cgroup[512]; /* cgroup v2 path ("/system.slice/x.service"), "" unknown */
	char vm[PROCFS_ESCAPED_SIZE(64)];     /* the VM it runs (QEMU's -name, libvirt's
					       * machine scope), "" if none */
	char domain[PROCFS_ESCAPED_SIZE(64)]; /* samepaged's domain, "" for the kernel */
	long long rmap_items;		      /* ksm_stat ksm_rmap_items (6.1+) */
	long long zero_pages;		      /* ksm_stat ksm_zero_pages (6.5+) */
	long long merging_pages;	      /* ksm_merging_pages (5.19+) */
	long long profit; /* ksm_stat ksm_process_profit, bytes (6.4+); LLONG_MIN unknown */
	int merge_any;	  /* ksm_stat ksm_merge_any: 1 yes, 0 no (6.15+) */
	int mergeable;	  /* ksm_stat ksm_mergeable: 1 yes, 0 no (6.15+) */
	long long ksm_kb; /* smaps_rollup "KSM:" (6.6+) */
	long long rss_kb; /* smaps_rollup "Rss:" */
	/* libsamepage's mapping budget (samepaged's clients; -1 unknown) */
	long long map_count, max_map_count, map_count_needed, skipped_map_budget;
	/* pages libsamepage keeps out of merging, by reason (samepaged's
	 * clients; -1 unknown): pages_kept_NAME, kept[KEPT_NAME] */
	long long kept[KEPT_REASONS];
	/* Full scans of this process's memory (samepaged's clients; -1 unknown,
	 * as for the kernel's): before the first, its profit is metadata only. */
	long long full_scans;
};

typedef int (*ksm_name_fn)(const char *name, void *arg);
typedef int (*ksm_process_fn)(const struct ksm_process *p, void *arg);

struct ksm_backend {
	const char *name;  /* "kernel", "samepaged" */
	const char *where; /* for messages: "/sys/kernel/mm/ksm", the socket */
	const char *who;   /* for messages: "the kernel", "samepaged" */

	/* 0 if KSM is there at all, else -ENOENT (or another -errno). */
	int (*available)(const struct ksm_backend *be);
	/* Calls fn for every knob and counter file this back-end has, in no
	 * particular order; stops and returns fn's value when it is non-zero. */
	int (*list)(const struct ksm_backend *be, ksm_name_fn fn, void *arg);
	/* The value as printed, without the newline: 0, -ENOENT (no such file
	 * on this kernel), -ERANGE (buf too small) or another -errno. */
	int (*read)(const struct ksm_backend *be, const char *name, char *buf, size_t len);
	/* Writes one value: 0 or the kernel's -errno (-EINVAL, -EBUSY, -EACCES). */
	int (*write)(const struct ksm_backend *be, const char *name, const char *value);
	/* Whether write() could be allowed, without writing: 0, -EACCES, -EROFS. */
	int (*writable)(const struct ksm_backend *be, const char *name);
	/* Calls fn for every process the back-end accounts for; stops on
	 * fn's non-zero value and returns it. */
	int (*for_each_process)(const struct ksm_backend *be, ksm_process_fn fn, void *arg);
	/* Optional: why available() gave err, in a person's words: the cause
	 * and the fix.  NULL: the verbs word it (the kernel's KSM). */
	void (*explain)(const struct ksm_backend *be, int err, char *cause, size_t clen, char *fix,
			size_t flen);

	const void *priv;
};

/* The kernel's KSM under sys_root (normally "/sys") and proc_root ("/proc"). */
const struct ksm_backend *backend_kernel(const char *sys_root, const char *proc_root);
/* samepaged behind socket_path; NULL: samepage_socket_path()'s default
 * ($SAMEPAGE_SOCKET, $XDG_RUNTIME_DIR/samepaged.sock, /run/samepaged.sock). */
const struct ksm_backend *backend_samepaged(const char *socket_path);

/* Shared by the back-ends (backend-kernel.c): a process with every value
 * unknown, and its cgroup from PROC/PID/cgroup when readable. */
void ksm_process_init(struct ksm_process *p, int pid);
void ksm_process_read_cgroup(const char *proc_root, struct ksm_process *p);
/* Its VM's name, after ksm_process_read_cgroup: QEMU's "-name guest=NAME"
 * (or "-name NAME") from PROC/PID/cmdline, else the NAME of a libvirt
 * machine scope "machine-qemu\x2dID\x2dNAME.scope" in its cgroup. */
void ksm_process_read_vm(const char *proc_root, struct ksm_process *p);

#endif
