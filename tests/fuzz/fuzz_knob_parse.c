// SPDX-License-Identifier: MIT
/*
 * fuzz_knob_parse.c - samepage_knob_parse() against the kernel's parsing.
 *
 * Input: NAME '\0' VALUE (no '\0': the whole input is the value of a knob
 * chosen by its first byte).  Every answer must be the oracle's (fuzz.h):
 * unknown names -ENOENT, counters -EACCES, and for tunables the same
 * acceptance, value and errno as Linux 6.18's store function.  An accepted
 * value printed back must parse to itself, within the table's range.
 */
#include "fuzz.h"

#include <errno.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[128], value[256];
	const uint8_t *nul = memchr(data, 0, size);
	if (nul && (size_t)(nul - data) < sizeof(name)) {
		size_t nl = (size_t)(nul - data), vl = size - nl - 1;
		memcpy(name, data, nl);
		name[nl] = 0;
		if (vl >= sizeof(value))
			vl = sizeof(value) - 1;
		memcpy(value, nul + 1, vl);
		value[vl] = 0;
	} else {
		if (size == 0)
			return 0;
		const struct samepage_knob *k = samepage_knob_at(data[0] % samepage_knob_count());
		snprintf(name, sizeof(name), "%s", k->name);
		size_t vl = size - 1 < sizeof(value) - 1 ? size - 1 : sizeof(value) - 1;
		memcpy(value, data + 1, vl);
		value[vl] = 0;
	}

	unsigned long long v = 0xdeadbeef, want = 0;
	int err = samepage_knob_parse(name, value, &v);
	const struct samepage_knob *k = samepage_knob_find(name);
	if (!k) {
		FUZZ_ASSERT(err == -ENOENT, "unknown name [%s]: %d", name, err);
		return 0;
	}
	if (k->kind != SAMEPAGE_KNOB_TUNABLE) {
		FUZZ_ASSERT(err == -EACCES, "counter %s: %d", name, err);
		return 0;
	}
	int expect = model_parse(k, value, &want);
	if (expect == 1)
		return 0; /* a known difference, left out of this run */
	FUZZ_ASSERT(err == expect, "%s = [%s]: the library says %d (%s), the kernel %d", name,
		    value, err, samepage_strerror(err), expect);
	if (err)
		return 0;
	FUZZ_ASSERT(v == want, "%s = [%s]: %llu, the kernel %llu", name, value, v, want);
	FUZZ_ASSERT(v >= k->min && v <= k->max, "%s = %llu outside %llu..%llu", name, v, k->min,
		    k->max);
	/* What the library prints reads back as itself. */
	char text[32];
	unsigned long long again = 0;
	if (k->format == SAMEPAGE_FMT_MODE)
		snprintf(text, sizeof(text), "%s", v ? "scan-time" : "none");
	else
		snprintf(text, sizeof(text), "%llu", v);
	FUZZ_ASSERT(samepage_knob_parse(name, text, &again) == 0 && again == v,
		    "%s: %s does not parse back", name, text);
	FUZZ_ASSERT(samepage_knob_parse(name, NULL, &again) == -EINVAL, "NULL value accepted");
	return 0;
}
