/* Tests of the image layers and the U-Net, in the order they run. */
#ifdef DFN_PTHREADS     /* the ready pool: host builds with -DDFN_PTHREADS -pthread */
#define DFN__TEST_POOL(X) X(threads_pool_bit_identical)
#else
#define DFN__TEST_POOL(X)
#endif
#define DFN_TESTS_UNET(X)                       \
    X(unet_conv_matches_formula)                \
    X(unet_conv_gradients)                      \
    X(unet_groupnorm)                           \
    X(unet_pool_and_upsample)                   \
    X(unet_attention)                           \
    X(unet_whole_gradients)                     \
    X(unet_inference_matches_training)          \
    X(unet_bad_input)                          \
    X(unet_sizes_of_example_networks)          \
    X(unet_model_file)                          \
    X(threads_split_gemm_bit_identical)          \
    X(threads_split_layers_bit_identical)        \
    X(threads_split_conv_bit_identical)          \
    DFN__TEST_POOL(X)                            \
    X(threads_split_mlp_bit_identical)           \
    X(threads_split_normals_bit_identical)       \
    X(unet_quality_shapes)
