/* The whole suite as one translation unit with DFN_STATIC: every library
   function static. Also compiled as C++. */
#define DFN_STATIC
#define DIFFUSION_IMPLEMENTATION
#include "../diffusion.h"
#include "test_rng.c"
#include "test_schedule.c"
#include "test_forward.c"
#include "test_sampler.c"
#include "test_exact.c"
#include "test_errors.c"
#include "test_kernels.c"
#include "test_data.c"
#include "test_net.c"
#include "test_unet.c"
#include "test_images.c"
#include "test_control.c"
#include "test_quality.c"
#include "test_portable.c"
#include "test_cascade.c"
#include "test_compat.c"
#include "test_netif.c"
#include "main.c"
