// SPDX-License-Identifier: MIT
/*
 * fuzz_replay.c - runs fuzz_protocol.c's target on files, without
 * libFuzzer: the seed corpus and every input a fuzzer once found
 * (tests/daemon/fuzz_corpus) are replayed by `make test`, under the
 * sanitizers in its second pass.
 *
 * Usage: fuzz_replay FILE-OR-DIRECTORY...
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
	static uint8_t buf[1 << 20];
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	return 0;
}

int main(int argc, char **argv)
{
	int inputs = 0, errors = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			struct dirent **names;
			int n = scandir(argv[i], &names, NULL, alphasort);
			for (int k = 0; k < n; k++) {
				char path[4096];
				if (names[k]->d_name[0] != '.') {
					snprintf(path, sizeof(path), "%s/%s", argv[i],
						 names[k]->d_name);
					errors += replay_file(path);
					inputs++;
				}
				free(names[k]);
			}
			free(names);
		} else {
			errors += replay_file(argv[i]);
			inputs++;
		}
	}
	printf("fuzz_replay: %d inputs replayed, %d unreadable\n", inputs, errors);
	return errors || !inputs;
}
