/* The whole suite as one translation unit with DFN_STATIC: every library
   function static. Also compiled as C++. The test files are the ones the
   generated test_list.h names (tests/tests.mk). */
#define DFN_STATIC
#define DIFFUSION_IMPLEMENTATION
#include "../diffusion.h"
#define DFN_TEST_UNITY
#include "test_list.h"
#include "main.c"
