/* Tests of the cascade's super-resolution stage (a U-Net with a conditioning
   image), in the order they run. */
#define DFN_TESTS_CASCADE(X)                         \
    X(cascade_sr_uses_its_conditioning)
