/* SPDX-License-Identifier: MIT */
/*
 * ksmctl.h - what ksmctl's verbs share: the global options, the verb entry
 * points and the helpers that read knobs through the back-end.
 */
#ifndef KSMCTL_H
#define KSMCTL_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

#include "samepage.h"
#include "backend.h"
#include "util.h"

/* Global options, set by main() before a verb runs. */
struct ksmctl_options {
	const struct ksm_backend *be;
	const char *sys_root;  /* --sysfs-root, "/sys" */
	const char *proc_root; /* --proc-root, "/proc" */
	const char *boot_root; /* --boot-root, "/boot" */
	bool live;	       /* the roots are this machine's, so probing it is meaningful */
	bool user;	       /* --user: samepaged, not the kernel */
	const char *socket;    /* --socket PATH, or NULL for samepage_socket_path() */
	const char *self;      /* how fixes name ksmctl: "ksmctl", "ksmctl --user" */
};
extern struct ksmctl_options opt;

/* A verb: argv[0] is the verb's name; returns the exit status. */
struct verb {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage; /* printed by --help: synopsis line(s), then options */
	const char *summary;
};

#define VERB(n)                                                                                    \
	int cmd_##n(int argc, char **argv);                                                        \
	extern const char usage_##n[]
VERB(check);
VERB(status);
VERB(set);
VERB(start);
VERB(stop);
VERB(unmerge);
VERB(apply);
VERB(install_service);
VERB(run);
VERB(top);
VERB(doctor);
VERB(wait);
VERB(info);
VERB(tune);
#undef VERB

/* Reads a knob as a number through opt.be: 0, -ENOENT (absent), -EINVAL.
 * advisor_mode reads 0 for none and 1 for scan-time. */
int knob_number(const char *name, long long *out);
/* Like knob_number, but absent or unreadable knobs give def. */
long long knob_or(const char *name, long long def);
/* The value of a mode read "[none] scan-time": copies "none" to buf. */
void knob_selected(const char *text, char *buf, size_t len);
/* True if the back-end has the knob or counter. */
bool knob_present(const char *name);
/* True when other users' processes cannot be seen: this machine's kernel
 * KSM, not root (their /proc/PID/ksm_stat is S_IRUSR). */
bool others_unseen(void);
/* Reports that the back-end is not there (available() gave err): its own
 * explanation if it has one, else "KSM is not available" with kernel_fix.
 * Returns the exit status: 3 when refused (-EACCES), else 1. */
int ksm_unavailable(int err, const char *kernel_fix);
/* Parses a verb whose only option is --json: 0 or an exit status. */
int verb_json_only(int argc, char **argv, const char *usage, bool *json);
/* Handles "--help"/"-h" for verbs that use getopt_long: prints usage
 * (status 0); else says which option getopt_long refused, with status. */
int verb_usage(const char *usage, int status);

/* What a person wants to know, derived from the counters (status.c).
 * Unknown values are NAN (or -1 for counts). */
struct ksm_derived {
	long long shared, sharing, unshared, volatile_pages, zero_pages, rmap_items;
	long long general_profit; /* -1 and has_profit false before 6.4 */
	bool has_profit;
	long long saved_bytes;	       /* (pages_sharing + ksm_zero_pages) * page size */
	double sharing_ratio;	       /* pages_sharing / pages_shared */
	double unshared_ratio;	       /* pages_unshared / pages_sharing: wasted effort */
	double volatile_fraction;      /* pages_volatile / rmap_items */
	long long unmerge_cost_bytes;  /* memory needed if every merged page were unmerged */
	long long mem_available_bytes; /* -1 unknown */
	double ksmd_cpu_seconds;       /* ksmd's CPU time so far */
	double ksmd_cpu_percent;       /* average over ksmd's life */
	double scan_rate;	       /* pages per second at most: pages_to_scan per sleep */
	long long scan_pages;	       /* what a full scan visits: rmap_items, and the pages
					* samepaged's clients keep out (pages_kept_*) */
	double full_scan_seconds;      /* scan_pages / scan_rate, or the advisor's target */
};
void ksm_derive(struct ksm_derived *d);

/* Processes with KSM activity (top.c), sorted by pid. */
struct proc_list {
	struct ksm_process *p;
	int n;
	bool accounted; /* the kernel has per-process KSM files at all */
};
int proc_list_collect(struct proc_list *l);
void proc_list_free(struct proc_list *l);
/* The systemd unit of a cgroup path (top.c): the innermost .service, .scope
 * or .slice component, else the last one. */
void cgroup_unit(const char *cgroup, char *buf, size_t len);
/* Bytes of this process in KSM pages: (ksm_merging_pages + ksm_zero_pages)
 * x page size, or smaps_rollup's "KSM:".  Each KSM page counts once per
 * mapping, the copy that is kept too: summed over processes this is
 * (pages_shared + pages_sharing + ksm_zero_pages) pages, not what is saved. */
long long process_merged_bytes(const struct ksm_process *p);

/* The VM monitors of PROC (guests.c): QEMU, Cloud Hypervisor, Firecracker,
 * crosvm; their guest memory by what KSM can do with it, in kB. */
struct guest_memory {
	struct ksm_process p; /* pid, comm, cgroup, vm: the rest unknown */
	long long shared_kb;  /* resident in shared areas of 16 MiB or more */
	long long hugetlb_kb; /* in hugetlbfs areas (*_Hugetlb) */
	long long private_kb; /* anonymous in private areas of 16 MiB or more */
	long long marked_kb;  /* anonymous in areas marked mergeable ("mg") */
	long long file_kb;    /* of private_kb, in private file mappings */
};
struct guest_list {
	struct guest_memory *g;
	int n;
};
int guest_list_collect(const char *proc_root, struct guest_list *l);
void guest_list_free(struct guest_list *l);
/* Its memory out of KSM's reach (shared + hugetlbfs; with anon_only, for
 * libsamepage, private file mappings' too), kB, or 0 when that is under
 * 16 MiB: not worth naming the VM for. */
long long guest_unmergeable_kb(const struct guest_memory *g, bool anon_only);
/* Its private memory in large areas that KSM can merge (anon_only: not in
 * file mappings), kB. */
long long guest_mergeable_kb(const struct guest_memory *g, bool anon_only);
/* Its private guest RAM when none of it is marked mergeable (QEMU's
 * -machine mem-merge=off), kB; 0 otherwise.  The kernel's marks only. */
long long guest_opted_out_kb(const struct guest_memory *g);

/* Host facts (host.c), from opt's roots. */
int host_release(char *buf, size_t len);	   /* "6.18.44-fc": 0 or -errno, buf kept */
long long host_meminfo_kb(const char *key);	   /* "MemAvailable" -> kB, or -1 */
int host_kconfig_ksm(char *src, size_t len);	   /* 1 y, 0 not set, -1 unknown; src: where */
int host_ksmd_cpu(double *cpu_s, double *alive_s); /* ksmd's CPU seconds and age: 0/-errno */
int host_prctl_merge(const char *release, const char **how); /* 1 yes, 0 no */
/* The version of systemd running as PROC/1 ("systemctl --version"), or 0 if
 * PID 1 is not systemd or the version is unknown. */
int host_systemd_version(void);
int host_numa_nodes(void);	     /* online NUMA nodes, 1 if unknown */
int host_thp(char *buf, size_t len); /* selected THP mode: 0/-errno */
long page_size(void);

#endif
