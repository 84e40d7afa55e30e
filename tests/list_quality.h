/* Tests of the image quality measure (bench/digits.h), in the order they
   run. Every name contains "digits", so `test_gcc digits` runs them all;
   the one that trains on the real digits also contains "quality", which
   keeps it out of the sanitizer, C++, static and valgrind builds. */
#define DFN_TESTS_QUALITY(X)                   \
    X(digits_classifier_gradient)              \
    X(digits_jacobi_eigen)                     \
    X(digits_frechet_closed_form)              \
    X(digits_classifier_quality_on_mnist)
