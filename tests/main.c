/* Test runner: runs every test of DFN_TEST_LIST and ends with the line
   "N passed, N failed". Arguments filter by name: "rng" runs the tests whose
   name contains "rng", "-exact" skips those whose name contains "exact". */
#include <stdio.h>
#include <string.h>
#include "harness.h"

int dfn_test_failures;

typedef struct { const char *name; void (*fn)(void); } test_entry;
#define DFN_TEST_ENTRY(name) { #name, test_##name },
static const test_entry tests[] = { DFN_TEST_LIST(DFN_TEST_ENTRY) };

static int selected(const char *name, int argc, char **argv)
{
    int a, any_include = 0, included = 0;
    for (a = 1; a < argc; a++) {
        if (argv[a][0] == '-') {
            if (strstr(name, argv[a] + 1)) return 0;
        } else {
            any_include = 1;
            included |= strstr(name, argv[a]) != NULL;
        }
    }
    return !any_include || included;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    size_t i;
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (!selected(tests[i].name, argc, argv)) continue;
        dfn_test_failures = 0;
        tests[i].fn();
        printf("%s %s\n", dfn_test_failures ? "FAIL" : "ok  ", tests[i].name);
        fflush(stdout);
        if (dfn_test_failures) failed++; else passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
