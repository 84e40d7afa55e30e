/* Tests of the network and training area, in the order they run. */
#define DFN_TESTS_NET(X)                        \
    X(net_linear_layer_gradients)               \
    X(net_mlp_whole_gradients)                  \
    X(net_check_grad_detects_wrong_gradient)    \
    X(net_inference_matches_training_forward)   \
    X(net_loss_weights_match_formula)           \
    X(net_adam_ema_lr_match_reference)          \
    X(net_nan_and_bad_input)                    \
    X(net_training_is_deterministic)            \
    X(net_model_file_round_trip)                \
    X(net_model_file_rejects_bad_files)         \
    X(compat_070_mlp_file)                      \
    X(compat_070_unet_file)                     \
    X(netif_third_network_trains_saves_samples) \
    X(netif_rejects_bad_operations)             \
    X(netif_classifier_model_file)              \
    X(net_quality_8gaussians_and_moons)
