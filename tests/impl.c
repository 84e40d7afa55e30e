/* The implementation's own translation unit; every test file includes the
   header for declarations only. */
#define DIFFUSION_IMPLEMENTATION
#include "../diffusion.h"
