/* Tests of the image area, in the order they run. Every name contains
   "images", so `test_gcc images` runs them all. */
#define DFN_TESTS_IMAGES(X)                    \
    X(images_idx_info)                         \
    X(images_idx_info_errors)                  \
    X(images_idx_pixels_and_downsampling)      \
    X(images_idx_labels)                       \
    X(images_idx_load_files)                   \
    X(images_pixel_mapping)                    \
    X(images_shapes_match_reference)           \
    X(images_shapes_statistics_and_errors)     \
    X(images_grid_placement)                   \
    X(images_png_decodes)                      \
    X(images_png_errors)                       \
    X(images_pnm_bytes)                        \
    X(images_save_files)                       \
    X(images_mnist_files)
