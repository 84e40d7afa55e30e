/* Tests of the data area, in the order they run. Every name contains "data",
   so `test_gcc data` runs them all. */
#define DFN_TESTS_DATA(X)                      \
    X(data2d_moments)                          \
    X(data2d_determinism)                      \
    X(data2d_matches_reference)                \
    X(data2d_shapes)                           \
    X(data2d_names_and_errors)                 \
    X(data_points_formats)                     \
    X(data_points_errors)                      \
    X(data_points_bounds_and_count)            \
    X(data_points_match_strtof)                \
    X(data_points_load_file)                   \
    X(data_mmd_rbf_reference)                  \
    X(data_mmd_rbf_properties)                 \
    X(data_crc32)                              \
    X(data_byte_buffers)                       \
    X(data_file_roundtrip)
