/* Tests of guidance and inpainting (MATH.md section 8), in the order they run. */
#define DFN_TESTS_CONTROL(X)                         \
    X(control_cfg_exact_predictor_asked_component)   \
    X(control_cfg_w0_reproduces_mixture_weights)     \
    X(control_cfg_one_batched_call_equals_two)       \
    X(control_guide_hook_arguments_and_effect)       \
    X(control_classifier_gradients)                  \
    X(control_classifier_guidance_raises_share)      \
    X(control_halfspace_constraint)                  \
    X(control_inpaint_moments_correlated_gaussian)   \
    X(control_errors)                                \
    X(control_quality_conditional_mlp)
