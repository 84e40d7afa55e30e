/* A tiny test harness: each test is a void function; CHECK records a failed
   condition with its location and message, and the runner prints one line a
   test and closes with "N passed, N failed". */
#ifndef DFN_TEST_HARNESS_H
#define DFN_TEST_HARNESS_H

#include <stdio.h>

extern int dfn_test_failures;   /* failed CHECKs in the current test */

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            dfn_test_failures++;                                           \
            printf("    FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            printf(__VA_ARGS__);                                           \
            printf("\n");                                                  \
        }                                                                  \
    } while (0)

/* Every test of the suite: DFN_TEST_LIST(X), made by tests/tests.mk from the
   `void test_NAME(void)` functions of tests/test_*.c (build with -Ibuild). */
#include "test_list.h"

#define DFN_TEST_DECLARE(name) void test_##name(void);
DFN_TEST_LIST(DFN_TEST_DECLARE)

#endif
