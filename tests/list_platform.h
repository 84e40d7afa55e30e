/* Tests of the platform area (portable math), in the order they run. */
#define DFN_TESTS_PLATFORM(X)                \
    X(portable_math_special_values)          \
    X(portable_math_accuracy_vs_libm)        \
    X(portable_math_checks_can_fail)
