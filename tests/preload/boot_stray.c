/* Stray pointers into the preload's boot buffer (the static buffer that
 * serves the C library's allocations while the arena starts). argv[1] is
 * the case, SECALLOC_TEST_BOOT the buffer's offset in the library (from
 * nm): each case must abort with the preload's report, not be accepted. */
#define _GNU_SOURCE
#include <link.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uintptr_t lib_base;

static int find_lib(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    (void)data;
    if (strstr(info->dlpi_name, "libsecalloc_preload")) lib_base = info->dlpi_addr;
    return 0;
}

int main(int argc, char **argv) {
    const char *offset = getenv("SECALLOC_TEST_BOOT");
    if (argc < 2 || !offset) return 2;
    free(malloc(16)); /* the arena is started */
    dl_iterate_phdr(find_lib, NULL);
    if (!lib_base) return 3;
    char *boot = (char *)(lib_base + strtoul(offset, NULL, 16));
    char *stray = boot + 1008; /* 16-aligned, inside the buffer, no block there */
    if (!strcmp(argv[1], "free")) free(stray);
    if (!strcmp(argv[1], "realloc")) stray = realloc(stray, 64);
    if (!strcmp(argv[1], "usable_size")) printf("%zu\n", malloc_usable_size(stray));
    puts("survived");
    return 0;
}
