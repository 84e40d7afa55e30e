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

/* Every test of the suite, in the order they run: the core list here, then
   one list per area, each in its own file. */
#include "list_kernels.h"
#include "list_data.h"
#include "list_net.h"
#include "list_unet.h"
#include "list_images.h"
#include "list_control.h"
#include "list_quality.h"
#include "list_platform.h"
#include "list_cascade.h"

#define DFN_TEST_LIST(X) DFN_TESTS_CORE(X) DFN_TESTS_KERNELS(X) DFN_TESTS_DATA(X) DFN_TESTS_NET(X) \
                          DFN_TESTS_UNET(X) DFN_TESTS_IMAGES(X) DFN_TESTS_CONTROL(X) \
                          DFN_TESTS_QUALITY(X) DFN_TESTS_PLATFORM(X) DFN_TESTS_CASCADE(X)

#define DFN_TESTS_CORE(X)                        \
    X(rng_pcg32_reference)                      \
    X(rng_normal_matches_box_muller)            \
    X(rng_normal_split_invariance)              \
    X(rng_normal_moments)                       \
    X(rng_uniform_and_below)                    \
    X(schedule_linear_formula)                  \
    X(schedule_cosine_formula)                  \
    X(schedule_sigmoid_formula)                 \
    X(schedule_custom_and_constant_negative)    \
    X(schedule_zero_terminal_snr)               \
    X(forward_closed_form_matches_chain)        \
    X(forward_posterior_is_gaussian_conditioning) \
    X(forward_prediction_conversions)           \
    X(ddim_timesteps_formula)                   \
    X(ddpm_step_is_algorithm_2)                 \
    X(ddim_eta1_equals_ddpm_small)              \
    X(sampler_determinism_and_single_steps)     \
    X(sampler_batch_invariance)                 \
    X(sampler_callbacks_labels_clipping)        \
    X(exact_predictor_gaussian_closed_form)     \
    X(exact_predictor_2d_eight_gaussians)       \
    X(exact_predictor_1d_two_components)        \
    X(exact_predictor_v_zero_terminal_snr)      \
    X(exact_predictor_check_can_fail)           \
    X(energy_distance_reference)                \
    X(errors_schedule)                          \
    X(errors_forward_and_samplers)              \
    X(errors_result_strings)

#define DFN_TEST_DECLARE(name) void test_##name(void);
DFN_TEST_LIST(DFN_TEST_DECLARE)

#endif
