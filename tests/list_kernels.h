/* Tests of the kernels area, in the order they run. */
#define DFN_TESTS_KERNELS(X)                 \
    X(kernels_variant_table)                 \
    X(kernels_checks_can_fail)               \
    X(kernels_gemm_parity)                   \
    X(kernels_gemm_large_and_blocked)        \
    X(kernels_gemm_special_cases)            \
    X(kernels_gemm_invariance)               \
    X(kernels_vec_parity)                    \
    X(kernels_bias_parity)                   \
    X(kernels_exp_accuracy)                  \
    X(kernels_sincos_accuracy)               \
    X(kernels_embedding_matches_formula)     \
    X(kernels_embedding_rows_alone)          \
    X(kernels_act_parity)                    \
    X(kernels_act_accuracy_double)           \
    X(kernels_act_large_inputs)              \
    X(kernels_elementwise_invariance)        \
    X(kernels_bias_act_fused)                \
    X(kernels_dispatch_matches_simd_name)    \
    X(kernels_adam_parity)                   \
    X(kernels_adam_formula_and_dispatch)
