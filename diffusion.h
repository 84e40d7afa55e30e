/* diffusion.h - v0.15.1 - denoising diffusion models in one C99 header.
   No dependencies beyond the C standard library and libm.
   Public domain or MIT, your choice: see the end of this file.

   Do this:
      #define DIFFUSION_IMPLEMENTATION
      #include "diffusion.h"
   in *one* C or C++ file to create the implementation. Everywhere else,
   #include "diffusion.h" alone gives the declarations.

   ===========================================================================
   MANUAL
   ===========================================================================

   1. Quick start
   --------------
   Sample 1000 points of a two-component 2D mixture with DDIM-50, driven by
   the mixture's exact noise predictor (MATH.md section 9). Swap in your own
   predictor callback (or, later, the library's networks) and nothing else
   changes.

      #define DIFFUSION_IMPLEMENTATION
      #include "diffusion.h"
      #include <stdio.h>

      int main(void)
      {
          static float x[1000 * 2];
          float weights[2] = {0.5f, 0.5f}, means[4] = {-2, 0, 2, 0}, stds[2] = {0.3f, 0.3f};
          dfn_gmm gmm;
          dfn_gmm_predictor exact;
          dfn_schedule sched;
          dfn_schedule_config sc = dfn_schedule_config_default(DFN_SCHEDULE_COSINE, 1000);
          dfn_sampler smp;
          dfn_sampler_config cfg;
          dfn_rng rng;
          dfn_result r;

          gmm.k = 2; gmm.dim = 2; gmm.weights = weights; gmm.means = means; gmm.stds = stds;
          if ((r = dfn_schedule_alloc(&sched, &sc, NULL)) != DFN_OK) return 1;
          exact.gmm = &gmm; exact.schedule = &sched;

          cfg = dfn_sampler_config_default(DFN_SAMPLER_DDIM, 1000, 2, dfn_gmm_predict, &exact);
          cfg.steps = 50;                               // eta = 0, trailing spacing
          if ((r = dfn_sampler_alloc(&smp, &cfg, &sched, NULL)) != DFN_OK) return 1;

          dfn_rng_seed(&rng, 42, 0);
          r = dfn_sampler_run(&smp, x, NULL, &rng);     // x_T ~ N(0, I) -> x_0
          if (r != DFN_OK) { printf("%s\n", dfn_result_string(r)); return 1; }
          printf("first sample: %f %f\n", x[0], x[1]);
          dfn_sampler_free(&smp, NULL);
          dfn_schedule_free(&sched, NULL);
          return 0;
      }

   2. Concepts (each with its section of MATH.md, shipped as docs/MATH.md)
   -------------------------------------------
   Data x_0 lives in R^D. The forward process (section 1) adds Gaussian noise
   in T steps with variances beta_1..beta_T; in closed form

       x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps,   eps ~ N(0, I)

   with alpha_t = 1 - beta_t and alphabar_t = prod_{s<=t} alpha_s. When
   alphabar_T is close to 0, x_T is close to N(0, I): that is why sampling can
   start from Gaussian noise. A schedule whose alphabar_T stays large (for
   example a constant tiny beta, section 2) never gets there.

     dfn_schedule         the tables of section 1-3, indexed by t = 0..T
                          (row 0 is the clean data: alphabar_0 = 1). No
                          t -> t-1 shift anywhere in the library.
     dfn_q_sample         x_t from x_0 and eps (section 1)
     dfn_q_posterior      mean and variance of q(x_{t-1} | x_t, x_0) (section 3)
     dfn_prediction_to_x0_eps, dfn_prediction_target
                          eps / v / x0 parameterizations (sections 4, 5)
     dfn_ddpm_step        x_{t-1} = mutilde_t(x0_hat, x_t) + sigma_t z (section 6)
     dfn_ddim_step        x_p = sqrt(alphabar_p) x0_hat
                                + sqrt(1 - alphabar_p - sigma^2) eps_hat + sigma z
                          (section 7)
     dfn_ddim_timesteps   the linspace / leading / trailing subsequences (section 7)
     dfn_sampler          the whole reverse loop around a predictor callback
     dfn_gmm_eps          the exact noise predictor of a Gaussian mixture (section 9)
     dfn_energy_distance  ED^2 between two point sets (section 10); also
                          dfn_energy_distance_unbiased and dfn_mmd_rbf

   Networks and training (section 5):

     dfn_mlp              the MLP noise network: sinusoidal features of t and
                          of each input coordinate, residual blocks, optional
                          class embedding; parameters in one flat block
     dfn_linear_forward/backward, dfn_sinusoidal_embedding
                          its layers, usable on their own (llm.c style:
                          outputs, cached values, inputs, weights, dims)
     dfn_trainer          one step = draw t and eps, x_t in closed form,
                          forward, loss against eps / v / x0, backward,
                          clipping, Adam(W) with bias correction, EMA
     dfn_check_grad       central finite differences against any gradient
     dfn_data2d_sample    the 2D toy data sets, standardized; dfn_points_parse
                          and dfn_points_load read your own points (CSV)
     dfn_model_save/load  versioned, checksummed little-endian model files
     dfn_model_save/load_safetensors  the same as safetensors, by the names
                          of the networks' PyTorch twins (section 9 below)
     dfn_qmlp             the MLP with its matrices stored as int8 (a float
                          scale per row) or fp16 (MATH.md section 13), read
                          directly by its forward pass: for microcontrollers
                          (examples/cortexm: a Cortex-M0 with 16 KB of RAM)
     dfn_schedule_respace a sampler's S visited steps as an S-step schedule
                          (MATH.md section 11): S + 1 table rows on a device

   Images are data too: a batch is float32 NHWC, (n, H, W, C) row-major,
   values in [-1, 1] (byte b <-> b/127.5 - 1); one image is D = H*W*C floats,
   for C = 3 interleaved RGB as PNG stores it. dfn_idx_load and
   dfn_idx_images_mem / dfn_idx_labels_mem read MNIST's IDX files (optionally
   2x2-averaged to 14x14; `make mnist-data` writes 10,000 real digits to
   data/mnist/), and colour ones of 4 dimensions (n, H, W, C) too
   (dfn_idx_images_mem_c; `make emoji-data` writes 1,906 32x32 RGB emoji
   in 9 categories to data/emoji/), dfn_shapes_sample draws small
   labelled shapes for fast tests (the same bits on every platform),
   dfn_image_grid tiles images into one, and dfn_png_save / dfn_pnm_save
   (or the in-memory encoders) write PNG (stored deflate, no dependency)
   and PGM / PPM files.

   Images get their own noise network (section 5, as the MLP):

     dfn_unet             a small conv U-Net (DDPM / ADM style): ResBlocks
                          with GroupNorm, SiLU and a per-channel projection
                          of the time (and class) embedding, average-pool
                          down, nearest-neighbour up, skip connections,
                          self-attention at chosen resolutions, optional
                          conditioning channels; trained by the same
                          dfn_trainer (dfn_trainer_alloc_unet), sampled by the
                          same samplers (dfn_unet_predict), saved in the same
                          model files (dfn_model_save_unet)
     dfn_conv2d_*, dfn_groupnorm_*, dfn_avgpool2_*, dfn_upsample2_*,
     dfn_attention_*      its layers, each with a hand-written backward pass;
                          a 3x3 convolution is im2col + the GEMM kernel,
                          or Winograd F(2x2, 3x3) where that measured
                          faster (16 products of transformed tiles)

   See examples/mnist.c: real digits in, PNG grids of samples out.

   Training in a few lines (error checks left out; see examples/demo.c):

       dfn_mlp_config mc = dfn_mlp_config_default(2);      // 2D data
       float *params = malloc(dfn_mlp_num_params(&mc) * sizeof(float));
       dfn_mlp_init(&model, &mc, params);
       dfn_mlp_init_weights(&model, &rng);
       dfn_train_config tc = dfn_train_config_default();   // batch 256, Adam 1e-3
       dfn_trainer_alloc(&tr, &model, &sched, &tc, NULL);
       for (step = 0; step < 6000; step++) {
           dfn_data2d_sample(DFN_DATA2D_MOONS, &rng, batch, tc.batch);
           dfn_train_step(&tr, batch, NULL, &rng, &loss);
       }
       // sample with the EMA weights:
       dfn_mlp_predictor p = { &tr.ema_model, work, work_bytes };
       dfn_sampler_config cfg = dfn_mlp_sampler_config(DFN_SAMPLER_DPMPP_2M, n, &p);
       cfg.steps = 20;                        // network evaluations
       cfg.spacing = DFN_SPACING_LOGSNR;      // steps even in log-SNR

   Few steps (MATH.md section 11). DDPM needs T evaluations; the solvers of
   the probability-flow ODE need far fewer: DFN_SAMPLER_DPMPP_2M with
   DFN_SPACING_LOGSNR at 20 evaluations has a third of DDIM-50-trailing's
   MMD^2 with the exact predictor of the 8 Gaussians (make samplers prints
   the whole table). Also: DPMPP_3M, the SDE variant DPMPP_2M_SDE, EULER
   and HEUN (2S - 1 evaluations), KARRAS spacing and your own timesteps.
   The multistep solvers keep the last x0 estimates in the sampler (its
   memory, laid out at init); every kind takes the guidance, the hook,
   clipping, callbacks, inpainting and RePaint resampling of the DDIM
   sampler (with ODE solvers plain replacement inpainting is biased, as it
   is for DDPM: use resampling).

   Flow matching (MATH.md section 12). Both processes are x_t = a_t x_0 +
   s_t eps: VP has a = sqrt(alphabar), s = sqrt(1 - alphabar); rectified
   flow has a = 1 - u, s = u (u = t/T, or SD3's shift). The schedule's
   tables hold a and s for both, so every conversion, sampler and the exact
   predictor serve both. To train flow matching, change three lines:

       sc = dfn_schedule_config_default(DFN_SCHEDULE_FLOW, 1000);
       mc.prediction = DFN_PREDICT_FLOW;          // the velocity eps - x_0
       tc.time_sampling = DFN_TIME_UNIFORM;       // or DFN_TIME_LOGIT_NORMAL

   and sample with DFN_SAMPLER_EULER (DDIM on flow), HEUN or MIDPOINT (they
   step in u there) on trailing (uniform) or DFN_SPACING_SHIFTED steps;
   DDIM, DPM-Solver++ and DDPM (the Gaussian chain with the flow's
   marginals) run too. LOGSNR and KARRAS spacings need a finite sigma_T and
   eps-prediction a_T > 0: flow refuses them. dfn_gmm_predict_as is the
   exact predictor of any parameterization; make flow trains both processes
   on the same network and prints quality per network evaluation.

   Guidance and inpainting (section 8). A network with num_classes > 0 is
   trained with its label dropped to -1 ("none") with probability p_uncond,
   so it is also the unconditional model. The sampler then takes:

     cfg.labels, cfg.guidance_scale
                          classifier-free guidance, eps = eps(null) +
                          w (eps(c) - eps(null)): w = 1 plain conditional
                          (no extra cost), w = 0 unconditional, w > 1
                          sharper; one predictor call of 2n rows per step
     cfg.guide            a hook that adjusts eps_hat at every step; a
                          score term g = grad log p(y | x_t) enters as
                          eps_hat -= s sqrt(1 - alphabar_t) g (sections 4,
                          9; dfn_guide_add_score). Shipped uses:
                          dfn_classifier_guide (a noise-aware classifier,
                          dfn_classifier, trained by
                          dfn_classifier_train_step) and
                          dfn_halfspace_guide (stay in a . x <= b)
     cfg.known, cfg.known_mask, cfg.resample_jump, cfg.resample_count
                          inpainting (RePaint): known entries replaced by
                          q_sample(known, t) after every step, exactly the
                          known values at t = 0; optional resampling jumps

   See examples/guided2d.c and examples/inpaint.c.

   A pitfall worth knowing: with eps-prediction, x0_hat = (x_t - sqrt(1 -
   alphabar_t) eps_hat) / sqrt(alphabar_t) amplifies the network's error by
   1/sqrt(alphabar_T) at the first step: 160x for the linear schedule, but
   20000x for the cosine one (alphabar_T = 2.4e-9), which makes a trained
   eps-network's DDIM samples explode. With the cosine schedule, train
   v-prediction or set clip_x0.

   The noise predictor is a callback:

       int predict(void *user, const float *x_t, const int *t,
                   const int *labels, int n, float *out);

   x_t is (n, D) row-major, t and labels hold one entry per sample (labels
   are -1 for "no class"), out receives (n, D) predictions of the kind named
   by dfn_sampler_config.prediction (eps, v or x0). Return 0 on success;
   anything else stops the sampler with DFN_ERR_CALLBACK.

   3. Memory model
   ---------------
   The caller owns all memory. Every object has a size query and an init
   function that carves its arrays out of one caller buffer:

       size_t bytes = dfn_sampler_size(&cfg, &sched);
       void  *mem   = my_alloc(bytes);
       dfn_sampler_init(&smp, &cfg, &sched, mem, bytes);

   The *_alloc / *_free wrappers do exactly this with DFN_MALLOC/DFN_FREE.
   Objects hold pointers into their buffer and into the objects they were
   initialized with (a sampler points at its schedule): keep those alive and
   in place. Nothing allocates inside a sampler step, a sampler run, a
   network forward or backward pass, a training step or any forward-process
   function.

   A network's parameters, gradients, Adam moments and EMA weights are four
   flat blocks of the same layout (dfn_mlp_layout gives each tensor's
   offset; the U-Net's layout is the order of its operations, each with
   its named weights), so zeroing, saving, loading and the optimizer are
   one loop each. A trainer lays out its memory once, at init: a step does
   no layout work. Inference
   (dfn_mlp_forward, dfn_unet_forward) needs only a *_forward_size(cfg,
   chunk) workspace and processes any batch in chunks of that size. The
   U-Net keeps every activation of a chunk (it is the training layout
   without gradients): about 2.7 MB per 28x28 image at base_channels 16,
   so size the chunk to the memory you have.

   Threads are optional and off by default: dfn_set_parallel installs a
   parallel-for (a function pointer and its context; DFN_PTHREADS adds a
   ready pool, dfn_pthreads_start), after which large GEMMs run as tasks on
   up to DFN_MAX_THREADS workers. The workers' scratch is caller memory
   too, and the results are the same bits for any number of threads.

   4. Configuration macros (define before the implementation include)
   ------------------------------------------------------------------
     DFN_STATIC          every function static (private copy per file)
     DFNDEF              the declaration prefix (default: extern)
     DFN_NO_SIMD         force the portable scalar kernels
     DFN_NO_MALLOC       no *_alloc and *_free wrappers; only caller memory
     DFN_NO_STDIO        no function that touches FILE * (file I/O)
     DFN_NO_TRAINING     inference only: no trainer, no backward passes,
                         no gradient checker
     DFN_SAMPLER_KINDS   the sampler kinds compiled in, bit k for kind k
                         (default 0xff: all); the step code of the others
                         is left out and dfn_sampler_init refuses them
                         (DFN_ERR_INVALID_ARG). For a small flash: e.g.
                         0x10, DPM-Solver++(2M) alone (1.6 KB less code
                         on Cortex-M4 at -Os)
     DFN_GEMM_MC, DFN_GEMM_KC, DFN_GEMM_NC
                         GEMM cache blocking (default 144, 256, 1024);
                         dfn_gemm_work_size() is about 4 KC (MC + NC) bytes
     DFN_POINTS_MAX_LINE longest line the points readers take (4096)
     DFN_PTHREADS        compile the ready POSIX-threads pool
                         (dfn_pthreads_start; link with -pthread)
     DFN_POOL_SPIN       pauses the pool's threads poll before sleeping
                         (4096: about 100 us on a Zen 4; 0: sleep at once)
     DFN_MAX_THREADS     most workers dfn_set_parallel accepts (64)
     DFN_ASSERT(x)       internal invariants only (default: assert)
     DFN_MALLOC(sz,ctx), DFN_FREE(p,ctx)
                         both or neither; ctx is the pointer given to the
                         *_alloc and *_free calls (default: malloc/free)
     DFN_MEMCPY, DFN_MEMSET
     DFN_SQRTF, DFN_EXPF, DFN_LOGF, DFN_SINF, DFN_COSF, DFN_TANHF  (float)
     DFN_SQRT, DFN_EXP, DFN_LOG, DFN_COS                          (double)
     DFN_PORTABLE_MATH   the library's own exp, log, sin, cos, tanh
                         (dfn_math_*) for every one of those macros you do
                         not define yourself (sqrt stays: IEEE rounds it
                         exactly); with DFN_NO_SIMD and -ffp-contract=off,
                         the same bits on every platform (section 5)

   5. Randomness and determinism
   -----------------------------
   Every stochastic function takes an explicit dfn_rng (PCG32, O'Neill 2014).
   Process-wide state, all of it: the parallel-for that dfn_set_parallel
   installs (its function, context, thread count and worker scratch;
   section 3), a flag saying that a parallel-for is running, and with
   DFN_PTHREADS the pool of dfn_pthreads_start / _stop. Install or remove
   the hook only while no other thread is in the library. Otherwise the
   library writes nothing outside the objects it is given, so threads may
   call it at once on different objects; objects that are only read (a
   schedule, a network's weights in inference, a loaded model) may be
   shared, and an object that changes (a trainer, a sampler, an rng, a
   workspace) belongs to one thread at a time. The hook runs one
   parallel-for at a time: a call that finds it running (another thread's)
   runs its tasks on its own thread, with the same bits, so concurrent
   callers are safe but only one of them is parallel. That claim is atomic
   where the compiler has a lock-free atomic int (gcc, clang on x86-64,
   AArch64, ARMv7, wasm); elsewhere, call a library with a hook installed
   from one thread at a time. dfn_rng_normal is computed with integer
   arithmetic only (a fixed-point Box-Muller transform; no logf, cosf or
   floating-point rounding choices involved), so for the same seed and
   stream the uniform and normal streams are the same bits on every
   platform with IEEE-754 floats: x86-64, AArch64, wasm32, Cortex-M. Normals
   lie within |z| <= 6.67 (u1 >= 2^-32).
   Normals come in Box-Muller pairs; the second of a pair is kept in the
   rng, so filling 3 then 5 values gives the same 8 values as filling 8.
   The same build with the same seeds gives the same samples, bit for bit.
   The schedule tables use the platform's double-precision libm (cos, exp,
   sqrt) and may differ in the last bit across platforms for the cosine and
   sigmoid schedules (not with DFN_PORTABLE_MATH, below). The 2D data sets are computed in fixed point and are
   the same bits everywhere. Build without -ffast-math.

   Kernels: the SIMD path is chosen at compile time from the compiler's
   target macros (AVX-512F, else AVX2 + FMA, else SSE2 on x86; NEON on ARM;
   SIMD128 on wasm; Helium (MVE) on Cortex-M55/M85; else portable scalar;
   DFN_NO_SIMD forces scalar) and named by dfn_simd_name(). Every variant is tested against a plain
   reference; variants differ from each other in the last bits (another
   summation order, FMA), so bit-identical results need the same build.
   Within one build, inference and sampling do not depend on the batch
   split: one batch of B gives the same bits as B batches of 1 (weight
   gradients, which sum over the batch, naturally do).

   Bit-identical across platforms: DFN_PORTABLE_MATH. Define it with
   DFN_NO_SIMD, compile without FMA contraction (gcc: -std=c99 does not
   contract, -std=gnu* does: add -ffp-contract=off; clang contracts by
   default, so the implementation turns it off with #pragma STDC
   FP_CONTRACT OFF, which then holds to the end of that translation unit)
   and without -ffast-math, on a target with IEEE-754 float and double
   evaluated at their own precision (FLT_EVAL_METHOD 0: not x87). Then
   schedules, embeddings, the optimizer, training and sampling run one
   fixed sequence of IEEE operations (own exp/log/sin/cos/tanh in double,
   the scalar kernels' fixed reduction order, integer-exact normals), and
   the same model, data and seed give the same bits on x86-64, AArch64,
   ARMv7, wasm32 and Cortex-M4F/M55: `make test-portable` trains the
   default 2D MLP, samples with DDPM and DDIM and compares a CRC-32 of
   weights and samples across all of them; `make test-cortexm` compares a
   firmware's samples with the host's. With SIMD on, results are
   reproducible per build but not across variants: GEMM, dot, sum_sq, axpy
   and the activations round differently (FMA, lane count, partial sums),
   so x86-64 AVX2 and AArch64 NEON agree only to a few ulp per operation.
   What stays identical with SIMD on: dfn_rng, the 2D data sets, bias_add,
   bias_grad, ReLU, vec_scale, the optimizer step (dfn_adam_update: given
   the same gradients, the same new weights), and (in portable-math mode)
   the schedule tables and time embeddings, which do not use the kernels.

   6. Errors
   ---------
   Functions that can fail return a dfn_result: DFN_OK (0) or a negative
   code, named by dfn_result_string(). Arguments are validated before any
   work: NULL pointers, T < 1, betas outside (0, 1), NaN, timesteps outside
   1..T, steps outside 1..T, a buffer smaller than the size query asked for.
   A training step whose loss or gradient is not finite returns
   DFN_ERR_NOT_FINITE and leaves the weights unchanged. A truncated,
   corrupt, newer or mismatched model file gives DFN_ERR_FORMAT,
   DFN_ERR_CHECKSUM, DFN_ERR_VERSION or DFN_ERR_MISMATCH.
   Files from strangers: a valid file can still ask for much more memory
   than it holds (T = 2^24 schedule steps in a 152-byte model file). The
   loaders that allocate (dfn_model_load*, dfn_idx_load) check every file
   against a dfn_limits before allocating: largest T (default 100,000),
   parameters (2^26), image height and width (1,024 pixels) and bytes held
   at once, the file included (1 GiB); over a limit is DFN_ERR_LIMIT. The
   _ex loaders take other limits, tighter or looser. The points readers
   allocate nothing (lines of at most DFN_POINTS_MAX_LINE - 1 bytes before
   the newline, rows of the caller's buffer), and dfn_model_info_mem only
   describes (check its info with dfn_model_check_limits before sizing
   memory from it). The layers and kernels (dfn_gemm, dfn_linear_*,
   dfn_act_*) trust their dimensions: they are the hot path; the objects
   built on them validate once.
   The library never prints, exits or aborts. *_size queries return 0 for
   a configuration they cannot serve.

   7. Limitations, and what it does not do
   ---------------------------------------
   Data is float32, row-major (n, D). Only Gaussian diffusion with discrete
   t = 1..T; no continuous-time SDE solvers, no latent diffusion, no GPU.
   The U-Net's concatenations, pooling and softmax stay on the calling
   thread (its convolutions, GEMMs, GroupNorms and activations split). The
   noise networks have no input gradient (they never need one; the layers
   do have theirs). The U-Net has one attention head, average-pool
   downsampling and no dropout. The parallel-for is process-wide (section
   5), not a property of each object.

   8. Networks, and adding one
   ---------------------------
   The trainer, the model files and the sampler adapter see a network only
   through dfn_net: a table of operations (dfn_net_ops), a configuration
   struct and a flat block of weights. dfn_mlp_net(&m), dfn_unet_net(&u)
   and dfn_classifier_net(&c) give the library's networks that way, and the
   *_unet and MLP functions of the trainer and the files are thin wrappers
   over the *_net ones (dfn_trainer_init_net, dfn_model_save_net_mem,
   dfn_model_read_net, dfn_model_load_net_mem, dfn_net_predict).

   A network of your own is a config struct and the operations of
   dfn_net_ops: describe (check the config; the parameter count, dim,
   classes, conditioning, prediction), init_weights, forward_size and
   forward (inference over any n, in chunks of the workspace), train_size,
   train_bind, train_forward and train_backward (the training pass: the
   trainer gives a block of train_size bytes, laid out once by train_bind;
   forward keeps what backward needs in it; backward adds the gradient of
   the loss into the gradient block), and config_save, config_load and
   config_same (the model file stores the config as bytes after its kind,
   an id from DFN_NET_USER up that you choose and never change). Then

       dfn_net net;
       dfn_net_init(&net, &my_ops, &my_cfg, params);
       dfn_net_init_weights(&net, &rng);
       dfn_trainer_alloc_net(&tr, &net, &sched, &train_cfg, NULL);
       ... dfn_train_step(&tr, x0, labels, &rng, &loss) ...
       dfn_model_save_net("my.dfnm", &net, &sched, &tr, 1);
       dfn_model_load_net("my.dfnm", &my_ops, NULL, &loaded);
       dfn_net_predictor p = { &loaded.ema_net, NULL, 0, work, work_bytes };
       cfg = dfn_net_sampler_config(DFN_SAMPLER_DDIM, n, &p);

   train and sample it like the MLP. tests/test_netif.c does exactly this
   with a two-layer network, and checks its gradient against finite
   differences through dfn_trainer_loss_grad.

   9. Models from elsewhere: safetensors, PyTorch, diffusers
   ---------------------------------------------------------
   dfn_model_save_safetensors / dfn_model_load_safetensors write and read a
   model as safetensors, the field's exchange format, with the tensor names
   of the networks' PyTorch twins (tools/torch/dfn_torch.py), so a model
   trained in PyTorch (tools/torch/train.py, also with torchrun and DDP)
   runs here, and one trained here runs there. build/convert turns a model
   file into safetensors and back. dfn_st_parse reads any safetensors file
   into the caller's memory (no allocation), dfn_st_write_mem writes one.
   The "__metadata__" of a model holds four strings:
       "diffusion.h"  the version that wrote it ("0.15.1")
       "network"      "mlp" or "unet"
       "config"       the network's config as JSON, every field of
                      dfn_mlp_config / dfn_unet_config by its name
                      (activation "identity", "relu", "silu", "gelu";
                      prediction "eps", "v", "x0", "flow"; the U-Net's mult
                      and attention one value per level), e.g.
                      {"dim":2,"hidden":128,"blocks":3,"time_dim":128,
                       "input_emb_dim":32,"input_scale":25,"num_classes":0,
                       "act":"gelu","prediction":"eps"}
       "schedule"     dfn_schedule_config as JSON: "kind" (the names of
                      dfn_schedule_kind_name), "T", the eight doubles by
                      name, "zero_terminal_snr" 0 or 1; a custom schedule's
                      betas are the tensor "schedule.betas" (T)
   Missing config fields take the defaults; an unknown one is an error
   that names it. The EMA weights are the same names prefixed "ema.".

   The tensors (PyTorch's shapes; a 3x3 convolution is (Co, Ci, 3, 3)):
     MLP (D dim, H hidden, L blocks, E the first layer's inputs D + D
     input_emb_dim + time_dim, C classes):
       inp.weight (H, E)  inp.bias (H)
       blocks.{l}.weight (H, H)  blocks.{l}.bias (H)         l = 0..L-1
       out.weight (D, H)  out.bias (D)
       class_emb.weight (C + 1, time_dim)                      only if C > 0
     U-Net (B base_channels, Te time_dim):
       emb1.weight (Te, B)  emb1.bias  emb2.weight (Te, Te)  emb2.bias
       class_emb.weight (C + 1, Te)                            only if C > 0
       inp.weight (B, channels + cond_channels, 3, 3)  inp.bias
       layers.{k}.  the k-th ResBlock, attention or upsampling of the
                    plan (section "The U-Net noise network"), in order:
         ResBlock   norm1.weight/.bias (Ci)  conv1.weight (Co, Ci, 3, 3)
                    conv1.bias  emb.weight (Co, Te)  emb.bias
                    norm2.weight/.bias (Co)  conv2.weight (Co, Co, 3, 3)
                    conv2.bias  [skip.weight (Co, Ci, 1, 1)  skip.bias]
         attention  norm.weight/.bias (C)  qkv.weight (3C, C)  qkv.bias
                    proj.weight (C, C)  proj.bias
         upsampling conv.weight (C, C, 3, 3)  conv.bias
       out_norm.weight/.bias (Ci)  out_conv.weight (channels, Ci, 3, 3)
       out_conv.bias
   dfn_net_tensors lists them for a config (a network of your own gets
   names with the tensor operation of dfn_net_ops). Loading checks every
   name and shape (DFN_ERR_MISMATCH with a dfn_error_detail naming the
   tensor) and refuses tensors that are not the network's.

   diffusers' scheduler_config.json (DDPMScheduler, DDIMScheduler) reads
   into a schedule and sampler settings with dfn_diffusers_config_read and
   dfn_diffusers_sampler_setup, and is written with
   dfn_diffusers_config_write: its "linear", "scaled_linear", "sigmoid"
   and "squaredcos_cap_v2" as diffusers defines them, trained_betas,
   rescale_betas_zero_snr, prediction_type, timestep_spacing with
   steps_offset (numpy's rounding), clip_sample, set_alpha_to_one and
   variance_type. What the library cannot do the same way is an error
   naming the field. make test-interop checks all of it against PyTorch
   and numpy (README, "Train in PyTorch, deploy with diffusion.h").

   10. The parts of this file
   --------------------------
   The declarations and the implementation are in the same order, in four
   parts, each under a banner "PART n" (search for it):

       PART 1  core math, samplers and guidance: results, random numbers,
               schedules, the forward process, samplers, Gaussian mixtures,
               sample quality
       PART 2  networks and training: layers, the network interface, the
               MLP, the U-Net, the guidance classifier, the gradient
               checker, training
       PART 3  files, data and images: points from text, 2D data sets,
               checksums and files, images, model files
       PART 4  kernels and threads: portable math, the SIMD kernels and
               their reference, threads

   CONTRIBUTING.md says where to add a network, a sampler, a schedule, a
   kernel variant, a file field and a test.

   ===========================================================================
*/
#ifndef DIFFUSION_H
#define DIFFUSION_H

#include <stddef.h>
#include <stdint.h>

#define DFN_VERSION_MAJOR 0
#define DFN_VERSION_MINOR 15
#define DFN_VERSION_PATCH 1

#ifndef DFNDEF
#  ifdef DFN_STATIC
#    if defined(__GNUC__) || defined(__clang__)
#      define DFNDEF static __attribute__((unused))
#    else
#      define DFNDEF static
#    endif
#  else
#    define DFNDEF extern
#  endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Largest T a schedule accepts (keeps every size computation far from overflow). */
#define DFN_MAX_T (1 << 24)

/* ######################################################################### */
/*  PART 1  core math, samplers and guidance                                 */
/* ######################################################################### */

/* ========================================================================= */
/*  Results                                                                  */
/* ========================================================================= */

/* Values are never renumbered; new codes are appended. */
typedef enum dfn_result {
    DFN_OK                   =  0,
    DFN_ERR_NULL             = -1, /* a required pointer argument is NULL           */
    DFN_ERR_INVALID_ARG      = -2, /* a value is outside its documented range        */
    DFN_ERR_NOT_FINITE       = -3, /* NaN or infinity in an input or a prediction    */
    DFN_ERR_BUFFER_TOO_SMALL = -4, /* caller memory smaller than the size query said */
    DFN_ERR_OUT_OF_MEMORY    = -5, /* DFN_MALLOC returned NULL                       */
    DFN_ERR_CALLBACK         = -6, /* the prediction callback returned non-zero      */
    DFN_ERR_CANCELLED        = -7, /* the per-step callback asked to stop            */
    DFN_ERR_IO               = -8, /* a file could not be opened, read or written    */
    DFN_ERR_FORMAT           = -9, /* malformed input: bad magic, truncated, bad line */
    DFN_ERR_VERSION          = -10, /* a file format version this build cannot read   */
    DFN_ERR_CHECKSUM         = -11, /* the file's checksum does not match its bytes    */
    DFN_ERR_MISMATCH         = -12, /* a file or object does not match the config    */
    DFN_ERR_LIMIT            = -13  /* an input over a dfn_limits bound (section 6)  */
} dfn_result;

/* A short English name for a result code ("DFN_ERR_NULL: ..."). Never NULL. */
DFNDEF const char *dfn_result_string(dfn_result r);

/* Limits for files from strangers (manual section 6). A valid file may still
   ask for more memory than its size suggests (a schedule of 2^24 steps is a
   few bytes of header and 604 MB of tables), so every loader that
   allocates checks the file against these before allocating anything
   beyond the file itself, and answers DFN_ERR_LIMIT (nothing allocated,
   nothing written). Files are read whole into a buffer of their size + 1
   bytes, which max_bytes counts; a file above DFN_FILE_MAX_BYTES (1 GiB)
   is refused whatever the limits (DFN_ERR_INVALID_ARG). The loaders
   without a limits argument use dfn_limits_default(); the _ex ones take a
   dfn_limits (NULL: the defaults) to tighten or raise them. The defaults come from these macros
   (override before the implementation include): */
#ifndef DFN_LIMIT_MAX_T
#define DFN_LIMIT_MAX_T 100000             /* schedule steps (the examples use 1000)  */
#endif
#ifndef DFN_LIMIT_MAX_PARAMS
#define DFN_LIMIT_MAX_PARAMS 67108864      /* 2^26 parameters: 256 MiB a block      */
#endif
#ifndef DFN_LIMIT_MAX_SIDE
#define DFN_LIMIT_MAX_SIDE 1024            /* image height and width, in pixels     */
#endif
#ifndef DFN_LIMIT_MAX_BYTES
#define DFN_LIMIT_MAX_BYTES ((size_t)1 << 30)  /* 1 GiB in all                      */
#endif
#ifndef DFN_LIMIT_MAX_TENSORS
#define DFN_LIMIT_MAX_TENSORS 65536        /* tensors in a safetensors file         */
#endif

typedef struct dfn_limits {
    int    max_T;       /* largest T of a stored schedule                          */
    size_t max_params;  /* most parameters P of a stored network                   */
    int    max_side;    /* largest height or width of an image (U-Net, IDX files)  */
    size_t max_bytes;   /* most bytes one load holds at once: the file read whole,
                           and everything allocated from it                      */
    int    max_tensors; /* most tensors in a safetensors file                     */
} dfn_limits;

/* The limits of the macros above. */
DFNDEF dfn_limits dfn_limits_default(void);

/* ========================================================================= */
/*  Random numbers: PCG32 with a portable, integer-exact normal generator    */
/* ========================================================================= */

typedef struct dfn_rng {
    uint64_t state;     /* PCG32 state                                  */
    uint64_t inc;       /* PCG32 stream increment (always odd)          */
    float    spare;     /* second normal of the last Box-Muller pair    */
    int      has_spare; /* 1 when spare holds an unused normal          */
} dfn_rng;

/* Seed the generator. Different streams with the same seed are
   independent sequences. Seeding (42, 54) gives the PCG32 reference
   sequence 0xa15c02b7, 0x7b47f409, ... */
DFNDEF void dfn_rng_seed(dfn_rng *rng, uint64_t seed, uint64_t stream);

/* Next 32 uniform random bits. */
DFNDEF uint32_t dfn_rng_u32(dfn_rng *rng);

/* Uniform integer in [0, bound), without modulo bias. bound 0 returns 0. */
DFNDEF uint32_t dfn_rng_below(dfn_rng *rng, uint32_t bound);

/* Uniform float in [0, 1): a multiple of 2^-24 (uses one u32 draw). */
DFNDEF float dfn_rng_uniform(dfn_rng *rng);

/* One standard normal N(0, 1). Same bits on every IEEE-754 platform
   (manual section 5). Each Box-Muller pair uses two u32 draws. */
DFNDEF float dfn_rng_normal(dfn_rng *rng);

/* n standard normals into out (n may be 0; out may be NULL when n is 0).
   The rng functions take a valid rng and do not check for NULL. */
DFNDEF void dfn_rng_normal_fill(dfn_rng *rng, float *out, size_t n);

/* ========================================================================= */
/*  Noise schedules (MATH.md section 2) and their tables (sections 1, 3)     */
/* ========================================================================= */

/* Values are stored in model files: never renumbered. */
typedef enum dfn_schedule_kind {
    DFN_SCHEDULE_LINEAR  = 0, /* Ho et al. 2020, ends scaled by 1000/T          */
    DFN_SCHEDULE_COSINE  = 1, /* Nichol & Dhariwal 2021                         */
    DFN_SCHEDULE_SIGMOID = 2, /* Jabri et al. 2022                              */
    DFN_SCHEDULE_CUSTOM  = 3, /* betas supplied by the caller                   */
    DFN_SCHEDULE_FLOW    = 4, /* rectified flow (section 12): a_t = 1 - u_t,
                                 s_t = u_t, u_t = t/T (shifted by flow_shift)   */
    /* diffusers' beta schedules, as diffusers defines them (section 2; the
       names of its beta_schedule field; beta_start and beta_end are used
       as given, for any T): */
    DFN_SCHEDULE_SCALED_LINEAR = 5, /* "scaled_linear": sqrt(beta_t) evenly
                                 from sqrt(beta_start) to sqrt(beta_end)       */
    DFN_SCHEDULE_SIGMOID_BETAS = 6, /* "sigmoid": beta_t = beta_start +
                                 (beta_end - beta_start) sigmoid(-6 + 12 (t-1)/(T-1)) */
    DFN_SCHEDULE_LINEAR_BETAS  = 7  /* "linear": beta_t evenly from beta_start
                                 to beta_end (LINEAR scales both by 1000/T;
                                 the two agree at T = 1000)                     */
} dfn_schedule_kind;

/* The two families of forward processes x_t = a_t x_0 + s_t eps (MATH.md
   sections 1 and 12). Every sampler, conversion and predictor of the
   library is written in (a_t, s_t): the tables sqrt_alphabar and
   sqrt_one_minus_alphabar hold a_t and s_t for both. */
typedef enum dfn_process {
    DFN_PROCESS_VP   = 0,     /* variance-preserving: a^2 + s^2 = 1 (every
                                 beta schedule: linear, cosine, sigmoid, custom) */
    DFN_PROCESS_FLOW = 1      /* rectified flow: a + s = 1, a_T = 0 (zero
                                 terminal SNR by construction)                  */
} dfn_process;

typedef struct dfn_schedule_config {
    dfn_schedule_kind kind;
    int    T;                 /* number of steps, 1..DFN_MAX_T                  */
    double beta_start;        /* linear: beta_1 for T = 1000 (default 1e-4)     */
    double beta_end;          /* linear: beta_T for T = 1000 (default 0.02);
                                 both are multiplied by 1000/T, so with these
                                 defaults T must be at least 21 (beta_T < 1)   */
    double cosine_s;          /* cosine: offset s (default 0.008)               */
    double sigmoid_start;     /* sigmoid: start (default -3)                    */
    double sigmoid_end;       /* sigmoid: end (default 3)                       */
    double sigmoid_tau;       /* sigmoid: temperature tau (default 1)           */
    double max_beta;          /* cosine, sigmoid: betas clipped here (0.999)    */
    const float *betas;       /* custom: T values beta_1..beta_T in (0, 1)      */
    int    zero_terminal_snr; /* 1: rescale so alphabar_T = 0 (Lin et al. 2023);
                                 sample with v- or x0-prediction then. Flow:
                                 ignored (a_T = 0 always)                       */
    double flow_shift;        /* flow: SD3's shift k > 0 (default 1 = none):
                                 u_t = k (t/T) / (1 + (k - 1) t/T)              */
} dfn_schedule_config;

/* Every table has T + 1 entries indexed by t = 0..T. Row 0 is the clean data:
   beta 0, alpha 1, alphabar 1, snr +infinity, posterior coefficients (1, 0)
   so that "x_0 = x0_hat". Computed in double, stored as float.
   For a flow schedule (section 12) the same tables describe x_t = a_t x_0 +
   s_t eps with a_t = 1 - u_t, s_t = u_t: sqrt_alphabar = a_t,
   sqrt_one_minus_alphabar = s_t, alphabar = a_t^2, snr = a_t^2 / s_t^2,
   alpha_t = (a_t / a_{t-1})^2, beta_t = s_t^2 - alpha_t s_{t-1}^2 (the
   variance of q(x_t | x_{t-1})) and the posterior of section 3 for that
   Gaussian chain (section 12 in docs/MATH.md). */
typedef struct dfn_schedule {
    int    T;
    dfn_process process;             /* from config.kind                        */
    dfn_schedule_config config;      /* as given (config.betas is set to NULL)  */
    float *beta;                     /* beta_t                       section 1  */
    float *alpha;                    /* alpha_t = 1 - beta_t         section 1  */
    float *alphabar;                 /* prod_{s<=t} alpha_s          section 1  */
    float *sqrt_alphabar;            /* sqrt(alphabar_t)             section 1  */
    float *sqrt_one_minus_alphabar;  /* sqrt(1 - alphabar_t)         section 1  */
    float *posterior_variance;       /* betatilde_t                  section 3  */
    float *posterior_coef_x0;        /* sqrt(alphabar_{t-1}) beta_t / (1 - alphabar_t)        */
    float *posterior_coef_xt;        /* sqrt(alpha_t) (1 - alphabar_{t-1}) / (1 - alphabar_t) */
    float *snr;                      /* alphabar_t / (1 - alphabar_t) section 1 */
    void  *memory;                   /* the buffer given to init                */
} dfn_schedule;

/* The defaults of MATH.md section 2 for this kind and T (custom: set
   cfg.betas yourself). */
DFNDEF dfn_schedule_config dfn_schedule_config_default(dfn_schedule_kind kind, int T);

/* The kind's name ("linear", "cosine", "sigmoid", "custom", "flow",
   "scaled_linear", "sigmoid_betas", "linear_betas": the names of the
   "schedule" JSON of safetensors files); NULL for an unknown kind. */
DFNDEF const char *dfn_schedule_kind_name(dfn_schedule_kind kind);

/* Bytes that dfn_schedule_init needs for T steps; 0 if T is out of range. */
DFNDEF size_t dfn_schedule_size(int T);

/* Compute every table into mem (bytes >= dfn_schedule_size(cfg->T)).
   Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (T < 1 or > DFN_MAX_T, a
   parameter or a resulting beta outside (0, 1), NaN), DFN_ERR_BUFFER_TOO_SMALL.
   With zero_terminal_snr, beta_T = 1 exactly and alphabar_T = 0. A flow
   schedule needs T >= 2 and a finite flow_shift > 0. */
DFNDEF dfn_result dfn_schedule_init(dfn_schedule *s, const dfn_schedule_config *cfg,
                                    void *mem, size_t bytes);

#ifndef DFN_NO_MALLOC
/* dfn_schedule_init with memory from DFN_MALLOC(bytes, alloc_ctx). */
DFNDEF dfn_result dfn_schedule_alloc(dfn_schedule *s, const dfn_schedule_config *cfg,
                                     void *alloc_ctx);
/* Release the memory of dfn_schedule_alloc. NULL or a zeroed struct is fine. */
DFNDEF void dfn_schedule_free(dfn_schedule *s, void *alloc_ctx);
#endif

/* ========================================================================= */
/*  Forward process and parameterizations (MATH.md sections 1, 3, 4, 5)      */
/* ========================================================================= */
/* Shapes: x0, eps, xt, pred, out: (n, dim) row-major; t: (n) with 1 <= t <= T.
   n = 0 is a no-op. Outputs may alias inputs (everything is elementwise). */

/* Values are stored in model files: never renumbered. */
typedef enum dfn_prediction {
    DFN_PREDICT_EPS = 0,   /* the network predicts the noise eps            */
    DFN_PREDICT_V   = 1,   /* v = sqrt(alphabar) eps - sqrt(1 - alphabar) x0
                              (a eps - s x0 on a flow schedule, where x0 =
                              (a x_t - s v)/(a^2 + s^2))                    */
    DFN_PREDICT_X0  = 2,   /* the network predicts the clean data x0         */
    DFN_PREDICT_FLOW = 3   /* the velocity w = eps - x0 (section 12; flow
                              matching's target, valid for any process:
                              x0 = (x_t - s w)/(a + s), eps = (x_t + a w)/(a + s)) */
} dfn_prediction;

/* Section 1: xt = sqrt(alphabar_t) x0 + sqrt(1 - alphabar_t) eps. */
DFNDEF dfn_result dfn_q_sample(const dfn_schedule *s, float *xt,
                               const float *x0, const float *eps,
                               const int *t, int n, int dim);

/* Section 3: mean (n, dim) of q(x_{t-1} | x_t, x_0), and its variance
   betatilde_t into var (n values; var may be NULL). */
DFNDEF dfn_result dfn_q_posterior(const dfn_schedule *s, float *mean, float *var,
                                  const float *x0, const float *xt,
                                  const int *t, int n, int dim);

/* Section 4: from a prediction of the given kind, the implied x0_hat and
   eps_hat (either output may be NULL). For DFN_PREDICT_EPS at a t with
   alphabar_t = 0 (zero terminal SNR) x0_hat is undefined: DFN_ERR_INVALID_ARG. */
DFNDEF dfn_result dfn_prediction_to_x0_eps(const dfn_schedule *s, dfn_prediction kind,
                                           float *x0_hat, float *eps_hat,
                                           const float *pred, const float *xt,
                                           const int *t, int n, int dim);

/* Sections 4, 5, 12: the training target of a parameterization: eps, v, x0
   or the velocity eps - x0. */
DFNDEF dfn_result dfn_prediction_target(const dfn_schedule *s, dfn_prediction kind,
                                        float *target, const float *x0, const float *eps,
                                        const int *t, int n, int dim);

/* ========================================================================= */
/*  Samplers: DDPM (section 6), DDIM (7) and the few-step solvers (11)       */
/* ========================================================================= */

/* The model: write predictions for x_t (n, dim) at per-sample timesteps t and
   class labels (-1 = none) into out (n, dim). Return 0 on success. */
typedef int (*dfn_predict_fn)(void *user, const float *x_t, const int *t,
                              const int *labels, int n, float *out);

/* What the per-step callback sees after step i (i = S..1) moved x from
   timestep t to t_prev (t_prev = 0 after the last step). */
typedef struct dfn_step_info {
    int i;                 /* step index, counts down from steps to 1        */
    int steps;             /* S                                              */
    int t, t_prev;         /* timesteps before and after this step           */
    int n, dim;
    const float *x;        /* x_{t_prev}, (n, dim)                           */
    const float *x0_hat;   /* the prediction of x_0 made at t, (n, dim)      */
} dfn_step_info;

/* Called after every step of dfn_sampler_run; return non-zero to stop
   (the run then returns DFN_ERR_CANCELLED, x holds x_{t_prev}). */
typedef int (*dfn_step_fn)(void *user, const dfn_step_info *info);

/* The samplers. Every kind but DDPM runs S steps on a subsequence tau of
   1..T (cfg.steps, cfg.spacing) and ends at t = 0; NFE is the number of
   predictor calls (each on n rows, or 2n with guidance). Values are stable:
   never renumber, only append. */
typedef enum dfn_sampler_kind {
    DFN_SAMPLER_DDPM = 0,  /* ancestral, T steps (section 6); NFE T          */
    DFN_SAMPLER_DDIM = 1,  /* S steps, eta >= 0 (section 7); NFE S           */
    DFN_SAMPLER_EULER = 2, /* Euler in sigma = s_t / a_t (section 11, EDM);
                              on a flow schedule Euler in u (section 12):
                              either is DDIM eta = 0 in other arithmetic; NFE S */
    DFN_SAMPLER_HEUN = 3,  /* Heun in sigma (section 11, EDM Algorithm 1,
                              S_churn = 0), in u on a flow schedule; second
                              order; the step to t = 0 is Euler; NFE 2S - 1  */
    DFN_SAMPLER_DPMPP_2M = 4, /* DPM-Solver++(2M) (section 11); NFE S        */
    DFN_SAMPLER_DPMPP_3M = 5, /* DPM-Solver++(3M) (section 11); NFE S        */
    DFN_SAMPLER_DPMPP_2M_SDE = 6, /* SDE-DPM-Solver++(2M), midpoint (section
                              11): draws noise every step but the last; NFE S */
    DFN_SAMPLER_MIDPOINT = 7 /* explicit midpoint (second-order Runge-Kutta)
                              in sigma, in u on a flow schedule (section
                              12): a half step to t_m = ceil((t + p) / 2)
                              and the step with the slope there (the
                              general RK2 weights when t_m is not the exact
                              middle; Heun's when t - p = 1 and p > 0; Euler
                              from t = 1 to 0); NFE about 2S             */
} dfn_sampler_kind;
#define DFN_SAMPLER_KIND_COUNT 8
#ifndef DFN_SAMPLER_KINDS
#  define DFN_SAMPLER_KINDS 0xff
#endif
/* Whether kind k (0..7) is compiled in: usable in #if and in expressions. */
#define DFN__KIND_ON(k) ((((DFN_SAMPLER_KINDS) >> (k)) & 1) != 0)

typedef enum dfn_variance {
    DFN_VARIANCE_SMALL = 0, /* sigma_t^2 = betatilde_t (true posterior)      */
    DFN_VARIANCE_LARGE = 1  /* sigma_t^2 = beta_t                            */
} dfn_variance;

/* Timestep spacings (sections 7 and 11). LOGSNR and KARRAS give exactly S
   distinct timesteps from T down to 1 (S >= 2; S = 1 is T alone): each value
   is mapped to the integer t nearest in log sigma_t, and where two land on
   one t (near t = 1, where sigma changes fastest) the larger takes the next
   free t above, up to T - (S - i) (dfn_timesteps). They need a schedule
   with alphabar_T > 0. CUSTOM takes cfg.timesteps. */
typedef enum dfn_spacing {
    DFN_SPACING_LINSPACE = 0, /* tau_i = round(1 + (i-1)(T-1)/(S-1))         */
    DFN_SPACING_LEADING  = 1, /* tau_i = 1 + (i-1) floor(T/S)                */
    DFN_SPACING_TRAILING = 2, /* tau_i = round(i T / S); starts at T         */
    DFN_SPACING_LOGSNR   = 3, /* lambda = log(a_t / s_t) evenly, T .. 1      */
    DFN_SPACING_KARRAS   = 4, /* sigma^(1/rho) evenly, T .. 1 (rho default 7) */
    DFN_SPACING_CUSTOM   = 5, /* cfg.timesteps: S values, strictly decreasing,
                                 within 1..T, in the order they are visited  */
    DFN_SPACING_SHIFTED  = 6  /* SD3's shift of trailing (section 12):
                                 tau_i = round(T k f / (1 + (k - 1) f)),
                                 f = i / S, k = cfg.shift (default 3); k > 1
                                 spends more steps at high noise. Any
                                 schedule; collisions as for LOGSNR        */
} dfn_spacing;
#define DFN_SPACING_COUNT 7

/* What the guidance hook sees at step i (t = tau_i -> t_prev = tau_{i-1}),
   after the prediction (and classifier-free guidance) was converted to
   eps_hat and x0_hat (MATH.md section 4) and before clipping and the step. */
typedef struct dfn_guide_info {
    int i, steps;          /* step index (counts down from steps to 1), S    */
    int t, t_prev;         /* t of this evaluation; the step's target t_prev */
    int stage;             /* 0; 1 at the second evaluation of Heun (t =
                              t_prev, x_t = the Euler predictor's point) and
                              of the midpoint rule (t = t_m)                 */
    int n, dim;
    const dfn_schedule *schedule;
    float sqrt_alphabar;            /* sqrt(alphabar_t)                      */
    float sqrt_one_minus_alphabar;  /* sqrt(1 - alphabar_t)                  */
    const float *x_t;      /* the current sample x_t, (n, dim)               */
    const int   *labels;   /* the n conditional labels (-1 = none)           */
    float       *eps_hat;  /* (n, dim): the hook may change it in place      */
    const float *x0_hat;   /* (n, dim): x0_hat implied by eps_hat on entry   */
} dfn_guide_info;

/* The guidance hook: adjust info->eps_hat in place; return 0 on success
   (anything else stops the sampler with DFN_ERR_CALLBACK). To add a score
   term g(x_t) = grad_x log p(y | x_t) (classifier guidance, Dhariwal & Nichol
   2021; constraints), the convention is MATH.md section 9's
   eps = -sqrt(1 - alphabar_t) score, so that

       eps_hat <- eps_hat - s * sqrt(1 - alphabar_t) * g(x_t)

   with a guidance strength s (dfn_guide_add_score does exactly this). After
   the hook returns, the sampler recomputes x0_hat = (x_t - sqrt(1 -
   alphabar_t) eps_hat) / sqrt(alphabar_t) (section 4) and both enter the
   step of section 6 or 7 (with clip_x0, after clipping). At a step with
   alphabar_t = 0 (only t = T of a zero-terminal-SNR schedule) x0_hat keeps
   its value and only DDIM uses the changed eps_hat.
   How the changed prediction enters each solver of section 11: Euler and
   Heun step with eps_hat (Heun calls the hook at both evaluations, stage 0
   and 1); the DPM-Solver++ kinds step with x0_hat, which then follows the
   hook's eps_hat, and keep that x0_hat as the history of the next steps. */
typedef int (*dfn_guide_fn)(void *user, const dfn_guide_info *info);

/* eps_hat[r] -= scale * sqrt(1 - alphabar_t) * score[r] over the n * dim
   values of info (the convention above). score (n, dim); rows whose label
   is -1 are changed too: pass a zero score row to leave a sample alone. */
DFNDEF void dfn_guide_add_score(const dfn_guide_info *info, const float *score, float scale);

typedef struct dfn_sampler_config {
    dfn_sampler_kind kind;
    int            n, dim;          /* batch size and values per sample       */
    dfn_predict_fn predict;         /* required                               */
    void          *predict_user;
    dfn_prediction prediction;      /* what predict returns (default eps)     */
    const int     *labels;          /* n class labels, or NULL for all -1     */
    dfn_variance   variance;        /* DDPM: small (default) or large         */
    int            steps;           /* all but DDPM: S, 1..T (default 50; set it
                                       for T < 50)                            */
    float          eta;             /* DDIM: >= 0 (default 0, deterministic)  */
    dfn_spacing    spacing;         /* all but DDPM: default trailing         */
    float          karras_rho;      /* DFN_SPACING_KARRAS: rho > 0 (default 7)*/
    float          shift;           /* DFN_SPACING_SHIFTED: k > 0 (default 3) */
    const int     *timesteps;       /* DFN_SPACING_CUSTOM: `steps` timesteps,
                                       strictly decreasing, within 1..T (the
                                       first is visited first); copied at init */
    int            clip_x0;         /* 1: clamp x0_hat to [clip_min, clip_max]*/
    float          clip_min, clip_max; /* default -1, 1                        */
    dfn_step_fn    on_step;         /* optional per-step callback             */
    void          *on_step_user;
    /* Classifier-free guidance (MATH.md section 8), for a predictor trained
       with label dropout:
           pred = pred(x_t, t, null) + w (pred(x_t, t, c) - pred(x_t, t, null))
       w = 1 (default) is the plain conditional model and costs nothing
       extra; w = 0 is one call with every label -1 (unconditional). Any
       other w makes ONE predictor call per step on 2n rows: x_t twice, the
       labels c first, then n labels -1. The combination is applied to the
       raw predictions (eps, v or x0): for eps it is section 8 itself, for
       v and x0 the same eps_guided by linearity of section 4. Without
       labels (NULL) guidance is a no-op and never doubles the batch. */
    float          guidance_scale;  /* w >= 0 (default 1)                     */
    dfn_guide_fn   guide;           /* optional guidance hook (see above)     */
    void          *guide_user;
    /* Inpainting / imputation (RePaint, Lugmayr et al. 2022): known (n, dim)
       values where known_mask (n, dim) is non-zero. Each step's result gets
       its known entries replaced by q_sample(known, t_prev) (section 1,
       fresh noise from the run's rng); at t_prev = 0 they are the known
       values exactly. dfn_sampler_run also starts from x_T with the known
       entries replaced at tau_S. Both arrays are copied at init. */
    const float         *known;      /* NULL: no inpainting                  */
    const unsigned char *known_mask; /* required with known                  */
    /* RePaint resampling (dfn_sampler_run only): every resample_jump steps
       (counted from the start; 0 = off), after reaching step level i with
       i + resample_jump <= S, x is noised forward in closed form from
       tau_i back to tau_{i + jump}, x = sqrt(ab_j / ab_i) x + sqrt(1 -
       ab_j / ab_i) z, and those steps are run again: resample_count - 1
       times (1 = no resampling; default 1). Costs about resample_count x
       the steps. Meant for inpainting; allowed without it. */
    int            resample_jump;
    int            resample_count;
    /* DDIM only: 1 = the last step ends at alphabar_1 instead of at the
       clean data (alphabar 1): diffusers' set_alpha_to_one = false
       (Stable Diffusion's configs). Default 0. */
    int            final_alphabar_1;
} dfn_sampler_config;

typedef struct dfn_sampler {
    dfn_sampler_config  cfg;        /* labels points into this sampler's memory */
    const dfn_schedule *schedule;
    int    steps;                   /* S (T for DDPM)                          */
    int   *tau;                     /* S + 1 timesteps, tau[0] = 0             */
    int   *t;                       /* n per-sample timesteps for the callback */
    int   *labels;                  /* n labels (2n with guidance: then n -1s) */
    float *model_out, *x0_hat, *eps_hat, *z;  /* (n, dim) each (model_out 2n
                                       rows with guidance)                    */
    /* Section 11's state, allocated at init for the kinds that use it:
       hist[0], hist[1] the x0_hat of the last two steps (DPM-Solver++;
       hist_t their timesteps, hist_count how many are valid), used only
       when the step called next is hist_next (the step after the last
       one that ran): any other order, a failed step or a RePaint jump
       starts a new history, as at the first step. Heun's second
       evaluation: x_mid (its point), eps_mid and x0_mid (its prediction). */
    float *hist[2];
    int    hist_t[2], hist_count, hist_next;
    float *x_mid, *eps_mid, *x0_mid;
    float *x_in;                    /* (2n, dim) predictor input with guidance,
                                       else NULL                               */
    float *known;                   /* (n, dim) copy of cfg.known, or NULL     */
    unsigned char *known_mask;      /* (n, dim) copy, or NULL                  */
    int    guided;                  /* 1: 2n-row calls; 2: w = 0 (labels -1)   */
    void  *memory;
} dfn_sampler;

/* Defaults: DDPM small variance; other kinds 50 steps (must not exceed T), eta 0,
   trailing, Karras rho 7; eps-prediction; no clipping (range -1..1 when enabled); no callbacks;
   guidance scale 1, no guidance hook, no inpainting, no resampling. */
DFNDEF dfn_sampler_config dfn_sampler_config_default(dfn_sampler_kind kind, int n, int dim,
                                                     dfn_predict_fn predict, void *user);

/* Bytes of workspace the sampler needs; 0 if the configuration is invalid. */
DFNDEF size_t dfn_sampler_size(const dfn_sampler_config *cfg, const dfn_schedule *s);

/* Validate cfg against the schedule and set up the sampler in mem.
   Errors: DFN_ERR_NULL (cfg, s, smp, mem, predict, timesteps of a custom
   spacing), DFN_ERR_INVALID_ARG (unknown kind or spacing, n < 1, dim < 1,
   steps outside 1..T, eta < 0 or NaN, custom timesteps not strictly
   decreasing within 1..T, Karras rho or the shift not a finite number > 0,
   LOGSNR or KARRAS spacing on a schedule with alphabar_T = 0 (a flow
   schedule too: sigma_T = s_T / a_T is infinite), the EULER, HEUN or
   MIDPOINT kinds on a zero-terminal-SNR VP schedule (they step in sigma;
   on a flow schedule they step in u), clip range empty,
   a label < -1, n > INT_MAX / 2 with labels (guidance evaluates 2n rows),
   eps-prediction on a schedule with alphabar_T = 0 (flow too), a guidance
   scale < 0 or not finite, known without known_mask or not finite,
   resample_jump < 0 or > S, resample_count < 1), DFN_ERR_BUFFER_TOO_SMALL. */
DFNDEF dfn_result dfn_sampler_init(dfn_sampler *smp, const dfn_sampler_config *cfg,
                                   const dfn_schedule *s, void *mem, size_t bytes);

#ifndef DFN_NO_MALLOC
DFNDEF dfn_result dfn_sampler_alloc(dfn_sampler *smp, const dfn_sampler_config *cfg,
                                    const dfn_schedule *s, void *alloc_ctx);
DFNDEF void dfn_sampler_free(dfn_sampler *smp, void *alloc_ctx);
#endif

/* The whole reverse process: x_T -> x_0 into x (n, dim). x_T (n, dim) is
   copied in when given (it may equal x); when NULL it is drawn from N(0, I)
   with rng. rng may be NULL only for a fully deterministic run (given x_T,
   DDIM with eta = 0, Euler, Heun, DPM-Solver++ 2M and 3M; inpainting and
   the SDE solver always need it). With resampling the
   per-step callback sees the steps in the order they run (i goes back up
   after each jump). Errors: those of dfn_sampler_step, DFN_ERR_NOT_FINITE
   for a non-finite x_T, DFN_ERR_CANCELLED. */
DFNDEF dfn_result dfn_sampler_run(dfn_sampler *smp, float *x, const float *x_T, dfn_rng *rng);

/* One step, for users who run the loop themselves: i counts down from
   dfn_sampler_num_steps() to 1 and moves x in place from tau_i to tau_{i-1}.
   K calls with i = S..S-K+1 equal the first K steps of dfn_sampler_run, bit
   for bit (with inpainting: after the run's replacement at x_T). Errors:
   DFN_ERR_NULL (rng needed for a noisy step or inpainting), i out of range,
   DFN_ERR_CALLBACK (predictor or guidance hook), DFN_ERR_NOT_FINITE
   (prediction, or eps_hat after the hook, or the new x not finite: a finite
   prediction can still overflow the update; x is then unspecified). */
DFNDEF dfn_result dfn_sampler_step(dfn_sampler *smp, int i, float *x, dfn_rng *rng);

/* S, and the timestep tau_i (i = 0..S; tau_0 = 0). */
DFNDEF int dfn_sampler_num_steps(const dfn_sampler *smp);
DFNDEF int dfn_sampler_timestep(const dfn_sampler *smp, int i);

/* Predictor calls of a whole run (dfn_sampler_run without resampling):
   T for DDPM, 2S - 1 for Heun, 2S for the midpoint rule (2S - 1 when
   tau_1 = 1), S otherwise; 0 for NULL. */
DFNDEF int dfn_sampler_nfe(const dfn_sampler *smp);

/* Short names: "ddpm", "ddim", "euler", "heun", "dpm++2m", "dpm++3m",
   "dpm++2m-sde", "midpoint"; "linspace", "leading", "trailing", "logsnr",
   "karras", "custom", "shifted". NULL for an unknown value. The parse functions take the same
   names and return -1 for an unknown one. */
DFNDEF const char *dfn_sampler_kind_name(dfn_sampler_kind kind);
DFNDEF const char *dfn_spacing_name(dfn_spacing spacing);
DFNDEF int dfn_sampler_kind_parse(const char *name);
DFNDEF int dfn_spacing_parse(const char *name);

/* Sections 7, 11 and 12: the subsequence of any computed spacing into tau
   (S + 1 ints): tau[0] = 0 and tau[1..S] = tau_1 < ... < tau_S. param is
   KARRAS' rho or SHIFTED's k (ignored by the others). LOGSNR and KARRAS
   follow the rule of dfn_spacing: nearest t in log sigma_t = log s_t - log
   a_t from the float tables, computed in double; for them and SHIFTED,
   collisions move up to the next free t. Errors: DFN_ERR_NULL,
   DFN_ERR_INVALID_ARG (S < 1, S > T, CUSTOM or an unknown spacing, param
   not a finite number > 0 for KARRAS and SHIFTED, alphabar_T = 0 for
   LOGSNR and KARRAS). */
DFNDEF dfn_result dfn_timesteps(int *tau, const dfn_schedule *s, int S, dfn_spacing spacing,
                                float param);

/* Section 7: the DDIM subsequence into tau (S + 1 ints): tau[0] = 0 and
   tau[1..S] = tau_1 < ... < tau_S. Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG
   (T < 1, S < 1, S > T, a spacing other than LINSPACE, LEADING, TRAILING:
   the others need the schedule, see dfn_timesteps). */
DFNDEF dfn_result dfn_ddim_timesteps(int *tau, int T, int S, dfn_spacing spacing);

/* Section 6: sigma_t of the DDPM step, sqrt(betatilde_t) or sqrt(beta_t);
   0 when s is NULL or t is outside 1..T. */
DFNDEF float dfn_ddpm_sigma(const dfn_schedule *s, int t, dfn_variance variance);

/* Section 7: sigma of the DDIM step from t to t_prev (0 <= t_prev < t);
   0 for arguments out of range. */
DFNDEF float dfn_ddim_sigma(const dfn_schedule *s, int t, int t_prev, float eta);

/* Section 6: x_prev = mutilde_t(x0_hat, x_t) + sigma_t z over count values.
   z may be NULL (no noise; Algorithm 2 uses z = 0 at t = 1). x_prev may
   alias x_t. */
DFNDEF dfn_result dfn_ddpm_step(const dfn_schedule *s, float *x_prev, const float *x_t,
                                const float *x0_hat, const float *z,
                                int t, dfn_variance variance, size_t count);

/* Section 7: x_p = sqrt(alphabar_p) x0_hat + sqrt(1 - alphabar_p - sigma^2) eps_hat
   + sigma z, from t to t_prev = p (0 <= p < t). z may be NULL (no noise).
   For eta > 1, sigma^2 can exceed 1 - alphabar_p: the eps_hat coefficient is
   then clamped to 0. */
DFNDEF dfn_result dfn_ddim_step(const dfn_schedule *s, float *x_prev, const float *x0_hat,
                                const float *eps_hat, const float *z,
                                int t, int t_prev, float eta, size_t count);

/* ========================================================================= */
/*  Gaussian mixtures: data and their exact noise predictor (MATH.md sec. 9) */
/* ========================================================================= */

/* sum_k weights[k] N(means[k], stds[k]^2 I) in R^dim, 1 <= k <= DFN_GMM_MAX_K.
   Weights >= 0 need not sum to 1 (they are normalized); stds > 0. The struct
   only points at arrays. */
#define DFN_GMM_MAX_K 64
typedef struct dfn_gmm {
    int          k, dim;
    const float *weights;   /* (k)      */
    const float *means;     /* (k, dim) */
    const float *stds;      /* (k)      */
} dfn_gmm;

/* n draws into x (n, dim); the drawn component of each into component
   (n ints; may be NULL). */
DFNDEF dfn_result dfn_gmm_sample(const dfn_gmm *g, dfn_rng *rng, float *x, int *component, int n);

/* The Bayes-optimal eps(x_t, t) of section 9 for n points: responsibilities
   under the noised mixture, score, eps = -sqrt(1 - alphabar_t) score.
   labels (may be NULL) condition on one component: label k >= 0 uses only
   component k, -1 the whole mixture. Computed in double. */
DFNDEF dfn_result dfn_gmm_eps(const dfn_gmm *g, const dfn_schedule *s, float *eps,
                              const float *xt, const int *t, const int *labels, int n);

/* Adapter for samplers: user points at a dfn_gmm_predictor. Returns the
   dfn_result of dfn_gmm_eps. */
typedef struct dfn_gmm_predictor {
    const dfn_gmm      *gmm;
    const dfn_schedule *schedule;
} dfn_gmm_predictor;
DFNDEF int dfn_gmm_predict(void *user, const float *x_t, const int *t,
                           const int *labels, int n, float *out);

/* The Bayes-optimal prediction of any parameterization (sections 9 and 12),
   for either process: eps* as dfn_gmm_eps (the same bits) and the
   posterior mean x0* = sum_k r_k (mu_k + (a s_k^2 / v_k)(x_t - a mu_k)),
   v_k = a^2 s_k^2 + s^2, combined into v = a eps* - s x0* or the velocity
   w = eps* - x0*. x0* stays finite at a_t = 0 (the mixture's mean), so the
   x0, v and flow kinds serve zero-terminal-SNR and flow schedules. */
DFNDEF dfn_result dfn_gmm_predict_as(const dfn_gmm *g, const dfn_schedule *s, dfn_prediction kind,
                                     float *out, const float *xt, const int *t, const int *labels, int n);

/* Adapter for samplers: user points at a dfn_gmm_kind_predictor (set every
   field; the sampler's cfg.prediction must equal prediction). */
typedef struct dfn_gmm_kind_predictor {
    const dfn_gmm      *gmm;
    const dfn_schedule *schedule;
    dfn_prediction      prediction;
} dfn_gmm_kind_predictor;
DFNDEF int dfn_gmm_kind_predict(void *user, const float *x_t, const int *t,
                                const int *labels, int n, float *out);

/* ========================================================================= */
/*  Sample quality (MATH.md section 10)                                      */
/* ========================================================================= */

/* ED^2 = 2 E||X - Y|| - E||X - X'|| - E||Y - Y'|| between x (n, dim) and
   y (m, dim), as a V-statistic (every pair, including i = j; never negative).
   O(n m dim). Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (n, m, dim < 1),
   DFN_ERR_NOT_FINITE. */
DFNDEF dfn_result dfn_energy_distance(double *ed2, const float *x, int n,
                                      const float *y, int m, int dim);

/* The same with the unbiased U-statistic (pairs i != j within each set):
   its expectation is the population ED^2 itself, so it does not carry the
   V-statistic's ~(E||X - X'|| / n + E||Y - Y'|| / m) offset and can be
   slightly negative for matching distributions. n, m >= 2. */
DFNDEF dfn_result dfn_energy_distance_unbiased(double *ed2, const float *x, int n,
                                               const float *y, int m, int dim);

/* ========================================================================= */
/*  Maximum mean discrepancy (MATH.md section 10, next to energy distance)   */
/* ========================================================================= */

/* MMD^2 with the Gaussian (RBF) kernel k(a, b) = exp(-||a - b||^2 / (2 h^2)),
   h = bandwidth, between x (n, dim) and y (m, dim):
       MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y)
   as a V-statistic (every pair, including i = j, like dfn_energy_distance;
   never negative: rounding is clamped at 0). Computed in double, O((n + m)^2 dim);
   kernel values below e^-40 count as 0 (MMD^2 moves by less than 2e-17),
   which skips the exp for most pairs when h is small next to the data.
   Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (n, m, dim < 1; bandwidth not a
   finite number > 0), DFN_ERR_NOT_FINITE (x or y). *mmd2 is 0 on error. */
DFNDEF dfn_result dfn_mmd_rbf(double *mmd2, const float *x, int n, const float *y, int m,
                              int dim, double bandwidth);

/* The same with the unbiased U-statistic (within each set only the pairs
   i != j): the V-statistic above carries an offset of about
   (1 - mean k(x, x'))/n + (1 - mean k(y, y'))/m, 2e-4 at n = m = 10,000 on
   spread-out data, which hides differences below it; this one has the
   population MMD^2 as its expectation and can be slightly negative for
   matching distributions. n, m >= 2. */
DFNDEF dfn_result dfn_mmd_rbf_unbiased(double *mmd2, const float *x, int n, const float *y, int m,
                                       int dim, double bandwidth);

/* ######################################################################### */
/*  PART 2  networks and training                                            */
/* ######################################################################### */

/* ========================================================================= */
/*  Layers (llm.c style: outputs, cached values, inputs, weights, dims)      */
/* ========================================================================= */
/* Activation functions. The values are stored in model files: never
   renumber, only append. */
typedef enum dfn_activation {
    DFN_ACT_IDENTITY = 0,   /* f(x) = x                                        */
    DFN_ACT_RELU     = 1,   /* f(x) = max(x, 0);  f'(0) = 0                    */
    DFN_ACT_SILU     = 2,   /* f(x) = x sigmoid(x)                             */
    DFN_ACT_GELU     = 3    /* f(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
                               the tanh form, and its exact derivative         */
} dfn_activation;

/* Backward functions accumulate (+=) into their gradient outputs. `work` is
   GEMM scratch of dfn_gemm_work_size() bytes. Dimensions are trusted (the
   networks validate them once); the layers never allocate. */

/* out (B, O) = in (B, I) W^T + b, with W (O, I) row-major and b (O) or NULL. */
DFNDEF void dfn_linear_forward(float *out, const float *in, const float *W, const float *b,
                               int B, int I, int O, float *work);

#ifndef DFN_NO_TRAINING
/* Given dout (B, O): din (B, I) += dout W (skipped when din is NULL),
   dW (O, I) += dout^T in, db (O) += sum over rows of dout (skipped when NULL). */
DFNDEF void dfn_linear_backward(float *din, float *dW, float *db, const float *dout,
                                const float *in, const float *W, int B, int I, int O,
                                float *work);
#endif

/* Sinusoidal embedding of n scalars u_i = scale * v[i * incv] into the rows of
   out (row i at out + i * ldo, dim values, dim even):
   [sin(u_i f_0) .. sin(u_i f_{h-1}), cos(u_i f_0) .. cos(u_i f_{h-1})],
   h = dim / 2, f_k = 10000^(-k / h) (Vaswani et al. 2017; Ho et al. 2020 for t).
   With SIMD (and without DFN_PORTABLE_MATH) arguments |u_i f_k| <= 4096 use
   the kernels' own sine and cosine (within 1e-7 of the exact values, 16
   lanes at a time with AVX-512), larger ones DFN_SINF and DFN_COSF. */
DFNDEF void dfn_sinusoidal_embedding(float *out, int ldo, const float *v, int incv, float scale,
                                     int n, int dim);

/* Image layers. A batch of images is NHWC: (B, H, W, C) row-major floats,
   the C values of a pixel next to each other, so a pixel is a row of a
   (B H W, C) matrix, a 1x1 convolution is dfn_linear_forward on B H W rows,
   and a convolution is a GEMM of an im2col matrix (llm.c's convention of
   "rows are positions, columns are features"). */

/* Floats of im2col scratch one image of a k x k convolution needs:
   H W k k Ci (0 for k == 1, which needs none). */
DFNDEF size_t dfn_conv2d_col_size(int H, int W, int Ci, int k);

/* out (B, H, W, Co) = conv(in (B, H, W, Ci), Wt) + b: stride 1, zero padding
   (k - 1) / 2 (k = 1 or 3, "same" size), Wt (Co, k, k, Ci) row-major, b (Co)
   or NULL:
       out[y][x][o] = b[o] + sum_{dy, dx, i} Wt[o][dy][dx][i] in[y+dy-p][x+dx-p][i]
   col: col_floats >= dfn_conv2d_col_size(H, W, Ci, k) floats of scratch
   (images are unrolled in groups that fit; more scratch, bigger GEMMs); may
   be NULL for k == 1. work: dfn_gemm_work_size() bytes. With k = 3 and at
   least dfn_conv2d_winograd_size(H, W, Ci, Co, 1) floats, some shapes go
   through Winograd instead (below). */
DFNDEF void dfn_conv2d_forward(float *out, const float *in, const float *Wt, const float *b,
                               int B, int H, int W, int Ci, int Co, int k,
                               float *col, size_t col_floats, float *work);

/* Winograd F(2x2, 3x3) (Lavin & Gray 2016; docs/MATH.md §14): the k = 3
   convolution of dfn_conv2d_forward / _backward with 2.25x fewer
   multiplications, over 4 x 4 input tiles transformed into 16 products of
   (tiles, Ci) by (Ci, Co). dfn_conv2d_forward and _backward take it by
   themselves for the shapes where it measured faster than im2col (images
   of 8 x 8 or more; forward from 16 channels, backward from 32) when col
   holds one image's tiles, except with DFN_PORTABLE_MATH. These calls run
   it on any shape. Results agree with im2col's to rounding (bounds and
   measured errors in MATH.md §14).

   Floats of col for groups of g images: 16 ceil(H/2) ceil(W/2) g (Ci + Co)
   + 32 Ci Co (0 for sizes < 1, or when that many bytes would pass half of
   size_t's range). */
DFNDEF size_t dfn_conv2d_winograd_size(int H, int W, int Ci, int Co, int g);

/* out (B, H, W, Co) = conv3x3(in, Wt) + b as dfn_conv2d_forward (b may be
   NULL), in groups of as many images as col_floats hold. Errors:
   DFN_ERR_NULL, DFN_ERR_INVALID_ARG (a size < 1, or B H W >= 2^31),
   DFN_ERR_BUFFER_TOO_SMALL (col_floats < dfn_conv2d_winograd_size(H, W,
   Ci, Co, 1), or that size is 0: too large); nothing is written then. */
DFNDEF dfn_result dfn_conv2d_winograd_forward(float *out, const float *in, const float *Wt, const float *b,
                                              int B, int H, int W, int Ci, int Co, float *col,
                                              size_t col_floats, float *work);

#ifndef DFN_NO_TRAINING
/* The backward pass of dfn_conv2d_winograd_forward: din += d/d in (skipped
   when NULL), dW += d/d Wt, db += d/d b (skipped when NULL); the same
   scratch and errors. */
DFNDEF dfn_result dfn_conv2d_winograd_backward(float *din, float *dW, float *db, const float *dout,
                                               const float *in, const float *Wt, int B, int H, int W, int Ci,
                                               int Co, float *col, size_t col_floats, float *work);
#endif

#ifndef DFN_NO_TRAINING
/* Given dout (B, H, W, Co): din += d/d in (skipped when NULL), dW += d/d Wt,
   db += d/d b (skipped when NULL). Same scratch as the forward pass, and
   faster with more (k = 3):
   - col_floats >= dfn_conv2d_col_size(H, W, Ci, k) + k k Ci Co: the last
     k k Ci Co floats hold dW transposed while the groups are summed (the
     product col^T dout runs 1.3-2.3x faster than dout^T col for 16 to 32
     output channels);
   - col_floats >= dfn_conv2d_col_size(H, W, max(Ci, Co), k) + 2 k k Ci Co:
     also din as the convolution of dout with the kernel turned half a
     circle (kept in the k k Ci Co floats before those), im2col of dout and
     one product into din, instead of a product with K = Co folded back
     pixel by pixel.
   The results agree to rounding whichever way is taken. */
DFNDEF void dfn_conv2d_backward(float *din, float *dW, float *db, const float *dout,
                                const float *in, const float *Wt, int B, int H, int W,
                                int Ci, int Co, int k, float *col, size_t col_floats,
                                float *work);
#endif

/* GroupNorm (Wu & He 2018) over x (B, N, C), N = H W positions, C channels
   in G groups of C / G consecutive channels: for each sample and group,
       y = gamma[c] (x - mean) / sqrt(var + DFN_GROUPNORM_EPS) + beta[c]
   with the mean and (biased) variance over the group's N C / G values,
   computed in double. stats (B, G, 2) receives mean and 1/sqrt(var + eps)
   per group for the backward pass. y may not overlap x. */
#define DFN_GROUPNORM_EPS 1e-5f
DFNDEF void dfn_groupnorm_forward(float *y, float *stats, const float *x, const float *gamma,
                                  const float *beta, int B, int N, int C, int G);
#ifndef DFN_NO_TRAINING
/* dx += d/dx, dgamma += d/dgamma, dbeta += d/dbeta given dy; x and stats as
   in the forward pass:  with xhat = (x - mean) r, r = 1/sqrt(var + eps),
       dx = r (g - mean(g) - xhat mean(g xhat)),   g = dy gamma,
   means over the group. */
DFNDEF void dfn_groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                                   const float *x, const float *stats, const float *gamma,
                                   int B, int N, int C, int G);
#endif

/* 2x2 average pooling: out (B, H/2, W/2, C) from in (B, H, W, C), H and W
   even. The backward pass adds dout / 4 to each of the four inputs. */
DFNDEF void dfn_avgpool2_forward(float *out, const float *in, int B, int H, int W, int C);
/* 2x nearest-neighbour upsampling: out (B, 2H, 2W, C) from in (B, H, W, C).
   The backward pass adds the sum of the four douts to din. */
DFNDEF void dfn_upsample2_forward(float *out, const float *in, int B, int H, int W, int C);
#ifndef DFN_NO_TRAINING
DFNDEF void dfn_avgpool2_backward(float *din, const float *dout, int B, int H, int W, int C);
DFNDEF void dfn_upsample2_backward(float *din, const float *dout, int B, int H, int W, int C);
#endif

/* Single-head self-attention over the N positions of each sample
   (Vaswani et al. 2017), x (B, N, C):
       [q k v] = x Wqkv^T + bqkv          Wqkv (3C, C), bqkv (3C)
       P       = softmax_rows(q k^T / sqrt(C))          (N, N)
       o       = P v                                     (N, C)
       out     = o Wo^T + bo              Wo (C, C), bo (C)
   (no residual, no normalization: the U-Net adds those). qkv (B, N, 3C),
   probs (B, N, N) and o (B, N, C) are kept for the backward pass. */
DFNDEF void dfn_attention_forward(float *out, float *qkv, float *probs, float *o, const float *x,
                                  const float *Wqkv, const float *bqkv, const float *Wo,
                                  const float *bo, int B, int N, int C, float *work);
#ifndef DFN_NO_TRAINING
/* Floats of scratch dfn_attention_backward needs: N (N + 4 C). */
DFNDEF size_t dfn_attention_scratch_size(int N, int C);
/* dx += d/dx and the weight gradients += theirs, given dout (B, N, C):
       do = dout Wo,  dP = do v^T,  dv = P^T do,
       dS = P * (dP - rowsum(dP * P)) / sqrt(C),  dq = dS k,  dk = dS^T q. */
DFNDEF void dfn_attention_backward(float *dx, float *dWqkv, float *dbqkv, float *dWo, float *dbo,
                                   const float *dout, const float *x, const float *qkv,
                                   const float *probs, const float *o, const float *Wqkv,
                                   const float *Wo, int B, int N, int C, float *scratch,
                                   float *work);
#endif

/* ========================================================================= */
/*  Networks: one interface for every noise network                          */
/* ========================================================================= */
/* A noise network is a table of operations (dfn_net_ops) over a
   configuration struct and a flat block of weights (dfn_net). The trainer,
   the model files and the sampler adapter take any dfn_net and never ask
   which kind it is, so the MLP, the U-Net and a program's own network train,
   save, load and sample through the same code. The MLP and the U-Net give
   theirs with dfn_mlp_net / dfn_unet_net; manual section 8 says how to write
   a new one (tests/test_netif.c defines a two-layer network outside the
   library this way). */

/* The networks a model file can hold (stored ids: never renumbered). A
   program's own networks use ids from DFN_NET_USER to DFN_NET_USER_LAST. */
typedef enum dfn_net_kind {
    DFN_NET_MLP        = 1,
    DFN_NET_UNET       = 2,
    DFN_NET_CLASSIFIER = 3,      /* the guidance classifier (no training ops) */
    DFN_NET_USER       = 0x100,
    DFN_NET_USER_LAST  = 0xffff
} dfn_net_kind;

/* The largest configuration struct (config_bytes) and stored configuration
   a network may have. */
#define DFN_NET_CONFIG_MAX 1024

/* What the trainer, the samplers and the files need to know of a network. */
typedef struct dfn_net_shape {
    size_t params;            /* floats in each flat block (weights, gradients, moments) */
    int    dim;               /* values per sample in: the sampler's dim         */
    int    out_dim;           /* values per sample out; 0 = dim (a noise network:
                                 the trainer and the samplers need out = in)     */
    int    cond_dim;          /* conditioning floats per sample; 0 = none        */
    int    num_classes;       /* 0 = unconditional; else labels -1..C-1          */
    dfn_prediction prediction;/* what the network outputs                        */
} dfn_net_shape;

typedef struct dfn_net dfn_net;

/* The names and shapes of a network's weights are those of its PyTorch
   twin's state_dict (tools/torch/dfn_torch.py), so a model trained in
   PyTorch loads here and one trained here loads there. Shapes are in
   PyTorch's layout: a 3x3 convolution is (Co, Ci, 3, 3), which the flat
   block keeps as (Co, 3, 3, Ci): those tensors have conv set and are
   transposed when written and read. */
#define DFN_TENSOR_NAME_MAX 64

typedef struct dfn_net_tensor {
    char   name[DFN_TENSOR_NAME_MAX];
    int    ndim;                     /* 1 .. 4                                */
    int    shape[4];                 /* PyTorch's layout                      */
    size_t offset, count;            /* the floats in the flat block          */
    int    conv;                     /* 1: (Co, 3, 3, Ci) in the block        */
} dfn_net_tensor;

/* The operations of one kind of network; cfg always points at the kind's
   configuration struct. The library calls them only with checked arguments
   (a described config, n >= 1, t >= 0, labels in -1..C-1, cond when
   cond_dim > 0, training memory of train_size bytes), so they need not
   check again, except that forward gets the caller's workspace as it is:
   it answers DFN_ERR_BUFFER_TOO_SMALL when that holds not even one sample.
   None may allocate. The (training) ones may be NULL for a network that is
   only run. */
typedef struct dfn_net_ops {
    uint32_t    kind;         /* the id model files store (dfn_net_kind)         */
    const char *name;         /* for messages ("mlp", "unet", ...)               */
    size_t      config_bytes; /* sizeof the configuration struct (<= DFN_NET_CONFIG_MAX) */
    /* DFN_ERR_INVALID_ARG for a bad config; else fills shape. */
    dfn_result (*describe)(const void *cfg, dfn_net_shape *shape);
    /* Fills net->params deterministically from rng. */
    void (*init_weights)(const dfn_net *net, dfn_rng *rng);
    /* Inference: bytes of workspace to evaluate up to `chunk` samples at a
       time (0: too large); out (n, out_dim) = network(x (n, dim), t (n), labels
       (n or NULL), cond: rows of cond_dim floats, sample i using row
       i % cond_rows). */
    size_t (*forward_size)(const void *cfg, int chunk);
    dfn_result (*forward)(const dfn_net *net, float *out, const float *x, const float *cond,
                          int cond_rows, const int *t, const int *labels, int n, void *work,
                          size_t work_bytes);
    /* (training) Bytes of the training pass's memory for a batch (0: too
       large), and its layout, done once when a trainer is set up: the
       forward and backward then find everything in mem. */
    size_t (*train_size)(const void *cfg, int batch);
    void (*train_bind)(const void *cfg, int batch, void *mem);
    /* (training) The forward pass over the batch, keeping in mem what the
       backward needs; cond has one row per sample. */
    void (*train_forward)(const dfn_net *net, void *mem, int batch, float *out, const float *x,
                          const float *cond, const int *t, const int *labels);
    /* (training) After train_forward on the same mem and weights: the
       gradient of the loss, given dout = d loss / d out (batch, dim), added
       into grads. */
    void (*train_backward)(const dfn_net *net, void *mem, int batch, float *grads, const float *dout,
                           const int *labels);
    /* Model files: the configuration as bytes (buf NULL: only count them;
       returns the count, <= DFN_NET_CONFIG_MAX), read back into a
       configuration struct (DFN_ERR_FORMAT for bytes that do not make one;
       the library then describes it), and whether two configurations make
       the same network. */
    size_t (*config_save)(const void *cfg, unsigned char *buf);
    dfn_result (*config_load)(void *cfg, const unsigned char *buf, size_t len);
    int (*config_same)(const void *a, const void *b);
    /* The stored configuration's size when it is fixed (the MLP's and the
       U-Net's, as in format version 1); 0: stored after a u32 length. */
    size_t config_file_bytes;
    /* (optional: safetensors) The number of named tensors; with out, tensor
       i (0 <= i < that number) into *out: its name, PyTorch shape and place
       in the flat block, in the block's order (see dfn_net_tensors). */
    int (*tensor)(const void *cfg, int i, dfn_net_tensor *out);
} dfn_net_ops;

/* A network: its operations, its configuration and its weights. A view:
   the configuration and the weights stay the caller's. */
struct dfn_net {
    const dfn_net_ops *ops;
    const void *cfg;
    float      *params;       /* count floats                                    */
    size_t      count;        /* the shape's params                              */
};

/* Sets up net over ops, cfg and params (count floats from the shape; the
   values are not touched). Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (ops
   without describe, init_weights, forward, forward_size, config_save,
   config_load or config_same, config_bytes 0 or above DFN_NET_CONFIG_MAX,
   a bad config). */
DFNDEF dfn_result dfn_net_init(dfn_net *net, const dfn_net_ops *ops, const void *cfg, float *params);

/* The shape of ops over cfg. Errors: DFN_ERR_NULL, those of describe. */
DFNDEF dfn_result dfn_net_describe(const dfn_net_ops *ops, const void *cfg, dfn_net_shape *shape);

/* Deterministic initialization of the weights from rng. */
DFNDEF dfn_result dfn_net_init_weights(const dfn_net *net, dfn_rng *rng);

/* Bytes of workspace dfn_net_forward needs to evaluate up to `chunk` samples
   at a time; 0 for an invalid network or chunk. */
DFNDEF size_t dfn_net_forward_size(const dfn_net *net, int chunk);

/* Inference, as the kind's forward: out (n, out_dim) from x (n, dim), cond
   (cond_rows rows of cond_dim floats; sample i uses row i % cond_rows; NULL
   when cond_dim is 0), t (n), labels (n or NULL). Errors: DFN_ERR_NULL (also
   a missing cond), DFN_ERR_INVALID_ARG (n < 0, t < 0, a label outside
   -1..C-1), DFN_ERR_BUFFER_TOO_SMALL. */
DFNDEF dfn_result dfn_net_forward(const dfn_net *net, float *out, const float *x, const float *cond,
                                  int cond_rows, const int *t, const int *labels, int n, void *work,
                                  size_t work_bytes);

/* A dfn_predict_fn for samplers over any network: user points at a
   dfn_net_predictor (cond as in dfn_net_forward). */
typedef struct dfn_net_predictor {
    const dfn_net *net;
    const float *cond;
    int    cond_rows;
    void  *work;
    size_t work_bytes;
} dfn_net_predictor;
DFNDEF int dfn_net_predict(void *user, const float *x_t, const int *t, const int *labels, int n,
                           float *out);

/* dfn_sampler_config_default for this predictor: dim and prediction from the network. */
DFNDEF dfn_sampler_config dfn_net_sampler_config(dfn_sampler_kind kind, int n, dfn_net_predictor *p);

/* The library's own operations for a stored id (DFN_NET_MLP, DFN_NET_UNET,
   DFN_NET_CLASSIFIER); NULL for any other. */
DFNDEF const dfn_net_ops *dfn_net_ops_find(uint32_t kind);

/* ========================================================================= */
/*  The MLP noise network                                                    */
/* ========================================================================= */
/* eps_theta(x_t, t[, c]):
       e     = temb(t) + class_emb[c]                      (class_emb optional)
       in    = [x, emb(scale * x_1), ..., emb(scale * x_D), e]
       h_0   = act(W_in in + b_in)
       h_l   = h_{l-1} + act(W_l h_{l-1} + b_l),  l = 1..L  (residual blocks)
       out   = W_out h_L + b_out                           (eps, v or x0: cfg.prediction)
   Parameters live in one flat block (dfn_mlp_num_params floats); gradients,
   Adam moments and EMA weights are blocks of the same layout, so zeroing,
   saving, loading and the optimizer are one loop each. */

typedef struct dfn_mlp_config {
    int   dim;            /* D, values per sample (>= 1)                         */
    int   hidden;         /* H, width (default 128)                              */
    int   blocks;         /* L, residual blocks (default 3)                      */
    int   time_dim;       /* sinusoidal t-embedding size, even (default 128)     */
    int   input_emb_dim;  /* sinusoidal features per input coordinate, even;
                             0 = off (default 32 when D <= 3, else 0)            */
    float input_scale;    /* coordinates are scaled by this before embedding (25) */
    int   num_classes;    /* 0 = unconditional; else labels 0..C-1 and -1 (none) */
    dfn_activation act;   /* default DFN_ACT_GELU                                */
    dfn_prediction prediction; /* what the network outputs (default eps)         */
} dfn_mlp_config;

/* Offsets of each tensor inside a flat block (in floats). */
typedef struct dfn_mlp_layout {
    size_t in_dim;                 /* D + D * input_emb_dim + time_dim           */
    size_t w_in, b_in;             /* (H, in_dim), (H)                           */
    size_t blk, blk_stride;        /* block l: W at blk + l * blk_stride (H, H),
                                      b right after it (H)                       */
    size_t w_out, b_out;           /* (D, H), (D)                                */
    size_t cls;                    /* (num_classes + 1, time_dim); row C = "none" */
    size_t count;                  /* total floats                               */
} dfn_mlp_layout;

typedef struct dfn_mlp {
    dfn_mlp_config cfg;
    dfn_mlp_layout lay;
    float *params;                 /* lay.count floats, caller memory            */
} dfn_mlp;

/* Defaults for data of dimension dim. */
DFNDEF dfn_mlp_config dfn_mlp_config_default(int dim);

/* Validates cfg. DFN_ERR_INVALID_ARG for a non-positive size, odd embedding
   sizes, a non-finite or non-positive input_scale, unknown act / prediction,
   or a parameter count beyond 2^31 floats. */
DFNDEF dfn_result dfn_mlp_config_check(const dfn_mlp_config *cfg);

/* Number of parameters (floats in each flat block); 0 for an invalid config. */
DFNDEF size_t dfn_mlp_num_params(const dfn_mlp_config *cfg);

/* Sets up m over caller memory params (dfn_mlp_num_params(cfg) floats). The
   values are not touched: call dfn_mlp_init_weights or load them. */
DFNDEF dfn_result dfn_mlp_init(dfn_mlp *m, const dfn_mlp_config *cfg, float *params);

/* Deterministic initialization from rng, as PyTorch's defaults: every W and b
   of a layer with fan-in F uniform in [-1/sqrt(F), 1/sqrt(F)], class
   embeddings N(0, 1). */
DFNDEF dfn_result dfn_mlp_init_weights(dfn_mlp *m, dfn_rng *rng);

/* Bytes of workspace dfn_mlp_forward needs to evaluate up to `chunk` samples at
   a time (any n is then processed in chunks); 0 for an invalid config. */
DFNDEF size_t dfn_mlp_forward_size(const dfn_mlp_config *cfg, int chunk);

/* Inference: out (n, D) = network(x (n, D), t (n), labels (n or NULL)).
   work: dfn_mlp_forward_size(cfg, chunk) bytes for some chunk >= 1; no
   training buffers needed. The first layer's t part (t-embedding plus class
   embedding, through W_in) is computed once per run of neighbouring rows
   with equal t and label, the shape every sampler asks for; each row's
   result depends only on that row (one batch of n gives the bits of n
   batches of one). With threads installed, a large n is split into one
   block of rows per thread when work holds that many slices (rows are then
   processed in smaller chunks; the bits do not change).
   Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (t < 0, a label outside
   -1..C-1), DFN_ERR_BUFFER_TOO_SMALL. */
DFNDEF dfn_result dfn_mlp_forward(const dfn_mlp *m, float *out, const float *x, const int *t,
                                  const int *labels, int n, void *work, size_t work_bytes);

/* A dfn_predict_fn for samplers: user points at a dfn_mlp_predictor. Set the
   sampler's prediction to model->cfg.prediction (dfn_mlp_sampler_config does). */
typedef struct dfn_mlp_predictor {
    const dfn_mlp *model;
    void  *work;
    size_t work_bytes;
} dfn_mlp_predictor;
DFNDEF int dfn_mlp_predict(void *user, const float *x_t, const int *t,
                           const int *labels, int n, float *out);

/* dfn_sampler_config_default for this predictor: dim and prediction from the model. */
DFNDEF dfn_sampler_config dfn_mlp_sampler_config(dfn_sampler_kind kind, int n,
                                                 dfn_mlp_predictor *p);

/* The MLP as a dfn_net (a view of m: its config and weights), and its
   operations (kind DFN_NET_MLP). */
DFNDEF dfn_net dfn_mlp_net(const dfn_mlp *m);
DFNDEF const dfn_net_ops *dfn_mlp_net_ops(void);

/* ========================================================================= */
/*  Small weight formats and lean sampling for microcontrollers              */
/* ========================================================================= */
/* Storage formats for the MLP's weight matrices, for inference on small
   devices (MATH.md section 13); training stays in float.

     DFN_WEIGHTS_F32  float, as trained
     DFN_WEIGHTS_F16  IEEE binary16 (round to nearest even): half the bytes
     DFN_WEIGHTS_I8   int8 with one float scale per output row (the weight
                      format of TFLite Micro's and CMSIS-NN's int8 kernels):
                      scale_r = max_j |W_rj| / 127 (1 for an all-zero row),
                      q_rj = round(W_rj / scale_r) (ties away from zero),
                      clamped to -127..127; a quarter of the bytes

   Only the matrices (W_in, W_1..W_L, W_out) change format; biases and
   class embeddings (a few percent of the parameters) stay float. The
   forward pass reads the stored form directly: each output is
   scale_r * sum_j q_rj x_j + b_r (F16: sum_j w_j x_j + b_r, w_j converted
   exactly), one row after another in a fixed order, so a build with
   DFN_PORTABLE_MATH gives the same bits on every platform. Activations stay
   float (weight-only quantization). */
typedef enum dfn_weight_format {
    DFN_WEIGHTS_F32 = 0,
    DFN_WEIGHTS_F16 = 1,
    DFN_WEIGHTS_I8  = 2
} dfn_weight_format;

/* "f32", "f16", "i8"; NULL for an unknown format. */
DFNDEF const char *dfn_weight_format_name(dfn_weight_format f);

/* IEEE binary16 <-> float. dfn_f32_to_f16 rounds to nearest, ties to even;
   beyond the largest half (65504 plus half an ulp) it gives infinity, NaN
   stays NaN. dfn_f16_to_f32 is exact. */
DFNDEF uint16_t dfn_f32_to_f16(float v);
DFNDEF float dfn_f16_to_f32(uint16_t h);

/* Section 13's int8 form of one (rows, cols) row-major matrix w: q (rows *
   cols) and scale (rows). A NaN or infinite weight gives DFN_ERR_INVALID_ARG
   (nothing written past the rows already done). */
DFNDEF dfn_result dfn_quantize_rows_i8(const float *w, int rows, int cols, int8_t *q, float *scale);

/* An MLP in a storage format: three caller arrays (flash on a
   microcontroller, or memory the caller owns), never written.
     weights  W_in (H, in_dim), W_1..W_L (H, H), W_out (D, H), row-major,
              back to back: sizes.weights values of int8_t (I8), uint16_t
              holding binary16 bits (F16) or float (F32)
     scales   I8: one per row of those matrices (H + L H + D); else unused
     floats   b_in (H), b_1..b_L (H each), b_out (D), then the class
              embeddings ((C + 1) time_dim when num_classes = C > 0) */
typedef struct dfn_qmlp {
    dfn_mlp_config cfg;
    dfn_mlp_layout lay;            /* the float model's layout (for in_dim)   */
    dfn_weight_format format;
    const void  *weights;
    const float *scales;
    const float *floats;
} dfn_qmlp;

typedef struct dfn_qmlp_sizes {
    size_t weights;                /* matrix entries                          */
    size_t weight_bytes;           /* weights * 1, 2 or 4                     */
    size_t scales;                 /* floats of scales (I8), else 0           */
    size_t floats;                 /* biases and class embeddings             */
    size_t bytes;                  /* weight_bytes + 4 (scales + floats)      */
} dfn_qmlp_sizes;

/* The array sizes of cfg in format f. DFN_ERR_INVALID_ARG for an invalid
   config or format. */
DFNDEF dfn_result dfn_qmlp_sizes_of(const dfn_mlp_config *cfg, dfn_weight_format f, dfn_qmlp_sizes *s);

/* Sets up q over the arrays (scales may be NULL unless f is I8). */
DFNDEF dfn_result dfn_qmlp_init(dfn_qmlp *q, const dfn_mlp_config *cfg, dfn_weight_format f,
                                const void *weights, const float *scales, const float *floats);

/* Writes the float model m in format f into the caller's arrays (sizes from
   dfn_qmlp_sizes_of; scales NULL unless I8). F16 of a weight beyond the
   half range is refused (DFN_ERR_INVALID_ARG) rather than stored as
   infinity, as is a NaN or infinite weight in any format. */
DFNDEF dfn_result dfn_qmlp_quantize(const dfn_mlp *m, dfn_weight_format f, void *weights, float *scales,
                                    float *floats);

/* The float model the stored form stands for (every weight converted back
   exactly as the forward pass reads it) into m's parameters (set up by
   dfn_mlp_init with q's config): for measuring what the format costs with
   the fast float path. */
DFNDEF dfn_result dfn_qmlp_dequantize(const dfn_qmlp *q, dfn_mlp *m);

/* Bytes of workspace for dfn_qmlp_forward over up to `chunk` rows at a time
   (no product packing buffers: a few floats per hidden unit and row); 0
   for an invalid config. */
DFNDEF size_t dfn_qmlp_forward_size(const dfn_mlp_config *cfg, int chunk);

/* Inference as dfn_mlp_forward (same inputs, same errors), reading the
   weights in their stored format; plain C loops, one thread: this is the
   path for microcontrollers. Each row's result depends only on that row. */
DFNDEF dfn_result dfn_qmlp_forward(const dfn_qmlp *q, float *out, const float *x, const int *t,
                                   const int *labels, int n, void *work, size_t work_bytes);

/* A dfn_predict_fn for samplers (user: a dfn_qmlp_predictor), and the
   sampler defaults for it (dim and prediction from the model). */
typedef struct dfn_qmlp_predictor {
    const dfn_qmlp *model;
    void  *work;
    size_t work_bytes;
} dfn_qmlp_predictor;
DFNDEF int dfn_qmlp_predict(void *user, const float *x_t, const int *t, const int *labels, int n, float *out);
DFNDEF dfn_sampler_config dfn_qmlp_sampler_config(dfn_sampler_kind kind, int n, dfn_qmlp_predictor *p);

/* Respacing (MATH.md section 11, "Respacing"): the sampler's S visited
   timesteps tau_S > ... > tau_1 of a T-step schedule as a schedule of its
   own with S steps, so that a device keeps S + 1 table rows instead of
   T + 1. Step i of the new schedule has alphabar'_i = alphabar_{tau_i},
   that is beta'_i = 1 - alphabar_{tau_i} / alphabar_{tau_{i-1}} (tau_0 = 0,
   alphabar_0 = 1); DDIM and the solvers of section 11 read the schedule
   only at the visited steps, so sampling every step of the new schedule
   (steps = S, trailing) visits the same alphabars, and the network is
   asked at the original tau_i (dfn_respaced_predict). DDPM's posterior on
   the new schedule is the strided one (DDIM with eta 1 between the visited
   steps).
   tau: the S + 1 values of a sampler's schedule (dfn_sampler.tau, tau[0] =
   0, increasing); betas: S floats for a DFN_SCHEDULE_CUSTOM config of T =
   S. Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (S < 1, tau not increasing
   within 0..T, a flow schedule, alphabar_{tau_S} = 0: zero terminal SNR). */
DFNDEF dfn_result dfn_schedule_respace(const dfn_schedule *s, const int *tau, int S, float *betas);

/* The predictor of a respaced schedule: calls predict(user, ...) with t
   replaced by tau[t]; t_buf: n ints of caller memory, n the most rows the
   sampler asks for at once (its n; 2n with classifier-free guidance).
   Returns DFN_ERR_BUFFER_TOO_SMALL for more rows, DFN_ERR_INVALID_ARG for
   a t outside 0..S, else what predict returns. */
typedef struct dfn_respaced_predictor {
    dfn_predict_fn predict;
    void      *user;
    const int *tau;                /* S + 1 original timesteps              */
    int        S;
    int       *t_buf;              /* n ints                                */
    int        n;
} dfn_respaced_predictor;
DFNDEF int dfn_respaced_predict(void *user, const float *x_t, const int *t, const int *labels, int n,
                                float *out);

/* ========================================================================= */
/*  The U-Net noise network for images                                       */
/* ========================================================================= */
/* eps_theta(x_t, t[, c][, cond]) for images (B, H, W, C), NHWC (see the image
   layers). The DDPM / ADM design, small:

     e      = W_e2 SiLU(W_e1 sin_emb(t) + b_e1) + b_e2 + class_emb[c]
     h      = conv3x3([x_t, cond])                   (cond: extra input channels)
     down:  per level l: `blocks` x ResBlock (+ attention), then 2x2 average
            pooling (not after the last level); every output is kept as a skip
     middle: ResBlock, attention, ResBlock
     up:    per level l (deepest first): blocks + 1 x ResBlock on
            [h, skip] (channels concatenated) (+ attention), then 2x nearest
            upsampling + conv3x3 (not after level 0)
     out    = conv3x3(SiLU(GroupNorm(h)))            (eps, v or x0)

     ResBlock(x, e) = conv2(SiLU(GN2(conv1(SiLU(GN1(x))) + W_p SiLU(e) + b_p)))
                      + skip(x)        (skip: 1x1 conv when channels change)
     Attention(x)   = x + the self-attention of GroupNorm(x) over the H W
                      positions (dfn_attention_forward)

   Channels at level l are base_channels * mult[l]. Parameters, gradients,
   Adam moments and EMA weights are flat blocks like the MLP's; the trainer,
   the samplers (through dfn_unet_predict) and the model files take the
   U-Net as they take the MLP. Initialization follows ADM: the last conv of
   each ResBlock, the attention output and the output conv start at zero. */

#define DFN_UNET_MAX_LEVELS 4
#define DFN_UNET_MAX_BLOCKS 3

typedef struct dfn_unet_config {
    int height, width;    /* image size, each a multiple of 2^(levels - 1), <= 256 */
    int channels;         /* C: channels of x_t and of the output (1 grey, 3 RGB) */
    int cond_channels;    /* extra input channels concatenated to x_t (a
                             conditioning image, e.g. an upsampled low-resolution
                             version); 0 = none (default)                       */
    int base_channels;    /* channels at level 0 (default 32)                  */
    int levels;           /* resolutions, 1..DFN_UNET_MAX_LEVELS (default 3)     */
    int mult[DFN_UNET_MAX_LEVELS];      /* channel multiplier (default 1, 2, 2, 2) */
    int blocks;           /* ResBlocks per level going down, 1..DFN_UNET_MAX_BLOCKS
                             (default 1; going up: blocks + 1)                 */
    int attention[DFN_UNET_MAX_LEVELS]; /* self-attention after each block of
                             level l (default: only at the lowest resolution)   */
    int mid_attention;    /* attention in the middle block (default 1)          */
    int groups;           /* GroupNorm groups, dividing every channel count (8)  */
    int time_dim;         /* embedding width (default 4 base_channels)          */
    int num_classes;      /* 0 = unconditional; else labels 0..C-1 and -1 (none) */
    dfn_prediction prediction;          /* default eps                          */
} dfn_unet_config;

typedef struct dfn_unet {
    dfn_unet_config cfg;
    size_t count;         /* parameters (floats in each flat block)             */
    float *params;        /* caller memory                                      */
} dfn_unet;

/* Defaults for images of channels x height x width. */
DFNDEF dfn_unet_config dfn_unet_config_default(int channels, int height, int width);

/* Validates cfg: DFN_ERR_INVALID_ARG for sizes out of range, a size not
   divisible by 2^(levels - 1), channel counts the groups do not divide, an odd
   base_channels, unknown prediction, or more than 2^31 parameters. */
DFNDEF dfn_result dfn_unet_config_check(const dfn_unet_config *cfg);

/* Values per sample the network predicts: height * width * channels (the
   sampler's dim). 0 for an invalid config. */
DFNDEF int dfn_unet_dim(const dfn_unet_config *cfg);

/* Number of parameters; 0 for an invalid config. */
DFNDEF size_t dfn_unet_num_params(const dfn_unet_config *cfg);

/* Sets up u over caller memory params (dfn_unet_num_params floats); the
   values are not touched. */
DFNDEF dfn_result dfn_unet_init(dfn_unet *u, const dfn_unet_config *cfg, float *params);

/* Deterministic initialization from rng: convolutions and dense layers
   uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)] (PyTorch's default), GroupNorm
   gamma 1 and beta 0, class embeddings N(0, 1), and zeros for the last conv
   of each ResBlock, the attention output and the output conv (ADM). */
DFNDEF dfn_result dfn_unet_init_weights(dfn_unet *u, dfn_rng *rng);

/* Bytes of workspace dfn_unet_forward needs to evaluate up to `chunk` images
   at a time (any n is processed in chunks); 0 for an invalid config. */
DFNDEF size_t dfn_unet_forward_size(const dfn_unet_config *cfg, int chunk);

/* Inference: out (n, H, W, C) = network(x (n, H, W, C), t (n), labels (n or
   NULL), cond (n, H, W, cond_channels), or NULL when cond_channels is 0).
   Errors: DFN_ERR_NULL (also a missing cond), DFN_ERR_INVALID_ARG (t < 0, a
   label outside -1..C-1), DFN_ERR_BUFFER_TOO_SMALL. */
DFNDEF dfn_result dfn_unet_forward(const dfn_unet *u, float *out, const float *x,
                                   const float *cond, const int *t, const int *labels, int n,
                                   void *work, size_t work_bytes);

/* A dfn_predict_fn for samplers. cond, when the network has cond_channels,
   holds cond_rows conditioning images; sample i of a predictor call uses
   image i % cond_rows (so one image can condition every sample). */
typedef struct dfn_unet_predictor {
    const dfn_unet *model;
    const float *cond;
    int    cond_rows;
    void  *work;
    size_t work_bytes;
} dfn_unet_predictor;
DFNDEF int dfn_unet_predict(void *user, const float *x_t, const int *t,
                            const int *labels, int n, float *out);

/* dfn_sampler_config_default for this predictor: dim and prediction from the model. */
DFNDEF dfn_sampler_config dfn_unet_sampler_config(dfn_sampler_kind kind, int n,
                                                  dfn_unet_predictor *p);

/* The U-Net as a dfn_net (a view of u), and its operations (kind
   DFN_NET_UNET; cond_dim = height * width * cond_channels). */
DFNDEF dfn_net dfn_unet_net(const dfn_unet *u);
DFNDEF const dfn_net_ops *dfn_unet_net_ops(void);

/* ========================================================================= */
/*  Guidance: a noise-aware classifier and a constraint (MATH.md sections 8, 9) */
/* ========================================================================= */
/* Two uses of the sampler's guidance hook (dfn_guide_fn):

   Classifier guidance (Dhariwal & Nichol 2021): a small classifier
   p(y | x_t, t) trained on noised data x_t = q_sample(x_0, t) (section 1)
   with the library's layers; its input gradient g = grad_x log p(y | x_t, t)
   comes from the hand-written backward passes, and the hook applies
   eps_hat <- eps_hat - s sqrt(1 - alphabar_t) g (dfn_guide_add_score).

       e      = temb(t)                                (sinusoidal, time_dim)
       h_1    = act(W_1 [x, e] + b_1)                   (H)
       h_2    = act(W_2 h_1 + b_2)                      (H)
       logits = W_3 h_2 + b_3                           (C)
       log p(y | x, t) = logits_y - logsumexp(logits)

   Constraint guidance: keep samples in the half-space a . x <= b with the
   differentiable penalty P(x) = 0.5 max(0, a . x - b)^2 / |a|^2 evaluated
   at the current x0_hat. The hook moves x0_hat one gradient step down P,
   x0_hat <- x0_hat - strength grad P(x0_hat) (strength 1 projects x0_hat
   onto the half-space), written as the score term that does exactly this
   through Tweedie's x0_hat = (x_t + (1 - alphabar_t) score) / sqrt(alphabar_t)
   (sections 4, 9):

       g = -(sqrt(alphabar_t) / (1 - alphabar_t)) strength grad P(x0_hat)

   applied with eps_hat <- eps_hat - sqrt(1 - alphabar_t) g. A disc or any
   other convex set works the same way with its own penalty: write a hook
   like dfn_halfspace_guide. */

typedef struct dfn_classifier_config {
    int dim;               /* D (>= 1)                                        */
    int num_classes;       /* C (>= 2)                                        */
    int hidden;            /* H (default 64)                                  */
    int time_dim;          /* sinusoidal t-embedding size, even (default 32)  */
    dfn_activation act;    /* default DFN_ACT_SILU                            */
} dfn_classifier_config;

/* Parameters in one flat block: W_1 (H, D + time_dim), b_1 (H), W_2 (H, H),
   b_2 (H), W_3 (C, H), b_3 (C), in this order. */
typedef struct dfn_classifier {
    dfn_classifier_config cfg;
    size_t count;          /* floats in the block                            */
    float *params;         /* caller memory                                  */
} dfn_classifier;

DFNDEF dfn_classifier_config dfn_classifier_config_default(int dim, int num_classes);

/* Floats of the parameter block; 0 for an invalid config (a size < 1, C < 2,
   odd time_dim, unknown act, more than 2^28 parameters). */
DFNDEF size_t dfn_classifier_num_params(const dfn_classifier_config *cfg);

/* Sets up c over params (dfn_classifier_num_params floats; values untouched). */
DFNDEF dfn_result dfn_classifier_init(dfn_classifier *c, const dfn_classifier_config *cfg,
                                      float *params);

/* PyTorch-style U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for every W and b. */
DFNDEF dfn_result dfn_classifier_init_weights(dfn_classifier *c, dfn_rng *rng);

/* Bytes of workspace for up to n samples per call (forward and backward);
   0 for an invalid config or n < 1. */
DFNDEF size_t dfn_classifier_work_size(const dfn_classifier_config *cfg, int n);

/* logp (n, C) = log p(y | x, t) for every class y. x (n, D), t (n) >= 0.
   Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (n < 1, t < 0),
   DFN_ERR_BUFFER_TOO_SMALL (work smaller than dfn_classifier_work_size(n)). */
DFNDEF dfn_result dfn_classifier_forward(const dfn_classifier *c, float *logp, const float *x,
                                         const int *t, int n, void *work, size_t work_bytes);

/* The classifier as a dfn_net (a view of c; kind DFN_NET_CLASSIFIER): its
   forward gives logp, out_dim = C values per sample (any n, in chunks of
   the workspace), so the model files hold it like the noise networks. It
   has no training operations: dfn_classifier_trainer trains it. */
DFNDEF dfn_net dfn_classifier_net(const dfn_classifier *c);
DFNDEF const dfn_net_ops *dfn_classifier_net_ops(void);

#ifndef DFN_NO_TRAINING
/* The objective L = sum_i w_i log p(labels_i | x_i, t_i), with w_i = weight
   for every row whose label is >= 0 and 0 for label -1, and its gradients
   by the hand-written backward passes: grads (count floats, or NULL) +=
   dL/dparams; dx (n, D, or NULL) = dL/dx (overwritten: weight 1 gives the
   per-sample grad_x log p(y | x_t, t) that classifier guidance needs).
   *objective (may be NULL) gets L. Errors: those of dfn_classifier_forward,
   DFN_ERR_INVALID_ARG (a label outside -1..C-1). */
DFNDEF dfn_result dfn_classifier_backward(const dfn_classifier *c, float *grads, float *dx,
                                          double *objective, const float *x, const int *t,
                                          const int *labels, float weight, int n,
                                          void *work, size_t work_bytes);

/* Noise-aware training: per step, x_0 (B, D) with labels (B), t ~ U{1..T}
   and eps ~ N(0, I) per example, x_t in closed form (section 1), then one
   Adam step (Kingma & Ba 2015, bias-corrected; beta 0.9, 0.999, eps 1e-8)
   on the mean cross-entropy -1/B sum_i log p(y_i | x_t,i, t). */
typedef struct dfn_classifier_trainer {
    dfn_classifier     *clf;
    const dfn_schedule *schedule;
    int    batch;
    float  lr;
    long   step;
    float *grads, *adam_m, *adam_v, *xt, *eps;
    int   *t;
    void  *work;
    size_t work_bytes;
    void  *memory;
} dfn_classifier_trainer;

/* Bytes dfn_classifier_trainer_init needs; 0 for an invalid config or batch < 1. */
DFNDEF size_t dfn_classifier_trainer_size(const dfn_classifier_config *cfg, int batch);

/* Adam moments start at 0. Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG
   (batch < 1, lr <= 0 or not finite), DFN_ERR_BUFFER_TOO_SMALL. */
DFNDEF dfn_result dfn_classifier_trainer_init(dfn_classifier_trainer *tr, dfn_classifier *clf,
                                              const dfn_schedule *s, int batch, float lr,
                                              void *mem, size_t bytes);

/* One step on x0 (B, D) and labels (B, each 0..C-1); *loss (may be NULL)
   gets the mean cross-entropy before the update. Errors: DFN_ERR_NULL,
   DFN_ERR_INVALID_ARG (a label outside 0..C-1), DFN_ERR_NOT_FINITE (x0, or
   the loss or gradient: the weights are then left unchanged). */
DFNDEF dfn_result dfn_classifier_train_step(dfn_classifier_trainer *tr, const float *x0,
                                            const int *labels, dfn_rng *rng, float *loss);

/* A dfn_guide_fn for the sampler: user points at a dfn_classifier_guidance.
   At each step it computes g = grad_x log p(y | x_t, t) for the sampler's
   labels (rows with label -1 get g = 0) and applies
   eps_hat <- eps_hat - scale sqrt(1 - alphabar_t) g. work holds
   dfn_classifier_work_size(cfg, n) bytes, grad n * D floats (the sampler's
   n and D). Returns a dfn_result. */
typedef struct dfn_classifier_guidance {
    const dfn_classifier *clf;
    float  scale;          /* s >= 0; 0 leaves eps_hat unchanged              */
    void  *work;
    size_t work_bytes;
    float *grad;           /* (n, D) scratch                                  */
} dfn_classifier_guidance;
DFNDEF int dfn_classifier_guide(void *user, const dfn_guide_info *info);
#endif /* DFN_NO_TRAINING */

/* A dfn_guide_fn keeping samples in the half-space a . x <= b (the penalty
   above): user points at a dfn_halfspace_guidance. Rows of any label are
   guided. Returns a dfn_result. */
typedef struct dfn_halfspace_guidance {
    const float *a;        /* (D) normal of the boundary                      */
    float  b;              /* offset                                          */
    float  strength;       /* >= 0                                            */
} dfn_halfspace_guidance;
DFNDEF int dfn_halfspace_guide(void *user, const dfn_guide_info *info);

#ifndef DFN_NO_TRAINING
/* ========================================================================= */
/*  Finite-difference gradient checker                                       */
/* ========================================================================= */

/* A scalar function of a parameter vector (e.g. a loss), computed by the
   caller; it must not change params. */
typedef double (*dfn_loss_fn)(void *user, const float *params);

/* Compares grad (n) with central differences (f(p + h e_i) - f(p - h e_i)) / 2h
   at every stride-th index (stride >= 1; index 0 first). params is modified
   during the check and restored exactly. Reports the largest relative error
   |num - ana| / max(|num| + |ana|, floor) over the checked indices and where
   it occurred. Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (h <= 0, stride < 1,
   floor <= 0), DFN_ERR_NOT_FINITE (f returned a non-finite value). */
DFNDEF dfn_result dfn_check_grad(dfn_loss_fn f, void *user, float *params, size_t n,
                                 const float *grad, size_t stride, float h, double floor,
                                 double *max_rel_err, size_t *worst_index);

#endif /* DFN_NO_TRAINING */

/* ========================================================================= */
/*  Training (MATH.md section 5)                                             */
/* ========================================================================= */

typedef enum dfn_loss_weighting {
    DFN_WEIGHT_UNIFORM = 0,   /* every t counts the same                         */
    DFN_WEIGHT_MIN_SNR = 1    /* Min-SNR-gamma (Hang et al. 2023): eps
                                 min(SNR, g)/SNR, v min(SNR, g)/(SNR + 1),
                                 x0 min(SNR, g)                                  */
} dfn_loss_weighting;

/* How the trainer draws t (section 5; section 12 for the logit-normal). */
typedef enum dfn_time_sampling {
    DFN_TIME_UNIFORM = 0,     /* t ~ U{1..T}                                    */
    DFN_TIME_LOGIT_NORMAL = 1 /* SD3: u = sigmoid(m + s n), n ~ N(0, 1),
                                 t = ceil(u T) clamped to 1..T (flow's default
                                 in the examples; any schedule)                 */
} dfn_time_sampling;

typedef struct dfn_train_config {
    int   batch;             /* B, examples per step (default 256)               */
    float lr;                /* peak learning rate (default 1e-3)                */
    float beta1, beta2, eps; /* Adam (0.9, 0.999, 1e-8)                           */
    float weight_decay;      /* decoupled (AdamW) when > 0 (default 0)            */
    float grad_clip;         /* max global L2 norm of the gradient; 0 = off      */
    int   warmup_steps;      /* linear warmup from 0 to lr (default 0)           */
    int   total_steps;       /* > 0: cosine decay to lr * min_lr_ratio by then    */
    float min_lr_ratio;      /* (default 0)                                      */
    float ema_decay;         /* EMA of the weights, 0 = off (default 0.999); step k
                                uses min(ema_decay, (1 + k) / (10 + k))           */
    dfn_loss_weighting weighting;
    float min_snr_gamma;     /* (default 5)                                      */
    float p_uncond;          /* class-conditional nets: label dropped to -1 with
                                this probability (default 0.1)                   */
    dfn_time_sampling time_sampling; /* (default uniform)                        */
    float logit_mean, logit_std;     /* logit-normal m and s > 0 (default 0, 1)  */
} dfn_train_config;

typedef struct dfn_trainer {
    dfn_train_config    cfg;
    dfn_net             net;        /* the network trained in place             */
    dfn_net             ema_net;    /* the same over the EMA weights (ema_decay
                                       > 0; else the weights themselves)        */
    const dfn_schedule *schedule;
    dfn_mlp            *model;      /* set up by dfn_trainer_init: the MLP      */
    dfn_unet           *unet;       /* by dfn_trainer_init_unet: the U-Net      */
    dfn_mlp             ema_model;  /* views of the EMA weights of those two    */
    dfn_unet            ema_unet;
    float *grads, *adam_m, *adam_v, *ema;  /* flat blocks like net.params      */
    float *acts;                    /* the network's training memory            */
    long   step;                    /* optimizer steps taken                    */
    float  last_lr, last_grad_norm;
    void  *memory;
    void  *state;                   /* the step's buffers, laid out at init     */
} dfn_trainer;

#ifndef DFN_NO_TRAINING
DFNDEF dfn_train_config dfn_train_config_default(void);

/* Bytes dfn_trainer_init needs; 0 for an invalid configuration. */
DFNDEF size_t dfn_trainer_size(const dfn_mlp_config *model_cfg, const dfn_train_config *cfg);

/* Sets up training of model (its weights as they are: initialize or load them
   first) on schedule s. The EMA starts as a copy of the weights, the Adam
   moments at 0. Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (batch < 1, lr <= 0,
   betas outside [0, 1), eps <= 0, negative decay / clip / warmup, ema_decay
   outside [0, 1), p_uncond outside [0, 1], gamma <= 0, an unknown time
   sampling, logit_std <= 0 or a non-finite logit_mean), DFN_ERR_BUFFER_TOO_SMALL. */
DFNDEF dfn_result dfn_trainer_init(dfn_trainer *tr, dfn_mlp *model, const dfn_schedule *s,
                                   const dfn_train_config *cfg, void *mem, size_t bytes);

/* The same for a U-Net (tr->unet set, tr->model NULL), and for any network
   with training operations (dfn_trainer_size_net needs only net->ops and
   net->cfg; DFN_ERR_INVALID_ARG for a network without them). Everything
   below takes any trainer; tr->net (and tr->ema_net) is the trained network. */
DFNDEF size_t dfn_trainer_size_unet(const dfn_unet_config *model_cfg, const dfn_train_config *cfg);
DFNDEF dfn_result dfn_trainer_init_unet(dfn_trainer *tr, dfn_unet *model, const dfn_schedule *s,
                                        const dfn_train_config *cfg, void *mem, size_t bytes);
DFNDEF size_t dfn_trainer_size_net(const dfn_net *net, const dfn_train_config *cfg);
DFNDEF dfn_result dfn_trainer_init_net(dfn_trainer *tr, const dfn_net *net, const dfn_schedule *s,
                                       const dfn_train_config *cfg, void *mem, size_t bytes);

#ifndef DFN_NO_MALLOC
DFNDEF dfn_result dfn_trainer_alloc(dfn_trainer *tr, dfn_mlp *model, const dfn_schedule *s,
                                    const dfn_train_config *cfg, void *alloc_ctx);
DFNDEF dfn_result dfn_trainer_alloc_unet(dfn_trainer *tr, dfn_unet *model, const dfn_schedule *s,
                                         const dfn_train_config *cfg, void *alloc_ctx);
DFNDEF dfn_result dfn_trainer_alloc_net(dfn_trainer *tr, const dfn_net *net, const dfn_schedule *s,
                                        const dfn_train_config *cfg, void *alloc_ctx);
DFNDEF void dfn_trainer_free(dfn_trainer *tr, void *alloc_ctx);
#endif

/* One step of section 5 on the batch x0 (B, D) with labels (B, or NULL): draw
   t ~ U{1..T} and eps ~ N(0, I) per example, x_t in closed form, forward,
   loss = mean over the batch of w_t ||target - out||^2 / D, backward, clip,
   Adam(W) with bias correction, EMA. *loss (may be NULL) gets the loss.
   Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (a label outside -1..C-1,
   checked before any label is dropped; a step count outside 0..2^31 - 2),
   DFN_ERR_NOT_FINITE (x0 not finite, or a NaN/Inf loss or gradient: the
   weights are then left unchanged). */
DFNDEF dfn_result dfn_train_step(dfn_trainer *tr, const float *x0, const int *labels,
                                 dfn_rng *rng, float *loss);

/* dfn_train_step for a network with conditioning (a U-Net with
   cond_channels): cond (B, cond_dim), for a U-Net (B, H, W, cond_channels),
   are the conditioning inputs of the batch (DFN_ERR_NULL when the network
   needs them and cond is NULL; ignored by networks without). */
DFNDEF dfn_result dfn_train_step_cond(dfn_trainer *tr, const float *x0, const float *cond,
                                      const int *labels, dfn_rng *rng, float *loss);

/* The loss and gradient (into tr->grads, overwritten) at given t and eps,
   without an optimizer step: the deterministic core of dfn_train_step, for
   gradient checks and custom loops. */
DFNDEF dfn_result dfn_trainer_loss_grad(dfn_trainer *tr, const float *x0, const int *labels,
                                        const int *t, const float *eps, float *loss);
DFNDEF dfn_result dfn_trainer_loss_grad_cond(dfn_trainer *tr, const float *x0, const float *cond,
                                             const int *labels, const int *t, const float *eps,
                                             float *loss);

/* The learning rate of step `step` under cfg (warmup, cosine decay). */
DFNDEF float dfn_train_lr(const dfn_train_config *cfg, long step);

/* One training timestep in 1..T drawn from rng as dfn_train_step draws it:
   uniform (section 5) or SD3's logit-normal (section 12, cfg->time_sampling;
   P(t = k) = Phi((logit(k/T) - m)/s) - Phi((logit((k-1)/T) - m)/s)).
   Returns 0 when cfg or rng is NULL, T is outside 1..DFN_MAX_T or the
   time sampling is unknown. */
DFNDEF int dfn_train_time(const dfn_train_config *cfg, int T, dfn_rng *rng);
#endif /* DFN_NO_TRAINING */

/* ######################################################################### */
/*  PART 3  files, data and images                                           */
/* ######################################################################### */

/* ========================================================================= */
/*  Points from text (CSV or whitespace-separated)                           */
/* ========================================================================= */
/* The format, line by line (lines end with "\n" or "\r\n"; the last one
   needs no line end; a UTF-8 byte order mark at the start is skipped):
     - blank lines (only spaces, tabs, \r, \v, \f) are skipped;
     - a line whose first non-blank character is '#' is a comment, skipped
       (there are no comments after data on a line);
     - the first other line is a header, and skipped, when none of its
       fields is a number ("x,y" or "px py label"); otherwise it is data;
     - a data line has exactly `cols` numbers, separated by a comma or by
       blanks (a comma may have blanks around it); an empty field (",,",
       a leading or trailing comma) is malformed.
   Numbers: [+-] digits [. digits] [(e|E) [+-] digits] (digits on at least
   one side of the point; "1.", ".5", "-2e-3"), always with '.' whatever
   the C locale, parsed by the library itself, not strtod: rounded to the
   nearest float, within 1 ulp of strtod's result (exact except within
   about 1e-15 relative of a halfway point). Values beyond the float range
   are not finite; values below it round to 0 or a subnormal. "nan", "inf"
   and "infinity" (any case, with a sign) are numbers, but not finite.
   Errors, with the 1-based line number in *error_line:
     DFN_ERR_FORMAT           a field that is not a number ("1.5x", "0x10",
                              "1,,2"), a line with fewer or more than
                              cols numbers, or a line of more than
                              DFN_POINTS_MAX_LINE - 1 bytes before its
                              '\n' (or the end: the same limit for the
                              last line; a '\r' counts)
     DFN_ERR_NOT_FINITE       NaN, infinity, or a value beyond the float range
     DFN_ERR_BUFFER_TOO_SMALL a data line after max_rows rows were stored */

/* Parse text[0 .. len) (it need not be NUL-terminated and is never read
   past len) into out (max_rows, cols) row-major. With out == NULL only
   count: *rows gets the number of data rows and max_rows is ignored.
   *rows always gets the number of rows stored (or counted) before the
   first error; out beyond those rows is unspecified after an error.
   *error_line gets the line of the error, 0 on success (error_line may be
   NULL). Errors: those above, DFN_ERR_NULL (rows; text with len > 0),
   DFN_ERR_INVALID_ARG (cols < 1, max_rows < 0 or max_rows * cols too
   large, with out given). */
DFNDEF dfn_result dfn_points_parse(const char *text, size_t len, int cols, float *out,
                                   int max_rows, int *rows, int *error_line);

/* Longest line dfn_points_parse and dfn_points_load accept, its '\n'
   included: a line holds at most DFN_POINTS_MAX_LINE - 1 bytes before the
   '\n', the last line too, with or without one (override before the
   implementation include); it is also the bytes of dfn_points_load's stack
   buffer. */
#ifndef DFN_POINTS_MAX_LINE
#define DFN_POINTS_MAX_LINE 4096
#endif

#ifndef DFN_NO_STDIO
/* dfn_points_parse on the contents of the file at path, read in chunks
   through a DFN_POINTS_MAX_LINE-byte stack buffer (no allocation): the same
   results and error lines as parsing the whole file in memory (a line
   over the limit is DFN_ERR_FORMAT in both). Errors: those of dfn_points_parse,
   DFN_ERR_NULL (path), DFN_ERR_IO (cannot open or read). */
DFNDEF dfn_result dfn_points_load(const char *path, int cols, float *out, int max_rows,
                                  int *rows, int *error_line);
#endif

/* ========================================================================= */
/*  Toy data sets in 2D                                                      */
/* ========================================================================= */
/* The classic 2D benchmarks of diffusion and flow papers (FFJORD's toy
   data, sklearn's generators), each scaled by fixed constants so that every
   coordinate has mean 0 and standard deviation 1 (exactly, in distribution;
   the constants are closed forms, derived in the implementation). Draws
   come from the rng alone, and the points are computed in 64-bit integer
   fixed point (Q30) from its integers and its normals, with one rounding to
   float at the end: the same seed and stream give the same bits on every
   platform and with every compiler setting (FMA contraction and x87 excess
   precision cannot change them; no libm). Positions are accurate to about
   1e-9 before that rounding. */

/* Values are stored in files: never renumbered. */
typedef enum dfn_data2d {
    DFN_DATA2D_MOONS        = 0, /* "moons": two interleaved half circles        */
    DFN_DATA2D_SWISS_ROLL   = 1, /* "swissroll": the swiss roll seen from above  */
    DFN_DATA2D_GAUSSIANS8   = 2, /* "8gaussians": 8 Gaussians on a circle        */
    DFN_DATA2D_CHECKERBOARD = 3, /* "checkerboard": 8 uniform squares of a 4x4 board */
    DFN_DATA2D_CIRCLES      = 4, /* "circles": two concentric noisy circles      */
    DFN_DATA2D_SPIRAL       = 5  /* "spiral": two interleaved spiral arms        */
} dfn_data2d;

/* Number of kinds: valid kinds are 0 .. DFN_DATA2D_COUNT - 1. */
#define DFN_DATA2D_COUNT 6

/* DFN_DATA2D_GAUSSIANS8 is exactly the mixture
       sum_{k=0..7} 1/8 N(mu_k, s^2 I),  mu_k = R (cos(k pi/4), sin(k pi/4)),
   R = 8/sqrt(33), s = 1/sqrt(33), so that R^2/2 + s^2 = 1 (FFJORD's
   centers at radius 4 with std 0.5, rescaled to unit variance). In order,
   k = 0..7: (R, 0), (D, D), (0, R), (-D, D), (-R, 0), (-D, -D), (0, -R),
   (D, -D) with D = R/sqrt(2) = 8/sqrt(66) (the sampler holds them to 1e-9;
   the macros below are the nearest floats). Build the matching dfn_gmm
   with k = 8, dim = 2, equal weights, these means and stds all
   DFN_DATA2D_GAUSSIANS8_STD. */
#define DFN_DATA2D_GAUSSIANS8_RADIUS   1.39262125f  /* R = 8/sqrt(33) */
#define DFN_DATA2D_GAUSSIANS8_DIAGONAL 0.984731928f /* D = 8/sqrt(66) */
#define DFN_DATA2D_GAUSSIANS8_STD      0.174077656f /* s = 1/sqrt(33) */

/* n points of the data set into xy (n, 2) row-major. The distributions, in
   raw units before the fixed standardization (x - mean) / std per
   coordinate (u ~ U[0, 1), z ~ N(0, 1), "either" = probability 1/2 each):
     moons        t = pi u; either (cos t, sin t) or (1 - cos t, 1/2 - sin t);
                  plus 0.1 z per coordinate (sklearn make_moons, noise 0.1)
     swissroll    t = 3 pi/2 (1 + 2 u); (t cos t, t sin t) + 1.0 z
                  (sklearn make_swiss_roll's x and z, noise 1.0, as FFJORD)
     8gaussians   the mixture above (already standardized)
     checkerboard uniform on the 8 unit squares [i, i+1) x [j, j+1),
                  i, j in -2..1, with i + j even (FFJORD's board); per
                  coordinate std sqrt(4/3), correlation 3/16
     circles      radius 1 or 0.5, angle 2 pi u, plus 0.08 z (sklearn
                  make_circles, factor 0.5, noise 0.08, as FFJORD)
     spiral       r = 3 pi sqrt(u) (1.5 turns, density proportional to r:
                  about uniform along the arms); either
                  (-r cos r, r sin r) or its mirror (r cos r, -r sin r);
                  plus 0.3 z (FFJORD's 2spirals with Gaussian jitter)
   Errors: DFN_ERR_NULL (rng, or xy with n > 0), DFN_ERR_INVALID_ARG
   (unknown kind, n < 0). n = 0 draws nothing. */
DFNDEF dfn_result dfn_data2d_sample(dfn_data2d kind, dfn_rng *rng, float *xy, int n);

/* The name of a kind: "moons", "swissroll", "8gaussians", "checkerboard",
   "circles", "spiral"; NULL for an unknown kind. */
DFNDEF const char *dfn_data2d_name(dfn_data2d kind);

/* The kind with this exact (case-sensitive) name into *kind. Errors:
   DFN_ERR_NULL, DFN_ERR_INVALID_ARG (no such name; *kind is left alone). */
DFNDEF dfn_result dfn_data2d_from_name(const char *name, dfn_data2d *kind);

/* ========================================================================= */
/*  Checksums and whole files                                                */
/* ========================================================================= */

/* CRC-32 of IEEE 802.3 (zlib, PNG, gzip): reflected, polynomial 0xEDB88320,
   initial value and final xor 0xFFFFFFFF handled inside. Start with crc = 0
   and chain: dfn_crc32(dfn_crc32(0, a, la), b, lb) is the CRC of a then b.
   dfn_crc32(0, "123456789", 9) == 0xCBF43926. data may be NULL when len is
   0 (a NULL data with len > 0 returns crc unchanged). */
DFNDEF uint32_t dfn_crc32(uint32_t crc, const void *data, size_t len);

/* Largest file dfn_file_read_all reads: 1 GiB. */
#define DFN_FILE_MAX_BYTES ((size_t)1 << 30)

#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
/* Read the whole regular file at path into memory from
   DFN_MALLOC(size + 1, alloc_ctx): *data (followed by one 0 byte, not
   counted in *len, so text can be used as a C string) and *len; release
   with dfn_file_free. On error *data is NULL and *len 0. Errors:
   DFN_ERR_NULL, DFN_ERR_IO (cannot open, seek or read; not a seekable file),
   DFN_ERR_INVALID_ARG (larger than DFN_FILE_MAX_BYTES),
   DFN_ERR_OUT_OF_MEMORY. */
DFNDEF dfn_result dfn_file_read_all(const char *path, void *alloc_ctx, unsigned char **data,
                                    size_t *len);

/* Release the memory of dfn_file_read_all (NULL is fine). */
DFNDEF void dfn_file_free(void *data, void *alloc_ctx);

/* Write len bytes to path, replacing the file. The bytes go to
   "<path>.tmp" first (that name is built in DFN_MALLOC(strlen(path) + 5,
   NULL) memory, freed before returning), which is then renamed over path:
   a failed write leaves an existing file at path untouched and removes the
   temporary (on POSIX the replacement is atomic; where rename cannot
   replace, as on Windows, the old file is removed just before the rename).
   Nothing is synced to disk (C stdio cannot). Two writers of the same path
   at once are not supported. Errors: DFN_ERR_NULL (path; data with
   len > 0), DFN_ERR_INVALID_ARG (empty path), DFN_ERR_IO,
   DFN_ERR_OUT_OF_MEMORY. */
DFNDEF dfn_result dfn_file_write_all(const char *path, const void *data, size_t len);
#endif

/* ========================================================================= */
/*  Images: layout, IDX files, procedural shapes, PNG/PGM                    */
/* ========================================================================= */
/* An image batch is float32 NHWC: (n, H, W, C) row-major, values in
   [-1, 1]. One image is H*W*C floats: for C = 1 plain row-major pixels,
   for C = 3 interleaved R, G, B (the order PNG stores). A batch of images
   is data of dimension D = H*W*C to everything that takes (n, D).

   Pixel bytes b = 0..255 become b/127.5 - 1 = (2b - 255)/255 (0 -> -1,
   255 -> 1, computed as one correctly rounded float division, so the same
   bits everywhere). Writing goes back with
       b = round((v + 1) * 127.5),  halves up (only v = 0 is a half: 128),
       v <= -1 -> 0, v >= 1 -> 255 (clamped), NaN or infinity: an error,
   computed exactly (an exact scaling of v to 2^40 fixed point, then
   integers), so the same bytes on every platform; a value b/127.5 - 1 goes
   back to exactly b. */

/* The IDX format of the MNIST / Fashion-MNIST files: the magic bytes
   0x00 0x00 type ndims, then ndims big-endian u32 sizes, then the
   elements, big-endian, row-major. Types (the third byte): */
#define DFN_IDX_UBYTE  0x08   /* unsigned byte (MNIST's images and labels) */
#define DFN_IDX_SBYTE  0x09   /* signed byte                                */
#define DFN_IDX_SHORT  0x0B   /* 16-bit integer                             */
#define DFN_IDX_INT    0x0C   /* 32-bit integer                             */
#define DFN_IDX_FLOAT  0x0D   /* 32-bit float                               */
#define DFN_IDX_DOUBLE 0x0E   /* 64-bit float                               */
/* Most dimensions an IDX file may have here. */
#define DFN_IDX_MAX_DIMS 8

/* The header of an IDX file. */
typedef struct dfn_idx_info {
    int      type;                    /* one of DFN_IDX_UBYTE .. DFN_IDX_DOUBLE */
    int      ndims;                   /* 1 .. DFN_IDX_MAX_DIMS                  */
    uint32_t dims[DFN_IDX_MAX_DIMS];  /* sizes; dims[ndims..] are 0             */
    size_t   count;                   /* elements: the product of the sizes     */
    size_t   elem_bytes;              /* 1, 1, 2, 4, 4 or 8 by type             */
    size_t   data_offset;             /* 4 + 4 ndims: where the elements start  */
} dfn_idx_info;

/* Parse and validate the header of the IDX file data[0 .. len) (data need
   not be aligned; it is never read past len). The file must be exactly
   data_offset + count * elem_bytes bytes long: shorter is truncated,
   longer (trailing bytes) is malformed too. Sizes of 0 are allowed here.
   Errors: DFN_ERR_NULL (info; data with len > 0), DFN_ERR_FORMAT (first
   two bytes not 0, an unknown type, ndims 0 or above DFN_IDX_MAX_DIMS, a
   truncated header or body, trailing bytes, a size product or byte count
   that overflows size_t). *info is zeroed on error. */
DFNDEF dfn_result dfn_idx_info_mem(const void *data, size_t len, dfn_idx_info *info);

/* The images of an IDX file of type DFN_IDX_UBYTE with 3 dimensions
   (n, H, W) into out (n, H/f, W/f, 1) in [-1, 1], f = downsample: each
   output pixel is the mean of an f x f block, (2 sum - 255 f^2) /
   (255 f^2) from the integer sum of its bytes (f = 1: no downsampling;
   f = 2: 28x28 MNIST digits become 14x14). *n, *h, *w (each may be NULL)
   get n, H/f, W/f (also when cap is too small; 0 on other errors). With
   out == NULL only those are set (cap is ignored).
   Errors: DFN_ERR_NULL (data with len > 0), DFN_ERR_FORMAT (those of
   dfn_idx_info_mem; another type than ubyte, not 3 dimensions, H or W 0,
   n, H or W above INT_MAX), DFN_ERR_INVALID_ARG (downsample outside
   1..16 or not dividing both H and W), DFN_ERR_BUFFER_TOO_SMALL (cap <
   n (H/f) (W/f) floats; nothing written). */
DFNDEF dfn_result dfn_idx_images_mem(const void *data, size_t len, int downsample, float *out,
                                     size_t cap, int *n, int *h, int *w);

/* dfn_idx_images_mem for colour too: an IDX ubyte file of 3 dimensions
   (n, H, W: C = 1) or 4 (n, H, W, C), C 1..4 channels interleaved per pixel
   (RGB as PNG stores it; `make emoji-data` writes C = 3), into out
   (n, H/f, W/f, C), each channel averaged over f x f blocks as above. *c
   (may be NULL) gets C. Errors: those of dfn_idx_images_mem, with 4
   dimensions allowed and DFN_ERR_FORMAT for C outside 1..4. */
DFNDEF dfn_result dfn_idx_images_mem_c(const void *data, size_t len, int downsample, float *out,
                                       size_t cap, int *n, int *h, int *w, int *c);

/* The labels of an IDX file of type DFN_IDX_UBYTE with 1 dimension (n)
   into labels (n ints 0..255); *n (may be NULL) gets n. With labels ==
   NULL only *n is set (it is also set when cap is too small). Errors:
   DFN_ERR_NULL (data with len > 0), DFN_ERR_FORMAT (those of
   dfn_idx_info_mem; another type than ubyte, not 1 dimension, n above
   INT_MAX), DFN_ERR_BUFFER_TOO_SMALL (cap < n; nothing written). */
DFNDEF dfn_result dfn_idx_labels_mem(const void *data, size_t len, int *labels, int cap, int *n);

/* A labelled image set in memory, as dfn_idx_load gives it. */
typedef struct dfn_image_set {
    float *images;   /* (n, h, w, c) in [-1, 1]                              */
    int   *labels;   /* (n) class labels, or NULL when loaded without labels */
    int    n, h, w, c;
} dfn_image_set;

#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
/* Read an IDX image file (and, when labels_path is not NULL, its IDX label
   file) into memory from DFN_MALLOC(..., alloc_ctx), downsampled by
   `downsample` as in dfn_idx_images_mem; grey (n, H, W) files give c = 1,
   colour (n, H, W, C) files c = C (dfn_idx_images_mem_c). Each file is
   read whole (as by dfn_file_read_all, within the default dfn_limits: see
   dfn_idx_load_ex) and released before returning. On error every
   field of *set is 0 and nothing stays allocated. Release with
   dfn_image_set_free. Errors: DFN_ERR_NULL (set, images_path), those of
   dfn_file_read_all, dfn_idx_images_mem and dfn_idx_labels_mem,
   DFN_ERR_MISMATCH (the label file does not hold one label per image),
   DFN_ERR_LIMIT (over the default dfn_limits), DFN_ERR_OUT_OF_MEMORY. */
DFNDEF dfn_result dfn_idx_load(dfn_image_set *set, const char *images_path,
                               const char *labels_path, int downsample, void *alloc_ctx);

/* dfn_idx_load with limits (NULL: dfn_limits_default(), which dfn_idx_load
   uses): DFN_ERR_LIMIT, before the allocation it concerns, for a file
   whose buffer (size + 1) passes max_bytes, an image height or width above
   max_side, or more
   than max_bytes held at once (a file being read and the floats and labels
   made from it). */
DFNDEF dfn_result dfn_idx_load_ex(dfn_image_set *set, const char *images_path, const char *labels_path,
                                  int downsample, const dfn_limits *limits, void *alloc_ctx);

/* Release the memory of dfn_idx_load and zero *set (NULL or a zeroed set
   is fine). */
DFNDEF void dfn_image_set_free(dfn_image_set *set, void *alloc_ctx);
#endif

/* A procedural set of small labelled pictures for fast tests: one white
   shape on black per image, (n, size, size, 1) in [-1, 1]. Classes: */
#define DFN_SHAPES_DISC    0   /* "disc": a filled circle of radius s          */
#define DFN_SHAPES_SQUARE  1   /* "square": a filled square of half side s     */
#define DFN_SHAPES_RING    2   /* "ring": radii s/2 to s                        */
#define DFN_SHAPES_CROSS   3   /* "cross": a plus sign, arms s, half width s/3  */
#define DFN_SHAPES_COUNT   4   /* classes are 0 .. DFN_SHAPES_COUNT - 1        */
#define DFN_SHAPES_DEFAULT_SIZE 16
#define DFN_SHAPES_MIN_SIZE 8
#define DFN_SHAPES_MAX_SIZE 64

/* n images of size x size pixels into out (n, size, size, 1) and their
   classes into labels (n ints; labels may be NULL). Per image, drawn from
   the rng in this order with dfn_rng_below (units of 1/8 pixel): the class
   k uniform on 0..3; s uniform on [S/5, S/3] (S = 8 size, integer bounds
   rounded down); the centre (cx, cy), each uniform on [s, S - s], so the
   shape lies inside the image. Each pixel is sampled at 4 x 4 points,
   (8 i + 1 + 2 a, 8 j + 1 + 2 b) for a, b = 0..3 in the same units (i the
   row, j the column, dx = column point - cx, dy = row point - cy):
     disc   dx^2 + dy^2 <= s^2         square |dx| <= s and |dy| <= s
     ring   s^2 <= 4 (dx^2 + dy^2) <= 4 s^2
     cross  (|dx| <= s and 3 |dy| <= s) or (|dy| <= s and 3 |dx| <= s)
   and its value is m/8 - 1 for m of the 16 points inside (anti-aliased;
   -1 background, 1 fully inside). Integer arithmetic only: the same seed
   and stream give the same bits on every platform. Errors: DFN_ERR_NULL
   (rng; out with n > 0), DFN_ERR_INVALID_ARG (n < 0, size outside
   DFN_SHAPES_MIN_SIZE..DFN_SHAPES_MAX_SIZE, n size^2 too large). n = 0
   draws nothing. */
DFNDEF dfn_result dfn_shapes_sample(dfn_rng *rng, float *out, int *labels, int n, int size);

/* The name of a class ("disc", "square", "ring", "cross"); NULL outside
   0 .. DFN_SHAPES_COUNT - 1. */
DFNDEF const char *dfn_shapes_name(int k);

/* Tile n images (n, h, w, c) into one image out (gh, gw, c) with `cols`
   columns and rows = ceil(n / cols) rows, left to right then top to
   bottom, image k at row k / cols, column k % cols:
       gh = rows h + (rows + 1) pad,   gw = cols w + (cols + 1) pad,
   image k's top-left pixel at (pad + (k / cols)(h + pad),
   pad + (k % cols)(w + pad)). Borders, and the cells after the last image,
   are pad_value. cols larger than n is allowed (empty cells). images and
   out must not overlap. *gh and *gw
   (each may be NULL) get the grid's size; with out == NULL only those are
   set. Errors: DFN_ERR_NULL (images, when out is given),
   DFN_ERR_INVALID_ARG (n < 1, h, w, c or cols < 1, pad < 0, a grid
   too large for int sizes), DFN_ERR_BUFFER_TOO_SMALL (cap < gh gw c
   floats; nothing written). */
DFNDEF dfn_result dfn_image_grid(float *out, size_t cap, const float *images, int n, int h,
                                 int w, int c, int cols, int pad, float pad_value, int *gh,
                                 int *gw);

/* Bytes of the PNG file dfn_png_encode writes for an h x w image with c
   channels (1: grey, 3: RGB; 8 bits each): 8 (signature) + 25 (IHDR) +
   12 + Z (IDAT) + 12 (IEND), where Z = 2 + 5 ceil(R / 65535) + R + 4 is
   the zlib stream of R = h (1 + w c) bytes (each row: filter byte 0, then
   the pixels) in stored (uncompressed) deflate blocks. 0 when h or w < 1,
   c is not 1 or 3, or the IDAT chunk would exceed 2^31 - 1 bytes. */
DFNDEF size_t dfn_png_size(int h, int w, int c);

/* The PNG file of image (h, w, c) into out[0 .. cap): 8-bit grey (c = 1)
   or RGB (c = 3), no interlacing, no filtering, one IDAT chunk holding a
   zlib stream (header 0x78 0x01, stored deflate blocks of at most 65535
   bytes, Adler-32), chunk CRCs by dfn_crc32. Pixels as documented above
   (round((v + 1) 127.5), clamped). *len (may be NULL) gets the bytes
   written, dfn_png_size(h, w, c). Errors: DFN_ERR_NULL (image, out),
   DFN_ERR_INVALID_ARG (dfn_png_size is 0), DFN_ERR_BUFFER_TOO_SMALL (cap
   below dfn_png_size), DFN_ERR_NOT_FINITE (a NaN or infinite value; out
   is then unspecified). *len is 0 on error. */
DFNDEF dfn_result dfn_png_encode(const float *image, int h, int w, int c, void *out,
                                 size_t cap, size_t *len);

/* Bytes of the binary PGM (c = 1, "P5") or PPM (c = 3, "P6") file
   dfn_pnm_encode writes: the header "P5\n<w> <h>\n255\n" (P6 for RGB),
   decimal, then h w c bytes. 0 when h or w < 1 or c is not 1 or 3. */
DFNDEF size_t dfn_pnm_size(int h, int w, int c);

/* The PGM / PPM file of image (h, w, c) into out[0 .. cap), pixels as
   documented above. *len (may be NULL) gets the bytes written. Errors:
   as dfn_png_encode. */
DFNDEF dfn_result dfn_pnm_encode(const float *image, int h, int w, int c, void *out,
                                 size_t cap, size_t *len);

#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
/* dfn_png_encode / dfn_pnm_encode into DFN_MALLOC(size, NULL) memory, then
   dfn_file_write_all(path, ...) (the file is replaced as a whole or left
   alone). Errors: those of the encoder and of dfn_file_write_all,
   DFN_ERR_NULL (path), DFN_ERR_OUT_OF_MEMORY. */
DFNDEF dfn_result dfn_png_save(const char *path, const float *image, int h, int w, int c);
DFNDEF dfn_result dfn_pnm_save(const char *path, const float *image, int h, int w, int c);
#endif

/* ========================================================================= */
/*  Model files                                                              */
/* ========================================================================= */
/* One little-endian file (format version 2, written only for a flow
   schedule or one of diffusers' beta schedules, kinds 5-7; every other
   model is written as version 1, byte for byte as
   since 0.7.0, so older readers still read it):
       "DFNM"  u32 version  u32 flags (1: EMA weights, 2: optimizer state)
       u32 net kind (dfn_net_kind: 1 = MLP, 2 = U-Net; never renumbered)
       the network's config (dfn_net_ops config_save):
         MLP:    u32 dim, hidden, blocks, time_dim, input_emb_dim,
                 f32 input_scale, u32 num_classes, act, prediction
         U-Net:  u32 height, width, channels, cond_channels,
                 base_channels, levels, mult[4], blocks, attention[4],
                 mid_attention, groups, time_dim, num_classes, prediction
         a program's own (DFN_NET_USER and up): u32 length, then that many
                 bytes
       schedule:   u32 kind, T, zero_terminal_snr; f64 beta_start, beta_end,
                   cosine_s, sigmoid_start, sigmoid_end, sigmoid_tau, max_beta,
                   flow_shift (version 2 only; kinds 4-7 need version 2);
                   custom kind only: f32 betas[T]
       u32 P (parameter count)  f32 params[P]  [f32 ema[P]]
       [u32 step_lo, step_hi  f32 adam_m[P]  f32 adam_v[P]]
       u32 CRC-32 of every byte before it
   The schedule is stored as its configuration, so a loaded model rebuilds
   the very same tables and samples bit for bit as before saving. */

#define DFN_MODEL_VERSION 2

/* What a model file holds (from dfn_model_info; no weights). */
typedef struct dfn_model_info {
    uint32_t version;
    dfn_net_kind net;                /* the network's kind                     */
    int      has_ema, has_optimizer;
    long     step;                   /* optimizer steps, with optimizer state  */
    dfn_mlp_config mlp;              /* net == DFN_NET_MLP                     */
    dfn_unet_config unet;            /* net == DFN_NET_UNET                    */
    dfn_classifier_config classifier;/* net == DFN_NET_CLASSIFIER              */
    dfn_schedule_config schedule;    /* betas is NULL: see dfn_model_read      */
    size_t   params;                 /* P, floats in each block                */
    size_t   config_offset, config_len; /* where the stored config is in the
                                        image (for a program's own network)  */
} dfn_model_info;

/* Checks a whole file image (magic, version, checksum, sizes, configs) and
   describes it. A program's own network (net >= DFN_NET_USER) is checked as
   far as the file goes: its config is only located (config_offset, _len);
   dfn_model_read_net checks it. Errors: DFN_ERR_NULL, DFN_ERR_FORMAT (not a
   model file, truncated, trailing bytes, sizes that do not add up, an
   invalid config, an unknown kind), DFN_ERR_VERSION, DFN_ERR_CHECKSUM,
   DFN_ERR_NOT_FINITE (a NaN or infinity among the stored floats: weights,
   EMA, Adam moments; such a file never loads). It allocates nothing and
   applies no dfn_limits: a program that sizes memory from the info (for
   dfn_model_read) checks it first with dfn_model_check_limits. */
DFNDEF dfn_result dfn_model_info_mem(const void *buf, size_t len, dfn_model_info *info);

/* DFN_OK when the model info asks for no more than limits (NULL: the
   defaults) allow: schedule T <= max_T, P <= max_params, a U-Net's height
   and width <= max_side, and the bytes dfn_model_load_mem would allocate
   for it <= max_bytes (the file's own bytes are the caller's to count).
   Errors: DFN_ERR_NULL (info), DFN_ERR_LIMIT. */
DFNDEF dfn_result dfn_model_check_limits(const dfn_model_info *info, const dfn_limits *limits);

/* Reads the file image into objects the caller set up from its info:
   m (dfn_mlp_init with info.mlp) gets the weights; ema (P floats, or NULL)
   the EMA weights if the file has them; tr (or NULL), a trainer of m, gets
   the EMA, the Adam moments and the step count when the file has optimizer
   state; betas (info.schedule.T floats, or NULL) the custom betas when
   info.schedule.kind is DFN_SCHEDULE_CUSTOM (point info.schedule.betas at
   them before dfn_schedule_init). Errors: those of dfn_model_info_mem,
   DFN_ERR_NULL (m), DFN_ERR_MISMATCH (m's config differs from the file's). */
DFNDEF dfn_result dfn_model_read(const void *buf, size_t len, dfn_mlp *m, float *ema,
                                 dfn_trainer *tr, float *betas);
/* The same for a U-Net file (u set up with dfn_unet_init from info.unet), and
   for any network (net set up with its config; DFN_ERR_MISMATCH when the
   file holds another kind or config; tr, if given, a trainer of net). */
DFNDEF dfn_result dfn_model_read_unet(const void *buf, size_t len, dfn_unet *u, float *ema,
                                      dfn_trainer *tr, float *betas);
DFNDEF dfn_result dfn_model_read_net(const void *buf, size_t len, const dfn_net *net, float *ema,
                                     dfn_trainer *tr, float *betas);

/* Bytes of the file image of m (and, with tr, its EMA; with_optimizer, the
   Adam state too); 0 when it cannot be saved (see dfn_model_save_mem). */
DFNDEF size_t dfn_model_save_size(const dfn_mlp *m, const dfn_schedule *s, const dfn_trainer *tr,
                                  int with_optimizer);

/* Writes the file image into buf (cap bytes; *written gets the size).
   tr may be NULL (weights only). Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG
   (with_optimizer without tr; a custom schedule with zero terminal SNR,
   whose original betas are not kept), DFN_ERR_NOT_FINITE (a NaN or
   infinity in the weights, the EMA or the Adam moments to be written: no
   reader would load it), DFN_ERR_BUFFER_TOO_SMALL. */
DFNDEF dfn_result dfn_model_save_mem(void *buf, size_t cap, size_t *written, const dfn_mlp *m,
                                     const dfn_schedule *s, const dfn_trainer *tr, int with_optimizer);

/* The same two for a U-Net, and for any network (tr, if given, must be a
   trainer of net: DFN_ERR_MISMATCH otherwise). */
DFNDEF size_t dfn_model_save_unet_size(const dfn_unet *u, const dfn_schedule *s, const dfn_trainer *tr,
                                       int with_optimizer);
DFNDEF dfn_result dfn_model_save_unet_mem(void *buf, size_t cap, size_t *written, const dfn_unet *u,
                                          const dfn_schedule *s, const dfn_trainer *tr,
                                          int with_optimizer);
DFNDEF size_t dfn_model_save_net_size(const dfn_net *net, const dfn_schedule *s, const dfn_trainer *tr,
                                      int with_optimizer);
DFNDEF dfn_result dfn_model_save_net_mem(void *buf, size_t cap, size_t *written, const dfn_net *net,
                                         const dfn_schedule *s, const dfn_trainer *tr, int with_optimizer);

/* A model loaded with its schedule, in one allocation: net (and ema_net)
   is the network of any kind, its config in the allocation; for an MLP or a
   U-Net file the views of that kind are set too (info.net says which; the
   other pair is zeroed). */
typedef struct dfn_loaded_model {
    dfn_model_info info;
    dfn_schedule   schedule;
    dfn_net        net;              /* the weights                            */
    dfn_net        ema_net;          /* the EMA weights (ema != NULL), else net */
    dfn_mlp        model;            /* an MLP file: the weights               */
    dfn_mlp        ema_model;        /* the EMA weights, when ema != NULL      */
    dfn_unet       unet;             /* the same for a U-Net file              */
    dfn_unet       ema_unet;
    dfn_classifier classifier;       /* a classifier file: its weights         */
    float         *ema;
    long           step;
    void          *memory;
} dfn_loaded_model;

#ifndef DFN_NO_MALLOC
/* dfn_model_info_mem + dfn_model_read into memory from DFN_MALLOC, for the
   library's networks (an MLP or a U-Net file). dfn_model_load_net_mem takes
   the operations of the network the file must hold (NULL: the library's own
   for the file's kind); DFN_ERR_MISMATCH when the file holds another kind.
   Errors: those of dfn_model_info_mem and dfn_model_read_net,
   DFN_ERR_MISMATCH, DFN_ERR_LIMIT (over dfn_limits_default(), checked
   before allocating), DFN_ERR_OUT_OF_MEMORY. */
DFNDEF dfn_result dfn_model_load_mem(const void *buf, size_t len, void *alloc_ctx,
                                     dfn_loaded_model *out);
DFNDEF dfn_result dfn_model_load_net_mem(const void *buf, size_t len, const dfn_net_ops *ops,
                                         void *alloc_ctx, dfn_loaded_model *out);
/* dfn_model_load_net_mem with limits (NULL: dfn_limits_default(), which the
   two above use): DFN_ERR_LIMIT, before any allocation, for a file over
   them (dfn_model_check_limits). */
DFNDEF dfn_result dfn_model_load_net_mem_ex(const void *buf, size_t len, const dfn_net_ops *ops,
                                            const dfn_limits *limits, void *alloc_ctx,
                                            dfn_loaded_model *out);
DFNDEF void dfn_model_free(dfn_loaded_model *lm, void *alloc_ctx);
#endif

#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
/* The same from and to files (read whole as by dfn_file_read_all, the
   file's buffer counted in the limits; written by dfn_file_write_all: a
   failed save leaves an existing file untouched). Errors add DFN_ERR_IO
   and, for a load, DFN_ERR_LIMIT for a file over the default max_bytes. */
DFNDEF dfn_result dfn_model_load(const char *path, void *alloc_ctx, dfn_loaded_model *out);
DFNDEF dfn_result dfn_model_save(const char *path, const dfn_mlp *m, const dfn_schedule *s,
                                 const dfn_trainer *tr, int with_optimizer);
DFNDEF dfn_result dfn_model_save_unet(const char *path, const dfn_unet *u, const dfn_schedule *s,
                                      const dfn_trainer *tr, int with_optimizer);
DFNDEF dfn_result dfn_model_load_net(const char *path, const dfn_net_ops *ops, void *alloc_ctx,
                                     dfn_loaded_model *out);
DFNDEF dfn_result dfn_model_save_net(const char *path, const dfn_net *net, const dfn_schedule *s,
                                     const dfn_trainer *tr, int with_optimizer);
/* dfn_model_load_net with limits (NULL: the defaults, which the two loaders
   above use): a file whose buffer (size + 1) passes max_bytes is
   DFN_ERR_LIMIT before it is read, and that buffer plus the model's memory
   must fit in max_bytes. */
DFNDEF dfn_result dfn_model_load_net_ex(const char *path, const dfn_net_ops *ops, const dfn_limits *limits,
                                        void *alloc_ctx, dfn_loaded_model *out);
#endif

/* ========================================================================= */
/*  safetensors: tensors by name, the exchange format of the field          */
/* ========================================================================= */
/* A safetensors file (the format of PyTorch, diffusers and most C
   inference code):
       u64 N (little-endian)   the JSON header's length in bytes
       N bytes of JSON         {"name": {"dtype": "F32", "shape": [2, 3],
                                "data_offsets": [begin, end]}, ...,
                                "__metadata__": {"key": "value", ...}}
       the data                each tensor's bytes at [begin, end) from here,
                               little-endian, row-major (C order)
   The reader allocates nothing: dfn_st_parse_size measures and
   dfn_st_parse decodes the header into the caller's memory; the tensors'
   bytes stay in the caller's buffer. It checks everything the format
   promises and answers DFN_ERR_FORMAT for: a header over
   DFN_ST_MAX_HEADER bytes or past the end of the buffer, JSON that is
   not the format's object (it takes objects, strings, non-negative
   integers and arrays only where the format has them; whitespace, string
   escapes and \uXXXX as JSON defines them), an unknown dtype or key,
   a duplicate name or key, more than DFN_ST_MAX_DIMS dimensions, a
   shape whose product or byte size overflows or differs from
   end - begin, offsets out of range, and data bytes that two tensors
   share or that no tensor covers (the tensors, sorted by begin, must
   tile [0, the data's length) exactly). More tensors than
   limits->max_tensors, or metadata entries than DFN_ST_MAX_META, is
   DFN_ERR_LIMIT. Names and metadata are decoded
   to UTF-8 C strings (a \u0000 inside one is DFN_ERR_FORMAT). */

#define DFN_ST_MAX_HEADER 100000000     /* the format's bound on N (100 MB) */
#define DFN_ST_MAX_DIMS   8
#define DFN_ST_MAX_META   4096          /* metadata entries (DFN_ERR_LIMIT above) */

/* The format's element types; only the first three convert to float. */
typedef enum dfn_st_dtype {
    DFN_ST_F32 = 0, DFN_ST_F16, DFN_ST_BF16, DFN_ST_F64,
    DFN_ST_I8, DFN_ST_U8, DFN_ST_I16, DFN_ST_U16, DFN_ST_I32, DFN_ST_U32,
    DFN_ST_I64, DFN_ST_U64, DFN_ST_BOOL, DFN_ST_F8_E4M3, DFN_ST_F8_E5M2
} dfn_st_dtype;
#define DFN_ST_DTYPE_COUNT 15

typedef struct dfn_st_tensor {
    const char *name;                /* UTF-8, NUL-terminated (parse memory)  */
    dfn_st_dtype dtype;
    int ndim;                        /* 0 (a scalar) .. DFN_ST_MAX_DIMS       */
    uint64_t shape[DFN_ST_MAX_DIMS];
    uint64_t count;                  /* elements: the product of the shape    */
    const unsigned char *data;       /* its bytes, in the caller's buffer     */
    size_t bytes;
} dfn_st_tensor;

typedef struct dfn_st_meta {
    const char *key, *value;         /* UTF-8, NUL-terminated                 */
} dfn_st_meta;

typedef struct dfn_safetensors {
    int n_tensors;
    dfn_st_tensor *tensors;          /* in the header's order                 */
    int n_meta;
    dfn_st_meta *meta;               /* "__metadata__", in the header's order */
    size_t header_bytes;             /* N                                     */
    const unsigned char *data;       /* the data section (after the header)   */
    size_t data_bytes;
} dfn_safetensors;

/* The element type's name in files ("F32", ...) and its size in bytes. */
DFNDEF const char *dfn_st_dtype_name(dfn_st_dtype dtype);
DFNDEF size_t dfn_st_dtype_size(dfn_st_dtype dtype);

/* Bytes of memory dfn_st_parse needs for the file image buf (len bytes),
   into *bytes. It reads the header and answers the JSON errors above and
   DFN_ERR_LIMIT; the offset checks are dfn_st_parse's. limits NULL: the
   defaults (dfn_limits_default). Errors: DFN_ERR_NULL, DFN_ERR_FORMAT,
   DFN_ERR_LIMIT. */
DFNDEF dfn_result dfn_st_parse_size(const void *buf, size_t len, const dfn_limits *limits,
                                    size_t *bytes);

/* Decodes and checks the whole file image into st, with its names and
   tables in mem (bytes >= the size above). st points into buf and mem:
   both must outlive it. Errors: those of dfn_st_parse_size,
   DFN_ERR_BUFFER_TOO_SMALL. */
DFNDEF dfn_result dfn_st_parse(dfn_safetensors *st, const void *buf, size_t len,
                               const dfn_limits *limits, void *mem, size_t bytes);

/* The tensor or metadata value of that name; NULL when there is none. */
DFNDEF const dfn_st_tensor *dfn_st_find(const dfn_safetensors *st, const char *name);
DFNDEF const char *dfn_st_meta_find(const dfn_safetensors *st, const char *key);

/* The tensor's n elements (n must be its count) as floats: F32 as stored,
   F16 and BF16 converted exactly (every value, subnormals, infinities and
   NaN included, is a float). Errors: DFN_ERR_NULL, DFN_ERR_MISMATCH (n is
   not the count, or a dtype that is not F32, F16 or BF16). */
DFNDEF dfn_result dfn_st_read_floats(const dfn_st_tensor *t, float *out, size_t n);

/* One tensor to write: F32 from data (count = the product of the shape,
   ndim 0..DFN_ST_MAX_DIMS). */
typedef struct dfn_st_out {
    const char *name;
    int ndim;
    uint64_t shape[DFN_ST_MAX_DIMS];
    const float *data;
} dfn_st_out;

/* A safetensors image of n tensors (their data in the order given, the
   header in the same order) and n_meta metadata strings (none: 0), the
   header padded with spaces to a multiple of 8 bytes. The size query
   returns 0 for arguments the writer refuses. Errors: DFN_ERR_NULL,
   DFN_ERR_INVALID_ARG (a NULL or empty name, a duplicate name or key,
   ndim out of range, a size that overflows, "__metadata__" as a tensor
   name), DFN_ERR_BUFFER_TOO_SMALL. */
DFNDEF size_t dfn_st_write_size(const dfn_st_out *tensors, int n, const dfn_st_meta *meta, int n_meta);
DFNDEF dfn_result dfn_st_write_mem(void *buf, size_t cap, size_t *written, const dfn_st_out *tensors,
                                   int n, const dfn_st_meta *meta, int n_meta);

/* Where a load or a read of a file found what it refused: the tensor name,
   metadata key or JSON field (what), and a short reason (why). Filled by
   the functions that take one (NULL: not wanted) when they fail with
   DFN_ERR_MISMATCH or DFN_ERR_FORMAT. */
typedef struct dfn_error_detail {
    char what[96];
    const char *why;
} dfn_error_detail;

/* ------------------------------------------------------------------------- */
/*  Named tensors of a network (manual section 9 has the tables)             */
/* ------------------------------------------------------------------------- */

/* The network's tensors in the flat block's order (they cover it exactly,
   each float once), at most cap of them into out (out may be NULL with
   cap 0: count only). Returns the count, or -1 when the network has no
   names (its ops have no tensors function) or is invalid. */
DFNDEF int dfn_net_tensors(const dfn_net *net, dfn_net_tensor *out, int cap);

/* The weights of net (set up with its config) from st, by name: every
   tensor of dfn_net_tensors must be in st with that shape (F32, F16 or
   BF16, or I8 with its per-row scales in name + "_scale": F32, F16 or
   BF16 of shape [first dimension]; w = scale_r * q_rj), and ema (P floats, or NULL) gets the "ema." + name tensors (all
   of them, or DFN_ERR_MISMATCH). Tensors st holds besides those
   ("schedule.betas", or a program's own) are ignored. Weights that are
   not finite are DFN_ERR_NOT_FINITE. Errors: DFN_ERR_NULL,
   DFN_ERR_INVALID_ARG (a network without names), DFN_ERR_MISMATCH (with
   detail: the tensor, "missing", "shape differs" or "dtype is not
   F32, F16 or BF16"), DFN_ERR_NOT_FINITE. */
DFNDEF dfn_result dfn_model_read_safetensors(const dfn_safetensors *st, const dfn_net *net, float *ema,
                                             dfn_error_detail *detail);

/* A model as safetensors: the weights (and, with ema, the EMA weights as
   "ema." + name) by the names above, F32, and in "__metadata__":
   "diffusion.h" (the version), "network" ("mlp" or "unet"), "config" and
   "schedule" (each a JSON object, documented in manual section 9); a
   custom schedule's betas as the tensor "schedule.betas" (T). Only the
   MLP and the U-Net (a program's own network writes its tensors with
   dfn_st_write_mem). Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (another
   network, a custom schedule with zero terminal SNR), DFN_ERR_NOT_FINITE,
   DFN_ERR_BUFFER_TOO_SMALL; the size query returns 0 for those. */
DFNDEF size_t dfn_model_save_safetensors_size(const dfn_net *net, const dfn_schedule *s, const float *ema);
DFNDEF dfn_result dfn_model_save_safetensors_mem(void *buf, size_t cap, size_t *written, const dfn_net *net,
                                                 const dfn_schedule *s, const float *ema);

/* The same with the matrices and convolution kernels (every tensor of two
   or more dimensions but "class_emb.weight") in a small format (MATH.md
   section 13): DFN_WEIGHTS_F16 as dtype F16; DFN_WEIGHTS_I8 as dtype I8
   with one F32 scale per row (per output unit or channel: the first
   dimension) in the tensor name + "_scale" right after it; biases,
   normalizations and embeddings stay F32. "__metadata__" adds
   "weight_format": "f16" or "i8". dfn_model_read_safetensors reads such a
   file back into float (w = scale_r * q_rj; the MLP's weights then equal
   dfn_qmlp_dequantize's of the same model). DFN_WEIGHTS_F32 is the
   functions above. Errors add DFN_ERR_INVALID_ARG for an unknown format
   and for F16 of a weight beyond the half range. */
DFNDEF size_t dfn_model_save_safetensors_size_as(const dfn_net *net, const dfn_schedule *s, const float *ema,
                                                 dfn_weight_format fmt);
DFNDEF dfn_result dfn_model_save_safetensors_mem_as(void *buf, size_t cap, size_t *written, const dfn_net *net,
                                                    const dfn_schedule *s, const float *ema, dfn_weight_format fmt);

/* Describes the model of a parsed safetensors file from its metadata (no
   allocation, no weights read): info->net, the network's config (info->mlp
   or info->unet), the schedule (info->schedule; for a custom one read the
   tensor "schedule.betas" yourself), params, has_ema; version is 0. A
   program without malloc sets the network up from it and calls
   dfn_model_read_safetensors (check it with dfn_model_check_limits first).
   Errors: DFN_ERR_NULL, DFN_ERR_FORMAT (metadata missing or not the
   documented JSON; detail names the key or field). */
DFNDEF dfn_result dfn_model_info_safetensors(const dfn_safetensors *st, dfn_model_info *info,
                                             dfn_error_detail *detail);

#ifndef DFN_NO_MALLOC
/* A model file written by dfn_model_save_safetensors (or by
   tools/torch: the same names and metadata) into a dfn_loaded_model, in
   one allocation: the network and schedule from the metadata, the
   weights, the EMA weights when every "ema." tensor is there (info.has_ema).
   limits NULL: the defaults, checked before allocating (the tensor count,
   T, P, the image side, the bytes). Errors: those of dfn_st_parse and
   dfn_model_read_safetensors, DFN_ERR_FORMAT (metadata missing or not
   JSON of the documented fields: detail names the key or field),
   DFN_ERR_MISMATCH, DFN_ERR_LIMIT, DFN_ERR_OUT_OF_MEMORY. */
DFNDEF dfn_result dfn_model_load_safetensors_mem(const void *buf, size_t len, const dfn_limits *limits,
                                                 void *alloc_ctx, dfn_loaded_model *out,
                                                 dfn_error_detail *detail);
#endif

#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
/* The same from and to files (the file's buffer counted in max_bytes; a
   failed save leaves an existing file untouched). Errors add DFN_ERR_IO. */
DFNDEF dfn_result dfn_model_load_safetensors(const char *path, const dfn_limits *limits, void *alloc_ctx,
                                             dfn_loaded_model *out, dfn_error_detail *detail);
DFNDEF dfn_result dfn_model_save_safetensors(const char *path, const dfn_net *net, const dfn_schedule *s,
                                             const float *ema);
DFNDEF dfn_result dfn_model_save_safetensors_as(const char *path, const dfn_net *net, const dfn_schedule *s,
                                                const float *ema, dfn_weight_format fmt);
#endif

/* ========================================================================= */
/*  diffusers scheduler configs (scheduler_config.json)                      */
/* ========================================================================= */
/* The field's description of a schedule and its sampler: diffusers'
   DDPMScheduler / DDIMScheduler scheduler_config.json. Read into the
   library's schedule and sampler settings, and written back. diffusers
   counts t from 0: its t is the library's t - 1 (the timestep lists
   below are the library's). Fields and what they become:
     _class_name             "DDPMScheduler" or "DDIMScheduler" (missing: DDPM)
     num_train_timesteps     T
     beta_schedule           "linear" -> DFN_SCHEDULE_LINEAR_BETAS,
                             "scaled_linear" -> DFN_SCHEDULE_SCALED_LINEAR,
                             "sigmoid" -> DFN_SCHEDULE_SIGMOID_BETAS,
                             "squaredcos_cap_v2" -> DFN_SCHEDULE_COSINE (s
                             0.008, max_beta 0.999: diffusers' formula)
     beta_start, beta_end    as given
     trained_betas           null, or T numbers: DFN_SCHEDULE_CUSTOM
     rescale_betas_zero_snr  zero_terminal_snr
     prediction_type         "epsilon", "v_prediction", "sample" (eps, v, x0)
     timestep_spacing        "linspace", "leading", "trailing" (with
     steps_offset            steps_offset where diffusers adds it: leading)
     clip_sample, clip_sample_range   clip x0 to [-range, range]
     set_alpha_to_one        (DDIM) false: the last step ends at
                             alphabar_1 (dfn_sampler_config.final_alphabar_1)
     variance_type           (DDPM) "fixed_small" / "fixed_small_log"
                             (small), "fixed_large" / "fixed_large_log" (large)
     thresholding            false only
     dynamic_thresholding_ratio, sample_max_value, keys starting with "_":
                             read and not used (they act only with
                             thresholding, or are diffusers' bookkeeping)
   Any other field, or a value the library cannot honour (a learned
   variance, thresholding, another class, an unknown schedule name) is
   DFN_ERR_FORMAT with the field named in the detail: never ignored. */

typedef enum dfn_diffusers_spacing {
    DFN_DIFFUSERS_LINSPACE = 0,      /* round_half_even(linspace(0, T-1, S)), reversed */
    DFN_DIFFUSERS_LEADING  = 1,      /* i floor(T/S) + steps_offset, i = S-1..0        */
    DFN_DIFFUSERS_TRAILING = 2       /* round_half_even(arange(T, 0, -T/S)) - 1          */
} dfn_diffusers_spacing;

typedef struct dfn_diffusers_config {
    int    ddim;                     /* 1: DDIMScheduler, 0: DDPMScheduler      */
    dfn_schedule_config schedule;    /* betas: the caller's array (trained_betas) */
    dfn_prediction prediction;
    dfn_diffusers_spacing spacing;
    int    steps_offset;
    int    clip_sample;
    double clip_sample_range;
    int    set_alpha_to_one;         /* DDIM                                    */
    dfn_variance variance;           /* DDPM                                    */
} dfn_diffusers_config;

/* diffusers' defaults for the class (ddim 1 or 0): T 1000, "linear" 1e-4 to
   0.02, epsilon, leading with offset 0, clip_sample true (range 1),
   set_alpha_to_one true, fixed_small. */
DFNDEF dfn_diffusers_config dfn_diffusers_config_default(int ddim);

/* Reads a scheduler_config.json text (len bytes, no NUL needed) into out;
   trained_betas go into betas (cap floats; out->schedule.betas then points
   there). The schedule is checked as dfn_schedule_init would. Errors:
   DFN_ERR_NULL, DFN_ERR_FORMAT (not JSON, a field above; detail names
   it), DFN_ERR_BUFFER_TOO_SMALL (more trained betas than cap). */
DFNDEF dfn_result dfn_diffusers_config_read(const char *json, size_t len, dfn_diffusers_config *out,
                                            float *betas, int cap, dfn_error_detail *detail);

/* The S timesteps diffusers' set_timesteps(S) visits, as the library's t
   (diffusers' + 1), first visited first, into out (S ints), with numpy's
   arithmetic (linspace and arange in double, rounding half to even).
   Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG (S < 1 or above T, or a list
   the library cannot run: outside 1..T or not decreasing, which a large
   steps_offset or S near T can give). */
DFNDEF dfn_result dfn_diffusers_timesteps(const dfn_diffusers_config *c, int S, int *out);

/* Sets the sampler fields of sc (kind, steps, spacing = custom with
   timesteps, eta, prediction, variance, clipping, final_alphabar_1) for
   diffusers' sampler of c with S steps: DDIM (eta 0); DDPM with S = T as
   the library's DDPM, else as DDIM with eta 1 on the S timesteps (the
   same posterior steps). timesteps: S ints the sampler config points at
   (keep them while the sampler is set up). Errors: those of
   dfn_diffusers_timesteps; DFN_ERR_INVALID_ARG with detail for what the
   library's samplers do differently: "clip_sample" with DDIM (diffusers
   keeps the unclipped eps there), "variance_type" large with S < T. */
DFNDEF dfn_result dfn_diffusers_sampler_setup(const dfn_diffusers_config *c, int S, int *timesteps,
                                              dfn_sampler_config *sc, dfn_error_detail *detail);

/* Writes c as scheduler_config.json text into buf (cap bytes, NUL added;
   *written: the length without it). s (or NULL) is c's schedule, set
   up: it gives trained_betas for a schedule diffusers has no name for
   (sigmoid of Jabri et al., cosine with other s or max_beta, linear with
   T other than 1000, custom). Errors: DFN_ERR_NULL, DFN_ERR_INVALID_ARG
   (a flow schedule; a schedule without a diffusers name and no s; a
   custom one with zero terminal SNR), DFN_ERR_BUFFER_TOO_SMALL. */
DFNDEF dfn_result dfn_diffusers_config_write(const dfn_diffusers_config *c, const dfn_schedule *s, char *buf,
                                             size_t cap, size_t *written);

/* ######################################################################### */
/*  PART 4  kernels and threads                                              */
/* ######################################################################### */

/* ========================================================================= */
/*  Portable math (DFN_PORTABLE_MATH, manual sections 4 and 5)               */
/* ========================================================================= */
/* The library's own double-precision exp, log, sin, cos and tanh, built from
   +, -, *, / and bit manipulation only (no libm, no FMA, fixed evaluation
   order), so on every platform with IEEE-754 doubles and without FP
   contraction they return the same bits. With DFN_PORTABLE_MATH the library
   uses them (and float versions: the double result rounded to float) for
   every DFN_EXPF ... DFN_COS call. Largest distance from glibc's libm over
   20000 arguments per range (tests/test_portable.c): exp 1 ulp on
   [-745, 709.7]; log 2 ulp (near 1); sin, cos 1 ulp on [-4, 4] and 2 ulp on
   [-1e5, 1e5]; tanh 4 ulp on [-0.5, 0.5] and 3 on [-25, 25]. The float
   versions are within 1 float ulp of glibc's expf ... tanhf (tanh 2). NaN in gives NaN; exp overflows to +inf above
   709.78 and underflows (through subnormals) to 0 below -745.2; log of 0 is
   -inf, of a negative number NaN; sin and cos are accurate for |x| < 2^20
   (pi/2 reduction in three parts) and return NaN for |x| >= 2^50 and inf. */
DFNDEF double dfn_math_exp(double x);
DFNDEF double dfn_math_log(double x);
DFNDEF double dfn_math_sin(double x);
DFNDEF double dfn_math_cos(double x);
DFNDEF double dfn_math_tanh(double x);

/* ========================================================================= */
/*  Kernels: GEMM, vector ops, bias, activations                             */
/* ========================================================================= */

/* The small vectorized surface every network layer is built on. Row-major
   float32 everywhere; sizes are element counts. None of these functions
   allocates, prints or fails: arguments outside their documented range are
   a programming error (checked with DFN_ASSERT where cheap). n, M, N, K,
   rows or cols equal to 0 are fine (nothing happens, or C = beta C for
   K == 0); the pointers may then be NULL.

   Which SIMD path runs is chosen at compile time (dfn_simd_name() says which;
   see "SIMD dispatch and determinism" at the top of the kernels'
   implementation). Every compiled path, plus the plain reference, is listed
   by dfn_kernel_variants() for tests and benchmarks. */


/* The name of the SIMD path the public kernels use in this build: "avx512",
   "avx2", "sse2", "neon", "wasm_simd128", "helium" or "scalar" (also with
   DFN_NO_SIMD).
   A static string. */
DFNDEF const char *dfn_simd_name(void);

/* Bytes of scratch memory dfn_gemm needs in its `work` argument (the packed
   panels of A and B): one fixed number for the build, independent of the
   matrix sizes and of the variant, about 1.2 MB with the default blocking
   (DFN_GEMM_MC/KC/NC). Any float-aligned address is fine (the panels are
   aligned to 64 bytes inside it). */
DFNDEF size_t dfn_gemm_work_size(void);

/* General matrix product, row-major:

       C = alpha op(A) op(B) + beta C,   op(X) = X (trans 0) or X^T (trans 1)

   C is (M, N) with row stride ldc >= N; op(A) is (M, K) and op(B) is (K, N).
   A is stored (M, K) with lda >= K when trans_a == 0, (K, M) with lda >= M
   when trans_a == 1; B is stored (K, N) with ldb >= N when trans_b == 0,
   (N, K) with ldb >= K when trans_b == 1. Leading dimensions count floats.
   Typical uses: a forward layer Y = X W^T is (0, 1); dX = dY W is (0, 0);
   dW += dY^T X is (1, 0) with beta = 1.
   beta == 0: C is only written, never read (it may hold NaN or garbage).
   K == 0 or alpha == 0: C = beta C and A, B are not read (BLAS semantics).
   M or N == 0: nothing happens.
   Only the M x N window of C is written; padding between rows is untouched.
   A and B may alias each other; C must not overlap A, B or work.
   work: dfn_gemm_work_size() bytes of caller scratch (not kept between calls;
   one buffer per thread). May be NULL only when M, N or K is 0 or alpha == 0.
   Summation order over k is fixed for a build: results are reproducible
   bit for bit, and row i of C does not depend on the other rows of A or on
   M (one batch of B rows equals B batches of one row). */
DFNDEF void dfn_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta,
                     float *C, int ldc, float *work);

/* Threads (optional). Everything runs on the calling thread unless a
   parallel-for is installed; then the library splits large pieces of work
   into tasks: dfn_gemm one block of columns (or rows) of C per task; the
   MLP's inference forward (dfn_mlp_forward, so every sampler) one block of
   rows per task, each through its own slice of the caller's workspace; an
   MLP training step its forward pass and the backward pass of its
   activations by blocks of rows, its weight gradients by blocks of output
   rows, and its Adam update by ranges of parameters; dfn_rng_normal_fill
   of many values one block of Box-Muller pairs per task, each task jumping
   a copy of the generator ahead to its block; dfn_act_forward,
   dfn_act_backward and dfn_vec_axpy of at least 65536 values one range
   per task; GroupNorm one block of groups per task; a 3 x 3 convolution
   (dfn_conv2d_forward, dfn_conv2d_backward) through im2col one block of
   pixels per task, each task unrolling its own pixels and, but for dW,
   multiplying them; through Winograd one block of tiles per task
   (transforms and products), dW's 16 products one task each. (So the
   U-Net's convolutions, GroupNorms, activations and residual adds split;
   its concatenations, pooling and attention softmax run on the calling
   thread.)
   Every value is computed by the same arithmetic in the same order
   whatever the split, so results are bit-identical for any number of
   threads; tasks do not split again.

   run(user, ntasks, task, ctx) must call task(ctx, i, w) once for each
   i = 0..ntasks-1 and return when all have finished; w is the worker
   running it, 0..threads-1, and no two tasks run at the same time on the
   same w (worker 0 may be the calling thread). Tasks write disjoint
   memory, and worker w uses only its own scratch.

   The workers' GEMM scratch is caller memory: scratch_bytes >=
   dfn_parallel_scratch_size(threads) (worker 0 uses the `work` given to
   dfn_gemm). Installing is process-wide and not synchronized: do it while
   no other thread is in the library. The hook runs one parallel-for at a
   time: a call that finds it running (on another thread) runs its own
   tasks itself, as worker 0, with the same bits (an atomic claim with gcc
   and clang; without lock-free atomics, call from one thread at a time;
   manual section 5).
   dfn_set_parallel(NULL, NULL, 1, NULL, 0) goes back to one thread.
   Errors: DFN_ERR_INVALID_ARG (threads < 1 or > DFN_MAX_THREADS, run NULL
   with threads > 1), DFN_ERR_BUFFER_TOO_SMALL. */
#ifndef DFN_MAX_THREADS
#  define DFN_MAX_THREADS 64
#endif
typedef void (*dfn_task_fn)(void *ctx, int task, int worker);
typedef void (*dfn_parallel_fn)(void *user, int ntasks, dfn_task_fn task, void *ctx);
DFNDEF size_t dfn_parallel_scratch_size(int threads);
DFNDEF dfn_result dfn_set_parallel(dfn_parallel_fn run, void *user, int threads, void *scratch,
                                   size_t scratch_bytes);
/* The number of workers installed (1 without a parallel-for). */
DFNDEF int dfn_parallel_threads(void);

#if defined(DFN_PTHREADS) && !defined(DFN_NO_MALLOC)
/* A ready parallel-for on POSIX threads (define DFN_PTHREADS with the
   implementation and link with -pthread): dfn_pthreads_start(n) starts
   n - 1 worker threads (the caller is worker 0), allocates their scratch
   and installs them; dfn_pthreads_stop() uninstalls, joins and frees.
   A thread that waits (a worker for the next job, the caller for the
   others' last tasks) polls for DFN_POOL_SPIN pauses before it sleeps
   (with gcc's and clang's atomics; other compilers sleep at once): a job
   then starts in well under a microsecond instead of the 10-30 us a wake-up
   takes, at the price of that much busy time on idle cores.
   Errors: DFN_ERR_INVALID_ARG, DFN_ERR_OUT_OF_MEMORY, DFN_ERR_CALLBACK
   (a thread could not be created: nothing stays installed). */
DFNDEF dfn_result dfn_pthreads_start(int threads);
DFNDEF void dfn_pthreads_stop(void);
#endif

/* y += a x, for n elements. x and y must not overlap (unless x == y). */
DFNDEF void dfn_vec_axpy(size_t n, float a, const float *x, float *y);

/* x *= a, for n elements. */
DFNDEF void dfn_vec_scale(size_t n, float a, float *x);

/* sum_i x[i] y[i] over n elements (0 for n == 0), accumulated in float with
   a fixed number of partial sums per variant (a fixed order for a build). */
DFNDEF float dfn_vec_dot(size_t n, const float *x, const float *y);

/* sum_i x[i]^2 over n elements (0 for n == 0); for gradient-norm clipping.
   Same accumulation as dfn_vec_dot (float: inf once the sum passes FLT_MAX,
   e.g. an element above 1.8e19). */
DFNDEF float dfn_vec_sum_sq(size_t n, const float *x);

/* y (rows, cols), bias (cols): y[r][c] += bias[c]. y and bias must not
   overlap. Bit-identical across every variant (one float add each). */
DFNDEF void dfn_bias_add(int rows, int cols, float *y, const float *bias);

/* dy (rows, cols), dbias (cols): dbias[c] += sum_r dy[r][c], added to
   dbias[c] one row at a time in row order, so bit-identical across every
   variant. dy and dbias must not overlap. */
DFNDEF void dfn_bias_grad(int rows, int cols, const float *dy, float *dbias);

/* y[i] = f(x[i]) for n elements, f = act. y may be x (in place); otherwise
   they must not overlap. Finite inputs give finite outputs (also x = +-1e30).
   Every element is computed by the same arithmetic wherever it sits in the
   array (no separate code path for the tail), so results do not depend on n
   or on alignment. Accuracy of the SIMD paths against exact math: see the
   implementation's notes ("Activations"); about 1e-6 relative. */
DFNDEF void dfn_act_forward(dfn_activation act, size_t n, const float *x, float *y);

/* dx[i] = dy[i] f'(x[i]) for n elements, where x is the PRE-activation input
   of dfn_act_forward. dx may be dy (in place); otherwise no overlap between
   dx and x or dy. ReLU'(0) = 0. Overwrites dx (does not accumulate). */
DFNDEF void dfn_act_backward(dfn_activation act, size_t n, const float *x,
                             const float *dy, float *dx);

/* The forward step of a dense layer after its GEMM, row by row (each row is
   still in cache for the second step):
       pre[r][c] += bias[c];   y[r][c] = f(pre[r][c])
   pre, y (rows, cols), bias (cols) or NULL for no bias. Afterwards pre holds
   the pre-activation values dfn_act_backward needs and y the layer output.
   y == pre is allowed (in place, for inference: pre then holds f(pre + bias)
   and the pre-activation values are gone); otherwise no overlap. Same bits
   as dfn_bias_add followed by dfn_act_forward. */
DFNDEF void dfn_bias_act_forward(int rows, int cols, const float *bias,
                                 dfn_activation act, float *pre, float *y);

/* One step of Adam(W) (Kingma & Ba 2015; Loshchilov & Hutter 2019) and of
   an exponential moving average of the weights, fused into one pass over n
   parameters: the optimizer of dfn_train_step, for other training loops.
   The caller folds the learning rate, the bias corrections and clipping
   into the coefficients (at step k = 1, 2, ...; see dfn_train_step_cond). */
typedef struct dfn_adam_coefs {
    float beta1;       /* decay of the first moment m, in [0, 1)             */
    float beta2;       /* decay of the second moment v, in [0, 1)            */
    float step_size;   /* lr / (1 - beta1^k): the bias-corrected step        */
    float v_scale;     /* 1 / (1 - beta2^k): the bias correction of v        */
    float eps;         /* added to the root; > 0 keeps the divide finite     */
    float decay;       /* lr * weight_decay, AdamW's decoupled decay (0: Adam) */
    float grad_scale;  /* multiplies every gradient first: clipping's
                          max_norm / ||g|| (1: no clipping)                  */
    float ema_decay;   /* d of the EMA, in [0, 1]; unused when ema is NULL   */
} dfn_adam_coefs;

/* For each i in [0, n), with the fields of *c, in float:

       gi     = g[i] * grad_scale
       m[i]   = beta1 * m[i] + (1 - beta1) * gi
       v[i]   = beta2 * v[i] + ((1 - beta2) * gi) * gi
       p[i]   = p[i] - ((step_size * m[i]) / (sqrt(v[i] * v_scale) + eps)
                        + decay * p[i])                   (the old p[i] inside)
       ema[i] = ema_decay * ema[i] + (1 - ema_decay) * p[i]   (the new p[i])

   each operation rounded to float in that order (left to right, no FMA;
   the 1 - beta terms once per call). ema may be NULL (no average). p, m,
   v, g and ema must not overlap. n == 0: nothing happens (pointers may be
   NULL).
   Bit-identical across every variant, and so across SIMD and DFN_NO_SIMD
   builds, given IEEE float: multiply, add, subtract, divide and square
   root are each correctly rounded, so the lanes of a vector compute
   exactly what the scalar loop does. (Keep FMA contraction off: gcc's
   -std=c99, or -ffp-contract=off with -std=gnu*; the scalar loop turns it
   off itself under clang. A DFN_SQRTF of your own must round correctly.) */
DFNDEF void dfn_adam_update(size_t n, float *p, float *m, float *v, const float *g,
                            float *ema, const dfn_adam_coefs *c);

/* One compiled implementation of the kernels: the plain reference ("ref"),
   the portable blocked C version ("scalar"), and each SIMD path the build's
   target supports ("sse2", "avx2", "avx512", "neon", "wasm_simd128",
   "helium"). Each function has the semantics of the public function of the same name.
   "ref" reads like the formulas: a triple-loop GEMM whose every dot product
   is accumulated in double and rounded once, dot and sum_sq in double too,
   activations through DFN_EXPF / DFN_TANHF; it is the parity reference and
   is slow (never dispatched to). gemm_mr x gemm_nr is the register block of
   the GEMM micro-kernel (1 x 1 for "ref"). For tests and benchmarks. */
typedef struct dfn_kernel_variant {
    const char *name;
    int gemm_mr, gemm_nr;
    void  (*gemm)(int trans_a, int trans_b, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta,
                  float *C, int ldc, float *work);
    void  (*vec_axpy)(size_t n, float a, const float *x, float *y);
    void  (*vec_scale)(size_t n, float a, float *x);
    float (*vec_dot)(size_t n, const float *x, const float *y);
    float (*vec_sum_sq)(size_t n, const float *x);
    void  (*bias_add)(int rows, int cols, float *y, const float *bias);
    void  (*bias_grad)(int rows, int cols, const float *dy, float *dbias);
    void  (*act_forward)(dfn_activation act, size_t n, const float *x, float *y);
    void  (*act_backward)(dfn_activation act, size_t n, const float *x,
                          const float *dy, float *dx);
    /* y[i] = exp(x[i]): the exp of SiLU and GELU (their arguments are
       clamped into its range first), exposed for tests.
       "ref" is DFN_EXPF; the others return 0 below x = -87.33654 (no
       denormals) and exp(88) above x = 88. y may be x. */
    void  (*vec_exp)(size_t n, const float *x, float *y);
    /* s[i] = sin(x[i]), c[i] = cos(x[i]) for |x[i]| <= 4096: the sine and
       cosine dfn_sinusoidal_embedding uses with SIMD (see "Sine and cosine"
       in the implementation); "ref" is DFN_SINF / DFN_COSF. */
    void  (*vec_sincos)(size_t n, const float *x, float *s, float *c);
    /* dfn_adam_update. "ref" computes in double and rounds each result
       once; the others give the same bits as "scalar" (ARMv7 NEON and
       Helium, which have no correctly rounded vector divide and square
       root, run the scalar loop). */
    void  (*adam)(size_t n, float *p, float *m, float *v, const float *g, float *ema,
                  const dfn_adam_coefs *c);
} dfn_kernel_variant;

/* Sets *out to a static array of the variants compiled into this build and
   returns how many there are: "ref" first, then "scalar", then the SIMD
   paths from the oldest to the newest instruction set; the one the public
   functions use (dfn_simd_name()) is among them. */
DFNDEF int dfn_kernel_variants(const dfn_kernel_variant **out);

#ifdef __cplusplus
}
#endif

#endif /* DIFFUSION_H */

/* ========================================================================= */
/* ========================================================================= */
/*                            IMPLEMENTATION                                 */
/* ========================================================================= */
/* ========================================================================= */

/* The implementation is emitted once per translation unit even when the header
   is included again with DIFFUSION_IMPLEMENTATION still defined (unity builds). */
#if defined(DIFFUSION_IMPLEMENTATION) && !defined(DFN__IMPLEMENTATION_DONE)
#define DFN__IMPLEMENTATION_DONE

#include <math.h>
#ifndef DFN_NO_STDIO
#  include <stdio.h>
#endif

#if defined(DFN_MALLOC) != defined(DFN_FREE)
#  error "diffusion.h: define both DFN_MALLOC and DFN_FREE, or neither"
#endif
#if !defined(DFN_MALLOC) && !defined(DFN_NO_MALLOC)
#  include <stdlib.h>
#  define DFN_MALLOC(sz, ctx) ((void)(ctx), malloc(sz))
#  define DFN_FREE(p, ctx)    ((void)(ctx), free(p))
#endif
#ifndef DFN_ASSERT
#  include <assert.h>
#  define DFN_ASSERT(x) assert(x)
#endif
#if !defined(DFN_MEMCPY) || !defined(DFN_MEMSET)
#  include <string.h>
#endif
#ifndef DFN_MEMCPY
#  define DFN_MEMCPY(d, s, n) memcpy(d, s, n)
#endif
#ifndef DFN_MEMSET
#  define DFN_MEMSET(d, v, n) memset(d, v, n)
#endif
/* Portable math: the library's own functions instead of libm (sqrt stays:
   IEEE-754 rounds it correctly everywhere), and no FP contraction in clang
   (gcc does not contract in its ISO modes, -std=c99; with -std=gnu* build
   with -ffp-contract=off). See manual section 5. */
#ifdef DFN_PORTABLE_MATH
#  if defined(__clang__)
#    pragma STDC FP_CONTRACT OFF
#  endif
#  ifndef DFN_EXPF
#    define DFN_EXPF(x) ((float)dfn_math_exp((double)(x)))
#  endif
#  ifndef DFN_LOGF
#    define DFN_LOGF(x) ((float)dfn_math_log((double)(x)))
#  endif
#  ifndef DFN_SINF
#    define DFN_SINF(x) ((float)dfn_math_sin((double)(x)))
#  endif
#  ifndef DFN_COSF
#    define DFN_COSF(x) ((float)dfn_math_cos((double)(x)))
#  endif
#  ifndef DFN_TANHF
#    define DFN_TANHF(x) ((float)dfn_math_tanh((double)(x)))
#  endif
#  ifndef DFN_EXP
#    define DFN_EXP(x) dfn_math_exp(x)
#  endif
#  ifndef DFN_LOG
#    define DFN_LOG(x) dfn_math_log(x)
#  endif
#  ifndef DFN_COS
#    define DFN_COS(x) dfn_math_cos(x)
#  endif
#endif
#ifndef DFN_SQRTF
#  define DFN_SQRTF(x) sqrtf(x)
#endif
#ifndef DFN_EXPF
#  define DFN_EXPF(x) expf(x)
#endif
#ifndef DFN_LOGF
#  define DFN_LOGF(x) logf(x)
#endif
#ifndef DFN_SINF
#  define DFN_SINF(x) sinf(x)
#endif
#ifndef DFN_COSF
#  define DFN_COSF(x) cosf(x)
#endif
#ifndef DFN_TANHF
#  define DFN_TANHF(x) tanhf(x)
#endif
#ifndef DFN_SQRT
#  define DFN_SQRT(x) sqrt(x)
#endif
#ifndef DFN_EXP
#  define DFN_EXP(x) exp(x)
#endif
#ifndef DFN_LOG
#  define DFN_LOG(x) log(x)
#endif
#ifndef DFN_COS
#  define DFN_COS(x) cos(x)
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define DFN__PI 3.14159265358979323846
#define DFN__ALIGN 64

/* ------------------------------------------------------------------------- */
/*  Shared definitions: SIMD targets; what PART 4 defines for the others     */
/* ------------------------------------------------------------------------- */

#if defined(_MSC_VER) && !defined(__cplusplus)
#  define DFN__INLINE __inline
#else
#  define DFN__INLINE inline
#endif
/* For the GEMM driver and packing: inlined into each variant's dfn__gemm_*,
   so the register block and the micro-kernel are compile-time constants. */
#if defined(__GNUC__) || defined(__clang__)
#  define DFN__FORCE_INLINE DFN__INLINE __attribute__((always_inline))
#elif defined(_MSC_VER)
#  define DFN__FORCE_INLINE __forceinline
#else
#  define DFN__FORCE_INLINE DFN__INLINE
#endif

/* Which SIMD paths this translation unit compiles. */
#if !defined(DFN_NO_SIMD)
#  if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#    define DFN__HAVE_SSE2 1
#  endif
   /* MSVC defines no __FMA__; its /arch:AVX2 implies FMA. */
#  if defined(__AVX2__) && (defined(__FMA__) || defined(_MSC_VER))
#    define DFN__HAVE_AVX2 1
#  endif
#  if defined(__AVX512F__)
#    define DFN__HAVE_AVX512 1
#  endif
#  if defined(__ARM_NEON) || defined(__ARM_NEON__) || defined(_M_ARM64)
#    define DFN__HAVE_NEON 1
#  endif
#  if defined(__wasm_simd128__)
#    define DFN__HAVE_WASM 1
#  endif
   /* Helium (M-profile Vector Extension) with floating point: Cortex-M55/M85. */
#  if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 2)
#    define DFN__HAVE_HELIUM 1
#  endif
#endif

/* Intrinsics headers, with C++ linkage even inside the extern "C" block
   (some pull in <stdlib.h>, which is C++ in C++). */
#ifdef __cplusplus
extern "C++" {
#endif
#if defined(DFN__HAVE_AVX2) || defined(DFN__HAVE_AVX512)
#  include <immintrin.h>
#elif defined(DFN__HAVE_SSE2)
#  include <emmintrin.h>
#endif
#if defined(DFN__HAVE_NEON)
#  include <arm_neon.h>
#endif
#if defined(DFN__HAVE_WASM)
#  include <wasm_simd128.h>
#endif
#if defined(DFN__HAVE_HELIUM)
#  include <arm_mve.h>
#endif
#ifdef __cplusplus
}
#endif

/* The path the public functions use. */
#if defined(DFN__HAVE_AVX512)
#  define DFN__BEST_SUFFIX _avx512
#  define DFN__SIMD_NAME "avx512"
#elif defined(DFN__HAVE_AVX2)
#  define DFN__BEST_SUFFIX _avx2
#  define DFN__SIMD_NAME "avx2"
#elif defined(DFN__HAVE_SSE2)
#  define DFN__BEST_SUFFIX _sse2
#  define DFN__SIMD_NAME "sse2"
#elif defined(DFN__HAVE_NEON)
#  define DFN__BEST_SUFFIX _neon
#  define DFN__SIMD_NAME "neon"
#elif defined(DFN__HAVE_WASM)
#  define DFN__BEST_SUFFIX _wasm
#  define DFN__SIMD_NAME "wasm_simd128"
#elif defined(DFN__HAVE_HELIUM)
#  define DFN__BEST_SUFFIX _helium
#  define DFN__SIMD_NAME "helium"
#else
#  define DFN__BEST_SUFFIX _scalar
#  define DFN__SIMD_NAME "scalar"
#endif
#define DFN__CAT2(a, b) a##b
#define DFN__CAT(a, b) DFN__CAT2(a, b)
#define DFN__BEST(fn) DFN__CAT(fn, DFN__BEST_SUFFIX)

/* Constants of the sine and cosine (see "Sine and cosine" above). */
#define DFN__SINCOS_MAX 4096.0f

/* Element-wise work split across threads: n of at least DFN__EW_SPLIT
   elements go as one block of whole 64-element pieces per worker. Every
   element gets the same arithmetic however the range is cut. */
#define DFN__EW_SPLIT 65536

/* Static helpers that some configurations or translation units leave unused. */
#ifndef DFN__MAYBE_UNUSED
#  if defined(__GNUC__) || defined(__clang__)
#    define DFN__MAYBE_UNUSED __attribute__((unused))
#  else
#    define DFN__MAYBE_UNUSED
#  endif
#endif

#ifndef DFN__INT_MAX
#define DFN__INT_MAX ((int)(~0u >> 1))
#endif

/* Threads (PART 4, "Threads"): how many workers the library may use now, the
   GEMM scratch of worker w, a parallel-for, the size of work worth
   splitting, and the block of items each task takes. */
static int dfn__parallel_workers(void);
static float *dfn__worker_work(int w, float *work0);
static void dfn__parallel_for(int ntasks, dfn_task_fn task, void *ctx);
static int dfn__worth_split(double madds, int T);
static int dfn__block_step(int n, int T, int unit);

/* The best variant of the kernels that layers call directly, without the
   public functions' checks and splits (PART 4). */
static void DFN__BEST(dfn__gemm)(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                                 const float *B, int ldb, float beta, float *C, int ldc, float *work);
static void DFN__BEST(dfn__vec_axpy)(size_t n, float a, const float *x, float *y);
static void DFN__BEST(dfn__vec_sincos)(size_t n, const float *x, float *s, float *c);
static void DFN__BEST(dfn__bias_add)(int rows, int cols, float *y, const float *bias);
static void DFN__BEST(dfn__act_forward)(dfn_activation act, size_t n, const float *x, float *y);

/* ------------------------------------------------------------------------- */
/*  Small helpers                                                            */
/* ------------------------------------------------------------------------- */

/* A dfn_prediction the library knows (eps, v, x0, flow velocity). */
static int dfn__prediction_valid(dfn_prediction p)
{
    return p == DFN_PREDICT_EPS || p == DFN_PREDICT_V || p == DFN_PREDICT_X0 || p == DFN_PREDICT_FLOW;
}

/* Finite test on the bit pattern: correct even under -ffinite-math-only. */
static int dfn__finite(float x)
{
    uint32_t u;
    DFN_MEMCPY(&u, &x, sizeof u);
    return (u & 0x7f800000u) != 0x7f800000u;
}

static int dfn__all_finite(const float *x, size_t count)
{
    size_t i;
    for (i = 0; i < count; i++)
        if (!dfn__finite(x[i])) return 0;
    return 1;
}

/* count = n * dim without overflow (and small enough that (n*dim) * 16 bytes
   also fits). Returns 0 when it would not fit. */
static size_t dfn__count(int n, int dim)
{
    size_t limit = ((size_t)-1) / 64;
    if (n < 0 || dim < 0) return 0;
    if (dim != 0 && (size_t)n > limit / (size_t)dim) return 0;
    return (size_t)n * (size_t)dim;
}

/* A bump allocator over a caller buffer. With base == NULL it only measures:
   the same code computes the size query and carves the memory, so the two
   can never disagree. Every array starts on a DFN__ALIGN-byte address; the
   base itself is first moved up to one, hence the DFN__ALIGN - 1 bytes of
   slack in every size. */
typedef struct dfn__arena {
    unsigned char *base;   /* aligned start, or NULL when measuring */
    size_t used;
} dfn__arena;

static dfn__arena dfn__arena_begin(void *mem)
{
    dfn__arena a;
    size_t mis = (size_t)((uintptr_t)mem % DFN__ALIGN);
    a.base = mem ? (unsigned char *)mem + (mis ? DFN__ALIGN - mis : 0) : NULL;
    a.used = 0;
    return a;
}

static void *dfn__arena_take(dfn__arena *a, size_t bytes)
{
    size_t off = (a->used + (DFN__ALIGN - 1)) & ~(size_t)(DFN__ALIGN - 1);
    a->used = off + bytes;
    return a->base ? (void *)(a->base + off) : NULL;
}

/* Bytes a measured layout needs, including the alignment slack. */
static size_t dfn__arena_size(const dfn__arena *a)
{
    return a->used + (DFN__ALIGN - 1);
}

/* ------------------------------------------------------------------------- */
/*  CRC-32 and little-endian byte buffers (the model file's primitives)      */
/* ------------------------------------------------------------------------- */

/* dfn__crc32_table[n] = the CRC register after shifting the byte n through
   the reflected polynomial 0xEDB88320 eight times (generated offline by that
   loop: for k in 0..7: c = c & 1 ? 0xEDB88320 ^ (c >> 1) : c >> 1). */
static const uint32_t dfn__crc32_table[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu,
    0xe963a535u, 0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u,
    0x09b64c2bu, 0x7eb17cbdu, 0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u,
    0xf3b97148u, 0x84be41deu, 0x1adad47du, 0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u,
    0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu, 0x14015c4fu, 0x63066cd9u,
    0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u, 0xa2677172u,
    0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
    0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u,
    0x26d930acu, 0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u,
    0xcfba9599u, 0xb8bda50fu, 0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u,
    0x2f6f7c87u, 0x58684c11u, 0xc1611dabu, 0xb6662d3du, 0x76dc4190u, 0x01db7106u,
    0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu, 0x9fbfe4a5u, 0xe8b8d433u,
    0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu, 0x086d3d2du,
    0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
    0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u,
    0x8bbeb8eau, 0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u,
    0x4db26158u, 0x3ab551ceu, 0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u,
    0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au, 0x346ed9fcu, 0xad678846u, 0xda60b8d0u,
    0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u, 0x5005713cu, 0x270241aau,
    0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u, 0xce61e49fu,
    0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
    0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au,
    0xead54739u, 0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u,
    0x0d6d6a3eu, 0x7a6a5aa8u, 0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u,
    0xf00f9344u, 0x8708a3d2u, 0x1e01f268u, 0x6906c2feu, 0xf762575du, 0x806567cbu,
    0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u, 0x10da7a5au, 0x67dd4accu,
    0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u, 0xa1d1937eu,
    0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
    0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u,
    0x316e8eefu, 0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u,
    0xcc0c7795u, 0xbb0b4703u, 0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u,
    0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u, 0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du,
    0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au, 0x9c0906a9u, 0xeb0e363fu,
    0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu, 0x0cb61b38u,
    0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u,
    0x88085ae6u, 0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u,
    0x616bffd3u, 0x166ccf45u, 0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u,
    0xa7672661u, 0xd06016f7u, 0x4969474du, 0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu,
    0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u, 0x47b2cf7fu, 0x30b5ffe9u,
    0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u, 0xcdd70693u,
    0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
    0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du

};

DFNDEF uint32_t dfn_crc32(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t i;
    if (!p) return crc;
    crc ^= 0xffffffffu;
    for (i = 0; i < len; i++) crc = dfn__crc32_table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return crc ^ 0xffffffffu;
}

/* A writer of little-endian values into caller memory. With p == NULL it
   only counts (len is then the size the same writes need). Errors are
   sticky: once err is set (out of room, or a size overflow) every later put
   does nothing; nothing is ever written past cap. */
typedef struct dfn__wbuf {
    unsigned char *p;     /* destination, or NULL to count only */
    size_t cap, len;      /* capacity and bytes written         */
    int err;              /* non-zero after a failed put        */
} dfn__wbuf;

/* A reader of little-endian values from [p, p + len). A read that does not
   fit sets the sticky err and yields zeros; nothing is read past len. */
typedef struct dfn__rbuf {
    const unsigned char *p;
    size_t len, pos;      /* size and read position             */
    int err;              /* non-zero after a failed get        */
} dfn__rbuf;

static DFN__MAYBE_UNUSED void dfn__wbuf_init(dfn__wbuf *w, void *p, size_t cap)
{
    w->p = (unsigned char *)p;
    w->cap = p ? cap : 0;
    w->len = 0;
    w->err = 0;
}

/* Room for n more bytes? Sets err when not. */
static DFN__MAYBE_UNUSED int dfn__wbuf_room(dfn__wbuf *w, size_t n)
{
    if (w->err) return 0;
    if (w->p ? n > w->cap - w->len : n > (size_t)-1 - w->len) {
        w->err = 1;
        return 0;
    }
    return 1;
}

static DFN__MAYBE_UNUSED void dfn__put_bytes(dfn__wbuf *w, const void *src, size_t n)
{
    if (!src && n > 0) { w->err = 1; return; }
    if (!dfn__wbuf_room(w, n)) return;
    if (w->p && n > 0) DFN_MEMCPY(w->p + w->len, src, n);
    w->len += n;
}

static DFN__MAYBE_UNUSED void dfn__put_u32(dfn__wbuf *w, uint32_t v)
{
    if (!dfn__wbuf_room(w, 4)) return;
    if (w->p) {
        unsigned char *d = w->p + w->len;
        d[0] = (unsigned char)(v & 0xffu);
        d[1] = (unsigned char)((v >> 8) & 0xffu);
        d[2] = (unsigned char)((v >> 16) & 0xffu);
        d[3] = (unsigned char)((v >> 24) & 0xffu);
    }
    w->len += 4;
}

/* Two's complement, whatever the host does. */
static DFN__MAYBE_UNUSED void dfn__put_i32(dfn__wbuf *w, int32_t v)
{
    dfn__put_u32(w, (uint32_t)v);
}

/* The IEEE-754 bits of v (NaN payloads and -0 kept). */
static DFN__MAYBE_UNUSED void dfn__put_f32(dfn__wbuf *w, float v)
{
    uint32_t u;
    DFN_MEMCPY(&u, &v, 4);
    dfn__put_u32(w, u);
}

static DFN__MAYBE_UNUSED void dfn__put_f32s(dfn__wbuf *w, const float *v, size_t n)
{
    size_t i;
    if ((!v && n > 0) || n > (size_t)-1 / 4) { w->err = 1; return; }
    if (!dfn__wbuf_room(w, 4 * n)) return;
    for (i = 0; i < n; i++) dfn__put_f32(w, v[i]);
}

static DFN__MAYBE_UNUSED void dfn__rbuf_init(dfn__rbuf *r, const void *p, size_t len)
{
    r->p = (const unsigned char *)p;
    r->len = p ? len : 0;
    r->pos = 0;
    r->err = 0;
}

/* n more bytes to read? Sets err when not. */
static DFN__MAYBE_UNUSED int dfn__rbuf_need(dfn__rbuf *r, size_t n)
{
    if (r->err) return 0;
    if (n > r->len - r->pos) {
        r->err = 1;
        return 0;
    }
    return 1;
}

static DFN__MAYBE_UNUSED uint32_t dfn__get_u32(dfn__rbuf *r)
{
    const unsigned char *s;
    if (!dfn__rbuf_need(r, 4)) return 0;
    s = r->p + r->pos;
    r->pos += 4;
    return (uint32_t)s[0] | ((uint32_t)s[1] << 8) | ((uint32_t)s[2] << 16) | ((uint32_t)s[3] << 24);
}

static DFN__MAYBE_UNUSED int32_t dfn__get_i32(dfn__rbuf *r)
{
    uint32_t u = dfn__get_u32(r);
    /* (int32_t)u is implementation-defined above INT32_MAX: map by hand. */
    return u <= 0x7fffffffu ? (int32_t)u : -(int32_t)(0xffffffffu - u) - 1;
}

static DFN__MAYBE_UNUSED float dfn__get_f32(dfn__rbuf *r)
{
    uint32_t u = dfn__get_u32(r);
    float v;
    DFN_MEMCPY(&v, &u, 4);
    return v;
}

/* n floats into dst; on a short read dst[0 .. n) is zeroed (a count n whose
   byte size overflows sets err and touches nothing). */
static DFN__MAYBE_UNUSED void dfn__get_f32s(dfn__rbuf *r, float *dst, size_t n)
{
    size_t i;
    if ((!dst && n > 0) || n > (size_t)-1 / 4) { r->err = 1; return; }
    if (!dfn__rbuf_need(r, 4 * n)) {
        for (i = 0; i < n; i++) dst[i] = 0.0f;
        return;
    }
    for (i = 0; i < n; i++) dst[i] = dfn__get_f32(r);
}

/* n bytes into dst; zeroed on a short read. */
static DFN__MAYBE_UNUSED void dfn__get_bytes(dfn__rbuf *r, void *dst, size_t n)
{
    if (!dst && n > 0) { r->err = 1; return; }
    if (!dfn__rbuf_need(r, n)) {
        if (n > 0) DFN_MEMSET(dst, 0, n);
        return;
    }
    if (n > 0) DFN_MEMCPY(dst, r->p + r->pos, n);
    r->pos += n;
}

/* ######################################################################### */
/*  PART 1  core math, samplers and guidance                                 */
/* ######################################################################### */

/* ------------------------------------------------------------------------- */
/*  Results                                                                  */
/* ------------------------------------------------------------------------- */

DFNDEF const char *dfn_result_string(dfn_result r)
{
    switch (r) {
    case DFN_OK:                   return "DFN_OK: success";
    case DFN_ERR_NULL:             return "DFN_ERR_NULL: a required pointer argument is NULL";
    case DFN_ERR_INVALID_ARG:      return "DFN_ERR_INVALID_ARG: a value is outside its documented range";
    case DFN_ERR_NOT_FINITE:       return "DFN_ERR_NOT_FINITE: NaN or infinity in an input or a prediction";
    case DFN_ERR_BUFFER_TOO_SMALL: return "DFN_ERR_BUFFER_TOO_SMALL: the buffer is smaller than the size query said";
    case DFN_ERR_OUT_OF_MEMORY:    return "DFN_ERR_OUT_OF_MEMORY: allocation failed";
    case DFN_ERR_CALLBACK:         return "DFN_ERR_CALLBACK: the prediction callback reported an error";
    case DFN_ERR_CANCELLED:        return "DFN_ERR_CANCELLED: the step callback asked to stop";
    case DFN_ERR_IO:               return "DFN_ERR_IO: a file could not be opened, read or written";
    case DFN_ERR_FORMAT:           return "DFN_ERR_FORMAT: malformed input (bad magic, truncated data or a bad line)";
    case DFN_ERR_VERSION:          return "DFN_ERR_VERSION: unsupported file format version";
    case DFN_ERR_CHECKSUM:         return "DFN_ERR_CHECKSUM: checksum mismatch, the file is corrupt";
    case DFN_ERR_MISMATCH:         return "DFN_ERR_MISMATCH: the file or object does not match the configuration";
    case DFN_ERR_LIMIT:            return "DFN_ERR_LIMIT: the input asks for more than the dfn_limits allow";
    }
    return "unknown dfn_result";
}

DFNDEF dfn_limits dfn_limits_default(void)
{
    dfn_limits l;
    l.max_T = DFN_LIMIT_MAX_T;
    l.max_params = DFN_LIMIT_MAX_PARAMS;
    l.max_side = DFN_LIMIT_MAX_SIDE;
    l.max_bytes = DFN_LIMIT_MAX_BYTES;
    l.max_tensors = DFN_LIMIT_MAX_TENSORS;
    return l;
}

/* ------------------------------------------------------------------------- */
/*  RNG                                                                      */
/* ------------------------------------------------------------------------- */

DFNDEF uint32_t dfn_rng_u32(dfn_rng *rng)
{
    /* PCG-XSH-RR: 64-bit LCG state, output a rotated xorshift of it. */
    uint64_t old = rng->state;
    uint32_t xorshifted, rot;
    rng->state = old * (((uint64_t)0x5851f42du << 32) | 0x4c957f2du) + rng->inc; /* 6364136223846793005 */
    xorshifted = (uint32_t)(((old >> 18) ^ old) >> 27);
    rot = (uint32_t)(old >> 59);
    return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
}

DFNDEF void dfn_rng_seed(dfn_rng *rng, uint64_t seed, uint64_t stream)
{
    rng->state = 0;
    rng->inc = (stream << 1) | 1u;
    (void)dfn_rng_u32(rng);
    rng->state += seed;
    (void)dfn_rng_u32(rng);
    rng->spare = 0.0f;
    rng->has_spare = 0;
}

DFNDEF uint32_t dfn_rng_below(dfn_rng *rng, uint32_t bound)
{
    /* Lemire's multiply-and-reject: the high half of x * bound is uniform in
       [0, bound) once the low half avoids the short "leftover" range. */
    uint64_t m;
    uint32_t low, threshold;
    if (bound == 0) return 0;
    m = (uint64_t)dfn_rng_u32(rng) * bound;
    low = (uint32_t)m;
    if (low < bound) {
        threshold = (uint32_t)(0u - bound) % bound;
        while (low < threshold) {
            m = (uint64_t)dfn_rng_u32(rng) * bound;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

DFNDEF float dfn_rng_uniform(dfn_rng *rng)
{
    return (float)(dfn_rng_u32(rng) >> 8) * (1.0f / 16777216.0f);
}

/* The normal generator works in fixed point so that every platform computes
   the same bits: integer operations are exact, and the only float operations
   (one int64 -> float conversion, one multiply by a power of two) are exact
   or correctly rounded everywhere.

   Box-Muller: with u1 in (0, 1] and u2 in [0, 1),
       r = sqrt(-2 ln u1),  theta = 2 pi u2,  z0 = r cos(theta),  z1 = r sin(theta). */

/* -log2(n / 2^32) for n in [1, 2^32], in Q32 fixed point (range [0, 32]).
   log2 of the mantissa comes one bit per squaring: if m in [1, 2) then
   m^2 in [1, 4), and m^2 >= 2 exactly when the next bit of log2 m is 1.
   For `lanes` values at once (up to 4): independent chains in one loop,
   since each squaring waits on the one before. */
static DFN__FORCE_INLINE void dfn__neg_log2_q32_lanes(const uint64_t *n, uint64_t *out, int lanes)
{
    uint64_t m[4], frac[4];
    int e[4], l, i;
    for (l = 0; l < lanes; l++) {
        e[l] = 0;
        while (e[l] < 32 && (n[l] >> (e[l] + 1)) != 0) e[l]++;    /* e = floor(log2 n) */
        m[l] = (e[l] <= 31) ? (n[l] << (31 - e[l])) : (n[l] >> (e[l] - 31));   /* Q31, in [1, 2) */
        frac[l] = 0;
    }
    for (i = 31; i >= 0; i--)
        for (l = 0; l < lanes; l++) {
            uint64_t top;
            m[l] = (m[l] * m[l]) >> 31;                          /* m^2, Q31, in [1, 4) */
            top = m[l] >> 32;                                    /* 1 when m^2 >= 2:    */
            m[l] >>= top;                                        /* halve it and set    */
            frac[l] |= top << i;                                 /* bit i (no branch)   */
        }
    for (l = 0; l < lanes; l++) out[l] = ((uint64_t)(32 - e[l]) << 32) - frac[l];   /* 32 - (e + log2 m) */
}

static uint64_t dfn__neg_log2_q32(uint64_t n)
{
    uint64_t r;
    dfn__neg_log2_q32_lanes(&n, &r, 1);
    return r;
}

/* floor(sqrt(v)) for `lanes` values (up to 4), digit by digit from 2^62
   (while the digit exceeds what is left the steps keep res at 0); the
   choice as a mask: random digits would mispredict a branch half of the
   time. v is consumed. */
static DFN__FORCE_INLINE void dfn__isqrt64_lanes(uint64_t *v, uint64_t *res, int lanes)
{
    int l, i;
    for (l = 0; l < lanes; l++) res[l] = 0;
    for (i = 0; i < 32; i++)
        for (l = 0; l < lanes; l++) {
            uint64_t bit = (uint64_t)1 << (62 - 2 * i), t = res[l] + bit;
            uint64_t take = (uint64_t)0 - (uint64_t)(v[l] >= t);
            v[l] -= t & take;
            res[l] = (res[l] >> 1) + (bit & take);
        }
}

static uint64_t dfn__isqrt64(uint64_t v)
{
    uint64_t r;
    dfn__isqrt64_lanes(&v, &r, 1);
    return r;
}

#define DFN__Q30 ((int64_t)1 << 30)
/* a b / 2^30 in Q30 for either sign, rounded toward zero (no shift of a
   negative number), for |a b| < 2^64. */
static int64_t dfn__mul_q30(int64_t a, int64_t b)
{
    uint64_t ua = a < 0 ? (uint64_t)0 - (uint64_t)a : (uint64_t)a;
    uint64_t ub = b < 0 ? (uint64_t)0 - (uint64_t)b : (uint64_t)b;
    uint64_t p = (ua * ub) >> 30;
    return (a < 0) != (b < 0) ? -(int64_t)p : (int64_t)p;
}

/* sin and cos of phi in [0, pi/4] (Q30), by their Taylor series in nested
   form: sin = phi (1 - p/(2*3) (1 - p/(4*5) (1 - p/(6*7) (1 - p/(8*9))))),
   cos = 1 - p/2 (1 - p/(3*4) (1 - p/(5*6) (1 - p/(7*8) (1 - p/(9*10))))),
   p = phi^2. Truncation error below 2e-9. All values stay in [0, 1]. */
static void dfn__sincos_q30(int64_t phi, int64_t *s, int64_t *c)
{
    int64_t p = dfn__mul_q30(phi, phi), a;
    a = DFN__Q30 - p / 72;
    a = DFN__Q30 - dfn__mul_q30(p, a) / 42;
    a = DFN__Q30 - dfn__mul_q30(p, a) / 20;
    a = DFN__Q30 - dfn__mul_q30(p, a) / 6;
    *s = dfn__mul_q30(phi, a);
    a = DFN__Q30 - p / 90;
    a = DFN__Q30 - dfn__mul_q30(p, a) / 56;
    a = DFN__Q30 - dfn__mul_q30(p, a) / 30;
    a = DFN__Q30 - dfn__mul_q30(p, a) / 12;
    *c = DFN__Q30 - dfn__mul_q30(p, a) / 2;
}

/* cos and sin of the angle theta = 2 pi turn / 2^32 in Q30: quadrant q,
   angle alpha in [0, pi/2) within it, folded to [0, pi/4] (swapping sin
   and cos) for the series (error below 3e-9). */
static void dfn__sincos_turn(uint32_t turn, int64_t *c, int64_t *s)
{
    const uint64_t half_pi_q32 = 6746518852u;             /* round(pi/2 * 2^32)   */
    uint32_t q = turn >> 30, frac = turn & 0x3fffffffu;
    int64_t sa, ca, s0, c0;
    if (frac < (1u << 29)) {
        dfn__sincos_q30((int64_t)(((uint64_t)frac * half_pi_q32) >> 32), &s0, &c0);
        sa = s0; ca = c0;
    } else {
        dfn__sincos_q30((int64_t)(((uint64_t)((1u << 30) - frac) * half_pi_q32) >> 32), &s0, &c0);
        sa = c0; ca = s0;                                 /* alpha = pi/2 - phi   */
    }
    switch (q) {                                          /* q pi/2 + alpha       */
    case 0:  *c =  ca; *s =  sa; break;
    case 1:  *c = -sa; *s =  ca; break;
    case 2:  *c = -ca; *s = -sa; break;
    default: *c =  sa; *s = -ca; break;
    }
}

/* L = -2 ln u1 = 2 ln2 * (-log2 u1) in Q31, from nl = -log2 u1 in Q32. */
static uint64_t dfn__box_muller_L(uint64_t nl)
{
    const uint64_t two_ln2_q31 = 2977044472u;             /* round(2 ln 2 * 2^31) */
    return (nl >> 32) * two_ln2_q31 + (((nl & 0xffffffffu) * two_ln2_q31) >> 32);
}

/* z0 = r cos(theta), z1 = r sin(theta) with r in Q28 and theta = 2 pi b / 2^32:
   r (Q28) * cos (Q30) is Q58; the conversion rounds once, the scaling by
   2^-58 is exact. */
static void dfn__box_muller_out(int64_t r, uint32_t b, float *z0, float *z1)
{
    int64_t cos_t, sin_t;
    dfn__sincos_turn(b, &cos_t, &sin_t);
    *z0 = (float)(r * cos_t) * (1.0f / 288230376151711744.0f);
    *z1 = (float)(r * sin_t) * (1.0f / 288230376151711744.0f);
}

static void dfn__normal_pair(dfn_rng *rng, float *z0, float *z1)
{
    uint32_t a = dfn_rng_u32(rng), b = dfn_rng_u32(rng);
    /* u1 = (a + 1) / 2^32; r = sqrt(L): L << 25 is Q56, its integer square root Q28 */
    uint64_t L = dfn__box_muller_L(dfn__neg_log2_q32((uint64_t)a + 1));
    dfn__box_muller_out((int64_t)dfn__isqrt64(L << 25), b, z0, z1);
}

/* Four pairs at once, the same bits as four dfn__normal_pair calls: the
   draws in the same order, then the four logarithms and square roots in
   one loop each (four independent chains instead of one: the squarings
   and digit steps of one pair wait on each other). */
static void dfn__normal_pairs4(dfn_rng *rng, float *out)
{
    uint64_t n[4], nl[4], v[4], r[4];
    uint32_t b[4];
    int l;
    for (l = 0; l < 4; l++) {
        n[l] = (uint64_t)dfn_rng_u32(rng) + 1;
        b[l] = dfn_rng_u32(rng);
    }
    dfn__neg_log2_q32_lanes(n, nl, 4);
    for (l = 0; l < 4; l++) v[l] = dfn__box_muller_L(nl[l]) << 25;
    dfn__isqrt64_lanes(v, r, 4);
    for (l = 0; l < 4; l++) dfn__box_muller_out((int64_t)r[l], b[l], out + 2 * l, out + 2 * l + 1);
}

DFNDEF float dfn_rng_normal(dfn_rng *rng)
{
    float z0, z1;
    if (rng->has_spare) {
        rng->has_spare = 0;
        return rng->spare;
    }
    dfn__normal_pair(rng, &z0, &z1);
    rng->spare = z1;
    rng->has_spare = 1;
    return z0;
}

/* The state after `steps` more draws: the LCG s -> a s + c applied steps
   times is s -> A s + C, built by squaring (Brown 1994, as in PCG's
   advance) in O(log steps). */
static void dfn__rng_advance(dfn_rng *rng, uint64_t steps)
{
    uint64_t a = ((uint64_t)0x5851f42du << 32) | 0x4c957f2du, c = rng->inc, A = 1, C = 0;
    while (steps > 0) {
        if (steps & 1) {
            A *= a;
            C = C * a + c;
        }
        c = (a + 1) * c;
        a *= a;
        steps >>= 1;
    }
    rng->state = A * rng->state + C;
}

/* Pairs [task step, (task + 1) step) of a fill: each task jumps its own
   copy of the generator to its first pair (two draws per pair). */
typedef struct dfn__normal_task {
    dfn_rng rng;                   /* at the first pair */
    float *out;
    size_t pairs, step;
} dfn__normal_task;

static void dfn__normal_run_task(void *ctx, int task, int w)
{
    const dfn__normal_task *k = (const dfn__normal_task *)ctx;
    size_t lo = (size_t)task * k->step, hi = lo + k->step < k->pairs ? lo + k->step : k->pairs, i;
    dfn_rng r = k->rng;
    (void)w;
    if (lo >= hi) return;
    dfn__rng_advance(&r, 2 * (uint64_t)lo);
    for (i = lo; i + 3 < hi; i += 4) dfn__normal_pairs4(&r, k->out + 2 * i);
    for (; i < hi; i++) dfn__normal_pair(&r, k->out + 2 * i, k->out + 2 * i + 1);
}

DFNDEF void dfn_rng_normal_fill(dfn_rng *rng, float *out, size_t n)
{
    size_t i = 0;
    int T = dfn__parallel_workers();
    if (n > 0 && rng->has_spare) {
        out[i++] = rng->spare;
        rng->has_spare = 0;
    }
    if (T > 1 && n - i >= (size_t)4096 * T) {
        /* with threads: blocks of pairs, the same values as one stream */
        dfn__normal_task k;
        k.rng = *rng;
        k.out = out + i;
        k.pairs = (n - i) / 2;
        k.step = (k.pairs + (size_t)T - 1) / (size_t)T;
        dfn__parallel_for(T, dfn__normal_run_task, &k);
        dfn__rng_advance(rng, 2 * (uint64_t)k.pairs);
        i += 2 * k.pairs;
    }
    for (; i + 7 < n; i += 8) dfn__normal_pairs4(rng, out + i);
    for (; i + 1 < n; i += 2) dfn__normal_pair(rng, &out[i], &out[i + 1]);
    if (i < n) out[i] = dfn_rng_normal(rng);
}

/* ------------------------------------------------------------------------- */
/*  Schedules (MATH.md section 2)                                            */
/* ------------------------------------------------------------------------- */

DFNDEF dfn_schedule_config dfn_schedule_config_default(dfn_schedule_kind kind, int T)
{
    dfn_schedule_config c;
    DFN_MEMSET(&c, 0, sizeof c);
    c.kind = kind;
    c.T = T;
    c.beta_start = 1e-4;
    c.beta_end = 0.02;
    c.cosine_s = 0.008;
    c.sigmoid_start = -3.0;
    c.sigmoid_end = 3.0;
    c.sigmoid_tau = 1.0;
    c.max_beta = 0.999;
    c.betas = NULL;
    c.zero_terminal_snr = 0;
    c.flow_shift = 1.0;
    return c;
}

/* Lays out the T + 1 entry tables of s (or only measures, mem == NULL). */
static size_t dfn__schedule_layout(dfn_schedule *s, int T, void *mem)
{
    float **tables[9];
    dfn__arena a = dfn__arena_begin(mem);
    size_t i;
    tables[0] = &s->beta;               tables[1] = &s->alpha;
    tables[2] = &s->alphabar;           tables[3] = &s->sqrt_alphabar;
    tables[4] = &s->sqrt_one_minus_alphabar;
    tables[5] = &s->posterior_variance; tables[6] = &s->posterior_coef_x0;
    tables[7] = &s->posterior_coef_xt;  tables[8] = &s->snr;
    for (i = 0; i < 9; i++)
        *tables[i] = (float *)dfn__arena_take(&a, ((size_t)T + 1) * sizeof(float));
    return dfn__arena_size(&a);
}

DFNDEF size_t dfn_schedule_size(int T)
{
    dfn_schedule tmp;
    if (T < 1 || T > DFN_MAX_T) return 0;
    return dfn__schedule_layout(&tmp, T, NULL);
}

/* cosine: f(t) = cos^2(((t/T + s) / (1 + s)) pi/2) */
static double dfn__cosine_f(double t, int T, double s)
{
    double c = DFN_COS(((t / T + s) / (1.0 + s)) * DFN__PI / 2.0);
    return c * c;
}

/* sigmoid (Jabri et al.): alphabar(tau) = (sig(end/k) - sig((tau (end - start) + start)/k))
                                           / (sig(end/k) - sig(start/k)),  tau = t/T */
static double dfn__sigmoid_alphabar(double t, const dfn_schedule_config *c)
{
    double k = c->sigmoid_tau;
    double v_start = 1.0 / (1.0 + DFN_EXP(-c->sigmoid_start / k));
    double v_end = 1.0 / (1.0 + DFN_EXP(-c->sigmoid_end / k));
    double x = (t / c->T) * (c->sigmoid_end - c->sigmoid_start) + c->sigmoid_start;
    double v = 1.0 / (1.0 + DFN_EXP(-x / k));
    return (v_end - v) / (v_end - v_start);
}

/* beta_t of the schedule before any zero-terminal-SNR rescale, in double. */
static double dfn__raw_beta(const dfn_schedule_config *c, int t)
{
    double b, prev, cur;
    switch (c->kind) {
    case DFN_SCHEDULE_LINEAR: {
        double scale = 1000.0 / c->T;
        double b1 = c->beta_start * scale, bT = c->beta_end * scale;
        return c->T == 1 ? b1 : b1 + (bT - b1) * (double)(t - 1) / (double)(c->T - 1);
    }
    case DFN_SCHEDULE_COSINE:
        prev = dfn__cosine_f(t - 1, c->T, c->cosine_s);
        cur = dfn__cosine_f(t, c->T, c->cosine_s);
        break;                       /* alphabar_t / alphabar_{t-1} = f(t) / f(t-1) */
    case DFN_SCHEDULE_SIGMOID:
        prev = dfn__sigmoid_alphabar(t - 1, c);
        cur = dfn__sigmoid_alphabar(t, c);
        break;
    case DFN_SCHEDULE_LINEAR_BETAS:
        return c->T == 1 ? c->beta_start
                         : c->beta_start + (c->beta_end - c->beta_start) * (double)(t - 1) / (double)(c->T - 1);
    case DFN_SCHEDULE_SCALED_LINEAR: {
        double r0 = DFN_SQRT(c->beta_start), r1 = DFN_SQRT(c->beta_end);
        double r = c->T == 1 ? r0 : r0 + (r1 - r0) * (double)(t - 1) / (double)(c->T - 1);
        return r * r;
    }
    case DFN_SCHEDULE_SIGMOID_BETAS: {
        double x = c->T == 1 ? -6.0 : -6.0 + 12.0 * (double)(t - 1) / (double)(c->T - 1);
        return c->beta_start + (c->beta_end - c->beta_start) / (1.0 + DFN_EXP(-x));
    }
    default:
        return (double)c->betas[t - 1];
    }
    if (prev != prev || cur != cur) return prev + cur;   /* NaN: a degenerate parameter */
    b = prev > 0.0 ? 1.0 - cur / prev : 1.0;
    return b < c->max_beta ? b : c->max_beta;
}

static int dfn__open_unit(double x) { return x > 0.0 && x < 1.0; }  /* false for NaN */

static dfn_result dfn__schedule_check(const dfn_schedule_config *c)
{
    if (c->T < 1 || c->T > DFN_MAX_T) return DFN_ERR_INVALID_ARG;
    switch (c->kind) {
    case DFN_SCHEDULE_LINEAR:
    case DFN_SCHEDULE_LINEAR_BETAS:
    case DFN_SCHEDULE_SCALED_LINEAR:
    case DFN_SCHEDULE_SIGMOID_BETAS:
        if (!dfn__open_unit(c->beta_start) || !dfn__open_unit(c->beta_end))
            return DFN_ERR_INVALID_ARG;
        break;
    case DFN_SCHEDULE_COSINE:
        if (!(c->cosine_s >= 0.0 && c->cosine_s < 1.0)) return DFN_ERR_INVALID_ARG;
        if (!dfn__open_unit(c->max_beta)) return DFN_ERR_INVALID_ARG;
        break;
    case DFN_SCHEDULE_SIGMOID:
        if (!(c->sigmoid_tau > 0.0) || !(c->sigmoid_end > c->sigmoid_start) ||
            !(c->sigmoid_end - c->sigmoid_start < 1e6) || !dfn__open_unit(c->max_beta))
            return DFN_ERR_INVALID_ARG;
        break;
    case DFN_SCHEDULE_CUSTOM:
        if (!c->betas) return DFN_ERR_NULL;
        break;
    case DFN_SCHEDULE_FLOW:
        if (c->T < 2 || !(c->flow_shift > 0.0 && c->flow_shift < 1e6)) return DFN_ERR_INVALID_ARG;
        break;
    default:
        return DFN_ERR_INVALID_ARG;
    }
    return DFN_OK;
}

/* Row 0 of every table: the clean data (a = 1, s = 0). */
static void dfn__schedule_row0(dfn_schedule *s)
{
    s->beta[0] = 0.0f;            s->alpha[0] = 1.0f;
    s->alphabar[0] = 1.0f;        s->sqrt_alphabar[0] = 1.0f;
    s->sqrt_one_minus_alphabar[0] = 0.0f;
    s->posterior_variance[0] = 0.0f;
    s->posterior_coef_x0[0] = 1.0f;  s->posterior_coef_xt[0] = 0.0f;
    s->snr[0] = (float)HUGE_VAL;
}

/* Section 12: u_t = k (t/T) / (1 + (k - 1) t/T), in double (u_0 = 0, u_T = 1). */
static double dfn__flow_u(const dfn_schedule_config *c, int t)
{
    double f = (double)t / (double)c->T, k = c->flow_shift;
    return t >= c->T ? 1.0 : k * f / (1.0 + (k - 1.0) * f);
}

/* The tables of a flow schedule (section 12): a = 1 - u, s = u, and the
   Gaussian chain they imply, q(x_t | x_{t-1}) = N(r x_{t-1}, (s_t^2 -
   r^2 s_{t-1}^2) I) with r = a_t / a_{t-1}, whose posterior is section 3's
   with these coefficients. Row 0 is set by the caller. */
static dfn_result dfn__flow_tables(dfn_schedule *s, const dfn_schedule_config *c)
{
    int t;
    double a_prev = 1.0, s_prev = 0.0;
    for (t = 1; t <= c->T; t++) {
        double u = dfn__flow_u(c, t), a = 1.0 - u, sd = u;
        double r = a / a_prev, var = sd * sd - r * r * s_prev * s_prev;   /* beta_t */
        s->beta[t] = (float)var;
        s->alpha[t] = (float)(r * r);
        s->alphabar[t] = (float)(a * a);
        s->sqrt_alphabar[t] = (float)a;
        s->sqrt_one_minus_alphabar[t] = (float)sd;
        s->snr[t] = (float)(a * a / (sd * sd));
        s->posterior_variance[t] = (float)(var * s_prev * s_prev / (sd * sd));
        s->posterior_coef_x0[t] = (float)(a_prev * var / (sd * sd));
        s->posterior_coef_xt[t] = (float)(r * s_prev * s_prev / (sd * sd));
        if (!(var > 0.0) || !(sd > 0.0) || !(u > s_prev) || !dfn__finite(s->snr[t]) ||
            !(s->sqrt_one_minus_alphabar[t] > 0.0f))
            return DFN_ERR_INVALID_ARG;            /* a degenerate shift */
        a_prev = a;
        s_prev = sd;
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_schedule_init(dfn_schedule *s, const dfn_schedule_config *cfg,
                                    void *mem, size_t bytes)
{
    dfn_result r;
    int t, T;
    double ab, ab_prev, a_first = 1.0, a_last = 0.0;
    if (!s || !cfg || !mem) return DFN_ERR_NULL;
    if ((r = dfn__schedule_check(cfg)) != DFN_OK) return r;
    T = cfg->T;
    if (bytes < dfn_schedule_size(T)) return DFN_ERR_BUFFER_TOO_SMALL;
    if (cfg->kind == DFN_SCHEDULE_FLOW) {
        DFN_MEMSET(s, 0, sizeof *s);
        s->T = T;
        s->process = DFN_PROCESS_FLOW;
        s->config = *cfg;
        s->config.betas = NULL;
        s->config.zero_terminal_snr = 0;
        s->memory = mem;
        dfn__schedule_layout(s, T, mem);
        dfn__schedule_row0(s);
        r = dfn__flow_tables(s, cfg);
        if (r != DFN_OK) DFN_MEMSET(s, 0, sizeof *s);
        return r;
    }
    /* Validate every beta before writing anything; alphabar_1 < 1 in double
       too (a beta below ~1e-16 would leave 1 - alphabar_1 = 0 and divide by it). */
    for (t = 1; t <= T; t++)
        if (!dfn__open_unit(dfn__raw_beta(cfg, t))) return DFN_ERR_INVALID_ARG;
    if (!(1.0 - dfn__raw_beta(cfg, 1) < 1.0)) return DFN_ERR_INVALID_ARG;

    if (cfg->zero_terminal_snr) {
        /* Lin et al. 2023, Algorithm 1: shift and scale sqrt(alphabar) so that
           sqrt(alphabar_T) = 0 while sqrt(alphabar_1) keeps its value. */
        if (T < 2) return DFN_ERR_INVALID_ARG;
        ab = 1.0;
        for (t = 1; t <= T; t++) {
            ab *= 1.0 - dfn__raw_beta(cfg, t);
            if (t == 1) a_first = DFN_SQRT(ab);
        }
        a_last = DFN_SQRT(ab);
        if (!(a_first > a_last)) return DFN_ERR_INVALID_ARG;
    }

    DFN_MEMSET(s, 0, sizeof *s);
    s->T = T;
    s->config = *cfg;
    s->config.betas = NULL;
    s->memory = mem;
    dfn__schedule_layout(s, T, mem);

    dfn__schedule_row0(s);

    ab = 1.0;                       /* alphabar_{t-1} of the raw schedule      */
    ab_prev = 1.0;                  /* alphabar_{t-1} of the final schedule    */
    for (t = 1; t <= T; t++) {
        double beta, alphabar;
        ab *= 1.0 - dfn__raw_beta(cfg, t);
        if (cfg->zero_terminal_snr) {
            double sq = (DFN_SQRT(ab) - a_last) * a_first / (a_first - a_last);
            if (t == T) sq = 0.0;
            alphabar = sq * sq;
            beta = 1.0 - alphabar / ab_prev;   /* beta_T = 1 exactly */
        } else {
            alphabar = ab;
            beta = dfn__raw_beta(cfg, t);
        }
        /* Section 1 */
        s->beta[t] = (float)beta;
        s->alpha[t] = (float)(1.0 - beta);
        s->alphabar[t] = (float)alphabar;
        s->sqrt_alphabar[t] = (float)DFN_SQRT(alphabar);
        s->sqrt_one_minus_alphabar[t] = (float)DFN_SQRT(1.0 - alphabar);
        s->snr[t] = (float)(alphabar / (1.0 - alphabar));
        /* Section 3: q(x_{t-1} | x_t, x_0) = N(c_x0 x_0 + c_xt x_t, betatilde_t) */
        s->posterior_variance[t] = (float)(beta * (1.0 - ab_prev) / (1.0 - alphabar));
        s->posterior_coef_x0[t] = (float)(DFN_SQRT(ab_prev) * beta / (1.0 - alphabar));
        s->posterior_coef_xt[t] = (float)(DFN_SQRT(1.0 - beta) * (1.0 - ab_prev) / (1.0 - alphabar));
        ab_prev = alphabar;
        if (!dfn__finite(s->beta[t]) || !dfn__finite(s->alphabar[t]) || !dfn__finite(s->snr[t]) ||
            !dfn__finite(s->posterior_variance[t]) || !dfn__finite(s->posterior_coef_x0[t]) ||
            !dfn__finite(s->posterior_coef_xt[t]) || !(s->sqrt_one_minus_alphabar[t] > 0.0f))
            return DFN_ERR_INVALID_ARG;            /* degenerate: far outside sane betas */
    }
    return DFN_OK;
}

#ifndef DFN_NO_MALLOC
DFNDEF dfn_result dfn_schedule_alloc(dfn_schedule *s, const dfn_schedule_config *cfg,
                                     void *alloc_ctx)
{
    dfn_result r;
    size_t bytes;
    void *mem;
    if (!s || !cfg) return DFN_ERR_NULL;
    DFN_MEMSET(s, 0, sizeof *s);
    if ((r = dfn__schedule_check(cfg)) != DFN_OK) return r;
    bytes = dfn_schedule_size(cfg->T);
    mem = DFN_MALLOC(bytes, alloc_ctx);
    if (!mem) return DFN_ERR_OUT_OF_MEMORY;
    r = dfn_schedule_init(s, cfg, mem, bytes);
    if (r != DFN_OK) {
        DFN_FREE(mem, alloc_ctx);
        DFN_MEMSET(s, 0, sizeof *s);
    }
    return r;
}

DFNDEF void dfn_schedule_free(dfn_schedule *s, void *alloc_ctx)
{
    (void)alloc_ctx;
    if (!s) return;
    if (s->memory) DFN_FREE(s->memory, alloc_ctx);
    DFN_MEMSET(s, 0, sizeof *s);
}
#endif

/* ------------------------------------------------------------------------- */
/*  Forward process and parameterizations (MATH.md sections 1, 3, 4, 5)      */
/* ------------------------------------------------------------------------- */

/* Common argument checks of the batched forward-process functions. */
static dfn_result dfn__check_batch(const dfn_schedule *s, const int *t, int n, int dim)
{
    int i;
    if (!s || !s->alphabar) return DFN_ERR_NULL;
    if (n < 0 || dim < 1 || (n > 0 && dfn__count(n, dim) == 0)) return DFN_ERR_INVALID_ARG;
    if (n > 0 && !t) return DFN_ERR_NULL;
    for (i = 0; i < n; i++)
        if (t[i] < 1 || t[i] > s->T) return DFN_ERR_INVALID_ARG;
    return DFN_OK;
}

DFNDEF dfn_result dfn_q_sample(const dfn_schedule *s, float *xt,
                               const float *x0, const float *eps,
                               const int *t, int n, int dim)
{
    int i, j;
    dfn_result r = dfn__check_batch(s, t, n, dim);
    if (r != DFN_OK) return r;
    if (n > 0 && (!xt || !x0 || !eps)) return DFN_ERR_NULL;
    for (i = 0; i < n; i++) {
        /* Section 1: x_t = sqrt(alphabar_t) x_0 + sqrt(1 - alphabar_t) eps */
        float a = s->sqrt_alphabar[t[i]], b = s->sqrt_one_minus_alphabar[t[i]];
        size_t o = (size_t)i * dim;
        for (j = 0; j < dim; j++) xt[o + j] = a * x0[o + j] + b * eps[o + j];
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_q_posterior(const dfn_schedule *s, float *mean, float *var,
                                  const float *x0, const float *xt,
                                  const int *t, int n, int dim)
{
    int i, j;
    dfn_result r = dfn__check_batch(s, t, n, dim);
    if (r != DFN_OK) return r;
    if (n > 0 && (!mean || !x0 || !xt)) return DFN_ERR_NULL;
    for (i = 0; i < n; i++) {
        /* Section 3: mutilde_t = c_x0 x_0 + c_xt x_t, variance betatilde_t */
        float c0 = s->posterior_coef_x0[t[i]], ct = s->posterior_coef_xt[t[i]];
        size_t o = (size_t)i * dim;
        for (j = 0; j < dim; j++) mean[o + j] = c0 * x0[o + j] + ct * xt[o + j];
        if (var) var[i] = s->posterior_variance[t[i]];
    }
    return DFN_OK;
}

/* Section 4 for count values sharing one timestep t. */
static void dfn__to_x0_eps(const dfn_schedule *s, dfn_prediction kind, int t,
                           float *x0_hat, float *eps_hat,
                           const float *pred, const float *xt, size_t count)
{
    float a = s->sqrt_alphabar[t], b = s->sqrt_one_minus_alphabar[t];
    float n2 = (float)((double)a * a + (double)b * b);
    int flow = s->process == DFN_PROCESS_FLOW;
    size_t j;
    for (j = 0; j < count; j++) {
        float p = pred[j], x = xt[j], x0, eps;
        switch (kind) {
        case DFN_PREDICT_EPS:  /* x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab) */
            eps = p;
            x0 = (x - b * eps) / a;
            break;
        case DFN_PREDICT_V:    /* x0 = sqrt(ab) x_t - sqrt(1 - ab) v; eps = sqrt(1 - ab) x_t + sqrt(ab) v;
                                  in (a, s) both over a^2 + s^2, which is 1 but for flow */
            x0 = a * x - b * p;
            eps = b * x + a * p;
            if (flow) { x0 /= n2; eps /= n2; }
            break;
        case DFN_PREDICT_FLOW: /* section 12, w = eps - x0: x0 = (x_t - s w)/(a + s),
                                  eps = (x_t + a w)/(a + s); a + s = 1 for flow */
            x0 = (x - b * p) / (a + b);
            eps = (x + a * p) / (a + b);
            break;
        default:               /* x0-prediction; eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab) */
            x0 = p;
            eps = (x - a * x0) / b;
            break;
        }
        if (x0_hat) x0_hat[j] = x0;
        if (eps_hat) eps_hat[j] = eps;
    }
}

DFNDEF dfn_result dfn_prediction_to_x0_eps(const dfn_schedule *s, dfn_prediction kind,
                                           float *x0_hat, float *eps_hat,
                                           const float *pred, const float *xt,
                                           const int *t, int n, int dim)
{
    int i;
    dfn_result r = dfn__check_batch(s, t, n, dim);
    if (r != DFN_OK) return r;
    if (!dfn__prediction_valid(kind))
        return DFN_ERR_INVALID_ARG;
    if (n > 0 && (!pred || !xt)) return DFN_ERR_NULL;
    for (i = 0; i < n; i++)
        if (kind == DFN_PREDICT_EPS && s->sqrt_alphabar[t[i]] == 0.0f) return DFN_ERR_INVALID_ARG;
    for (i = 0; i < n; i++) {
        size_t o = (size_t)i * dim;
        dfn__to_x0_eps(s, kind, t[i], x0_hat ? x0_hat + o : NULL, eps_hat ? eps_hat + o : NULL,
                       pred + o, xt + o, (size_t)dim);
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_prediction_target(const dfn_schedule *s, dfn_prediction kind,
                                        float *target, const float *x0, const float *eps,
                                        const int *t, int n, int dim)
{
    int i, j;
    dfn_result r = dfn__check_batch(s, t, n, dim);
    if (r != DFN_OK) return r;
    if (!dfn__prediction_valid(kind))
        return DFN_ERR_INVALID_ARG;
    if (n > 0 && (!target || !x0 || !eps)) return DFN_ERR_NULL;
    for (i = 0; i < n; i++) {
        float a = s->sqrt_alphabar[t[i]], b = s->sqrt_one_minus_alphabar[t[i]];
        size_t o = (size_t)i * dim;
        for (j = 0; j < dim; j++) {
            float e = eps[o + j], x = x0[o + j];
            /* Section 5: the target is eps itself, v = sqrt(ab) eps - sqrt(1 - ab) x0, or x0;
               section 12: the velocity w = eps - x0 */
            target[o + j] = kind == DFN_PREDICT_EPS ? e : kind == DFN_PREDICT_V ? a * e - b * x
                          : kind == DFN_PREDICT_FLOW ? e - x : x;
        }
    }
    return DFN_OK;
}

/* ------------------------------------------------------------------------- */
/*  Sampler steps (MATH.md sections 6, 7)                                    */
/* ------------------------------------------------------------------------- */

DFNDEF dfn_result dfn_ddim_timesteps(int *tau, int T, int S, dfn_spacing spacing)
{
    int i;
    if (!tau) return DFN_ERR_NULL;
    if (T < 1 || S < 1 || S > T) return DFN_ERR_INVALID_ARG;
    if (spacing != DFN_SPACING_LINSPACE && spacing != DFN_SPACING_LEADING &&
        spacing != DFN_SPACING_TRAILING)
        return DFN_ERR_INVALID_ARG;
    tau[0] = 0;
    for (i = 1; i <= S; i++) {
        /* round(x) = floor(x + 0.5), done in exact integer arithmetic:
           floor(a / b + 1/2) = floor((2a + b) / (2b)). */
        int64_t ii = i, TT = T, SS = S;
        switch (spacing) {
        case DFN_SPACING_LINSPACE: /* round(1 + (i - 1)(T - 1)/(S - 1)); S = 1: T */
            tau[i] = S == 1 ? T : (int)(1 + (2 * (ii - 1) * (TT - 1) + (SS - 1)) / (2 * (SS - 1)));
            break;
        case DFN_SPACING_LEADING:  /* 1 + (i - 1) floor(T/S) */
            tau[i] = (int)(1 + (ii - 1) * (TT / SS));
            break;
        default:                   /* round(i T / S) */
            tau[i] = (int)((2 * ii * TT + SS) / (2 * SS));
            break;
        }
    }
    return DFN_OK;
}

/* Section 11: log sigma_t = log s_t - log a_t from the float tables, in
   double (nondecreasing in t; finite for t >= 1 when alphabar_T > 0). */
static double dfn__log_sigma(const dfn_schedule *s, int t)
{
    return DFN_LOG((double)s->sqrt_one_minus_alphabar[t]) - DFN_LOG((double)s->sqrt_alphabar[t]);
}

/* The t in 1..T nearest to log sigma = ls (ties to the smaller t). */
static int dfn__nearest_t(const dfn_schedule *s, double ls)
{
    int lo = 1, hi = s->T;
    while (lo < hi) {               /* first t with log sigma_t >= ls */
        int mid = lo + (hi - lo) / 2;
        if (dfn__log_sigma(s, mid) < ls) lo = mid + 1;
        else hi = mid;
    }
    if (lo > 1 && ls - dfn__log_sigma(s, lo - 1) <= dfn__log_sigma(s, lo) - ls) lo--;
    return lo;
}

/* S distinct values: a collision takes the next free t above, and no value
   may pass T - (S - i), which leaves room for the steps above it (tau_S = T). */
static void dfn__timesteps_distinct(int *tau, int S, int T)
{
    int i;
    for (i = 2; i < S; i++) {
        if (tau[i] <= tau[i - 1]) tau[i] = tau[i - 1] + 1;
        if (tau[i] > T - (S - i)) tau[i] = T - (S - i);
    }
}

DFNDEF dfn_result dfn_timesteps(int *tau, const dfn_schedule *s, int S, dfn_spacing spacing,
                                float param)
{
    double ls_T, ls_1, u_T = 0.0, u_1 = 0.0, rho = param;
    int i, T;
    if (!tau || !s || !s->alphabar) return DFN_ERR_NULL;
    T = s->T;
    if (spacing == DFN_SPACING_LINSPACE || spacing == DFN_SPACING_LEADING ||
        spacing == DFN_SPACING_TRAILING)
        return dfn_ddim_timesteps(tau, T, S, spacing);
    if (spacing == DFN_SPACING_SHIFTED) {
        /* Section 12: tau_i = round(T k f / (1 + (k - 1) f)), f = i / S, at
           least 1; tau_S = T. */
        double k = param;
        if (S < 1 || S > T) return DFN_ERR_INVALID_ARG;
        if (!(param > 0.0f && dfn__finite(param))) return DFN_ERR_INVALID_ARG;
        tau[0] = 0;
        for (i = 1; i < S; i++) {
            double f = (double)i / (double)S, v = T * k * f / (1.0 + (k - 1.0) * f);
            int q = (int)(v + 0.5);              /* v >= 0 */
            tau[i] = q < 1 ? 1 : q > T ? T : q;
        }
        tau[S] = T;
        if (S >= 2 && tau[1] > T - (S - 1)) tau[1] = T - (S - 1);
        dfn__timesteps_distinct(tau, S, T);
        return DFN_OK;
    }
    if (spacing != DFN_SPACING_LOGSNR && spacing != DFN_SPACING_KARRAS) return DFN_ERR_INVALID_ARG;
    if (S < 1 || S > T) return DFN_ERR_INVALID_ARG;
    if (spacing == DFN_SPACING_KARRAS && !(rho > 0.0f && dfn__finite(rho))) return DFN_ERR_INVALID_ARG;
    if (!(s->sqrt_alphabar[T] > 0.0f)) return DFN_ERR_INVALID_ARG;   /* sigma_T infinite */
    tau[0] = 0;
    tau[S] = T;
    if (S == 1) return DFN_OK;
    ls_T = dfn__log_sigma(s, T);
    ls_1 = dfn__log_sigma(s, 1);
    if (spacing == DFN_SPACING_KARRAS) {
        u_T = DFN_EXP(ls_T / rho);   /* sigma_max^(1/rho) */
        u_1 = DFN_EXP(ls_1 / rho);   /* sigma_min^(1/rho) */
    }
    /* k = S - i = 0..S-1 runs from t = T (k = 0) down to t = 1 (k = S - 1). */
    for (i = 1; i < S; i++) {
        double f = (double)(S - i) / (double)(S - 1), ls;
        if (spacing == DFN_SPACING_LOGSNR)
            ls = ls_T + f * (ls_1 - ls_T);                  /* lambda = -log sigma evenly */
        else
            ls = rho * DFN_LOG(u_T + f * (u_1 - u_T));      /* sigma^(1/rho) evenly */
        tau[i] = i == 1 ? 1 : dfn__nearest_t(s, ls);
    }
    dfn__timesteps_distinct(tau, S, T);
    return DFN_OK;
}

static const char *const dfn__kind_names[DFN_SAMPLER_KIND_COUNT] = {
    "ddpm", "ddim", "euler", "heun", "dpm++2m", "dpm++3m", "dpm++2m-sde", "midpoint"
};
static const char *const dfn__spacing_names[DFN_SPACING_COUNT] = {
    "linspace", "leading", "trailing", "logsnr", "karras", "custom", "shifted"
};

DFNDEF const char *dfn_sampler_kind_name(dfn_sampler_kind kind)
{
    return (int)kind >= 0 && (int)kind < DFN_SAMPLER_KIND_COUNT ? dfn__kind_names[kind] : NULL;
}

DFNDEF const char *dfn_spacing_name(dfn_spacing spacing)
{
    return (int)spacing >= 0 && (int)spacing < DFN_SPACING_COUNT ? dfn__spacing_names[spacing] : NULL;
}

static int dfn__name_index(const char *const *names, int count, const char *name)
{
    int i, j;
    if (!name) return -1;
    for (i = 0; i < count; i++) {
        for (j = 0; names[i][j] && names[i][j] == name[j]; j++) {}
        if (names[i][j] == name[j]) return i;
    }
    return -1;
}

DFNDEF int dfn_sampler_kind_parse(const char *name)
{
    return dfn__name_index(dfn__kind_names, DFN_SAMPLER_KIND_COUNT, name);
}

DFNDEF int dfn_spacing_parse(const char *name)
{
    return dfn__name_index(dfn__spacing_names, DFN_SPACING_COUNT, name);
}

DFNDEF float dfn_ddpm_sigma(const dfn_schedule *s, int t, dfn_variance variance)
{
    if (!s || t < 1 || t > s->T) return 0.0f;
    return (float)DFN_SQRT(variance == DFN_VARIANCE_LARGE ? (double)s->beta[t]
                                                          : (double)s->posterior_variance[t]);
}

/* sigma^2 of section 7 in double: eta^2 (1 - ab_p)/(1 - ab_t) (1 - ab_t/ab_p). */
static double dfn__ddim_var(const dfn_schedule *s, int t, int p, double eta)
{
    double ab_t = s->alphabar[t], ab_p = s->alphabar[p], v;
    if (s->process == DFN_PROCESS_FLOW) {
        /* The same in (a, s) (section 12): eta^2 s_p^2 (1 - (a_t s_p / (s_t a_p))^2),
           which for a^2 + s^2 = 1 is the line below; 0 at p = 0. */
        double at = s->sqrt_alphabar[t], st = s->sqrt_one_minus_alphabar[t];
        double ap = s->sqrt_alphabar[p], sp = s->sqrt_one_minus_alphabar[p], e;
        if (p == 0 || eta == 0.0) return 0.0;
        e = at * sp / (st * ap);
        v = eta * eta * sp * sp * (1.0 - e * e);
        return v > 0.0 ? v : 0.0;
    }
    v = eta * eta * ((1.0 - ab_p) / (1.0 - ab_t)) * (1.0 - ab_t / ab_p);
    return v > 0.0 ? v : 0.0;
}

DFNDEF float dfn_ddim_sigma(const dfn_schedule *s, int t, int t_prev, float eta)
{
    if (!s || t < 1 || t > s->T || t_prev < 0 || t_prev >= t || !(eta >= 0.0f)) return 0.0f;
    return (float)DFN_SQRT(dfn__ddim_var(s, t, t_prev, eta));
}

DFNDEF dfn_result dfn_ddpm_step(const dfn_schedule *s, float *x_prev, const float *x_t,
                                const float *x0_hat, const float *z,
                                int t, dfn_variance variance, size_t count)
{
    float c0, ct, sigma;
    size_t j;
    if (!s || !s->alphabar) return DFN_ERR_NULL;
    if (t < 1 || t > s->T) return DFN_ERR_INVALID_ARG;
    if (variance != DFN_VARIANCE_SMALL && variance != DFN_VARIANCE_LARGE) return DFN_ERR_INVALID_ARG;
    if (count > 0 && (!x_prev || !x_t || !x0_hat)) return DFN_ERR_NULL;
    /* Section 6: x_{t-1} = mutilde_t(x0_hat, x_t) + sigma_t z, where
       mutilde_t = c_x0 x0_hat + c_xt x_t (section 3). With x0_hat from eps
       this is exactly Algorithm 2:
       (1/sqrt(alpha_t)) (x_t - beta_t / sqrt(1 - alphabar_t) eps_hat) + sigma_t z. */
    c0 = s->posterior_coef_x0[t];
    ct = s->posterior_coef_xt[t];
    sigma = dfn_ddpm_sigma(s, t, variance);
    if (z) {
        for (j = 0; j < count; j++) x_prev[j] = c0 * x0_hat[j] + ct * x_t[j] + sigma * z[j];
    } else {
        for (j = 0; j < count; j++) x_prev[j] = c0 * x0_hat[j] + ct * x_t[j];
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_ddim_step(const dfn_schedule *s, float *x_prev, const float *x0_hat,
                                const float *eps_hat, const float *z,
                                int t, int t_prev, float eta, size_t count)
{
    double var, dir;
    float a, d, sigma;
    size_t j;
    if (!s || !s->alphabar) return DFN_ERR_NULL;
    if (t < 1 || t > s->T || t_prev < 0 || t_prev >= t) return DFN_ERR_INVALID_ARG;
    if (!(eta >= 0.0f) || !dfn__finite(eta)) return DFN_ERR_INVALID_ARG;
    if (count > 0 && (!x_prev || !x0_hat || !eps_hat)) return DFN_ERR_NULL;
    /* Section 7: x_p = sqrt(ab_p) x0_hat + sqrt(1 - ab_p - sigma^2) eps_hat + sigma z */
    var = dfn__ddim_var(s, t, t_prev, eta);
    if (s->process == DFN_PROCESS_FLOW) {   /* s_p^2 - sigma^2 */
        double sp = s->sqrt_one_minus_alphabar[t_prev];
        dir = sp * sp - var;
    } else {
        dir = 1.0 - (double)s->alphabar[t_prev] - var;
    }
    a = s->sqrt_alphabar[t_prev];
    d = (float)DFN_SQRT(dir > 0.0 ? dir : 0.0);
    sigma = (float)DFN_SQRT(var);
    if (z) {
        for (j = 0; j < count; j++) x_prev[j] = a * x0_hat[j] + d * eps_hat[j] + sigma * z[j];
    } else {
        for (j = 0; j < count; j++) x_prev[j] = a * x0_hat[j] + d * eps_hat[j];
    }
    return DFN_OK;
}

/* ------------------------------------------------------------------------- */
/*  The sampler object                                                       */
/* ------------------------------------------------------------------------- */

DFNDEF dfn_sampler_config dfn_sampler_config_default(dfn_sampler_kind kind, int n, int dim,
                                                     dfn_predict_fn predict, void *user)
{
    dfn_sampler_config c;
    DFN_MEMSET(&c, 0, sizeof c);
    c.kind = kind;
    c.n = n;
    c.dim = dim;
    c.predict = predict;
    c.predict_user = user;
    c.prediction = DFN_PREDICT_EPS;
    c.labels = NULL;
    c.variance = DFN_VARIANCE_SMALL;
    c.steps = 50;
    c.eta = 0.0f;
    c.spacing = DFN_SPACING_TRAILING;
    c.karras_rho = 7.0f;
    c.shift = 3.0f;
    c.timesteps = NULL;
    c.clip_x0 = 0;
    c.clip_min = -1.0f;
    c.clip_max = 1.0f;
    c.on_step = NULL;
    c.on_step_user = NULL;
    c.guidance_scale = 1.0f;
    c.guide = NULL;
    c.guide_user = NULL;
    c.known = NULL;
    c.known_mask = NULL;
    c.resample_jump = 0;
    c.resample_count = 1;
    c.final_alphabar_1 = 0;
    return c;
}

/* 1: one 2n-row call per step (section 8's two halves); 2: w = 0, one n-row
   call with every label -1; 0: the plain call. */
static int dfn__sampler_guided(const dfn_sampler_config *c)
{
    if (!c->labels || c->guidance_scale == 1.0f) return 0;
    return c->guidance_scale == 0.0f ? 2 : 1;
}

/* S of a configuration: T for DDPM, min(steps, T) is NOT applied silently:
   steps outside 1..T is an error. */
static int dfn__sampler_steps(const dfn_sampler_config *c, const dfn_schedule *s)
{
    return c->kind == DFN_SAMPLER_DDPM ? s->T : c->steps;
}

static dfn_result dfn__sampler_check(const dfn_sampler_config *c, const dfn_schedule *s)
{
    int S, i;
    if (!c || !s || !s->alphabar) return DFN_ERR_NULL;
    if (!c->predict) return DFN_ERR_NULL;
    if ((int)c->kind < 0 || (int)c->kind >= DFN_SAMPLER_KIND_COUNT) return DFN_ERR_INVALID_ARG;
    if (!DFN__KIND_ON((int)c->kind)) return DFN_ERR_INVALID_ARG;    /* left out by DFN_SAMPLER_KINDS */
    if (c->n < 1 || c->dim < 1 || dfn__count(c->n, c->dim) == 0) return DFN_ERR_INVALID_ARG;
    if (!dfn__prediction_valid(c->prediction))
        return DFN_ERR_INVALID_ARG;
    if (c->variance != DFN_VARIANCE_SMALL && c->variance != DFN_VARIANCE_LARGE)
        return DFN_ERR_INVALID_ARG;
    if (c->kind == DFN_SAMPLER_DDIM && (!(c->eta >= 0.0f) || !dfn__finite(c->eta)))
        return DFN_ERR_INVALID_ARG;
    S = dfn__sampler_steps(c, s);
    if (S < 1 || S > s->T) return DFN_ERR_INVALID_ARG;
    if (c->kind != DFN_SAMPLER_DDPM) {
        int zero_snr = !(s->sqrt_alphabar[s->T] > 0.0f);
        int in_sigma = s->process == DFN_PROCESS_VP &&
                       (c->kind == DFN_SAMPLER_EULER || c->kind == DFN_SAMPLER_HEUN ||
                        c->kind == DFN_SAMPLER_MIDPOINT);
        if ((int)c->spacing < 0 || (int)c->spacing >= DFN_SPACING_COUNT) return DFN_ERR_INVALID_ARG;
        if (c->spacing == DFN_SPACING_KARRAS && !(c->karras_rho > 0.0f && dfn__finite(c->karras_rho)))
            return DFN_ERR_INVALID_ARG;
        if (c->spacing == DFN_SPACING_SHIFTED && !(c->shift > 0.0f && dfn__finite(c->shift)))
            return DFN_ERR_INVALID_ARG;
        /* sigma_T = s_T / a_T is infinite on a zero-terminal-SNR schedule
           (and on a flow one, whose Euler, Heun and midpoint step in u). */
        if (zero_snr && (c->spacing == DFN_SPACING_LOGSNR || c->spacing == DFN_SPACING_KARRAS || in_sigma))
            return DFN_ERR_INVALID_ARG;
        if (c->spacing == DFN_SPACING_CUSTOM) {
            if (!c->timesteps) return DFN_ERR_NULL;
            for (i = 0; i < S; i++)
                if (c->timesteps[i] < 1 || c->timesteps[i] > s->T ||
                    (i > 0 && c->timesteps[i] >= c->timesteps[i - 1]))
                    return DFN_ERR_INVALID_ARG;
        }
    }
    if (c->clip_x0 && !(c->clip_min < c->clip_max && dfn__finite(c->clip_min) &&
                        dfn__finite(c->clip_max)))
        return DFN_ERR_INVALID_ARG;
    /* x0_hat from an eps prediction divides by sqrt(alphabar_t). */
    if (c->prediction == DFN_PREDICT_EPS && s->alphabar[s->T] == 0.0f) return DFN_ERR_INVALID_ARG;
    /* guidance calls the predictor on 2n rows (an int) */
    if (c->labels && c->n > DFN__INT_MAX / 2) return DFN_ERR_INVALID_ARG;
    if (c->labels)
        for (i = 0; i < c->n; i++)
            if (c->labels[i] < -1) return DFN_ERR_INVALID_ARG;
    if (!(c->guidance_scale >= 0.0f) || !dfn__finite(c->guidance_scale)) return DFN_ERR_INVALID_ARG;
    if (c->known && !c->known_mask) return DFN_ERR_NULL;
    if (c->known && !dfn__all_finite(c->known, (size_t)c->n * (size_t)c->dim)) return DFN_ERR_NOT_FINITE;
    if (c->resample_jump < 0 || c->resample_jump > S || c->resample_count < 1) return DFN_ERR_INVALID_ARG;
    if (c->final_alphabar_1 != 0 && (c->final_alphabar_1 != 1 || c->kind != DFN_SAMPLER_DDIM))
        return DFN_ERR_INVALID_ARG;
    return DFN_OK;
}

/* The highest order of a DPM-Solver++ kind (the x0 history it keeps is one
   less); 0 for the other kinds. */
static int dfn__sampler_order(const dfn_sampler_config *c)
{
    return c->kind == DFN_SAMPLER_DPMPP_3M ? 3
         : c->kind == DFN_SAMPLER_DPMPP_2M || c->kind == DFN_SAMPLER_DPMPP_2M_SDE ? 2 : 0;
}

static size_t dfn__sampler_layout(dfn_sampler *smp, const dfn_sampler_config *c,
                                  const dfn_schedule *s, void *mem)
{
    dfn__arena a = dfn__arena_begin(mem);
    size_t count = (size_t)c->n * (size_t)c->dim, f = count * sizeof(float);
    size_t rows = dfn__sampler_guided(c) == 1 ? 2 : 1;   /* 2n rows for guidance */
    smp->tau = (int *)dfn__arena_take(&a, ((size_t)dfn__sampler_steps(c, s) + 1) * sizeof(int));
    smp->t = (int *)dfn__arena_take(&a, rows * (size_t)c->n * sizeof(int));
    smp->labels = (int *)dfn__arena_take(&a, 2 * (size_t)c->n * sizeof(int));
    smp->model_out = (float *)dfn__arena_take(&a, rows * f);
    smp->x0_hat = (float *)dfn__arena_take(&a, f);
    smp->eps_hat = (float *)dfn__arena_take(&a, f);
    smp->z = (float *)dfn__arena_take(&a, f);
    smp->x_in = rows == 2 ? (float *)dfn__arena_take(&a, 2 * f) : NULL;
    smp->known = c->known ? (float *)dfn__arena_take(&a, f) : NULL;
    smp->known_mask = c->known ? (unsigned char *)dfn__arena_take(&a, count) : NULL;
    /* Section 11's state: the x0 history of the multistep solvers, Heun's
       second evaluation. */
    smp->hist[0] = dfn__sampler_order(c) >= 2 ? (float *)dfn__arena_take(&a, f) : NULL;
    smp->hist[1] = dfn__sampler_order(c) >= 3 ? (float *)dfn__arena_take(&a, f) : NULL;
    if (c->kind == DFN_SAMPLER_HEUN || c->kind == DFN_SAMPLER_MIDPOINT) {
        smp->x_mid = (float *)dfn__arena_take(&a, f);
        smp->eps_mid = (float *)dfn__arena_take(&a, f);
        smp->x0_mid = (float *)dfn__arena_take(&a, f);
    } else {
        smp->x_mid = smp->eps_mid = smp->x0_mid = NULL;
    }
    return dfn__arena_size(&a);
}

DFNDEF size_t dfn_sampler_size(const dfn_sampler_config *cfg, const dfn_schedule *s)
{
    dfn_sampler tmp;
    if (dfn__sampler_check(cfg, s) != DFN_OK) return 0;
    return dfn__sampler_layout(&tmp, cfg, s, NULL);
}

DFNDEF dfn_result dfn_sampler_init(dfn_sampler *smp, const dfn_sampler_config *cfg,
                                   const dfn_schedule *s, void *mem, size_t bytes)
{
    dfn_result r;
    int i;
    if (!smp || !mem) return DFN_ERR_NULL;
    if ((r = dfn__sampler_check(cfg, s)) != DFN_OK) return r;
    if (bytes < dfn_sampler_size(cfg, s)) return DFN_ERR_BUFFER_TOO_SMALL;
    DFN_MEMSET(smp, 0, sizeof *smp);
    smp->cfg = *cfg;
    smp->schedule = s;
    smp->memory = mem;
    smp->steps = dfn__sampler_steps(cfg, s);
    dfn__sampler_layout(smp, cfg, s, mem);
    if (cfg->kind == DFN_SAMPLER_DDPM) {
        for (i = 0; i <= smp->steps; i++) smp->tau[i] = i;   /* every t = T..1 */
    } else if (cfg->spacing == DFN_SPACING_CUSTOM) {
        smp->tau[0] = 0;                                     /* visited first = tau_S */
        for (i = 0; i < smp->steps; i++) smp->tau[smp->steps - i] = cfg->timesteps[i];
        smp->cfg.timesteps = NULL;                           /* not kept */
    } else {
        r = dfn_timesteps(smp->tau, s, smp->steps, cfg->spacing,
                          cfg->spacing == DFN_SPACING_SHIFTED ? cfg->shift : cfg->karras_rho);
        DFN_ASSERT(r == DFN_OK);
    }
    smp->hist_count = 0;
    smp->hist_next = -1;
    for (i = 0; i < cfg->n; i++) smp->labels[i] = cfg->labels ? cfg->labels[i] : -1;
    for (i = 0; i < cfg->n; i++) smp->labels[cfg->n + i] = -1;   /* the null label of section 8 */
    smp->cfg.labels = smp->labels;
    smp->guided = dfn__sampler_guided(cfg);
    if (cfg->known) {
        size_t count = (size_t)cfg->n * (size_t)cfg->dim;
        DFN_MEMCPY(smp->known, cfg->known, count * sizeof(float));
        DFN_MEMCPY(smp->known_mask, cfg->known_mask, count);
        smp->cfg.known = smp->known;
        smp->cfg.known_mask = smp->known_mask;
    }
    return DFN_OK;
}

#ifndef DFN_NO_MALLOC
DFNDEF dfn_result dfn_sampler_alloc(dfn_sampler *smp, const dfn_sampler_config *cfg,
                                    const dfn_schedule *s, void *alloc_ctx)
{
    dfn_result r;
    size_t bytes;
    void *mem;
    if (!smp) return DFN_ERR_NULL;
    DFN_MEMSET(smp, 0, sizeof *smp);
    if ((r = dfn__sampler_check(cfg, s)) != DFN_OK) return r;
    bytes = dfn_sampler_size(cfg, s);
    mem = DFN_MALLOC(bytes, alloc_ctx);
    if (!mem) return DFN_ERR_OUT_OF_MEMORY;
    r = dfn_sampler_init(smp, cfg, s, mem, bytes);
    if (r != DFN_OK) {
        DFN_FREE(mem, alloc_ctx);
        DFN_MEMSET(smp, 0, sizeof *smp);
    }
    return r;
}

DFNDEF void dfn_sampler_free(dfn_sampler *smp, void *alloc_ctx)
{
    (void)alloc_ctx;
    if (!smp) return;
    if (smp->memory) DFN_FREE(smp->memory, alloc_ctx);
    DFN_MEMSET(smp, 0, sizeof *smp);
}
#endif

DFNDEF int dfn_sampler_num_steps(const dfn_sampler *smp)
{
    return smp ? smp->steps : 0;
}

DFNDEF int dfn_sampler_timestep(const dfn_sampler *smp, int i)
{
    if (!smp || !smp->tau || i < 0 || i > smp->steps) return -1;
    return smp->tau[i];
}

DFNDEF int dfn_sampler_nfe(const dfn_sampler *smp)
{
    if (!smp) return 0;
    if (smp->cfg.kind == DFN_SAMPLER_MIDPOINT) return 2 * smp->steps - (smp->tau[1] == 1);
    return smp->cfg.kind == DFN_SAMPLER_HEUN ? 2 * smp->steps - 1 : smp->steps;
}

/* Inpainting (RePaint): the known entries of x become q_sample(known, t)
   (section 1) with fresh noise; at t = 0 the known values themselves. */
static void dfn__sampler_replace_known(dfn_sampler *smp, float *x, int t, dfn_rng *rng)
{
    size_t count = (size_t)smp->cfg.n * (size_t)smp->cfg.dim, j;
    const float *kv = smp->known;
    const unsigned char *m = smp->known_mask;
    if (t == 0) {
        for (j = 0; j < count; j++)
            if (m[j]) x[j] = kv[j];
    } else {
        /* one normal per known entry, in order */
        float a = smp->schedule->sqrt_alphabar[t], b = smp->schedule->sqrt_one_minus_alphabar[t];
        for (j = 0; j < count; j++)
            if (m[j]) x[j] = a * kv[j] + b * dfn_rng_normal(rng);
    }
}

DFNDEF void dfn_guide_add_score(const dfn_guide_info *info, const float *score, float scale)
{
    size_t count, j;
    float c;
    if (!info || !info->eps_hat || !score) return;
    count = (size_t)info->n * (size_t)info->dim;
    c = scale * info->sqrt_one_minus_alphabar;
    /* eps = -sqrt(1 - alphabar_t) score (section 9): adding log p(y | x_t) to
       log p(x_t) subtracts sqrt(1 - alphabar_t) grad log p(y | x_t) from eps. */
    for (j = 0; j < count; j++) info->eps_hat[j] -= c * score[j];
}

/* One evaluation at (x, t) into x0 and eps (n, dim): the predictor call
   with section 8's guidance, section 4's conversion, the guidance hook and
   clipping. i, p and stage are what the hook is told. */
static dfn_result dfn__sampler_eval(dfn_sampler *smp, const float *x, int t, int i, int p,
                                    int stage, float *x0, float *eps)
{
    const dfn_schedule *s = smp->schedule;
    const dfn_sampler_config *c = &smp->cfg;
    size_t count = (size_t)c->n * (size_t)c->dim, j;
    int k;
    if (smp->guided == 1) {
        /* Section 8 in one call: rows 0..n-1 with the labels c, rows
           n..2n-1 with the null label; pred = u + w (c - u). */
        float w = c->guidance_scale, *pc = smp->model_out, *pu = smp->model_out + count;
        for (k = 0; k < 2 * c->n; k++) smp->t[k] = t;
        DFN_MEMCPY(smp->x_in, x, count * sizeof(float));
        DFN_MEMCPY(smp->x_in + count, x, count * sizeof(float));
        if (c->predict(c->predict_user, smp->x_in, smp->t, smp->labels, 2 * c->n, smp->model_out) != 0)
            return DFN_ERR_CALLBACK;
        if (!dfn__all_finite(smp->model_out, 2 * count)) return DFN_ERR_NOT_FINITE;
        for (j = 0; j < count; j++) pc[j] = pu[j] + w * (pc[j] - pu[j]);
        if (!dfn__all_finite(smp->model_out, count)) return DFN_ERR_NOT_FINITE;
    } else {
        /* w = 1: the labels as given; w = 0: the n null labels. */
        const int *lab = smp->guided == 2 ? smp->labels + c->n : smp->labels;
        for (k = 0; k < c->n; k++) smp->t[k] = t;
        if (c->predict(c->predict_user, x, smp->t, lab, c->n, smp->model_out) != 0)
            return DFN_ERR_CALLBACK;
        if (!dfn__all_finite(smp->model_out, count)) return DFN_ERR_NOT_FINITE;
    }
    dfn__to_x0_eps(s, c->prediction, t, x0, eps, smp->model_out, x, count);
    if (c->guide) {
        /* The hook adjusts eps_hat; x0_hat follows it (section 4). */
        dfn_guide_info g;
        float a = s->sqrt_alphabar[t], b = s->sqrt_one_minus_alphabar[t];
        g.i = i;
        g.steps = smp->steps;
        g.t = t;
        g.t_prev = p;
        g.stage = stage;
        g.n = c->n;
        g.dim = c->dim;
        g.schedule = s;
        g.sqrt_alphabar = a;
        g.sqrt_one_minus_alphabar = b;
        g.x_t = x;
        g.labels = smp->labels;
        g.eps_hat = eps;
        g.x0_hat = x0;
        if (c->guide(c->guide_user, &g) != 0) return DFN_ERR_CALLBACK;
        if (!dfn__all_finite(eps, count)) return DFN_ERR_NOT_FINITE;
        if (a > 0.0f)
            for (j = 0; j < count; j++) x0[j] = (x[j] - b * eps[j]) / a;
    }
    if (c->clip_x0) {
        /* Clamp x0_hat to the data range, then the eps it implies with x_t. */
        float a = s->sqrt_alphabar[t], b = s->sqrt_one_minus_alphabar[t];
        for (j = 0; j < count; j++) {
            float v = x0[j];
            v = v < c->clip_min ? c->clip_min : v > c->clip_max ? c->clip_max : v;
            x0[j] = v;
            eps[j] = (x[j] - a * v) / b;
        }
    }
    return DFN_OK;
}

/* expm1(x) = e^x - 1 in double without the cancellation of exp(x) - 1 at
   small |x| (section 11's coefficients at small h). */
static double dfn__expm1(double x)
{
    if (x > -1e-2 && x < 1e-2)
        return x * (1.0 + x * (1.0 / 2 + x * (1.0 / 6 + x * (1.0 / 24 + x * (1.0 / 120 + x / 720)))));
    return DFN_EXP(x) - 1.0;
}

/* Section 11, lambda_t = log(a_t / s_t) = -log sigma_t (the same bits:
   negation is exact); only for t with a_t > 0 and s_t > 0. */
static double dfn__lambda(const dfn_schedule *s, int t)
{
    return -dfn__log_sigma(s, t);
}

#if DFN__KIND_ON(2) || DFN__KIND_ON(3) || DFN__KIND_ON(7)   /* Euler, Heun, midpoint */
/* Section 11, Euler, Heun and the midpoint rule in sigma = s/a: from t to
   p with slope eps, x_p = a_p (x / a_t + (sigma_p - sigma_t) eps), i.e.
   cx x + ce eps. Section 12, on a flow schedule in u = s: the slope is the
   velocity w = eps - x0 (dfn__ode_slope) and x_p = x + (u_p - u_t) w. */
static void dfn__sigma_coefs(const dfn_schedule *s, int t, int p, float *cx, float *ce)
{
    double at = s->sqrt_alphabar[t], ap = s->sqrt_alphabar[p], sig_t, sig_p;
    if (s->process == DFN_PROCESS_FLOW) {
        *cx = 1.0f;
        *ce = (float)((double)s->sqrt_one_minus_alphabar[p] - s->sqrt_one_minus_alphabar[t]);
        return;
    }
    sig_t = s->sqrt_one_minus_alphabar[t] / at;
    sig_p = s->sqrt_one_minus_alphabar[p] / ap;
    *cx = (float)(ap / at);
    *ce = (float)(ap * (sig_p - sig_t));
}

/* The ODE's time variable at t: sigma_t (VP) or u_t = s_t (flow), in double. */
static double dfn__ode_time(const dfn_schedule *s, int t)
{
    if (s->process == DFN_PROCESS_FLOW) return s->sqrt_one_minus_alphabar[t];
    return (double)s->sqrt_one_minus_alphabar[t] / s->sqrt_alphabar[t];
}

/* The slope of that ODE from the evaluation's eps_hat and x0_hat: eps_hat in
   sigma (of x / a), the velocity eps_hat - x0_hat in u. Into d (count). */
static void dfn__ode_slope(const dfn_schedule *s, float *d, const float *eps, const float *x0, size_t count)
{
    size_t j;
    if (s->process == DFN_PROCESS_FLOW) {
        for (j = 0; j < count; j++) d[j] = eps[j] - x0[j];
    } else {
        for (j = 0; j < count; j++) d[j] = eps[j];
    }
}
#endif

/* Section 11, DPM-Solver++ (2M, 3M, and the 2M SDE) from t to p in x, with
   m0 = x0_hat at t and the history m1, m2 (x0_hat at the two steps before,
   timesteps t1, t2) as far as `order` asks. z: the SDE's noise. */
static void dfn__dpmpp_update(const dfn_schedule *s, dfn_sampler_kind kind, int order,
                              float *x, const float *m0, const float *m1, const float *m2,
                              const float *z, int t, int p, int t1, int t2, size_t count)
{
    double at = s->sqrt_alphabar[t], st = s->sqrt_one_minus_alphabar[t];
    double ap = s->sqrt_alphabar[p], sp = s->sqrt_one_minus_alphabar[p];
    double h = 0.0, r0 = 0.0, r1 = 0.0, cx, c0, c1 = 0.0, c2 = 0.0, cz = 0.0;
    size_t j;
    if (order >= 2) {                 /* every lambda here is finite */
        double lt = dfn__lambda(s, t);
        h = dfn__lambda(s, p) - lt;
        r0 = (lt - dfn__lambda(s, t1)) / h;
        if (order >= 3) r1 = (dfn__lambda(s, t1) - dfn__lambda(s, t2)) / h;
    }
    if (kind == DFN_SAMPLER_DPMPP_2M_SDE) {
        /* x_p = (s_p/s_t) e^{-h} x + a_p (1 - e^{-2h}) (D0 + D1/2) + s_p sqrt(1 - e^{-2h}) z
           with e^{-h} = a_t s_p / (s_t a_p) (0 at a_t = 0; p = 0 is first order: x_0 = D0). */
        double e = p > 0 ? at * sp / (st * ap) : 0.0, one_m = 1.0 - e * e;
        if (p > 0 && at > 0.0) one_m = -dfn__expm1(-2.0 * (dfn__lambda(s, p) - dfn__lambda(s, t)));
        cx = p > 0 ? sp / st * e : 0.0;
        c0 = ap * one_m;
        cz = sp * DFN_SQRT(one_m > 0.0 ? one_m : 0.0);
        if (order >= 2) c1 = 0.5 * c0 / r0;      /* D1 = (m0 - m1) / r0, midpoint */
        for (j = 0; j < count; j++) {
            float d = (float)c0 * m0[j];
            if (order >= 2) d += (float)c1 * (m0[j] - m1[j]);
            x[j] = (float)cx * x[j] + d + (z ? (float)cz * z[j] : 0.0f);
        }
        return;
    }
    /* x_p = (s_p/s_t) x - a_p (e^{-h} - 1) D0 + ..., where -a_p (e^{-h} - 1)
       = a_p - a_t s_p / s_t exactly (so order 1 is DDIM with eta = 0). */
    cx = sp / st;
    c0 = ap - at * sp / st;
    if (order == 2) {
        /* D = (1 + 1/(2 r)) m0 - 1/(2 r) m1 = m0 + (m0 - m1) / (2 r) */
        c1 = 0.5 * c0 / r0;
    } else if (order == 3) {
        /* Lu et al. 2022 (DPM-Solver++, 3M): D1_0 = (m0 - m1)/r0, D1_1 = (m1 - m2)/r1,
           D1 = D1_0 + r0/(r0 + r1) (D1_0 - D1_1), D2 = (D1_0 - D1_1)/(r0 + r1),
           x_p = cx x + c0 m0 + a_p phi_2 D1 - a_p (phi_3 - 1/2) D2 with
           phi_2 = (e^{-h} - 1)/h + 1, phi_3 = (e^{-h} - 1 + h)/h^2. */
        double em = dfn__expm1(-h), phi2, phi3;
        if (h < 1e-3) {
            phi2 = h * (1.0 / 2 - h * (1.0 / 6 - h * (1.0 / 24 - h / 120)));
            phi3 = -h * (1.0 / 6 - h * (1.0 / 24 - h * (1.0 / 120 - h / 720)));
        } else {
            phi2 = em / h + 1.0;
            phi3 = (em + h) / (h * h) - 0.5;
        }
        c1 = ap * phi2;
        c2 = -2.0 * ap * phi3;
        for (j = 0; j < count; j++) {
            double d10 = ((double)m0[j] - m1[j]) / r0, d11 = ((double)m1[j] - m2[j]) / r1;
            double d1 = d10 + r0 / (r0 + r1) * (d10 - d11), d2 = (d10 - d11) / (r0 + r1);
            x[j] = (float)(cx * x[j] + c0 * m0[j] + c1 * d1 + c2 * d2);
        }
        return;
    }
    for (j = 0; j < count; j++) {
        float d = (float)c0 * m0[j];
        if (order == 2) d += (float)c1 * (m0[j] - m1[j]);
        x[j] = (float)cx * x[j] + d;
    }
}

DFNDEF dfn_result dfn_sampler_step(dfn_sampler *smp, int i, float *x, dfn_rng *rng)
{
    const dfn_schedule *s;
    const dfn_sampler_config *c;
    dfn_result r;
    size_t count;
    int t, p, noisy, hist;
    if (!smp || !smp->schedule || !x) return DFN_ERR_NULL;
    if (i < 1 || i > smp->steps) return DFN_ERR_INVALID_ARG;
    s = smp->schedule;
    c = &smp->cfg;
    count = (size_t)c->n * (size_t)c->dim;
    t = smp->tau[i];
    p = smp->tau[i - 1];
    /* Algorithm 2 draws z only for t > 1; DDIM only when sigma > 0; the SDE
       solver at every step but the one to t = 0. */
    noisy = c->kind == DFN_SAMPLER_DDPM ? t > 1
#if DFN__KIND_ON(1)
          : c->kind == DFN_SAMPLER_DDIM ? (p == 0 && c->final_alphabar_1 ? t > 1 && dfn__ddim_var(s, t, 1, c->eta) > 0.0
                                                                       : dfn__ddim_var(s, t, p, c->eta) > 0.0)
#endif
          : c->kind == DFN_SAMPLER_DPMPP_2M_SDE ? p > 0 : 0;
    if (noisy && !rng) return DFN_ERR_NULL;
    if (smp->known && !rng) return DFN_ERR_NULL;
    /* The multistep history counts only when this step follows the last. */
    hist = i == smp->hist_next ? smp->hist_count : 0;
    smp->hist_next = -1;

    /* The model's prediction at t, as x0_hat and eps_hat (section 4). */
    r = dfn__sampler_eval(smp, x, t, i, p, 0, smp->x0_hat, smp->eps_hat);
    if (r != DFN_OK) return r;

    if (noisy) dfn_rng_normal_fill(rng, smp->z, count);
    switch (c->kind) {
#if DFN__KIND_ON(0)
    case DFN_SAMPLER_DDPM:
        r = dfn_ddpm_step(s, x, x, smp->x0_hat, noisy ? smp->z : NULL, t, c->variance, count);
        break;
#endif
#if DFN__KIND_ON(1)
    case DFN_SAMPLER_DDIM:
        if (p == 0 && c->final_alphabar_1) {
            /* diffusers' set_alpha_to_one = false: the target is alphabar_1;
               from t = 1 that is x_t itself (sigma = 0, x0_hat and eps_hat
               recombine to x_t), so x stays */
            if (t > 1)
                r = dfn_ddim_step(s, x, smp->x0_hat, smp->eps_hat, noisy ? smp->z : NULL, t, 1, c->eta, count);
        } else {
            r = dfn_ddim_step(s, x, smp->x0_hat, smp->eps_hat, noisy ? smp->z : NULL, t, p, c->eta, count);
        }
        break;
#endif
#if DFN__KIND_ON(2)
    case DFN_SAMPLER_EULER: {
        /* the slope d (eps_hat in sigma; w = eps_hat - x0_hat in u, in place) */
        float cx, ce;
        size_t j;
        float *d = smp->eps_hat;
        dfn__ode_slope(s, d, smp->eps_hat, smp->x0_hat, count);
        dfn__sigma_coefs(s, t, p, &cx, &ce);
        for (j = 0; j < count; j++) x[j] = cx * x[j] + ce * d[j];
        break;
    }
#endif
#if DFN__KIND_ON(3)
    case DFN_SAMPLER_HEUN: {
        /* Euler predictor to p, then (p > 0) the trapezoid with the slope
           there: x_p = cx x + ce (d + d') / 2. */
        float cx, ce;
        size_t j;
        float *d = smp->eps_hat, *d2 = smp->eps_mid;
        dfn__ode_slope(s, d, smp->eps_hat, smp->x0_hat, count);
        dfn__sigma_coefs(s, t, p, &cx, &ce);
        for (j = 0; j < count; j++) smp->x_mid[j] = cx * x[j] + ce * d[j];
        if (p > 0) {
            r = dfn__sampler_eval(smp, smp->x_mid, p, i, p, 1, smp->x0_mid, smp->eps_mid);
            if (r != DFN_OK) return r;
            dfn__ode_slope(s, d2, smp->eps_mid, smp->x0_mid, count);
            for (j = 0; j < count; j++)
                x[j] = cx * x[j] + ce * (0.5f * (d[j] + d2[j]));
        } else {
            DFN_MEMCPY(x, smp->x_mid, count * sizeof(float));
        }
        break;
    }
#endif
#if DFN__KIND_ON(7)
    case DFN_SAMPLER_MIDPOINT: {
        /* Second-order Runge-Kutta (sections 11, 12): a step of alpha H to
           t_m with the slope d at t, the slope d' there, and x_p = cx x +
           ce ((1 - 1/(2 alpha)) d + 1/(2 alpha) d'), H = v_p - v_t and
           alpha = (v_m - v_t) / H in the ODE's time v (sigma or u): the
           midpoint rule at alpha = 1/2, Heun's at alpha = 1 (t_m = p). */
        float cx, ce, cxm, cem, w1, w2;
        size_t j;
        float *d = smp->eps_hat, *d2 = smp->eps_mid;
        int m = (t + p + 1) / 2;
        double alpha;
        dfn__ode_slope(s, d, smp->eps_hat, smp->x0_hat, count);
        dfn__sigma_coefs(s, t, p, &cx, &ce);
        if (m >= t) m = p;                 /* t - p = 1: no timestep between */
        if (m == 0) {                      /* t = 1 to 0: Euler */
            for (j = 0; j < count; j++) x[j] = cx * x[j] + ce * d[j];
            break;
        }
        dfn__sigma_coefs(s, t, m, &cxm, &cem);
        for (j = 0; j < count; j++) smp->x_mid[j] = cxm * x[j] + cem * d[j];
        r = dfn__sampler_eval(smp, smp->x_mid, m, i, p, 1, smp->x0_mid, smp->eps_mid);
        if (r != DFN_OK) return r;
        dfn__ode_slope(s, d2, smp->eps_mid, smp->x0_mid, count);
        alpha = (dfn__ode_time(s, m) - dfn__ode_time(s, t)) / (dfn__ode_time(s, p) - dfn__ode_time(s, t));
        w2 = (float)(0.5 / alpha);
        w1 = (float)(1.0 - 0.5 / alpha);
        for (j = 0; j < count; j++) x[j] = cx * x[j] + ce * (w1 * d[j] + w2 * d2[j]);
        break;
    }
#endif
    default: {
        /* DPM-Solver++: order 1 at the first step (no history), after a
           history with an infinite lambda (a_t = 0 at T), and at the step
           to t = 0; 3M is second order at the step before that. */
        int order = dfn__sampler_order(c), k;
        for (k = 0; k < hist; k++)
            if (!(s->sqrt_alphabar[smp->hist_t[k]] > 0.0f)) break;
        if (!(s->sqrt_alphabar[t] > 0.0f)) k = 0;
        if (order > k + 1) order = k + 1;
        if (p == 0) order = 1;
        else if (i == 2 && order > 2) order = 2;
        dfn__dpmpp_update(s, c->kind, order, x, smp->x0_hat, smp->hist[0], smp->hist[1],
                          noisy ? smp->z : NULL, t, p, smp->hist_t[0], smp->hist_t[1], count);
        /* The history: x0_hat at t becomes m1, m1 becomes m2. */
        if (smp->hist[1]) {
            float *old = smp->hist[1];
            smp->hist[1] = smp->hist[0];
            smp->hist[0] = old;
            smp->hist_t[1] = smp->hist_t[0];
        }
        DFN_MEMCPY(smp->hist[0], smp->x0_hat, count * sizeof(float));
        smp->hist_t[0] = t;
        k = dfn__sampler_order(c) - 1;   /* entries the history holds */
        smp->hist_count = hist + 1 < k ? hist + 1 : k;
        smp->hist_next = i - 1;
        break;
    }
    }
    if (r == DFN_OK && smp->known) dfn__sampler_replace_known(smp, x, p, rng);
    /* Finite predictions can still overflow the update (a huge eps over a
       small a_t): the new state is checked too. */
    if (r == DFN_OK && !dfn__all_finite(x, count)) r = DFN_ERR_NOT_FINITE;
    return r;
}

DFNDEF dfn_result dfn_sampler_run(dfn_sampler *smp, float *x, const float *x_T, dfn_rng *rng)
{
    size_t count;
    dfn_result r;
    int i, jump, jump_level = -1, jumps_left = 0;
    if (!smp || !smp->schedule || !x) return DFN_ERR_NULL;
    count = (size_t)smp->cfg.n * (size_t)smp->cfg.dim;
    if (x_T) {
        if (!dfn__all_finite(x_T, count)) return DFN_ERR_NOT_FINITE;
        if (x_T != x) DFN_MEMCPY(x, x_T, count * sizeof(float));
    } else {
        if (!rng) return DFN_ERR_NULL;
        dfn_rng_normal_fill(rng, x, count);           /* x_T ~ N(0, I) */
    }
    if (smp->known) {
        if (!rng) return DFN_ERR_NULL;
        dfn__sampler_replace_known(smp, x, smp->tau[smp->steps], rng);
    }
    jump = smp->cfg.resample_count > 1 ? smp->cfg.resample_jump : 0;
    if (jump > 0 && !rng) return DFN_ERR_NULL;      /* the jumps draw noise */
    for (i = smp->steps; i >= 1; i--) {
        if ((r = dfn_sampler_step(smp, i, x, rng)) != DFN_OK) return r;
        if (smp->cfg.on_step) {
            dfn_step_info info;
            info.i = i;
            info.steps = smp->steps;
            info.t = smp->tau[i];
            info.t_prev = smp->tau[i - 1];
            info.n = smp->cfg.n;
            info.dim = smp->cfg.dim;
            info.x = x;
            info.x0_hat = smp->x0_hat;
            if (smp->cfg.on_step(smp->cfg.on_step_user, &info) != 0) return DFN_ERR_CANCELLED;
        }
        /* RePaint: at level i - 1 = S - m * jump (m >= 1), go back up `jump`
           steps, resample_count - 1 times, then carry on down. */
        if (jump > 0 && i - 1 >= 1 && (smp->steps - (i - 1)) % jump == 0) {
            if (i - 1 != jump_level) { jump_level = i - 1; jumps_left = smp->cfg.resample_count - 1; }
            if (jumps_left > 0) {
                int from = smp->tau[i - 1], to = smp->tau[i - 1 + jump];
                const dfn_schedule *sch = smp->schedule;
                double ratio = (double)sch->alphabar[to] / (double)sch->alphabar[from];
                float a = (float)DFN_SQRT(ratio), b = (float)DFN_SQRT(ratio < 1.0 ? 1.0 - ratio : 0.0);
                size_t j;
                if (sch->process == DFN_PROCESS_FLOW) {
                    /* q(x_to | x_from) = N(r x, (s_to^2 - r^2 s_from^2) I), r = a_to / a_from */
                    double r = (double)sch->sqrt_alphabar[to] / sch->sqrt_alphabar[from];
                    double st = sch->sqrt_one_minus_alphabar[to], sf = sch->sqrt_one_minus_alphabar[from];
                    double v = st * st - r * r * sf * sf;
                    a = (float)r;
                    b = (float)DFN_SQRT(v > 0.0 ? v : 0.0);
                }
                /* q(x_to | x_from) = N(sqrt(ab_to / ab_from) x, (1 - ab_to / ab_from) I) */
                dfn_rng_normal_fill(rng, smp->z, count);
                for (j = 0; j < count; j++) x[j] = a * x[j] + b * smp->z[j];
                jumps_left--;
                i += jump;   /* the loop's i-- makes the next step i - 1 + jump */
            }
        }
    }
    return DFN_OK;
}

/* ------------------------------------------------------------------------- */
/*  Gaussian mixtures (MATH.md section 9)                                    */
/* ------------------------------------------------------------------------- */

static dfn_result dfn__gmm_check(const dfn_gmm *g)
{
    int k;
    double total = 0.0;
    if (!g || !g->weights || !g->means || !g->stds) return DFN_ERR_NULL;
    if (g->k < 1 || g->k > DFN_GMM_MAX_K || g->dim < 1 || dfn__count(g->k, g->dim) == 0)
        return DFN_ERR_INVALID_ARG;
    for (k = 0; k < g->k; k++) {
        if (!(g->weights[k] >= 0.0f) || !dfn__finite(g->weights[k])) return DFN_ERR_INVALID_ARG;
        if (!(g->stds[k] > 0.0f) || !dfn__finite(g->stds[k])) return DFN_ERR_INVALID_ARG;
        total += g->weights[k];
    }
    if (!(total > 0.0)) return DFN_ERR_INVALID_ARG;
    if (!dfn__all_finite(g->means, (size_t)g->k * g->dim)) return DFN_ERR_NOT_FINITE;
    return DFN_OK;
}

DFNDEF dfn_result dfn_gmm_sample(const dfn_gmm *g, dfn_rng *rng, float *x, int *component, int n)
{
    int i, j, k;
    double total = 0.0;
    dfn_result r = dfn__gmm_check(g);
    if (r != DFN_OK) return r;
    if (!rng || (n > 0 && !x)) return DFN_ERR_NULL;
    if (n < 0 || (n > 0 && dfn__count(n, g->dim) == 0)) return DFN_ERR_INVALID_ARG;
    for (k = 0; k < g->k; k++) total += g->weights[k];
    for (i = 0; i < n; i++) {
        /* Pick k with probability weights[k] / total, then x ~ N(mu_k, s_k^2 I). */
        double u = dfn_rng_uniform(rng) * total, acc = 0.0;
        for (k = 0; k < g->k - 1; k++) {
            acc += g->weights[k];
            if (u < acc) break;
        }
        while (g->weights[k] == 0.0f && k > 0) k--;   /* never land on a zero weight */
        for (j = 0; j < g->dim; j++)
            x[(size_t)i * g->dim + j] = g->means[(size_t)k * g->dim + j] + g->stds[k] * dfn_rng_normal(rng);
        if (component) component[i] = k;
    }
    return DFN_OK;
}

/* Sections 9 and 12: the Bayes-optimal prediction of the given kind at n
   points into out (eps: the bits of dfn_gmm_eps). */
static dfn_result dfn__gmm_predict(const dfn_gmm *g, const dfn_schedule *s, dfn_prediction kind,
                                   float *eps, const float *xt, const int *t, const int *labels, int n)
{
    double var[DFN_GMM_MAX_K], logc[DFN_GMM_MAX_K], w[DFN_GMM_MAX_K];
    double total = 0.0;
    int i, j, k, cached_t = -1;
    dfn_result r = dfn__gmm_check(g);
    if (r != DFN_OK) return r;
    if ((r = dfn__check_batch(s, t, n, g->dim)) != DFN_OK) return r;
    if (n > 0 && (!eps || !xt)) return DFN_ERR_NULL;
    for (k = 0; k < g->k; k++) total += g->weights[k];
    for (i = 0; i < n; i++)
        if (labels && (labels[i] < -1 || labels[i] >= g->k ||
                       (labels[i] >= 0 && g->weights[labels[i]] == 0.0f)))
            return DFN_ERR_INVALID_ARG;
    for (i = 0; i < n; i++) {
        const float *x = xt + (size_t)i * g->dim;
        float *e = eps + (size_t)i * g->dim;
        double ab = s->alphabar[t[i]], sab = s->sqrt_alphabar[t[i]];
        double s1m = s->sqrt_one_minus_alphabar[t[i]];
        double best = -HUGE_VAL, norm = 0.0;
        int only = labels ? labels[i] : -1;
        int k0 = only >= 0 ? only : 0, k1 = only >= 0 ? only + 1 : g->k;
        /* x_t ~ sum_k pi_k N(sqrt(ab) mu_k, v_k I), v_k = ab s_k^2 + 1 - ab.
           v_k and log(pi_k) - dim/2 log(v_k) depend on t only. */
        if (t[i] != cached_t) {
            for (k = 0; k < g->k; k++) {
                var[k] = ab * g->stds[k] * g->stds[k] + s1m * s1m;
                logc[k] = g->weights[k] > 0.0f
                        ? DFN_LOG(g->weights[k] / total) - 0.5 * g->dim * DFN_LOG(var[k]) : -HUGE_VAL;
            }
            cached_t = t[i];
        }
        /* responsibilities r_k = softmax_k(log p_k(x_t)) */
        for (k = k0; k < k1; k++) {
            double d2 = 0.0;
            for (j = 0; j < g->dim; j++) {
                double d = x[j] - sab * g->means[(size_t)k * g->dim + j];
                d2 += d * d;
            }
            w[k] = logc[k] - 0.5 * d2 / var[k];
            if (w[k] > best) best = w[k];
        }
        for (k = k0; k < k1; k++) {
            w[k] = w[k] > -HUGE_VAL ? DFN_EXP(w[k] - best) : 0.0;
            norm += w[k];
        }
        /* eps = -sqrt(1 - ab) score, score = sum_k r_k (-(x - sqrt(ab) mu_k) / v_k) */
        for (j = 0; j < g->dim; j++) {
            double acc = 0.0, x0 = 0.0, ej;
            for (k = k0; k < k1; k++)
                acc += w[k] * (x[j] - sab * g->means[(size_t)k * g->dim + j]) / var[k];
            if (kind == DFN_PREDICT_EPS) {
                e[j] = (float)(s1m * acc / norm);
                continue;
            }
            /* x0* = E[x_0 | x_t] = sum_k r_k (mu_k + (a s_k^2 / v_k)(x - a mu_k)) */
            for (k = k0; k < k1; k++) {
                double mu = g->means[(size_t)k * g->dim + j], sk = g->stds[k];
                x0 += w[k] * (mu + sab * sk * sk / var[k] * (x[j] - sab * mu));
            }
            x0 /= norm;
            ej = s1m * acc / norm;
            e[j] = (float)(kind == DFN_PREDICT_X0 ? x0 : kind == DFN_PREDICT_V ? sab * ej - s1m * x0 : ej - x0);
        }
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_gmm_eps(const dfn_gmm *g, const dfn_schedule *s, float *eps,
                              const float *xt, const int *t, const int *labels, int n)
{
    return dfn__gmm_predict(g, s, DFN_PREDICT_EPS, eps, xt, t, labels, n);
}

DFNDEF dfn_result dfn_gmm_predict_as(const dfn_gmm *g, const dfn_schedule *s, dfn_prediction kind,
                                     float *out, const float *xt, const int *t, const int *labels, int n)
{
    if (!dfn__prediction_valid(kind)) return DFN_ERR_INVALID_ARG;
    return dfn__gmm_predict(g, s, kind, out, xt, t, labels, n);
}

DFNDEF int dfn_gmm_kind_predict(void *user, const float *x_t, const int *t,
                                const int *labels, int n, float *out)
{
    const dfn_gmm_kind_predictor *p = (const dfn_gmm_kind_predictor *)user;
    if (!p) return (int)DFN_ERR_NULL;
    return (int)dfn_gmm_predict_as(p->gmm, p->schedule, p->prediction, out, x_t, t, labels, n);
}

DFNDEF int dfn_gmm_predict(void *user, const float *x_t, const int *t,
                           const int *labels, int n, float *out)
{
    const dfn_gmm_predictor *p = (const dfn_gmm_predictor *)user;
    if (!p) return (int)DFN_ERR_NULL;
    return (int)dfn_gmm_eps(p->gmm, p->schedule, out, x_t, t, labels, n);
}

/* ------------------------------------------------------------------------- */
/*  Energy distance (MATH.md section 10)                                     */
/* ------------------------------------------------------------------------- */

/* Mean of ||a_i - b_j|| over all pairs. */
static double dfn__mean_dist(const float *a, int na, const float *b, int nb, int dim)
{
    double sum = 0.0;
    int i, j, k;
    for (i = 0; i < na; i++) {
        const float *ai = a + (size_t)i * dim;
        double row = 0.0;
        for (j = 0; j < nb; j++) {
            const float *bj = b + (size_t)j * dim;
            double d2 = 0.0;
            for (k = 0; k < dim; k++) {
                double d = (double)ai[k] - (double)bj[k];
                d2 += d * d;
            }
            row += DFN_SQRT(d2);
        }
        sum += row;
    }
    return sum / ((double)na * (double)nb);
}

static dfn_result dfn__energy_distance(double *ed2, const float *x, int n, const float *y, int m,
                                       int dim, int unbiased)
{
    double xx, yy;
    if (!ed2 || !x || !y) return DFN_ERR_NULL;
    *ed2 = 0.0;
    if (n < 1 + unbiased || m < 1 + unbiased || dim < 1 || dfn__count(n, dim) == 0 ||
        dfn__count(m, dim) == 0)
        return DFN_ERR_INVALID_ARG;
    if (!dfn__all_finite(x, (size_t)n * dim) || !dfn__all_finite(y, (size_t)m * dim))
        return DFN_ERR_NOT_FINITE;
    /* ED^2 = 2 E||X - Y|| - E||X - X'|| - E||Y - Y'||; the means over a set
       and itself include the n zero distances i = j unless unbiased. */
    xx = dfn__mean_dist(x, n, x, n, dim);
    yy = dfn__mean_dist(y, m, y, m, dim);
    if (unbiased) {
        xx *= (double)n / (n - 1);
        yy *= (double)m / (m - 1);
    }
    *ed2 = 2.0 * dfn__mean_dist(x, n, y, m, dim) - xx - yy;
    if (!unbiased && *ed2 < 0.0) *ed2 = 0.0;   /* rounding only: the V-statistic is >= 0 */
    return DFN_OK;
}

DFNDEF dfn_result dfn_energy_distance(double *ed2, const float *x, int n,
                                      const float *y, int m, int dim)
{
    return dfn__energy_distance(ed2, x, n, y, m, dim, 0);
}

DFNDEF dfn_result dfn_energy_distance_unbiased(double *ed2, const float *x, int n,
                                               const float *y, int m, int dim)
{
    return dfn__energy_distance(ed2, x, n, y, m, dim, 1);
}

/* ------------------------------------------------------------------------- */
/*  Maximum mean discrepancy with an RBF kernel                              */
/* ------------------------------------------------------------------------- */

/* Mean of exp(-g ||a_i - b_j||^2) over all pairs (g may be +infinity);
   b = NULL: the pairs of a with itself, each unordered pair summed once and
   counted twice, with the n pairs (i, i) when `diagonal` (the V-statistic)
   or without them (the U-statistic). Kernel values below e^-40 (g d^2 >
   40) count as 0: the mean moves by less than 4.3e-18, and the exp is
   skipped for the far pairs, most of them at the bandwidths used on
   standardized data. */
static double dfn__mean_rbf(const float *a, int na, const float *b, int nb, int dim, double g,
                            int diagonal)
{
    double sum = 0.0;
    int i, j, k, self = b == NULL;
    if (self) { b = a; nb = na; }
    for (i = 0; i < na; i++) {
        const float *ai = a + (size_t)i * (size_t)dim;
        double row = 0.0;
        for (j = self ? i + 1 : 0; j < nb; j++) {
            const float *bj = b + (size_t)j * (size_t)dim;
            double d2 = 0.0, e;
            for (k = 0; k < dim; k++) {
                double d = (double)ai[k] - (double)bj[k];
                d2 += d * d;
            }
            e = d2 * g;
            if (e < 40.0) row += d2 > 0.0 ? DFN_EXP(-e) : 1.0;
        }
        sum += self ? 2.0 * row + (diagonal ? 1.0 : 0.0) : row;   /* (i, i) is exp(0) */
    }
    if (self && !diagonal) return sum / ((double)na * (double)(na - 1));
    return sum / ((double)na * (double)nb);
}

static dfn_result dfn__mmd_rbf(double *mmd2, const float *x, int n, const float *y, int m,
                               int dim, double bandwidth, int unbiased)
{
    double g;
    if (!mmd2) return DFN_ERR_NULL;
    *mmd2 = 0.0;
    if (!x || !y) return DFN_ERR_NULL;
    if (n < 1 || m < 1 || dim < 1 || dfn__count(n, dim) == 0 || dfn__count(m, dim) == 0)
        return DFN_ERR_INVALID_ARG;
    if (unbiased && (n < 2 || m < 2)) return DFN_ERR_INVALID_ARG;
    if (!(bandwidth > 0.0) || !(bandwidth < HUGE_VAL)) return DFN_ERR_INVALID_ARG;
    if (!dfn__all_finite(x, (size_t)n * (size_t)dim) || !dfn__all_finite(y, (size_t)m * (size_t)dim))
        return DFN_ERR_NOT_FINITE;
    g = 0.5 / (bandwidth * bandwidth);               /* +inf for a tiny h: fine */
    *mmd2 = dfn__mean_rbf(x, n, NULL, n, dim, g, !unbiased) + dfn__mean_rbf(y, m, NULL, m, dim, g, !unbiased)
          - 2.0 * dfn__mean_rbf(x, n, y, m, dim, g, 1);
    if (!unbiased && *mmd2 < 0.0) *mmd2 = 0.0;       /* rounding only: V-statistic >= 0 */
    return DFN_OK;
}

DFNDEF dfn_result dfn_mmd_rbf(double *mmd2, const float *x, int n, const float *y, int m,
                              int dim, double bandwidth)
{
    return dfn__mmd_rbf(mmd2, x, n, y, m, dim, bandwidth, 0);
}

DFNDEF dfn_result dfn_mmd_rbf_unbiased(double *mmd2, const float *x, int n, const float *y, int m,
                                       int dim, double bandwidth)
{
    return dfn__mmd_rbf(mmd2, x, n, y, m, dim, bandwidth, 1);
}

/* ######################################################################### */
/*  PART 2  networks and training                                            */
/* ######################################################################### */

/* ------------------------------------------------------------------------- */
/*  Layers                                                                   */
/* ------------------------------------------------------------------------- */

DFNDEF void dfn_linear_forward(float *out, const float *in, const float *W, const float *b,
                               int B, int I, int O, float *work)
{
    /* out = in W^T (+ b): (B, I) x (I, O) */
    dfn_gemm(0, 1, B, O, I, 1.0f, in, I, W, I, 0.0f, out, O, work);
    if (b) dfn_bias_add(B, O, out, b);
}

#ifndef DFN_NO_TRAINING
DFNDEF void dfn_linear_backward(float *din, float *dW, float *db, const float *dout,
                                const float *in, const float *W, int B, int I, int O,
                                float *work)
{
    if (din) dfn_gemm(0, 0, B, I, O, 1.0f, dout, O, W, I, 1.0f, din, I, work);   /* dout W      */
    dfn_gemm(1, 0, O, I, B, 1.0f, dout, O, in, I, 1.0f, dW, I, work);            /* dout^T in   */
    if (db) dfn_bias_grad(B, O, dout, db);                                         /* sum_b dout  */
}
#endif

/* The kernels' sine and cosine in the embeddings: with SIMD, not with
   DFN_PORTABLE_MATH (its own sin and cos, the same bits everywhere). */
#if !defined(DFN_PORTABLE_MATH) && (defined(DFN__HAVE_AVX2) || defined(DFN__HAVE_AVX512) || \
    defined(DFN__HAVE_SSE2) || defined(DFN__HAVE_NEON) || defined(DFN__HAVE_WASM) || defined(DFN__HAVE_HELIUM))
#  define DFN__EMBED_SINCOS 1
#endif

DFNDEF void dfn_sinusoidal_embedding(float *out, int ldo, const float *v, int incv, float scale,
                                     int n, int dim)
{
    enum { KB = 64, UB = 128 };
    float f[KB], u[UB];
    int h = dim / 2, i, k, k0, kb, big;
    for (k0 = 0; k0 < h; k0 += KB) {
        kb = h - k0 < KB ? h - k0 : KB;
        /* f_k = 10000^(-k/h), in double so every k gets its correctly scaled frequency */
        for (k = 0; k < kb; k++) f[k] = (float)DFN_EXP(-9.210340371976184 * (double)(k0 + k) / (double)h);
        for (i = 0; i < n; i++) {
            float a = scale * v[(size_t)i * incv], *o = out + (size_t)i * ldo + k0;
#ifdef DFN__EMBED_SINCOS
            /* Short rows (the 16 frequencies of an input feature) go UB / kb
               rows to one kernel call, which then has independent vectors to
               overlap; all their |u_k| <= |a| (f_k <= 1) are in range. The
               same products and kernel: the same bits as row by row. */
            if (2 * kb <= UB && a <= DFN__SINCOS_MAX && a >= -DFN__SINCOS_MAX) {
                float sb[UB], cb[UB];
                int r, rows = 0;
                for (; i + rows < n && (rows + 1) * kb <= UB; rows++) {
                    float ar = scale * v[(size_t)(i + rows) * incv];
                    if (!(ar <= DFN__SINCOS_MAX && ar >= -DFN__SINCOS_MAX)) break;
                    for (k = 0; k < kb; k++) u[rows * kb + k] = ar * f[k];
                }
                DFN__BEST(dfn__vec_sincos)((size_t)(rows * kb), u, sb, cb);
                for (r = 0; r < rows; r++) {
                    o = out + (size_t)(i + r) * ldo + k0;
                    DFN_MEMCPY(o, sb + r * kb, (size_t)kb * sizeof(float));
                    DFN_MEMCPY(o + h, cb + r * kb, (size_t)kb * sizeof(float));
                }
                i += rows - 1;
                continue;
            }
#endif
            for (k = 0; k < kb; k++) u[k] = a * f[k];
            big = kb;                              /* libm for u[0 .. big-1] */
#ifdef DFN__EMBED_SINCOS
            /* |u_k| falls with k (f_k does): the arguments beyond the kernels'
               range are a prefix, none when |a| <= 4096 (NaN: all) */
            for (big = 0; big < kb && !(u[big] <= DFN__SINCOS_MAX && u[big] >= -DFN__SINCOS_MAX); big++) {}
            DFN__BEST(dfn__vec_sincos)((size_t)(kb - big), u + big, o + big, o + h + big);
#endif
            for (k = 0; k < big; k++) {
                o[k] = DFN_SINF(u[k]);
                o[h + k] = DFN_COSF(u[k]);
            }
        }
    }
}

/* Image layers (NHWC) ----------------------------------------------------- */

DFNDEF size_t dfn_conv2d_col_size(int H, int W, int Ci, int k)
{
    return k == 1 ? 0 : (size_t)H * (size_t)W * (size_t)k * (size_t)k * (size_t)Ci;
}

/* im2col, rows [r0, r1): row r = (n, y, x) of col (at col + r k k C)
   holds the k x k x C input patch around pixel (y, x) of image n, zeros
   outside the image, in Wt's (dy, dx, i) order. */
/* The taps dx of one kernel row that fall inside the image: [*lo, *hi). */
static void dfn__conv_taps(int x, int W, int k, int *lo, int *hi)
{
    int p = (k - 1) / 2;
    *lo = p - x > 0 ? p - x : 0;                  /* x + dx - p >= 0  */
    *hi = W - x + p < k ? W - x + p : k;          /* x + dx - p < W   */
}

static void dfn__im2col(float *col, const float *in, int H, int W, int C, int k, size_t r0, size_t r1)
{
    int p = (k - 1) / 2, x = (int)(r0 % (size_t)W), y = (int)(r0 / (size_t)W % (size_t)H), dy, lo, hi;
    size_t K = (size_t)k * k * C, cb = (size_t)C * sizeof(float), HWC = (size_t)H * W * C, r;
    const float *img = in + r0 / ((size_t)H * W) * HWC;          /* image n's pixels */
    for (r = r0; r < r1; r++) {
        float *row = col + r * K;
        dfn__conv_taps(x, W, k, &lo, &hi);
        for (dy = 0; dy < k; dy++) {
            int sy = y + dy - p;
            float *dst = row + (size_t)dy * k * C;
            if (sy < 0 || sy >= H) { DFN_MEMSET(dst, 0, (size_t)k * cb); continue; }
            /* taps lo..hi-1 are hi - lo neighbouring pixels: one copy */
            if (lo > 0) DFN_MEMSET(dst, 0, (size_t)lo * cb);
            DFN_MEMCPY(dst + (size_t)lo * C, img + ((size_t)sy * W + x + lo - p) * C, (size_t)(hi - lo) * cb);
            if (hi < k) DFN_MEMSET(dst + (size_t)hi * C, 0, (size_t)(k - hi) * cb);
        }
        if (++x == W) {
            x = 0;
            if (++y == H) { y = 0; img += HWC; }
        }
    }
}

/* With threads, a group's rows (pixels) go in blocks of whole 24-row
   micro-tiles, one block per worker, and each worker unrolls its own rows
   and multiplies them (the unrolled rows stay in its cache): no element
   sees other arithmetic than on one thread, so the bits are the same. */
typedef struct dfn__conv_task {
    int op;                          /* DFN__CONV_FWD, _COL or _DIN, below */
    int H, W, C, k, Co, rows, step;  /* C: channels unrolled; Co: of the product */
    const float *in, *Wt, *b;        /* images unrolled; the product's B; bias */
    float *col, *out, *work;
} dfn__conv_task;

#define DFN__CONV_FWD 0   /* out = col Wt^T + b          */
#define DFN__CONV_COL 1   /* the unrolling only           */
#define DFN__CONV_DIN 2   /* out += col Wt^T (Wt: V)      */

static void dfn__conv_run_task(void *ctx, int i, int w)
{
    const dfn__conv_task *t = (const dfn__conv_task *)ctx;
    int lo = i * t->step, n = t->rows - lo < t->step ? t->rows - lo : t->step, K = t->k * t->k * t->C;
    float *work = dfn__worker_work(w, t->work), *c = t->col + (size_t)lo * K, *o;
    if (n <= 0) return;
    dfn__im2col(t->col, t->in, t->H, t->W, t->C, t->k, (size_t)lo, (size_t)lo + n);
    if (t->op == DFN__CONV_COL) return;
    o = t->out + (size_t)lo * t->Co;
    DFN__BEST(dfn__gemm)(0, 1, n, t->Co, K, 1.0f, c, K, t->Wt, K, t->op == DFN__CONV_DIN ? 1.0f : 0.0f,
                         o, t->Co, work);
    if (t->b) dfn_bias_add(n, t->Co, o, t->b);
}

/* The task's rows on the workers when the product is worth splitting (as
   dfn_gemm decides), else here. */
/* Tasks for n rows of a product worth madds multiply-adds: one per worker
   in whole 24-row micro-tiles when worth splitting, else one; *step rows
   each. */
static int dfn__row_tasks(int n, double madds, int *step)
{
    int T = dfn__parallel_workers();
    *step = n;
    if (!dfn__worth_split(madds, T)) return 1;
    *step = dfn__block_step(n, T, 24);
    return (n + *step - 1) / *step;
}

static void dfn__conv_rows(dfn__conv_task *t)
{
    int tasks = dfn__row_tasks(t->rows, (double)t->rows * t->k * t->k * t->C * t->Co, &t->step);
    dfn__parallel_for(tasks, dfn__conv_run_task, t);
}

/* Images per im2col group: as many as col holds, at least one. */
static int dfn__conv_group(int B, int H, int W, int Ci, int k, size_t col_floats)
{
    size_t per = dfn_conv2d_col_size(H, W, Ci, k), g = per ? col_floats / per : (size_t)B;
    DFN_ASSERT(g >= 1);
    return g < (size_t)B ? (int)g : B;
}

/* Winograd F(2x2, 3x3) (Lavin & Gray 2016; docs/MATH.md §14) -------------
   A 3 x 3 convolution (stride 1, padding 1) over 4 x 4 input tiles d that
   step by 2 across the image: each 2 x 2 block of outputs is
       Y = A^T [(G g G^T) (.) (B^T d B)] A              (.) elementwise
   with g the 3 x 3 kernel and
       B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
       G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
       A^T = [1 1 1 0; 0 1 -1 -1],
   16 products per tile and channel pair where the direct form takes 36
   (2.25x fewer). Over all tiles and channels the 16 elementwise products
   are 16 GEMMs: M[xi] (tiles, Co) = V[xi] (tiles, Ci) U[xi]^T with
   V[xi] = (B^T d B)[xi] and U[xi] (Co, Ci) = (G g G^T)[xi], xi = 0..15.
   Tiles are numbered t = (n th + ty) tw + tx over a group of images
   (th = ceil(H / 2), tw = ceil(W / 2)); V, M are slabs [xi][t][C], each xi
   a (T, C) matrix. Every tile's result is computed from its own tile
   alone, whichever task holds it: the bits do not depend on the threads.
   The transforms add and subtract (the weights' halves are exact), 8
   channels at a time (NHWC: a pixel's channels are adjacent), a width the
   compiler vectorizes. dfn_conv2d_forward / _backward take this path
   where dfn__wino_pays says, but not with DFN_PORTABLE_MATH: there im2col
   keeps the bits that every platform shares (the Winograd functions give
   the same bits everywhere too, as the GEMM does, but different ones). */
#define DFN__WG_W 8
/* Tiles along a side of n pixels: ceil(n / 2), without n + 1 overflowing. */
#define DFN__WG_TILES(n) ((n) / 2 + ((n) & 1))
static const float dfn__wino_zero[DFN__WG_W] = { 0 };   /* a pixel outside the image */

/* V[xi][t][0..C) = (B^T d B)[xi] of tile t of in (B, H, W, C), t in [t0, t1);
   S = T C, the floats between slabs. */
static DFN__FORCE_INLINE void dfn__wino_in_block(float *v, size_t S, const float *const *p, int i, int w)
{
    float d[16][DFN__WG_W], e[16][DFN__WG_W];
    int r, j;
    for (r = 0; r < 16; r++) {
        const float *src = p[r] ? p[r] + i : dfn__wino_zero;
        for (j = 0; j < w; j++) d[r][j] = src[j];
    }
    for (r = 0; r < 16; r += 4)                        /* rows: d B */
        for (j = 0; j < w; j++) {
            e[r][j] = d[r][j] - d[r + 2][j];
            e[r + 1][j] = d[r + 1][j] + d[r + 2][j];
            e[r + 2][j] = d[r + 2][j] - d[r + 1][j];
            e[r + 3][j] = d[r + 1][j] - d[r + 3][j];
        }
    for (r = 0; r < 4; r++)                            /* columns: B^T (d B) */
        for (j = 0; j < w; j++) {
            d[r][j] = e[r][j] - e[r + 8][j];
            d[r + 4][j] = e[r + 4][j] + e[r + 8][j];
            d[r + 8][j] = e[r + 8][j] - e[r + 4][j];
            d[r + 12][j] = e[r + 4][j] - e[r + 12][j];
        }
    for (r = 0; r < 16; r++) {                         /* one store stream a slab */
        float *dst = v + (size_t)r * S + i;
        for (j = 0; j < w; j++) dst[j] = d[r][j];
    }
}

static void dfn__wino_in(float *V, size_t S, const float *in, int H, int W, int C, int t0, int t1)
{
    int th = DFN__WG_TILES(H), tw = DFN__WG_TILES(W), t, r, c, i;
    for (t = t0; t < t1; t++) {
        int n = t / (th * tw), ty = t / tw % th, tx = t % tw;
        const float *p[16];
        float *v = V + (size_t)t * C;
        for (r = 0; r < 4; r++)
            for (c = 0; c < 4; c++) {
                int y = 2 * ty - 1 + r, x = 2 * tx - 1 + c;
                p[r * 4 + c] = y < 0 || y >= H || x < 0 || x >= W ? NULL : in + (((size_t)n * H + y) * W + x) * C;
            }
        for (i = 0; i + DFN__WG_W <= C; i += DFN__WG_W) dfn__wino_in_block(v, S, p, i, DFN__WG_W);
        if (i < C) dfn__wino_in_block(v, S, p, i, C - i);
    }
}

/* out (B, H, W, C) = (acc ? out : 0) + A^T M A + b (b may be NULL) for the
   tiles [t0, t1): only the outputs inside the image are written. */
static DFN__FORCE_INLINE void dfn__wino_out_block(float *const *q, const float *m, size_t S, const float *b,
                                                  int acc, int i, int w)
{
    float mm[16][DFN__WG_W], s[8][DFN__WG_W], y[4][DFN__WG_W], bb[DFN__WG_W];
    int r, j;
    for (j = 0; j < w; j++) bb[j] = b ? b[i + j] : 0.0f;
    for (r = 0; r < 16; r++) {
        const float *src = m + (size_t)r * S + i;
        for (j = 0; j < w; j++) mm[r][j] = src[j];
    }
    for (r = 0; r < 4; r++)                            /* rows: M A */
        for (j = 0; j < w; j++) {
            s[2 * r][j] = mm[4 * r][j] + mm[4 * r + 1][j] + mm[4 * r + 2][j];
            s[2 * r + 1][j] = mm[4 * r + 1][j] - mm[4 * r + 2][j] - mm[4 * r + 3][j];
        }
    for (r = 0; r < 2; r++)                            /* columns: A^T (M A) */
        for (j = 0; j < w; j++) {
            y[r][j] = s[r][j] + s[2 + r][j] + s[4 + r][j];
            y[2 + r][j] = s[2 + r][j] - s[4 + r][j] - s[6 + r][j];
        }
    for (r = 0; r < 4; r++) {
        float *o = q[r];
        if (!o) continue;
        if (acc)
            for (j = 0; j < w; j++) o[i + j] += y[r][j] + bb[j];
        else
            for (j = 0; j < w; j++) o[i + j] = y[r][j] + bb[j];
    }
}

static void dfn__wino_out(float *out, const float *M, size_t S, const float *b, int acc, int H, int W, int C,
                          int t0, int t1)
{
    int th = DFN__WG_TILES(H), tw = DFN__WG_TILES(W), t, r, i;
    for (t = t0; t < t1; t++) {
        int n = t / (th * tw), ty = t / tw % th, tx = t % tw;
        float *q[4];
        const float *m = M + (size_t)t * C;
        for (r = 0; r < 4; r++) {                      /* q: y, x, y, x + 1 ... row-major 2 x 2 */
            int y = 2 * ty + r / 2, x = 2 * tx + r % 2;
            q[r] = y < H && x < W ? out + (((size_t)n * H + y) * W + x) * C : NULL;
        }
        for (i = 0; i + DFN__WG_W <= C; i += DFN__WG_W) dfn__wino_out_block(q, m, S, b, acc, i, DFN__WG_W);
        if (i < C) dfn__wino_out_block(q, m, S, b, acc, i, C - i);
    }
}

/* U[xi] (R, K) = (G g G^T)[xi] for the R x K kernels g of Wt (Co, 3, 3, Ci):
   turn = 0: R = Co, K = Ci, g = Wt[o][.][.][i] (the forward pass);
   turn = 1: R = Ci, K = Co, g = Wt[o][2 - .][2 - .][i] (the kernel turned
   half a circle, in and out swapped: din as a convolution of dout).
   In double, rounded once. */
static void dfn__wino_weights(float *U, const float *Wt, int Ci, int Co, int turn)
{
    size_t RK = (size_t)Ci * Co;
    int o, i, a, c;
    for (o = 0; o < Co; o++)
        for (i = 0; i < Ci; i++) {
            double g[3][3], h[4][3];
            size_t at = turn ? (size_t)i * Co + o : (size_t)o * Ci + i;
            for (a = 0; a < 3; a++)
                for (c = 0; c < 3; c++)
                    g[a][c] = turn ? Wt[(((size_t)o * 3 + 2 - a) * 3 + 2 - c) * Ci + i]
                                   : Wt[(((size_t)o * 3 + a) * 3 + c) * Ci + i];
            for (c = 0; c < 3; c++) {                  /* G g */
                h[0][c] = g[0][c];
                h[1][c] = 0.5 * (g[0][c] + g[1][c] + g[2][c]);
                h[2][c] = 0.5 * (g[0][c] - g[1][c] + g[2][c]);
                h[3][c] = g[2][c];
            }
            for (a = 0; a < 4; a++) {                  /* (G g) G^T */
                U[(size_t)(4 * a) * RK + at] = (float)h[a][0];
                U[(size_t)(4 * a + 1) * RK + at] = (float)(0.5 * (h[a][0] + h[a][1] + h[a][2]));
                U[(size_t)(4 * a + 2) * RK + at] = (float)(0.5 * (h[a][0] - h[a][1] + h[a][2]));
                U[(size_t)(4 * a + 3) * RK + at] = (float)h[a][2];
            }
        }
}

/* Floats of Winograd scratch for g images: V and M, and two kernels' U;
   (size_t)-1 when that overflows (a 32-bit size_t, huge sides). Counted in
   double first: every factor is below 2^31, so the double product is
   within a part in 2^50 of the exact one. */
static size_t dfn__wino_floats(int H, int W, int Ci, int Co, int g)
{
    double T = (double)DFN__WG_TILES(H) * (double)DFN__WG_TILES(W) * g;
    size_t t;
    if (16.0 * T * ((double)Ci + Co) + 32.0 * Ci * (double)Co > (double)((size_t)-1) / 8) return (size_t)-1;
    t = (size_t)DFN__WG_TILES(H) * (size_t)DFN__WG_TILES(W) * (size_t)g;
    return 16 * t * ((size_t)Ci + Co) + 32 * (size_t)Ci * Co;
}

/* Images per Winograd group in col_floats: 0 when not even one fits. */
static int dfn__wino_group(int B, int H, int W, int Ci, int Co, size_t col_floats)
{
    size_t fixed = dfn__wino_floats(H, W, Ci, Co, 0), one = dfn__wino_floats(H, W, Ci, Co, 1), g;
    if (one == (size_t)-1 || col_floats < one) return 0;
    g = (col_floats - fixed) / (one - fixed);
    return g < (size_t)B ? (int)g : B;
}

/* Tiles a task's block works through at a time, in whole 24-row
   micro-tiles of the GEMM: 384 (measured on 16 to 128 channels: 24 tiles
   were 1.1-1.35x slower, each of the 16 products packing its kernel for
   few rows; 192 to 480, and the whole block, within 5%). */
#define DFN__WG_CHUNK 384

typedef struct dfn__wino_task {
    int H, W, Ci, Co, T, step, acc;
    const float *in, *U, *b;
    float *V, *M, *out, *work;
} dfn__wino_task;

/* Task i: tiles [i step, (i + 1) step): transform, 16 products, back. */
static void dfn__wino_run_task(void *ctx, int i, int w)
{
    const dfn__wino_task *t = (const dfn__wino_task *)ctx;
    int t0 = i * t->step, t1 = t0 + t->step < t->T ? t0 + t->step : t->T, ch = DFN__WG_CHUNK, a, xi;
    size_t Si = (size_t)t->T * t->Ci, So = (size_t)t->T * t->Co, RK = (size_t)t->Ci * t->Co;
    float *work = dfn__worker_work(w, t->work);
    for (a = t0; a < t1; a += ch) {
        int n = t1 - a < ch ? t1 - a : ch;
        dfn__wino_in(t->V, Si, t->in, t->H, t->W, t->Ci, a, a + n);
        for (xi = 0; xi < 16; xi++)
            DFN__BEST(dfn__gemm)(0, 1, n, t->Co, t->Ci, 1.0f, t->V + xi * Si + (size_t)a * t->Ci, t->Ci,
                                 t->U + xi * RK, t->Ci, 0.0f, t->M + xi * So + (size_t)a * t->Co, t->Co, work);
        dfn__wino_out(t->out, t->M, So, t->b, t->acc, t->H, t->W, t->Co, a, a + n);
    }
}

/* out (g, H, W, Co) = (acc ? out : 0) + conv3x3(in (g, H, W, Ci)) + b through
   the transformed kernels U, V and M holding the group's T tiles. */
static void dfn__wino_conv(float *out, const float *in, const float *U, const float *b, int acc, int g, int H,
                           int W, int Ci, int Co, float *V, float *M, float *work)
{
    dfn__wino_task t;
    int T = g * DFN__WG_TILES(H) * DFN__WG_TILES(W);
    t.H = H; t.W = W; t.Ci = Ci; t.Co = Co; t.T = T; t.acc = acc;
    t.in = in; t.U = U; t.b = b; t.V = V; t.M = M; t.out = out; t.work = work;
    dfn__parallel_for(dfn__row_tasks(T, 16.0 * T * Ci * Co, &t.step), dfn__wino_run_task, &t);
}

/* The forward pass by Winograd in groups that col holds (g >= 1). */
static void dfn__wino_forward(float *out, const float *in, const float *Wt, const float *b, int B, int H, int W,
                              int Ci, int Co, int g, float *col, float *work)
{
    size_t HW = (size_t)H * W, T = (size_t)g * DFN__WG_TILES(H) * DFN__WG_TILES(W);
    float *U = col, *V = U + 16 * (size_t)Ci * Co, *M = V + 16 * T * Ci;
    int n0;
    dfn__wino_weights(U, Wt, Ci, Co, 0);
    for (n0 = 0; n0 < B; n0 += g)
        dfn__wino_conv(out + (size_t)n0 * HW * Co, in + (size_t)n0 * HW * Ci, U, b, 0, B - n0 < g ? B - n0 : g,
                       H, W, Ci, Co, V, M, work);
}

#ifndef DFN_NO_TRAINING
/* Z[xi][t][0..C) = (A dY A^T)[xi] of tile t's 2 x 2 output gradients dY
   (zeros outside the image): dW's side of the product (MATH.md §14). */
static DFN__FORCE_INLINE void dfn__wino_dout_block(float *z, size_t S, const float *const *p, int i, int w)
{
    float d[4][DFN__WG_W], u[8][DFN__WG_W], e[16][DFN__WG_W];
    int r, j;
    for (r = 0; r < 4; r++) {
        const float *src = p[r] ? p[r] + i : dfn__wino_zero;
        for (j = 0; j < w; j++) d[r][j] = src[j];
    }
    for (r = 0; r < 2; r++)                            /* A dY, A = [1 0; 1 1; 1 -1; 0 -1] */
        for (j = 0; j < w; j++) {
            u[r][j] = d[r][j];
            u[2 + r][j] = d[r][j] + d[2 + r][j];
            u[4 + r][j] = d[r][j] - d[2 + r][j];
            u[6 + r][j] = -d[2 + r][j];
        }
    for (r = 0; r < 4; r++)                            /* (A dY) A^T */
        for (j = 0; j < w; j++) {
            e[4 * r][j] = u[2 * r][j];
            e[4 * r + 1][j] = u[2 * r][j] + u[2 * r + 1][j];
            e[4 * r + 2][j] = u[2 * r][j] - u[2 * r + 1][j];
            e[4 * r + 3][j] = -u[2 * r + 1][j];
        }
    for (r = 0; r < 16; r++) {
        float *dst = z + (size_t)r * S + i;
        for (j = 0; j < w; j++) dst[j] = e[r][j];
    }
}

static void dfn__wino_dout(float *Z, size_t S, const float *dout, int H, int W, int C, int t0, int t1)
{
    int th = DFN__WG_TILES(H), tw = DFN__WG_TILES(W), t, r, i;
    for (t = t0; t < t1; t++) {
        int n = t / (th * tw), ty = t / tw % th, tx = t % tw;
        const float *p[4];
        float *z = Z + (size_t)t * C;
        for (r = 0; r < 4; r++) {
            int y = 2 * ty + r / 2, x = 2 * tx + r % 2;
            p[r] = y < H && x < W ? dout + (((size_t)n * H + y) * W + x) * C : NULL;
        }
        for (i = 0; i + DFN__WG_W <= C; i += DFN__WG_W) dfn__wino_dout_block(z, S, p, i, DFN__WG_W);
        if (i < C) dfn__wino_dout_block(z, S, p, i, C - i);
    }
}

typedef struct dfn__wino_gtask {
    int H, W, Ci, Co, T, step;
    const float *in, *dout;
    float *V, *Z, *dU, *work;
} dfn__wino_gtask;

/* Task i: the transforms of tiles [i step, (i + 1) step) of in and dout. */
static void dfn__wino_grad_in_task(void *ctx, int i, int w)
{
    const dfn__wino_gtask *g = (const dfn__wino_gtask *)ctx;
    int t0 = i * g->step, t1 = t0 + g->step < g->T ? t0 + g->step : g->T;
    (void)w;
    dfn__wino_in(g->V, (size_t)g->T * g->Ci, g->in, g->H, g->W, g->Ci, t0, t1);
    dfn__wino_dout(g->Z, (size_t)g->T * g->Co, g->dout, g->H, g->W, g->Co, t0, t1);
}

/* Task xi: dU[xi] (Ci, Co) += V[xi]^T Z[xi], a sum over the group's tiles in
   order (one task a slab: the same sums on any number of threads). */
static void dfn__wino_grad_mul_task(void *ctx, int xi, int w)
{
    const dfn__wino_gtask *g = (const dfn__wino_gtask *)ctx;
    DFN__BEST(dfn__gemm)(1, 0, g->Ci, g->Co, g->T, 1.0f, g->V + (size_t)xi * g->T * g->Ci, g->Ci,
                         g->Z + (size_t)xi * g->T * g->Co, g->Co, 1.0f, g->dU + (size_t)xi * g->Ci * g->Co, g->Co,
                         dfn__worker_work(w, g->work));
}

/* The backward pass by Winograd in groups of g images: dW += G^T dU G with
   dU = sum over tiles of (A dY A^T) (.) (B^T d B); din += the convolution of
   dout with the turned kernel, by the forward pass's tiles. */
static void dfn__wino_backward(float *din, float *dW, float *db, const float *dout, const float *in,
                               const float *Wt, int B, int H, int W, int Ci, int Co, int g, float *col,
                               float *work)
{
    size_t HW = (size_t)H * W, RK = (size_t)Ci * Co, T = (size_t)g * DFN__WG_TILES(H) * DFN__WG_TILES(W);
    float *U = col, *dU = U + 16 * RK, *A = dU + 16 * RK, *Bz = A + 16 * T * Ci;
    int n0, o, i, a, c;
    if (din) dfn__wino_weights(U, Wt, Ci, Co, 1);
    DFN_MEMSET(dU, 0, 16 * RK * sizeof(float));
    for (n0 = 0; n0 < B; n0 += g) {
        int gn = B - n0 < g ? B - n0 : g, tasks;
        const float *dout_g = dout + (size_t)n0 * HW * Co;
        dfn__wino_gtask t;
        t.H = H; t.W = W; t.Ci = Ci; t.Co = Co; t.T = gn * DFN__WG_TILES(H) * DFN__WG_TILES(W);
        t.in = in + (size_t)n0 * HW * Ci; t.dout = dout_g; t.V = A; t.Z = Bz; t.dU = dU; t.work = work;
        tasks = dfn__row_tasks(t.T, 16.0 * t.T * Ci * Co, &t.step);
        dfn__parallel_for(tasks, dfn__wino_grad_in_task, &t);                  /* B^T d B, A dY A^T */
        if (tasks > 1) dfn__parallel_for(16, dfn__wino_grad_mul_task, &t);        /* dU += V^T Z */
        else
            for (a = 0; a < 16; a++) dfn__wino_grad_mul_task(&t, a, 0);
        if (db) dfn_bias_grad(gn * H * W, Co, dout_g, db);
        if (din)
            dfn__wino_conv(din + (size_t)n0 * HW * Ci, dout_g, U, NULL, 1, gn, H, W, Co, Ci, Bz, A, work);
    }
    for (o = 0; o < Co; o++)                           /* dW += G^T dU G */
        for (i = 0; i < Ci; i++) {
            double q[4][4], h[3][4];
            for (a = 0; a < 4; a++)
                for (c = 0; c < 4; c++) q[a][c] = dU[(size_t)(4 * a + c) * RK + (size_t)i * Co + o];
            for (c = 0; c < 4; c++) {
                h[0][c] = q[0][c] + 0.5 * (q[1][c] + q[2][c]);
                h[1][c] = 0.5 * (q[1][c] - q[2][c]);
                h[2][c] = 0.5 * (q[1][c] + q[2][c]) + q[3][c];
            }
            for (a = 0; a < 3; a++) {
                float *d = dW + ((size_t)o * 9 + 3 * a) * Ci + i;
                d[0] += (float)(h[a][0] + 0.5 * (h[a][1] + h[a][2]));
                d[Ci] += (float)(0.5 * (h[a][1] - h[a][2]));
                d[2 * (size_t)Ci] += (float)(0.5 * (h[a][1] + h[a][2]) + h[a][3]);
            }
        }
}
#endif

/* The shapes where Winograd beat im2col (batch 64, one thread, AVX-512;
   forward / backward speed-up): 28 x 28, 16 -> 16 channels 1.24x / 0.70x;
   14 x 14, 32 -> 32 1.25x / 1.07x; 28 x 28, 32 -> 32 1.36x / 1.34x;
   14 x 14, 64 -> 64 1.34x / 1.38x; 128 -> 128 1.35x / 1.68x; but 7 x 7,
   32 -> 32 0.55x / 0.65x (16 tiles cover 64 outputs for 49, and the
   products are short). The backward pass's dW products with 16 channels
   are short in the other direction (16 x 16 per slab). Measured with
   AVX-512 only: the other SIMD paths take the same rule unmeasured. */
static DFN__MAYBE_UNUSED int dfn__wino_pays(int H, int W, int Ci, int Co, int backward)
{
    int c = Ci < Co ? Ci : Co;
    return H >= 8 && W >= 8 && c >= (backward ? 32 : 16);
}

DFNDEF size_t dfn_conv2d_winograd_size(int H, int W, int Ci, int Co, int g)
{
    size_t n;
    if (H < 1 || W < 1 || Ci < 1 || Co < 1 || g < 1) return 0;
    n = dfn__wino_floats(H, W, Ci, Co, g);
    return n == (size_t)-1 ? 0 : n;
}

static dfn_result dfn__wino_check(const void *out, const void *in, const float *Wt, int B, int H, int W, int Ci,
                                  int Co, const float *col, size_t col_floats, const float *work, int *g)
{
    if (!out || !in || !Wt || !col || !work) return DFN_ERR_NULL;
    if (B < 1 || H < 1 || W < 1 || Ci < 1 || Co < 1) return DFN_ERR_INVALID_ARG;
    if ((double)B * H * W > 2147483647.0) return DFN_ERR_INVALID_ARG;   /* pixels and tiles are counted in int */
    *g = dfn__wino_group(B, H, W, Ci, Co, col_floats);
    return *g > 0 ? DFN_OK : DFN_ERR_BUFFER_TOO_SMALL;
}

DFNDEF dfn_result dfn_conv2d_winograd_forward(float *out, const float *in, const float *Wt, const float *b,
                                              int B, int H, int W, int Ci, int Co, float *col,
                                              size_t col_floats, float *work)
{
    int g = 0;
    dfn_result r = dfn__wino_check(out, in, Wt, B, H, W, Ci, Co, col, col_floats, work, &g);
    if (r == DFN_OK) dfn__wino_forward(out, in, Wt, b, B, H, W, Ci, Co, g, col, work);
    return r;
}

#ifndef DFN_NO_TRAINING
DFNDEF dfn_result dfn_conv2d_winograd_backward(float *din, float *dW, float *db, const float *dout,
                                               const float *in, const float *Wt, int B, int H, int W, int Ci,
                                               int Co, float *col, size_t col_floats, float *work)
{
    int g = 0;
    dfn_result r = dfn__wino_check(dW, in, Wt, B, H, W, Ci, Co, col, col_floats, work, &g);
    if (r == DFN_OK && !dout) r = DFN_ERR_NULL;
    if (r == DFN_OK) dfn__wino_backward(din, dW, db, dout, in, Wt, B, H, W, Ci, Co, g, col, work);
    return r;
}
#endif

/* The forward pass through im2col and the GEMM (any k; the reference). */
static void dfn__im2col_forward(float *out, const float *in, const float *Wt, const float *b, int B, int H, int W,
                                int Ci, int Co, int k, float *col, size_t col_floats, float *work)
{
    size_t HW = (size_t)H * W;
    int g = dfn__conv_group(B, H, W, Ci, k, col_floats), n0;
    for (n0 = 0; n0 < B; n0 += g) {
        dfn__conv_task t;
        t.op = DFN__CONV_FWD; t.H = H; t.W = W; t.C = Ci; t.k = k; t.Co = Co;
        t.rows = (B - n0 < g ? B - n0 : g) * H * W;
        t.in = in + (size_t)n0 * HW * Ci; t.Wt = Wt; t.b = b;
        t.col = col; t.out = out + (size_t)n0 * HW * Co; t.work = work;
        dfn__conv_rows(&t);                       /* out = im2col(in) Wt^T + b */
    }
}

DFNDEF void dfn_conv2d_forward(float *out, const float *in, const float *Wt, const float *b,
                               int B, int H, int W, int Ci, int Co, int k,
                               float *col, size_t col_floats, float *work)
{
    if (k == 1) {                              /* a dense layer on every pixel */
        dfn_linear_forward(out, in, Wt, b, B * H * W, Ci, Co, work);
        return;
    }
#ifndef DFN_PORTABLE_MATH
    {
        int g = k == 3 && dfn__wino_pays(H, W, Ci, Co, 0) ? dfn__wino_group(B, H, W, Ci, Co, col_floats) : 0;
        if (g > 0) {
            dfn__wino_forward(out, in, Wt, b, B, H, W, Ci, Co, g, col, work);
            return;
        }
    }
#endif
    dfn__im2col_forward(out, in, Wt, b, B, H, W, Ci, Co, k, col, col_floats, work);
}

#ifndef DFN_NO_TRAINING
/* din += the patches of col folded back onto the pixels they came from. */
static void dfn__col2im_add(float *din, const float *col, int g, int H, int W, int C, int k)
{
    int p = (k - 1) / 2, n, y, x, dy, lo, hi;
    size_t K = (size_t)k * k * C;
    for (n = 0; n < g; n++)
        for (y = 0; y < H; y++)
            for (x = 0; x < W; x++) {
                const float *row = col + (((size_t)n * H + y) * W + x) * K;
                dfn__conv_taps(x, W, k, &lo, &hi);
                for (dy = 0; dy < k; dy++) {
                    int sy = y + dy - p;
                    if (sy < 0 || sy >= H) continue;
                    /* taps lo..hi-1 land on hi - lo neighbouring pixels: one axpy
                       (the kernel itself: a few dozen values, never split) */
                    DFN__BEST(dfn__vec_axpy)((size_t)(hi - lo) * C, 1.0f, row + (size_t)(dy * k + lo) * C,
                                             din + (((size_t)n * H + sy) * W + x + lo - p) * C);
                }
            }
}

/* The backward pass through im2col and the GEMM (k = 3; the reference). */
static void dfn__im2col_backward(float *din, float *dW, float *db, const float *dout, const float *in,
                                 const float *Wt, int B, int H, int W, int Ci, int Co, int k, float *col,
                                 size_t col_floats, float *work)
{
    size_t HW = (size_t)H * W, KC;
    int K = k * k * Ci, Cm = Ci > Co ? Ci : Co, g, n0, o, j, dy, dx, i;
    float *dwt = NULL, *V = NULL;
    KC = (size_t)K * Co;
    /* dW^T (K, Co) in the tail of col when it fits next to one image: the
       same sums as dW, through the GEMM's tall, narrow shape (its 24 x 16
       tile covers 16 channels; dW's 16 rows would fill 16 of 24) */
    if (col_floats >= dfn_conv2d_col_size(H, W, Ci, k) + KC) {
        col_floats -= KC;
        dwt = col + col_floats;
        for (o = 0; o < Co; o++)
            for (j = 0; j < K; j++) dwt[(size_t)j * Co + o] = dW[(size_t)o * K + j];
    }
    /* din as a convolution of dout: din[y][x][i] += sum over (ey, ex, o) of
       V[i][ey][ex][o] dout[y+ey-p][x+ex-p][o] with V[i][ey][ex][o] =
       Wt[o][k-1-ey][k-1-ex][i] (the kernel turned half a circle, in and
       out swapped): im2col of dout and one product into din, instead of
       dcol = dout Wt (K = Co: a short product) folded back by col2im. When
       col holds V too and an image's patches of max(Ci, Co) channels. */
    if (din && dwt && col_floats >= dfn_conv2d_col_size(H, W, Cm, k) + KC) {
        col_floats -= KC;
        V = col + col_floats;
        for (i = 0; i < Ci; i++)
            for (dy = 0; dy < k; dy++)
                for (dx = 0; dx < k; dx++)
                    for (o = 0; o < Co; o++)
                        V[(((size_t)i * k + dy) * k + dx) * Co + o] =
                            Wt[(((size_t)o * k + (k - 1 - dy)) * k + (k - 1 - dx)) * Ci + i];
    }
    g = dfn__conv_group(B, H, W, V ? Cm : Ci, k, col_floats);
    for (n0 = 0; n0 < B; n0 += g) {
        int gn = B - n0 < g ? B - n0 : g, rows = gn * H * W;
        const float *dout_g = dout + (size_t)n0 * HW * Co;
        dfn__conv_task t;
        t.op = DFN__CONV_COL; t.H = H; t.W = W; t.C = Ci; t.k = k; t.Co = Co; t.rows = rows;
        t.in = in + (size_t)n0 * HW * Ci; t.Wt = NULL; t.b = NULL; t.col = col; t.out = NULL; t.work = work;
        dfn__conv_rows(&t);                                                               /* im2col(in) */
        if (dwt) dfn_gemm(1, 0, K, Co, rows, 1.0f, col, K, dout_g, Co, 1.0f, dwt, Co, work); /* col^T dout */
        else dfn_gemm(1, 0, Co, K, rows, 1.0f, dout_g, Co, col, K, 1.0f, dW, K, work);      /* dout^T col */
        if (db) dfn_bias_grad(rows, Co, dout_g, db);
        if (V) {
            t.op = DFN__CONV_DIN; t.C = Co; t.Co = Ci; t.in = dout_g; t.Wt = V;
            t.out = din + (size_t)n0 * HW * Ci;
            dfn__conv_rows(&t);                                       /* din += im2col(dout) V^T */
        } else if (din) {
            dfn_gemm(0, 0, rows, K, Co, 1.0f, dout_g, Co, Wt, K, 0.0f, col, K, work);   /* dcol = dout Wt */
            dfn__col2im_add(din + (size_t)n0 * HW * Ci, col, gn, H, W, Ci, k);
        }
    }
    if (dwt)
        for (o = 0; o < Co; o++)
            for (j = 0; j < K; j++) dW[(size_t)o * K + j] = dwt[(size_t)j * Co + o];
}

DFNDEF void dfn_conv2d_backward(float *din, float *dW, float *db, const float *dout,
                                const float *in, const float *Wt, int B, int H, int W,
                                int Ci, int Co, int k, float *col, size_t col_floats,
                                float *work)
{
    if (k == 1) {
        dfn_linear_backward(din, dW, db, dout, in, Wt, B * H * W, Ci, Co, work);
        return;
    }
#ifndef DFN_PORTABLE_MATH
    {
        int g = k == 3 && dfn__wino_pays(H, W, Ci, Co, 1) ? dfn__wino_group(B, H, W, Ci, Co, col_floats) : 0;
        if (g > 0) {
            dfn__wino_backward(din, dW, db, dout, in, Wt, B, H, W, Ci, Co, g, col, work);
            return;
        }
    }
#endif
    dfn__im2col_backward(din, dW, db, dout, in, Wt, B, H, W, Ci, Co, k, col, col_floats, work);
}
#endif

/* GroupNorm runs over whole groups at a time, in slices of up to 64
   channels that are contiguous in every pixel (NHWC), so the inner loops
   vectorize; sums are per channel in double, then per group. */
#define DFN__GN_SLICE 64

/* Per-channel sums over the N pixels of one sample, for channels [c0, c0 +
   cn): s1[c] = sum x and s2[c] = sum x y (mode 0; y NULL: s2 = 0), or
   s2[c] = sum (x - m[c])^2 (mode 1). Each sum runs over n in order; w
   channels go at a time (w = 16 or 8 known to the compiler: the
   accumulators stay in registers, independent chains). */
static DFN__FORCE_INLINE void dfn__gn_block(const float *xp, const float *yp, const double *m, int mode, int N,
                                            int C, int w, double *s1, double *s2)
{
    double a[16], b[16], mm[16];
    int n, j;
    for (j = 0; j < w; j++) {
        a[j] = b[j] = 0.0;
        mm[j] = mode ? m[j] : 0.0;
    }
    if (mode)
        for (n = 0; n < N; n++, xp += C)
            for (j = 0; j < w; j++) {
                double d = xp[j] - mm[j];
                b[j] += d * d;
            }
    else if (yp)
        for (n = 0; n < N; n++, xp += C, yp += C)
            for (j = 0; j < w; j++) {
                a[j] += xp[j];
                b[j] += (double)xp[j] * yp[j];
            }
    else
        for (n = 0; n < N; n++, xp += C)
            for (j = 0; j < w; j++) a[j] += xp[j];
    for (j = 0; j < w; j++) {
        s1[j] = a[j];
        s2[j] = b[j];
    }
}

static void dfn__gn_sums(const float *x, const float *y, const double *m, int mode, int N, int C, int c0, int cn,
                         double *s1, double *s2)
{
    const float *xp = x + c0, *yp = y ? y + c0 : NULL;
    int c = 0;
    for (; c + 16 <= cn; c += 16)
        dfn__gn_block(xp + c, yp ? yp + c : NULL, m ? m + c : NULL, mode, N, C, 16, s1 + c, s2 + c);
    for (; c + 8 <= cn; c += 8)
        dfn__gn_block(xp + c, yp ? yp + c : NULL, m ? m + c : NULL, mode, N, C, 8, s1 + c, s2 + c);
    for (; c < cn; c++)
        dfn__gn_block(xp + c, yp ? yp + c : NULL, m ? m + c : NULL, mode, N, C, 1, s1 + c, s2 + c);
}

/* The per-pixel passes over w channels of N pixels (w = 16 or 8 known to
   the compiler, the row copied to a local first: no aliasing, so gcc -O2
   vectorizes; the plain loop over a variable channel count stayed scalar,
   5% of a U-Net step). Forward y = x scale + shift; backward dx += a dy +
   bx x + c0. The same expressions as one channel at a time: the same bits. */
static DFN__FORCE_INLINE void dfn__gn_affine(const float *xp, float *yp, const float *scale, const float *shift,
                                             int N, int C, int w)
{
    float t[16];
    int n, c;
    for (n = 0; n < N; n++, xp += C, yp += C) {
        for (c = 0; c < w; c++) t[c] = xp[c];
        for (c = 0; c < w; c++) t[c] = t[c] * scale[c] + shift[c];
        for (c = 0; c < w; c++) yp[c] = t[c];
    }
}

static DFN__FORCE_INLINE void dfn__gn_dx(float *dxp, const float *dyp, const float *xp, const float *a,
                                         const float *bx, const float *c0, int N, int C, int w)
{
    float t[16], u[16], d[16];
    int n, c;
    for (n = 0; n < N; n++, xp += C, dyp += C, dxp += C) {
        for (c = 0; c < w; c++) { t[c] = xp[c]; u[c] = dyp[c]; d[c] = dxp[c]; }
        for (c = 0; c < w; c++) d[c] += a[c] * u[c] + bx[c] * t[c] + c0[c];
        for (c = 0; c < w; c++) dxp[c] = d[c];
    }
}

/* dfn__gn_affine (dx NULL) or dfn__gn_dx over channels [0, cn) of a slice:
   16, then 8, then 1 at a time. */
static void dfn__gn_pixels(float *dx, float *y, const float *dy, const float *x, const float *p, const float *q,
                           const float *r, int N, int C, int cn)
{
    int c = 0;
    for (; c + 16 <= cn; c += 16)
        if (dx) dfn__gn_dx(dx + c, dy + c, x + c, p + c, q + c, r + c, N, C, 16);
        else dfn__gn_affine(x + c, y + c, p + c, q + c, N, C, 16);
    for (; c + 8 <= cn; c += 8)
        if (dx) dfn__gn_dx(dx + c, dy + c, x + c, p + c, q + c, r + c, N, C, 8);
        else dfn__gn_affine(x + c, y + c, p + c, q + c, N, C, 8);
    for (; c < cn; c++)
        if (dx) dfn__gn_dx(dx + c, dy + c, x + c, p + c, q + c, r + c, N, C, 1);
        else dfn__gn_affine(x + c, y + c, p + c, q + c, N, C, 1);
}

/* GroupNorm of the groups [ga, gb) of every sample. */
static void dfn__gn_forward_groups(float *y, float *stats, const float *x, const float *gamma,
                                   const float *beta, int B, int N, int C, int G, int ga, int gb)
{
    int cg = C / G, k = cg >= DFN__GN_SLICE ? 1 : DFN__GN_SLICE / cg, b, g0, g, c, s0;
    double cnt = (double)N * cg, s1[DFN__GN_SLICE], s2[DFN__GN_SLICE];
    double mean[DFN__GN_SLICE], r[DFN__GN_SLICE];    /* of the groups g0 .. g0 + k - 1 */
    float scale[DFN__GN_SLICE], shift[DFN__GN_SLICE];
    for (b = 0; b < B; b++) {
        const float *xs = x + (size_t)b * N * C;
        float *ys = y + (size_t)b * N * C;
        for (g0 = ga; g0 < gb; g0 += k) {
            int gn = gb - g0 < k ? gb - g0 : k, lo = g0 * cg, hi = (g0 + gn) * cg;
            double var[DFN__GN_SLICE];
            for (g = 0; g < gn; g++) mean[g] = var[g] = 0.0;
            /* mean, then the variance around it (two passes: no cancellation) */
            for (s0 = lo; s0 < hi; s0 += DFN__GN_SLICE) {
                int sn = hi - s0 < DFN__GN_SLICE ? hi - s0 : DFN__GN_SLICE;
                dfn__gn_sums(xs, NULL, NULL, 0, N, C, s0, sn, s1, s2);
                for (c = 0; c < sn; c++) mean[(s0 + c) / cg - g0] += s1[c];
            }
            for (g = 0; g < gn; g++) mean[g] /= cnt;
            for (s0 = lo; s0 < hi; s0 += DFN__GN_SLICE) {
                int sn = hi - s0 < DFN__GN_SLICE ? hi - s0 : DFN__GN_SLICE;
                double m[DFN__GN_SLICE];
                for (c = 0; c < sn; c++) m[c] = mean[(s0 + c) / cg - g0];
                dfn__gn_sums(xs, NULL, m, 1, N, C, s0, sn, s1, s2);
                for (c = 0; c < sn; c++) var[(s0 + c) / cg - g0] += s2[c];
            }
            for (g = 0; g < gn; g++) {
                r[g] = 1.0 / DFN_SQRT(var[g] / cnt + (double)DFN_GROUPNORM_EPS);
                stats[((size_t)b * G + g0 + g) * 2] = (float)mean[g];
                stats[((size_t)b * G + g0 + g) * 2 + 1] = (float)r[g];
            }
            /* y = gamma (x - mean) r + beta = x scale + shift, per channel */
            for (s0 = lo; s0 < hi; s0 += DFN__GN_SLICE) {
                int sn = hi - s0 < DFN__GN_SLICE ? hi - s0 : DFN__GN_SLICE;
                for (c = 0; c < sn; c++) {
                    g = (s0 + c) / cg - g0;
                    scale[c] = (float)(gamma[s0 + c] * r[g]);
                    shift[c] = (float)(beta[s0 + c] - mean[g] * gamma[s0 + c] * r[g]);
                }
                dfn__gn_pixels(NULL, ys + s0, NULL, xs + s0, scale, shift, NULL, N, C, sn);
            }
        }
    }
}

/* The groups go one block per worker (large tensors, with threads): each
   channel's sums, and so every output bit, are those of one pass. */
typedef struct dfn__gn_task {
    float *y, *stats, *dx, *dgamma, *dbeta;      /* outputs (forward; backward) */
    const float *x, *dy, *cstats, *gamma, *beta;
    int B, N, C, G, tasks;
} dfn__gn_task;

static void dfn__gn_forward_task(void *ctx, int i, int w)
{
    const dfn__gn_task *t = (const dfn__gn_task *)ctx;
    (void)w;
    dfn__gn_forward_groups(t->y, t->stats, t->x, t->gamma, t->beta, t->B, t->N, t->C, t->G,
                           (int)((long)t->G * i / t->tasks), (int)((long)t->G * (i + 1) / t->tasks));
}

static void dfn__gn_split(dfn__gn_task *t, dfn_task_fn task)
{
    int T = dfn__parallel_workers();
    t->tasks = T > 1 && (double)t->B * t->N * t->C >= DFN__EW_SPLIT ? (T < t->G ? T : t->G) : 1;
    if (t->tasks > 1) dfn__parallel_for(t->tasks, task, t);
    else task(t, 0, 0);
}

DFNDEF void dfn_groupnorm_forward(float *y, float *stats, const float *x, const float *gamma,
                                  const float *beta, int B, int N, int C, int G)
{
    dfn__gn_task t;
    DFN_MEMSET(&t, 0, sizeof t);
    t.y = y; t.stats = stats; t.x = x; t.gamma = gamma; t.beta = beta;
    t.B = B; t.N = N; t.C = C; t.G = G;
    dfn__gn_split(&t, dfn__gn_forward_task);
}

#ifndef DFN_NO_TRAINING
static void dfn__gn_backward_groups(float *dx, float *dgamma, float *dbeta, const float *dy,
                                    const float *x, const float *stats, const float *gamma,
                                    int B, int N, int C, int G, int ga, int gb)
{
    int cg = C / G, k = cg >= DFN__GN_SLICE ? 1 : DFN__GN_SLICE / cg, b, g0, g, c, s0;
    double cnt = (double)N * cg, sdy[DFN__GN_SLICE], sdyx[DFN__GN_SLICE];
    for (b = 0; b < B; b++) {
        const float *xs = x + (size_t)b * N * C, *dys = dy + (size_t)b * N * C;
        float *dxs = dx + (size_t)b * N * C;
        for (g0 = ga; g0 < gb; g0 += k) {
            int gn = gb - g0 < k ? gb - g0 : k, lo = g0 * cg, hi = (g0 + gn) * cg;
            double mg[DFN__GN_SLICE], mgx[DFN__GN_SLICE], mean[DFN__GN_SLICE], r[DFN__GN_SLICE];
            for (g = 0; g < gn; g++) {
                mean[g] = stats[((size_t)b * G + g0 + g) * 2];
                r[g] = stats[((size_t)b * G + g0 + g) * 2 + 1];
                mg[g] = mgx[g] = 0.0;
            }
            /* with xhat = (x - mean) r:  sum dy xhat = r (sum dy x - mean sum dy) */
            for (s0 = lo; s0 < hi; s0 += DFN__GN_SLICE) {
                int sn = hi - s0 < DFN__GN_SLICE ? hi - s0 : DFN__GN_SLICE;
                dfn__gn_sums(dys, xs, NULL, 0, N, C, s0, sn, sdy, sdyx);
                for (c = 0; c < sn; c++) {
                    double dyxh;
                    g = (s0 + c) / cg - g0;
                    dyxh = r[g] * (sdyx[c] - mean[g] * sdy[c]);
                    dgamma[s0 + c] += (float)dyxh;
                    dbeta[s0 + c] += (float)sdy[c];
                    mg[g] += gamma[s0 + c] * sdy[c];          /* sum of g = dy gamma  */
                    mgx[g] += gamma[s0 + c] * dyxh;           /* sum of g xhat        */
                }
            }
            for (g = 0; g < gn; g++) {
                mg[g] /= cnt;
                mgx[g] /= cnt;
            }
            /* dx += r (dy gamma - mean(g) - xhat mean(g xhat)) = a dy + bx x + c0 */
            for (s0 = lo; s0 < hi; s0 += DFN__GN_SLICE) {
                int sn = hi - s0 < DFN__GN_SLICE ? hi - s0 : DFN__GN_SLICE;
                float a[DFN__GN_SLICE], bx[DFN__GN_SLICE], c0[DFN__GN_SLICE];
                for (c = 0; c < sn; c++) {
                    g = (s0 + c) / cg - g0;
                    a[c] = (float)(r[g] * gamma[s0 + c]);
                    bx[c] = (float)(-r[g] * r[g] * mgx[g]);
                    c0[c] = (float)(r[g] * (r[g] * mgx[g] * mean[g] - mg[g]));
                }
                dfn__gn_pixels(dxs + s0, NULL, dys + s0, xs + s0, a, bx, c0, N, C, sn);
            }
        }
    }
}

static void dfn__gn_backward_task(void *ctx, int i, int w)
{
    const dfn__gn_task *t = (const dfn__gn_task *)ctx;
    (void)w;
    dfn__gn_backward_groups(t->dx, t->dgamma, t->dbeta, t->dy, t->x, t->cstats, t->gamma, t->B, t->N, t->C,
                            t->G, (int)((long)t->G * i / t->tasks), (int)((long)t->G * (i + 1) / t->tasks));
}

DFNDEF void dfn_groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                                   const float *x, const float *stats, const float *gamma,
                                   int B, int N, int C, int G)
{
    dfn__gn_task t;
    DFN_MEMSET(&t, 0, sizeof t);
    t.dx = dx; t.dgamma = dgamma; t.dbeta = dbeta; t.dy = dy; t.x = x; t.cstats = stats; t.gamma = gamma;
    t.B = B; t.N = N; t.C = C; t.G = G;
    dfn__gn_split(&t, dfn__gn_backward_task);
}
#endif

DFNDEF void dfn_avgpool2_forward(float *out, const float *in, int B, int H, int W, int C)
{
    int b, y, x, c, h2 = H / 2, w2 = W / 2;
    for (b = 0; b < B; b++)
        for (y = 0; y < h2; y++)
            for (x = 0; x < w2; x++) {
                const float *p = in + (((size_t)b * H + 2 * y) * W + 2 * x) * C;
                const float *q = p + (size_t)W * C;
                float *o = out + (((size_t)b * h2 + y) * w2 + x) * C;
                for (c = 0; c < C; c++) o[c] = 0.25f * ((p[c] + p[C + c]) + (q[c] + q[C + c]));
            }
}

DFNDEF void dfn_upsample2_forward(float *out, const float *in, int B, int H, int W, int C)
{
    int b, y, x, W2 = 2 * W;
    size_t cb = (size_t)C * sizeof(float);
    for (b = 0; b < B; b++)
        for (y = 0; y < 2 * H; y++)
            for (x = 0; x < W2; x++)
                DFN_MEMCPY(out + (((size_t)b * 2 * H + y) * W2 + x) * C,
                           in + (((size_t)b * H + y / 2) * W + x / 2) * C, cb);
}

#ifndef DFN_NO_TRAINING
DFNDEF void dfn_avgpool2_backward(float *din, const float *dout, int B, int H, int W, int C)
{
    int b, y, x, c, h2 = H / 2, w2 = W / 2;
    for (b = 0; b < B; b++)
        for (y = 0; y < h2; y++)
            for (x = 0; x < w2; x++) {
                float *p = din + (((size_t)b * H + 2 * y) * W + 2 * x) * C, *q = p + (size_t)W * C;
                const float *o = dout + (((size_t)b * h2 + y) * w2 + x) * C;
                for (c = 0; c < C; c++) {
                    float d = 0.25f * o[c];
                    p[c] += d; p[C + c] += d; q[c] += d; q[C + c] += d;
                }
            }
}

DFNDEF void dfn_upsample2_backward(float *din, const float *dout, int B, int H, int W, int C)
{
    int b, y, x, c, W2 = 2 * W;
    for (b = 0; b < B; b++)
        for (y = 0; y < H; y++)
            for (x = 0; x < W; x++) {
                const float *p = dout + (((size_t)b * 2 * H + 2 * y) * W2 + 2 * x) * C;
                const float *q = p + (size_t)W2 * C;
                float *d = din + (((size_t)b * H + y) * W + x) * C;
                for (c = 0; c < C; c++) d[c] += (p[c] + p[C + c]) + (q[c] + q[C + c]);
            }
}
#endif

DFNDEF void dfn_attention_forward(float *out, float *qkv, float *probs, float *o, const float *x,
                                  const float *Wqkv, const float *bqkv, const float *Wo,
                                  const float *bo, int B, int N, int C, float *work)
{
    float scale = 1.0f / DFN_SQRTF((float)C);
    int b, i, j, C3 = 3 * C;
    dfn_linear_forward(qkv, x, Wqkv, bqkv, B * N, C, C3, work);          /* [q k v] */
    for (b = 0; b < B; b++) {
        const float *q = qkv + (size_t)b * N * C3, *k = q + C, *v = q + 2 * C;
        float *P = probs + (size_t)b * N * N;
        dfn_gemm(0, 1, N, N, C, scale, q, C3, k, C3, 0.0f, P, N, work);     /* q k^T / sqrt(C) */
        for (i = 0; i < N; i++) {                                           /* softmax by rows */
            float *row = P + (size_t)i * N, mx = row[0], sum = 0.0f;
            for (j = 1; j < N; j++) mx = row[j] > mx ? row[j] : mx;
            for (j = 0; j < N; j++) sum += (row[j] = DFN_EXPF(row[j] - mx));
            for (j = 0; j < N; j++) row[j] /= sum;
        }
        dfn_gemm(0, 0, N, C, N, 1.0f, P, N, v, C3, 0.0f, o + (size_t)b * N * C, C, work);   /* P v */
    }
    dfn_linear_forward(out, o, Wo, bo, B * N, C, C, work);
}

#ifndef DFN_NO_TRAINING
DFNDEF size_t dfn_attention_scratch_size(int N, int C)
{
    return (size_t)N * ((size_t)N + 4 * (size_t)C);
}

DFNDEF void dfn_attention_backward(float *dx, float *dWqkv, float *dbqkv, float *dWo, float *dbo,
                                   const float *dout, const float *x, const float *qkv,
                                   const float *probs, const float *o, const float *Wqkv,
                                   const float *Wo, int B, int N, int C, float *scratch,
                                   float *work)
{
    float scale = 1.0f / DFN_SQRTF((float)C);
    float *dO = scratch, *dP = dO + (size_t)N * C, *dqkv = dP + (size_t)N * N;
    int b, i, j, C3 = 3 * C;
    /* out = o Wo^T + bo */
    dfn_gemm(1, 0, C, C, B * N, 1.0f, dout, C, o, C, 1.0f, dWo, C, work);
    if (dbo) dfn_bias_grad(B * N, C, dout, dbo);
    for (b = 0; b < B; b++) {
        const float *q = qkv + (size_t)b * N * C3, *k = q + C, *v = q + 2 * C;
        const float *P = probs + (size_t)b * N * N, *dout_b = dout + (size_t)b * N * C;
        dfn_gemm(0, 0, N, C, C, 1.0f, dout_b, C, Wo, C, 0.0f, dO, C, work);        /* do = dout Wo */
        dfn_gemm(0, 1, N, N, C, 1.0f, dO, C, v, C3, 0.0f, dP, N, work);            /* dP = do v^T  */
        dfn_gemm(1, 0, N, C, N, 1.0f, P, N, dO, C, 0.0f, dqkv + 2 * C, C3, work);  /* dv = P^T do  */
        for (i = 0; i < N; i++) {                      /* dS = P (dP - rowsum(dP P)) / sqrt(C) */
            const float *pr = P + (size_t)i * N;
            float *dr = dP + (size_t)i * N, dot = 0.0f;
            for (j = 0; j < N; j++) dot += dr[j] * pr[j];
            for (j = 0; j < N; j++) dr[j] = pr[j] * (dr[j] - dot) * scale;
        }
        dfn_gemm(0, 0, N, C, N, 1.0f, dP, N, k, C3, 0.0f, dqkv, C3, work);         /* dq = dS k    */
        dfn_gemm(1, 0, N, C, N, 1.0f, dP, N, q, C3, 0.0f, dqkv + C, C3, work);     /* dk = dS^T q  */
        dfn_linear_backward(dx ? dx + (size_t)b * N * C : NULL, dWqkv, dbqkv, dqkv,
                            x + (size_t)b * N * C, Wqkv, N, C, C3, work);
    }
}
#endif

/* ------------------------------------------------------------------------- */
/*  Networks: the interface                                                  */
/* ------------------------------------------------------------------------- */

/* The stored configs of the library's networks (format version 1: fixed sizes). */
#define DFN__MLP_CONFIG_FILE_BYTES 36    /* 9 values (model file version 1) */
#define DFN__CLF_CONFIG_FILE_BYTES 20    /* 5 values */
#define DFN__UNET_CONFIG_FILE_BYTES 80   /* 20 u32 (model file version 1) */

DFNDEF dfn_result dfn_net_describe(const dfn_net_ops *ops, const void *cfg, dfn_net_shape *shape)
{
    dfn_net_shape s;
    dfn_result r;
    if (!ops || !cfg || !shape) return DFN_ERR_NULL;
    if (!ops->describe) return DFN_ERR_INVALID_ARG;
    DFN_MEMSET(&s, 0, sizeof s);
    if ((r = ops->describe(cfg, &s)) != DFN_OK) return r;
    if (s.out_dim == 0) s.out_dim = s.dim;
    if (s.params == 0 || s.params > 0x7fffffffu || s.dim < 1 || s.out_dim < 1 || s.cond_dim < 0 ||
        s.num_classes < 0 ||
        !dfn__prediction_valid(s.prediction))
        return DFN_ERR_INVALID_ARG;
    *shape = s;
    return DFN_OK;
}

DFNDEF dfn_result dfn_net_init(dfn_net *net, const dfn_net_ops *ops, const void *cfg, float *params)
{
    dfn_net_shape s;
    dfn_result r;
    if (!net || !ops || !cfg || !params) return DFN_ERR_NULL;
    if (!ops->forward || !ops->forward_size || !ops->init_weights || !ops->config_save ||
        !ops->config_load || !ops->config_same || ops->config_bytes == 0 ||
        ops->config_bytes > DFN_NET_CONFIG_MAX)
        return DFN_ERR_INVALID_ARG;
    if ((r = dfn_net_describe(ops, cfg, &s)) != DFN_OK) return r;
    net->ops = ops;
    net->cfg = cfg;
    net->params = params;
    net->count = s.params;
    return DFN_OK;
}

/* A set-up network: its shape, DFN_ERR_NULL or DFN_ERR_INVALID_ARG otherwise. */
static dfn_result dfn__net_shape(const dfn_net *net, dfn_net_shape *s)
{
    dfn_result r;
    if (!net || !net->ops || !net->cfg || !net->params) return DFN_ERR_NULL;
    if ((r = dfn_net_describe(net->ops, net->cfg, s)) != DFN_OK) return r;
    return s->params == net->count ? DFN_OK : DFN_ERR_INVALID_ARG;
}

DFNDEF dfn_result dfn_net_init_weights(const dfn_net *net, dfn_rng *rng)
{
    dfn_net_shape s;
    dfn_result r;
    if (!rng) return DFN_ERR_NULL;
    if ((r = dfn__net_shape(net, &s)) != DFN_OK) return r;
    net->ops->init_weights(net, rng);
    return DFN_OK;
}

DFNDEF size_t dfn_net_forward_size(const dfn_net *net, int chunk)
{
    dfn_net_shape s;
    if (!net || !net->ops || !net->cfg || chunk < 1 || !net->ops->forward_size ||
        dfn_net_describe(net->ops, net->cfg, &s) != DFN_OK)
        return 0;
    return net->ops->forward_size(net->cfg, chunk);
}

/* t >= 0 (with t_max > 0: t <= t_max) and labels in -1..C-1 for n samples. */
static dfn_result dfn__net_check_inputs(const dfn_net_shape *s, const int *t, int t_max, const int *labels, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        if (t[i] < 0 || (t_max > 0 && t[i] > t_max)) return DFN_ERR_INVALID_ARG;
        if (labels && s->num_classes > 0 && (labels[i] < -1 || labels[i] >= s->num_classes))
            return DFN_ERR_INVALID_ARG;
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_net_forward(const dfn_net *net, float *out, const float *x, const float *cond,
                                  int cond_rows, const int *t, const int *labels, int n, void *work,
                                  size_t work_bytes)
{
    dfn_net_shape s;
    dfn_result r;
    if ((r = dfn__net_shape(net, &s)) != DFN_OK) return r;
    if (!work) return DFN_ERR_NULL;
    if (n < 0) return DFN_ERR_INVALID_ARG;
    if (n == 0) return DFN_OK;
    if (!out || !x || !t) return DFN_ERR_NULL;
    if (s.cond_dim > 0 && (!cond || cond_rows < 1)) return DFN_ERR_NULL;
    if ((r = dfn__net_check_inputs(&s, t, 0, labels, n)) != DFN_OK) return r;
    return net->ops->forward(net, out, x, cond, cond_rows, t, labels, n, work, work_bytes);
}

DFNDEF int dfn_net_predict(void *user, const float *x_t, const int *t, const int *labels, int n, float *out)
{
    const dfn_net_predictor *p = (const dfn_net_predictor *)user;
    if (!p) return (int)DFN_ERR_NULL;
    return (int)dfn_net_forward(p->net, out, x_t, p->cond, p->cond_rows, t, labels, n, p->work, p->work_bytes);
}

DFNDEF dfn_sampler_config dfn_net_sampler_config(dfn_sampler_kind kind, int n, dfn_net_predictor *p)
{
    dfn_net_shape s;
    int ok = p && p->net && p->net->ops && p->net->cfg &&
             dfn_net_describe(p->net->ops, p->net->cfg, &s) == DFN_OK;
    dfn_sampler_config c;
    ok = ok && s.out_dim == s.dim;                /* a noise network */
    c = dfn_sampler_config_default(kind, n, ok ? s.dim : 0, dfn_net_predict, p);
    if (ok) c.prediction = s.prediction;
    return c;
}


/* ------------------------------------------------------------------------- */
/*  The MLP                                                                  */
/* ------------------------------------------------------------------------- */

DFNDEF dfn_mlp_config dfn_mlp_config_default(int dim)
{
    dfn_mlp_config c;
    DFN_MEMSET(&c, 0, sizeof c);
    c.dim = dim;
    c.hidden = 128;
    c.blocks = 3;
    c.time_dim = 128;
    c.input_emb_dim = dim <= 3 ? 32 : 0;
    c.input_scale = 25.0f;
    c.num_classes = 0;
    c.act = DFN_ACT_GELU;
    c.prediction = DFN_PREDICT_EPS;
    return c;
}

/* Offsets of every tensor; returns 0 when the sizes do not fit. */
static int dfn__mlp_layout(const dfn_mlp_config *c, dfn_mlp_layout *l)
{
    double total;
    size_t H = (size_t)c->hidden, D = (size_t)c->dim;
    DFN_MEMSET(l, 0, sizeof *l);
    l->in_dim = D + D * (size_t)c->input_emb_dim + (size_t)c->time_dim;
    /* Guard every product in double before computing it in size_t. */
    total = (double)c->hidden * ((double)l->in_dim + 1) + (double)c->blocks * ((double)c->hidden + 1) * c->hidden
          + (double)c->dim * ((double)c->hidden + 1) + ((double)c->num_classes + 1) * c->time_dim;
    /* at most 2^31 floats, and 16 bytes per parameter (four blocks) must fit
       size_t on 32-bit targets too */
    if (total > 2147483647.0 || total > (double)((size_t)-1) / 16.0 - 64.0 || (double)l->in_dim > 1e8)
        return 0;
    l->w_in = 0;
    l->b_in = l->w_in + H * l->in_dim;
    l->blk = l->b_in + H;
    l->blk_stride = H * H + H;
    l->w_out = l->blk + (size_t)c->blocks * l->blk_stride;
    l->b_out = l->w_out + D * H;
    l->cls = l->b_out + D;
    l->count = l->cls + (c->num_classes > 0 ? ((size_t)c->num_classes + 1) * (size_t)c->time_dim : 0);
    return 1;
}

DFNDEF dfn_result dfn_mlp_config_check(const dfn_mlp_config *c)
{
    dfn_mlp_layout l;
    if (!c) return DFN_ERR_NULL;
    if (c->dim < 1 || c->hidden < 1 || c->blocks < 0 || c->time_dim < 2 || c->time_dim % 2 ||
        c->input_emb_dim < 0 || c->input_emb_dim % 2 || c->num_classes < 0)
        return DFN_ERR_INVALID_ARG;
    if (c->input_emb_dim > 0 && !(c->input_scale > 0.0f && dfn__finite(c->input_scale)))
        return DFN_ERR_INVALID_ARG;
    if (c->act != DFN_ACT_IDENTITY && c->act != DFN_ACT_RELU && c->act != DFN_ACT_SILU &&
        c->act != DFN_ACT_GELU)
        return DFN_ERR_INVALID_ARG;
    if (!dfn__prediction_valid(c->prediction))
        return DFN_ERR_INVALID_ARG;
    if (!dfn__mlp_layout(c, &l)) return DFN_ERR_INVALID_ARG;
    return DFN_OK;
}

DFNDEF size_t dfn_mlp_num_params(const dfn_mlp_config *cfg)
{
    dfn_mlp_layout l;
    if (dfn_mlp_config_check(cfg) != DFN_OK) return 0;
    dfn__mlp_layout(cfg, &l);
    return l.count;
}

DFNDEF dfn_result dfn_mlp_init(dfn_mlp *m, const dfn_mlp_config *cfg, float *params)
{
    dfn_result r;
    if (!m || !cfg || !params) return DFN_ERR_NULL;
    if ((r = dfn_mlp_config_check(cfg)) != DFN_OK) return r;
    m->cfg = *cfg;
    dfn__mlp_layout(cfg, &m->lay);
    m->params = params;
    return DFN_OK;
}

/* U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for count values. */
static void dfn__uniform_fill(dfn_rng *rng, float *w, size_t count, size_t fan_in)
{
    float bound = 1.0f / DFN_SQRTF((float)fan_in);
    size_t i;
    for (i = 0; i < count; i++) w[i] = (2.0f * dfn_rng_uniform(rng) - 1.0f) * bound;
}

DFNDEF dfn_result dfn_mlp_init_weights(dfn_mlp *m, dfn_rng *rng)
{
    const dfn_mlp_layout *l;
    size_t H;
    int b;
    if (!m || !m->params || !rng) return DFN_ERR_NULL;
    l = &m->lay;
    H = (size_t)m->cfg.hidden;
    dfn__uniform_fill(rng, m->params + l->w_in, H * l->in_dim + H, l->in_dim);      /* W_in, b_in */
    for (b = 0; b < m->cfg.blocks; b++)
        dfn__uniform_fill(rng, m->params + l->blk + (size_t)b * l->blk_stride, H * H + H, H);
    dfn__uniform_fill(rng, m->params + l->w_out, (size_t)m->cfg.dim * H + m->cfg.dim, H);
    if (m->cfg.num_classes > 0)
        dfn_rng_normal_fill(rng, m->params + l->cls, l->count - l->cls);
    return DFN_OK;
}

/* After a layer's product, row by row while each row is in cache:
   pre += bias, y = act(pre), then y += res (res not NULL: the residual
   path) or acc += y (acc not NULL). The bits of the separate passes
   dfn_bias_add, dfn_act_forward, dfn_vec_axpy (adding 1 x is exact). */
static void dfn__bias_act_rows(int rows, int cols, const float *bias, dfn_activation act, float *pre,
                               float *y, const float *res, float *acc)
{
    size_t r, n = (size_t)cols;
    for (r = 0; r < (size_t)rows; r++) {
        float *p = pre + r * n, *q = y + r * n;
        DFN__BEST(dfn__bias_add)(1, cols, p, bias);
        DFN__BEST(dfn__act_forward)(act, n, p, q);
        if (res) DFN__BEST(dfn__vec_axpy)(n, 1.0f, res + r * n, q);
        if (acc) DFN__BEST(dfn__vec_axpy)(n, 1.0f, q, acc + r * n);
    }
}

#ifndef DFN_NO_TRAINING
/* Where the training forward keeps its values: every layer (stride =
   B * H between layers) for the backward pass. */
typedef struct dfn__mlp_acts {
    float *x;        /* (B, in_dim) input features                              */
    float *pre;      /* layer l's pre-activation at pre + l * stride, l = 0..L  */
    float *h;        /* h_l at h + l * stride                                   */
    float *tmp;      /* B floats of scratch (the features' t as floats)         */
    size_t stride;
    float *work;     /* GEMM scratch                                            */
} dfn__mlp_acts;

/* The training memory's views (at its start; see dfn__mlp_train_layout). */
typedef struct dfn__mlp_train {
    dfn_mlp m;                           /* config and layout (params unused)    */
    dfn__mlp_acts a;                     /* activations                          */
    float *dh, *dpre, *din;              /* (B, H), (L+1, B, H), (B, in_dim) or NULL */
} dfn__mlp_train;

/* in = [x, emb(scale x_1), ..., emb(scale x_D), temb(t) + class_emb[label]];
   tf: B floats of scratch. */
static void dfn__mlp_features(const dfn_mlp *m, const float *params, float *in, float *tf,
                              const float *x, const int *t, const int *labels, int B)
{
    const dfn_mlp_config *c = &m->cfg;
    size_t ld = m->lay.in_dim, e_off = (size_t)c->dim + (size_t)c->dim * c->input_emb_dim;
    int i, j;
    for (i = 0; i < B; i++) {
        tf[i] = (float)t[i];
        for (j = 0; j < c->dim; j++) in[(size_t)i * ld + j] = x[(size_t)i * c->dim + j];
    }
    dfn_sinusoidal_embedding(in + e_off, (int)ld, tf, 1, 1.0f, B, c->time_dim);
    for (j = 0; j < c->dim && c->input_emb_dim > 0; j++)
        dfn_sinusoidal_embedding(in + c->dim + (size_t)j * c->input_emb_dim, (int)ld, x + j, c->dim,
                                 c->input_scale, B, c->input_emb_dim);
    if (c->num_classes > 0)
        for (i = 0; i < B; i++) {
            int row = labels && labels[i] >= 0 ? labels[i] : c->num_classes;
            dfn_vec_axpy((size_t)c->time_dim, 1.0f, params + m->lay.cls + (size_t)row * c->time_dim,
                         in + (size_t)i * ld + e_off);
        }
}

static void dfn__mlp_forward_batch(const dfn_mlp *m, const float *params, const dfn__mlp_acts *a,
                                   float *out, const float *x, const int *t, const int *labels, int B)
{
    const dfn_mlp_config *c = &m->cfg;
    const dfn_mlp_layout *l = &m->lay;
    int H = c->hidden, L = c->blocks, I = (int)l->in_dim, b;
    dfn__mlp_features(m, params, a->x, a->tmp, x, t, labels, B);   /* tmp: B floats of scratch */
    /* h_0 = act(W_in in + b_in) */
    dfn_gemm(0, 1, B, H, I, 1.0f, a->x, I, params + l->w_in, I, 0.0f, a->pre, H, a->work);
    dfn__bias_act_rows(B, H, params + l->b_in, c->act, a->pre, a->h, NULL, NULL);
    for (b = 1; b <= L; b++) {
        /* h_l = h_{l-1} + act(W_l h_{l-1} + b_l) */
        const float *W = params + l->blk + (size_t)(b - 1) * l->blk_stride;
        float *pre = a->pre + (size_t)b * a->stride, *h_prev = a->h + (size_t)(b - 1) * a->stride;
        dfn_gemm(0, 1, B, H, H, 1.0f, h_prev, H, W, H, 0.0f, pre, H, a->work);
        dfn__bias_act_rows(B, H, W + (size_t)H * H, c->act, pre, a->h + (size_t)b * a->stride, h_prev, NULL);
    }
    /* out = W_out h_L + b_out */
    dfn_linear_forward(out, a->h + (size_t)L * a->stride, params + l->w_out, params + l->b_out,
                       B, H, c->dim, a->work);
}
#endif /* DFN_NO_TRAINING */

/* The inference forward's buffers for up to `rows` samples. The t part of
   the first layer is factored out: pre_0 = W_a a + (W_t e + b_in), where
   a = [x, emb(scale x_1), ..., emb(scale x_D)] and e = temb(t) +
   class_emb[label] (the training forward's sum in another order). A sampler
   asks for every row at one t, so W_t e + b_in is computed once per run of
   rows with equal (t, label) instead of once per row: 22% of the default
   model's products. Each row's arithmetic depends only on that row (a run's
   vector has the same bits whichever rows share it), so a batch of B still
   equals B batches of one. */
typedef struct dfn__mlp_ibuf {
    float *a;        /* (rows, K_a) the input features without the t part   */
    float *pre, *h;  /* (rows, H)                                           */
    float *e;        /* (rows, time_dim) e of each run                      */
    float *c;        /* (rows, H) W_t e + b_in of each run                  */
    int *run;        /* (rows) the run of each row                          */
    int *cls;        /* (rows) the class-embedding row of each run          */
} dfn__mlp_ibuf;

static size_t dfn__mlp_ibuf_layout(const dfn_mlp_config *c, const dfn_mlp_layout *l, int rows,
                                   dfn__mlp_ibuf *ib, void *mem)
{
    dfn__arena ar = dfn__arena_begin(mem);
    size_t R = (size_t)rows, H = (size_t)c->hidden, Ka = l->in_dim - (size_t)c->time_dim;
    ib->a = (float *)dfn__arena_take(&ar, R * Ka * sizeof(float));
    ib->pre = (float *)dfn__arena_take(&ar, R * H * sizeof(float));
    ib->h = (float *)dfn__arena_take(&ar, R * H * sizeof(float));
    ib->e = (float *)dfn__arena_take(&ar, R * (size_t)c->time_dim * sizeof(float));
    ib->c = (float *)dfn__arena_take(&ar, R * H * sizeof(float));
    ib->run = (int *)dfn__arena_take(&ar, R * sizeof(int));
    ib->cls = (int *)dfn__arena_take(&ar, R * sizeof(int));
    return dfn__arena_size(&ar);
}

/* The class-embedding row of a label: C ("none") for -1 or no labels. */
static int dfn__mlp_class_row(const dfn_mlp_config *c, const int *labels, int i)
{
    if (c->num_classes == 0) return 0;
    return labels && labels[i] >= 0 ? labels[i] : c->num_classes;
}

/* The inputs of the inference forward into ib: a = [x, emb(scale x_1),
   ..., emb(scale x_D)] (rows of Ka), the runs of rows with equal (t,
   label), and e = temb(t) + class_emb[label] once per run (cls: the class
   embeddings). Returns the number of runs. */
static int dfn__mlp_infer_inputs(const dfn_mlp_config *c, int Ka, const dfn__mlp_ibuf *ib, const float *cls,
                                 const float *x, const int *t, const int *labels, int B)
{
    int D = c->dim, E = c->time_dim, i, j, u = 0;
    float *tf = ib->pre;                   /* free until layer 0's product */
    for (i = 0; i < B; i++)
        for (j = 0; j < D; j++) ib->a[(size_t)i * Ka + j] = x[(size_t)i * D + j];
    for (j = 0; j < D && c->input_emb_dim > 0; j++)
        dfn_sinusoidal_embedding(ib->a + D + (size_t)j * c->input_emb_dim, Ka, x + j, D,
                                 c->input_scale, B, c->input_emb_dim);
    for (i = 0; i < B; i++) {
        int row = dfn__mlp_class_row(c, labels, i);
        if (i > 0 && t[i] == t[i - 1] && row == ib->cls[ib->run[i - 1]]) {
            ib->run[i] = ib->run[i - 1];
            continue;
        }
        ib->run[i] = u;
        ib->cls[u] = row;
        tf[u++] = (float)t[i];
    }
    dfn_sinusoidal_embedding(ib->e, E, tf, 1, 1.0f, u, E);
    for (i = 0; i < u && c->num_classes > 0; i++)
        dfn_vec_axpy((size_t)E, 1.0f, cls + (size_t)ib->cls[i] * E, ib->e + (size_t)i * E);
    return u;
}

/* out (B, D) for B <= the rows ib was laid out for; work: GEMM scratch. */
static void dfn__mlp_infer(const dfn_mlp *m, const dfn__mlp_ibuf *ib, float *work, float *out,
                           const float *x, const int *t, const int *labels, int B)
{
    const dfn_mlp_config *c = &m->cfg;
    const dfn_mlp_layout *l = &m->lay;
    const float *P = m->params;
    int D = c->dim, H = c->hidden, E = c->time_dim, Ka = (int)l->in_dim - c->time_dim, i, b;
    /* a, the runs and e = temb(t) + class_emb[label] once per run; then c = W_t e + b_in */
    int u = dfn__mlp_infer_inputs(c, Ka, ib, P + l->cls, x, t, labels, B);
    dfn_gemm(0, 1, u, H, E, 1.0f, ib->e, E, P + l->w_in + Ka, (int)l->in_dim, 0.0f, ib->c, H, work);
    dfn_bias_add(u, H, ib->c, P + l->b_in);
    /* h_0 = act(W_a a + c) */
    dfn_gemm(0, 1, B, H, Ka, 1.0f, ib->a, Ka, P + l->w_in, (int)l->in_dim, 0.0f, ib->pre, H, work);
    for (i = 0; i < B; i++) {
        float *p = ib->pre + (size_t)i * H;
        DFN__BEST(dfn__vec_axpy)((size_t)H, 1.0f, ib->c + (size_t)ib->run[i] * H, p);
        DFN__BEST(dfn__act_forward)(c->act, (size_t)H, p, ib->h + (size_t)i * H);
    }
    for (b = 1; b <= c->blocks; b++) {
        /* h_l = h_{l-1} + act(W_l h_{l-1} + b_l) */
        const float *W = P + l->blk + (size_t)(b - 1) * l->blk_stride;
        dfn_gemm(0, 1, B, H, H, 1.0f, ib->h, H, W, H, 0.0f, ib->pre, H, work);
        dfn__bias_act_rows(B, H, W + (size_t)H * H, c->act, ib->pre, ib->pre, NULL, ib->h);
    }
    /* out = W_out h_L + b_out */
    dfn_linear_forward(out, ib->h, P + l->w_out, P + l->b_out, B, H, D, work);
}

/* The workspace of dfn_mlp_forward: GEMM scratch for the calling thread,
   then `slices` buffers of `rows` rows each (one per task when the rows are
   split across threads), each slice_bytes long. */
static size_t dfn__mlp_infer_place(const dfn_mlp_config *c, const dfn_mlp_layout *l, int rows, int slices,
                                   void *mem, float **work0, unsigned char **first, size_t *slice_bytes)
{
    dfn__arena ar = dfn__arena_begin(mem);
    dfn__mlp_ibuf ib;
    size_t sb = dfn__mlp_ibuf_layout(c, l, rows, &ib, NULL);
    float *w0 = (float *)dfn__arena_take(&ar, dfn_gemm_work_size());
    unsigned char *s0 = (unsigned char *)dfn__arena_take(&ar, (size_t)slices * sb);
    if (work0) *work0 = w0;
    if (first) *first = s0;
    if (slice_bytes) *slice_bytes = sb;
    return dfn__arena_size(&ar);
}

static size_t dfn__mlp_infer_size(const dfn_mlp_config *c, const dfn_mlp_layout *l, int rows, int slices)
{
    return dfn__mlp_infer_place(c, l, rows, slices, NULL, NULL, NULL, NULL);
}

DFNDEF size_t dfn_mlp_forward_size(const dfn_mlp_config *cfg, int chunk)
{
    dfn_mlp_layout l;
    if (dfn_mlp_config_check(cfg) != DFN_OK || chunk < 1) return 0;
    dfn__mlp_layout(cfg, &l);
    if ((double)chunk * ((double)l.in_dim + 4.0 * cfg->hidden + 2.0) > 1e9) return 0;
    return dfn__mlp_infer_size(cfg, &l, chunk, 1);
}

/* Labels in -1..C-1 (ignored by an unconditional net) and t >= 0. */
static dfn_result dfn__mlp_check_inputs(const dfn_mlp *m, const int *t, const int *labels, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        if (t[i] < 0) return DFN_ERR_INVALID_ARG;
        if (labels && m->cfg.num_classes > 0 && (labels[i] < -1 || labels[i] >= m->cfg.num_classes))
            return DFN_ERR_INVALID_ARG;
    }
    return DFN_OK;
}

/* Task i of a split forward: rows [i step, (i + 1) step), in chunks of
   `rows` through slice i of the workspace. */
typedef struct dfn__mlp_itask {
    const dfn_mlp *m;
    float *out, *work0;
    const float *x;
    const int *t, *labels;
    unsigned char *slices;
    size_t slice_bytes;
    int n, step, rows;
} dfn__mlp_itask;

static void dfn__mlp_infer_task(void *ctx, int task, int w)
{
    const dfn__mlp_itask *k = (const dfn__mlp_itask *)ctx;
    int D = k->m->cfg.dim, lo = task * k->step, hi = lo + k->step < k->n ? lo + k->step : k->n, i;
    dfn__mlp_ibuf ib;
    float *work = dfn__worker_work(w, k->work0);
    dfn__mlp_ibuf_layout(&k->m->cfg, &k->m->lay, k->rows, &ib, k->slices + (size_t)task * k->slice_bytes);
    for (i = lo; i < hi; i += k->rows) {
        int b = hi - i < k->rows ? hi - i : k->rows;
        size_t o = (size_t)i * D;
        dfn__mlp_infer(k->m, &ib, work, k->out + o, k->x + o, k->t + i, k->labels ? k->labels + i : NULL, b);
    }
}

DFNDEF dfn_result dfn_mlp_forward(const dfn_mlp *m, float *out, const float *x, const int *t,
                                  const int *labels, int n, void *work, size_t work_bytes)
{
    dfn__mlp_itask k;
    dfn_result r;
    size_t need;
    int tasks, T = dfn__parallel_workers();
    if (!m || !m->params || !work) return DFN_ERR_NULL;
    if (n < 0) return DFN_ERR_INVALID_ARG;
    if (n == 0) return DFN_OK;
    if (!out || !x || !t) return DFN_ERR_NULL;
    if ((r = dfn__mlp_check_inputs(m, t, labels, n)) != DFN_OK) return r;
    need = dfn_mlp_forward_size(&m->cfg, 1);
    if (need == 0 || need > work_bytes) return DFN_ERR_BUFFER_TOO_SMALL;
    /* With threads, large batches are split into one block of rows per
       thread, each through its own slice of the workspace (the same bits:
       rows are independent). Tasks: T when the workspace holds T slices. */
    tasks = dfn__worth_split((double)n * (double)m->lay.count, T) &&
            dfn__mlp_infer_size(&m->cfg, &m->lay, 1, T) <= work_bytes ? T : 1;
    k.m = m; k.out = out; k.x = x; k.t = t; k.labels = labels; k.n = n;
    k.step = (n + tasks - 1) / tasks;
    /* the largest chunk of rows each slice holds (at most step) */
    k.rows = 1;
    while (k.rows < k.step) {
        int next = k.rows > k.step / 2 ? k.step : k.rows * 2;
        if (dfn__mlp_infer_size(&m->cfg, &m->lay, next, tasks) > work_bytes) break;
        k.rows = next;
    }
    dfn__mlp_infer_place(&m->cfg, &m->lay, k.rows, tasks, work, &k.work0, &k.slices, &k.slice_bytes);
    dfn__parallel_for(tasks, dfn__mlp_infer_task, &k);
    return DFN_OK;
}

DFNDEF int dfn_mlp_predict(void *user, const float *x_t, const int *t,
                           const int *labels, int n, float *out)
{
    const dfn_mlp_predictor *p = (const dfn_mlp_predictor *)user;
    if (!p) return (int)DFN_ERR_NULL;
    return (int)dfn_mlp_forward(p->model, out, x_t, t, labels, n, p->work, p->work_bytes);
}

DFNDEF dfn_sampler_config dfn_mlp_sampler_config(dfn_sampler_kind kind, int n, dfn_mlp_predictor *p)
{
    dfn_sampler_config c = dfn_sampler_config_default(kind, n, p && p->model ? p->model->cfg.dim : 0,
                                                      dfn_mlp_predict, p);
    if (p && p->model) c.prediction = p->model->cfg.prediction;
    return c;
}

/* ------------------------------------------------------------------------- */
/*  Small weight formats (section 13) and respacing (section 11)             */
/* ------------------------------------------------------------------------- */

DFNDEF const char *dfn_weight_format_name(dfn_weight_format f)
{
    switch (f) {
    case DFN_WEIGHTS_F32: return "f32";
    case DFN_WEIGHTS_F16: return "f16";
    case DFN_WEIGHTS_I8:  return "i8";
    default:              return NULL;
    }
}

/* IEEE half (1, 5, 10) to float, exactly. */
DFNDEF float dfn_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (uint32_t)(h >> 10) & 31u, m = h & 1023u, u;
    float f;
    if (e == 31) {
        u = sign | 0x7f800000u | (m << 13);                  /* inf, NaN (payload kept) */
    } else if (e == 0) {
        if (m == 0) {
            u = sign;
        } else {                                              /* subnormal: normalize */
            e = 113;
            while (!(m & 1024u)) { m <<= 1; e--; }
            u = sign | (e << 23) | ((m & 1023u) << 13);
        }
    } else {
        u = sign | ((e + 112u) << 23) | (m << 13);
    }
    DFN_MEMCPY(&f, &u, 4);
    return f;
}

/* float to half, round to nearest even, on the bits: the float's 24-bit
   significand shifted right by the bits the half drops (13 for a normal
   half, more for a subnormal one), rounded on the dropped bits. */
DFNDEF uint16_t dfn_f32_to_f16(float v)
{
    uint32_t u, sign, e, m, shift, keep, rest, half;
    DFN_MEMCPY(&u, &v, 4);
    sign = (u >> 16) & 0x8000u;
    e = (u >> 23) & 255u;
    m = u & 0x7fffffu;
    if (e == 255) return (uint16_t)(sign | 0x7c00u | (m ? 0x200u | (m >> 13) : 0u));   /* NaN stays NaN */
    if (e > 142) return (uint16_t)(sign | 0x7c00u);          /* >= 2^16: infinity               */
    if (e < 102) return (uint16_t)sign;                      /* < 2^-25: rounds to zero          */
    m |= 0x800000u;                                          /* the implicit bit                 */
    shift = e >= 113 ? 13u : 13u + (113u - e);               /* subnormal halves drop more bits  */
    keep = m >> shift;
    rest = m & ((1u << shift) - 1u);
    half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (keep & 1u))) keep++;
    if (e >= 113) {
        /* keep holds 11 bits (implicit one included); a carry to 12 bits
           moves the exponent up, which adding into the exponent field does */
        return (uint16_t)(sign | ((((e - 112u) << 10) + (keep - 0x400u)) & 0xffffu));
    }
    return (uint16_t)(sign | keep);                          /* subnormal (a carry makes it normal) */
}

/* The scale of section 13 for a row whose largest magnitude is mx. */
static float dfn__q8_scale(float mx)
{
    float s = mx > 0.0f ? mx / 127.0f : 1.0f;
    return s > 0.0f ? s : 1.0f;          /* a max in the subnormals whose /127 underflows */
}

/* round(w / s) in double, ties away from zero, clamped to -127..127. */
static int8_t dfn__q8(float w, float s)
{
    double v = (double)w / (double)s, f;
    long k;
    if (v > 127.0) v = 127.0;
    if (v < -127.0) v = -127.0;
    f = v < 0.0 ? -v : v;
    k = (long)(f + 0.5);
    return (int8_t)(v < 0.0 ? -k : k);
}

DFNDEF dfn_result dfn_quantize_rows_i8(const float *w, int rows, int cols, int8_t *q, float *scale)
{
    int r, j;
    if ((rows > 0 && cols > 0) && (!w || !q || !scale)) return DFN_ERR_NULL;
    if (rows < 0 || cols < 0) return DFN_ERR_INVALID_ARG;
    for (r = 0; r < rows; r++) {
        const float *row = w + (size_t)r * cols;
        float mx = 0.0f, s;
        for (j = 0; j < cols; j++) {
            float a = row[j] < 0.0f ? -row[j] : row[j];
            if (!dfn__finite(row[j])) return DFN_ERR_INVALID_ARG;
            if (a > mx) mx = a;
        }
        /* scale_r = max_j |W_rj| / 127, 1 for an all-zero row (section 13) */
        scale[r] = s = dfn__q8_scale(mx);
        for (j = 0; j < cols; j++) q[(size_t)r * cols + j] = dfn__q8(row[j], s);
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_qmlp_sizes_of(const dfn_mlp_config *cfg, dfn_weight_format f, dfn_qmlp_sizes *s)
{
    dfn_mlp_layout l;
    size_t H, D, L, per;
    if (!cfg || !s) return DFN_ERR_NULL;
    if (dfn_mlp_config_check(cfg) != DFN_OK || !dfn_weight_format_name(f)) return DFN_ERR_INVALID_ARG;
    dfn__mlp_layout(cfg, &l);
    H = (size_t)cfg->hidden; D = (size_t)cfg->dim; L = (size_t)cfg->blocks;
    per = f == DFN_WEIGHTS_I8 ? 1 : f == DFN_WEIGHTS_F16 ? 2 : 4;
    s->weights = H * l.in_dim + L * H * H + D * H;
    s->weight_bytes = s->weights * per;
    s->scales = f == DFN_WEIGHTS_I8 ? H + L * H + D : 0;
    s->floats = l.count - s->weights;
    s->bytes = s->weight_bytes + 4 * (s->scales + s->floats);
    return DFN_OK;
}

DFNDEF dfn_result dfn_qmlp_init(dfn_qmlp *q, const dfn_mlp_config *cfg, dfn_weight_format f,
                                const void *weights, const float *scales, const float *floats)
{
    dfn_qmlp_sizes s;
    dfn_result r;
    if (!q || !cfg || !weights || !floats || (f == DFN_WEIGHTS_I8 && !scales)) return DFN_ERR_NULL;
    if ((r = dfn_qmlp_sizes_of(cfg, f, &s)) != DFN_OK) return r;
    q->cfg = *cfg;
    dfn__mlp_layout(cfg, &q->lay);
    q->format = f;
    q->weights = weights;
    q->scales = f == DFN_WEIGHTS_I8 ? scales : NULL;
    q->floats = floats;
    return DFN_OK;
}

/* The matrices of the float layout in storage order: matrix k (0 = W_in,
   1..L the blocks, L + 1 = W_out) at params + *w_off with *rows rows of
   *cols; its bias at params + *b_off. */
static void dfn__qmlp_matrix(const dfn_mlp_config *c, const dfn_mlp_layout *l, int k, size_t *w_off,
                             size_t *b_off, int *rows, int *cols)
{
    if (k == 0) {
        *w_off = l->w_in; *b_off = l->b_in; *rows = c->hidden; *cols = (int)l->in_dim;
    } else if (k <= c->blocks) {
        *w_off = l->blk + (size_t)(k - 1) * l->blk_stride;
        *b_off = *w_off + (size_t)c->hidden * c->hidden;
        *rows = c->hidden; *cols = c->hidden;
    } else {
        *w_off = l->w_out; *b_off = l->b_out; *rows = c->dim; *cols = c->hidden;
    }
}

DFNDEF dfn_result dfn_qmlp_quantize(const dfn_mlp *m, dfn_weight_format f, void *weights, float *scales,
                                    float *floats)
{
    const dfn_mlp_config *c;
    size_t wo = 0, so = 0, fo = 0, i;
    int k;
    if (!m || !m->params || !weights || !floats || (f == DFN_WEIGHTS_I8 && !scales)) return DFN_ERR_NULL;
    if (!dfn_weight_format_name(f)) return DFN_ERR_INVALID_ARG;
    c = &m->cfg;
    for (k = 0; k <= c->blocks + 1; k++) {
        size_t w_off, b_off, n;
        int rows, cols;
        const float *W;
        dfn_result r;
        dfn__qmlp_matrix(c, &m->lay, k, &w_off, &b_off, &rows, &cols);
        W = m->params + w_off;
        n = (size_t)rows * cols;
        if (f == DFN_WEIGHTS_I8) {
            if ((r = dfn_quantize_rows_i8(W, rows, cols, (int8_t *)weights + wo, scales + so)) != DFN_OK)
                return r;
            so += (size_t)rows;
        } else {
            for (i = 0; i < n; i++) {
                uint16_t h;
                if (!dfn__finite(W[i])) return DFN_ERR_INVALID_ARG;
                if (f == DFN_WEIGHTS_F32) { ((float *)weights)[wo + i] = W[i]; continue; }
                h = dfn_f32_to_f16(W[i]);
                if ((h & 0x7c00u) == 0x7c00u) return DFN_ERR_INVALID_ARG;   /* beyond the half range */
                ((uint16_t *)weights)[wo + i] = h;
            }
        }
        wo += n;
        for (i = 0; i < (size_t)rows; i++) floats[fo + i] = m->params[b_off + i];
        fo += (size_t)rows;
    }
    for (i = m->lay.cls; i < m->lay.count; i++) floats[fo++] = m->params[i];   /* class embeddings */
    return DFN_OK;
}

/* Entry (r, j) of matrix `base` (its first entry's index in the storage
   array; row stride ld) as the forward pass reads it. */
static float dfn__qmlp_weight(const dfn_qmlp *q, size_t base, int ld, int r, int j)
{
    size_t i = base + (size_t)r * ld + (size_t)j;
    switch (q->format) {
    case DFN_WEIGHTS_I8:  return (float)((const int8_t *)q->weights)[i];
    case DFN_WEIGHTS_F16: return dfn_f16_to_f32(((const uint16_t *)q->weights)[i]);
    default:              return ((const float *)q->weights)[i];
    }
}

DFNDEF dfn_result dfn_qmlp_dequantize(const dfn_qmlp *q, dfn_mlp *m)
{
    size_t wo = 0, so = 0, fo = 0, i;
    int k, r, j;
    if (!q || !m || !m->params || !q->weights || !q->floats) return DFN_ERR_NULL;
    if (m->lay.count != q->lay.count || m->cfg.hidden != q->cfg.hidden || m->cfg.blocks != q->cfg.blocks ||
        m->cfg.dim != q->cfg.dim)
        return DFN_ERR_MISMATCH;
    for (k = 0; k <= q->cfg.blocks + 1; k++) {
        size_t w_off, b_off;
        int rows, cols;
        dfn__qmlp_matrix(&q->cfg, &q->lay, k, &w_off, &b_off, &rows, &cols);
        for (r = 0; r < rows; r++) {
            float s = q->format == DFN_WEIGHTS_I8 ? q->scales[so + (size_t)r] : 1.0f;
            for (j = 0; j < cols; j++)
                m->params[w_off + (size_t)r * cols + j] = s * dfn__qmlp_weight(q, wo, cols, r, j);
            m->params[b_off + (size_t)r] = q->floats[fo + (size_t)r];
        }
        wo += (size_t)rows * cols;
        so += q->format == DFN_WEIGHTS_I8 ? (size_t)rows : 0;
        fo += (size_t)rows;
    }
    for (i = q->lay.cls; i < q->lay.count; i++) m->params[i] = q->floats[fo++];
    return DFN_OK;
}

/* y (B, rows) = x (B, K) times columns [j0, j0 + K) of the stored matrix at
   `base` (row stride ld, scales from sc, or none), transposed:
   y_br = s_r * sum_j w_rj x_bj, the sum in order j = 0..K-1. With acc, y
   is added to (y_br += that), else overwritten. The reference kernel (and
   the only one: on the devices this path is for there are no vector units
   worth a second version). */
static void dfn__qlinear(const dfn_qmlp *q, size_t base, int ld, int j0, const float *sc, int rows, int K,
                         const float *x, int ldx, int B, float *y, int ldy, int acc)
{
    int b, r, j;
    for (b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * ldx;
        float *yb = y + (size_t)b * ldy;
        for (r = 0; r < rows; r++) {
            float sum = 0.0f, v;
            switch (q->format) {
            case DFN_WEIGHTS_I8: {
                const int8_t *w = (const int8_t *)q->weights + base + (size_t)r * ld + j0;
                for (j = 0; j < K; j++) sum += (float)w[j] * xb[j];
                break;
            }
            case DFN_WEIGHTS_F16: {
                const uint16_t *w = (const uint16_t *)q->weights + base + (size_t)r * ld + j0;
                for (j = 0; j < K; j++) sum += dfn_f16_to_f32(w[j]) * xb[j];
                break;
            }
            default: {
                const float *w = (const float *)q->weights + base + (size_t)r * ld + j0;
                for (j = 0; j < K; j++) sum += w[j] * xb[j];
                break;
            }
            }
            v = sc ? sc[r] * sum : sum;
            yb[r] = acc ? yb[r] + v : v;
        }
    }
}

/* The forward pass's buffers for up to `rows` rows (the float path's
   inference layout without its GEMM scratch). */
DFNDEF size_t dfn_qmlp_forward_size(const dfn_mlp_config *cfg, int chunk)
{
    dfn_mlp_layout l;
    dfn__mlp_ibuf ib;
    if (dfn_mlp_config_check(cfg) != DFN_OK || chunk < 1) return 0;
    dfn__mlp_layout(cfg, &l);
    if ((double)chunk * ((double)l.in_dim + 4.0 * cfg->hidden + 2.0) > 1e9) return 0;
    return dfn__mlp_ibuf_layout(cfg, &l, chunk, &ib, NULL);
}

/* out (B, D) for B <= the rows ib holds: the float path's arithmetic
   (dfn__mlp_infer: the t part of the first layer once per run of rows with
   equal t and label) with the stored weights. */
static void dfn__qmlp_infer(const dfn_qmlp *q, const dfn__mlp_ibuf *ib, float *out, const float *x,
                            const int *t, const int *labels, int B)
{
    const dfn_mlp_config *c = &q->cfg;
    const float *F = q->floats, *S = q->scales;
    int D = c->dim, H = c->hidden, E = c->time_dim, I = (int)q->lay.in_dim, Ka = I - E, i, b, u;
    size_t wb = (size_t)H * I, fb = (size_t)H, sb = (size_t)H;    /* past W_in, b_in, its scales */
    size_t cls = (size_t)H * (c->blocks + 1) + (size_t)D;          /* class embeddings in floats */
    u = dfn__mlp_infer_inputs(c, Ka, ib, F + cls, x, t, labels, B);
    /* c = W_t e + b_in per run; h_0 = act(W_a a + c) */
    dfn__qlinear(q, 0, I, Ka, S, H, E, ib->e, E, u, ib->c, H, 0);
    dfn_bias_add(u, H, ib->c, F);
    dfn__qlinear(q, 0, I, 0, S, H, Ka, ib->a, Ka, B, ib->pre, H, 0);
    for (i = 0; i < B; i++) {
        float *p = ib->pre + (size_t)i * H;
        dfn_vec_axpy((size_t)H, 1.0f, ib->c + (size_t)ib->run[i] * H, p);
        dfn_act_forward(c->act, (size_t)H, p, ib->h + (size_t)i * H);
    }
    for (b = 1; b <= c->blocks; b++) {
        /* h_l = h_{l-1} + act(W_l h_{l-1} + b_l) */
        dfn__qlinear(q, wb, H, 0, S ? S + sb : NULL, H, H, ib->h, H, B, ib->pre, H, 0);
        dfn__bias_act_rows(B, H, F + fb, c->act, ib->pre, ib->pre, NULL, ib->h);
        wb += (size_t)H * H; fb += (size_t)H; sb += (size_t)H;
    }
    /* out = W_out h_L + b_out */
    dfn__qlinear(q, wb, H, 0, S ? S + sb : NULL, D, H, ib->h, H, B, out, D, 0);
    dfn_bias_add(B, D, out, F + fb);
}

DFNDEF dfn_result dfn_qmlp_forward(const dfn_qmlp *q, float *out, const float *x, const int *t,
                                   const int *labels, int n, void *work, size_t work_bytes)
{
    dfn__mlp_ibuf ib;
    dfn_mlp view;
    dfn_result r;
    int rows = 1, i;
    if (!q || !q->weights || !q->floats || !work) return DFN_ERR_NULL;
    if (n < 0) return DFN_ERR_INVALID_ARG;
    if (n == 0) return DFN_OK;
    if (!out || !x || !t) return DFN_ERR_NULL;
    view.cfg = q->cfg;
    if ((r = dfn__mlp_check_inputs(&view, t, labels, n)) != DFN_OK) return r;
    if (dfn_qmlp_forward_size(&q->cfg, 1) > work_bytes) return DFN_ERR_BUFFER_TOO_SMALL;
    while (rows < n && dfn_qmlp_forward_size(&q->cfg, rows * 2 < n ? rows * 2 : n) <= work_bytes)
        rows = rows * 2 < n ? rows * 2 : n;
    dfn__mlp_ibuf_layout(&q->cfg, &q->lay, rows, &ib, work);
    for (i = 0; i < n; i += rows) {
        int b = n - i < rows ? n - i : rows;
        size_t o = (size_t)i * q->cfg.dim;
        dfn__qmlp_infer(q, &ib, out + o, x + o, t + i, labels ? labels + i : NULL, b);
    }
    return DFN_OK;
}

DFNDEF int dfn_qmlp_predict(void *user, const float *x_t, const int *t, const int *labels, int n, float *out)
{
    const dfn_qmlp_predictor *p = (const dfn_qmlp_predictor *)user;
    if (!p) return (int)DFN_ERR_NULL;
    return (int)dfn_qmlp_forward(p->model, out, x_t, t, labels, n, p->work, p->work_bytes);
}

DFNDEF dfn_sampler_config dfn_qmlp_sampler_config(dfn_sampler_kind kind, int n, dfn_qmlp_predictor *p)
{
    dfn_sampler_config c = dfn_sampler_config_default(kind, n, p && p->model ? p->model->cfg.dim : 0,
                                                      dfn_qmlp_predict, p);
    if (p && p->model) c.prediction = p->model->cfg.prediction;
    return c;
}

DFNDEF dfn_result dfn_schedule_respace(const dfn_schedule *s, const int *tau, int S, float *betas)
{
    int i;
    if (!s || !s->alphabar || !tau || !betas) return DFN_ERR_NULL;
    if (S < 1 || tau[0] != 0 || s->process == DFN_PROCESS_FLOW) return DFN_ERR_INVALID_ARG;
    for (i = 1; i <= S; i++)
        if (tau[i] <= tau[i - 1] || tau[i] > s->T) return DFN_ERR_INVALID_ARG;
    if (!(s->alphabar[tau[S]] > 0.0f)) return DFN_ERR_INVALID_ARG;
    for (i = 1; i <= S; i++) {
        /* beta'_i = 1 - alphabar_{tau_i} / alphabar_{tau_{i-1}} */
        double b = 1.0 - (double)s->alphabar[tau[i]] / (double)s->alphabar[tau[i - 1]];
        float f = (float)b;
        if (!(f > 0.0f && f < 1.0f)) return DFN_ERR_INVALID_ARG;   /* equal alphabars: no step */
        betas[i - 1] = f;
    }
    return DFN_OK;
}

DFNDEF int dfn_respaced_predict(void *user, const float *x_t, const int *t, const int *labels, int n,
                                float *out)
{
    const dfn_respaced_predictor *p = (const dfn_respaced_predictor *)user;
    int i;
    if (!p || !p->predict || !p->tau || !p->t_buf || !t) return (int)DFN_ERR_NULL;
    if (n > p->n) return (int)DFN_ERR_BUFFER_TOO_SMALL;
    for (i = 0; i < n; i++) {
        if (t[i] < 0 || t[i] > p->S) return (int)DFN_ERR_INVALID_ARG;
        p->t_buf[i] = p->tau[t[i]];
    }
    return p->predict(p->user, x_t, p->t_buf, labels, n, out);
}


/* The MLP's dfn_net operations. */
static dfn_mlp dfn__mlp_of(const dfn_net *net)
{
    dfn_mlp m;
    m.cfg = *(const dfn_mlp_config *)net->cfg;
    dfn__mlp_layout(&m.cfg, &m.lay);
    m.params = net->params;
    return m;
}

static dfn_result dfn__mlp_describe(const void *cfg, dfn_net_shape *s)
{
    const dfn_mlp_config *c = (const dfn_mlp_config *)cfg;
    dfn_result r = dfn_mlp_config_check(c);
    if (r != DFN_OK) return r;
    s->params = dfn_mlp_num_params(c);
    s->dim = s->out_dim = c->dim;
    s->cond_dim = 0;
    s->num_classes = c->num_classes;
    s->prediction = c->prediction;
    return DFN_OK;
}

static void dfn__mlp_net_init_weights(const dfn_net *net, dfn_rng *rng)
{
    dfn_mlp m = dfn__mlp_of(net);
    dfn_mlp_init_weights(&m, rng);
}

static size_t dfn__mlp_net_forward_size(const void *cfg, int chunk)
{
    return dfn_mlp_forward_size((const dfn_mlp_config *)cfg, chunk);
}

static dfn_result dfn__mlp_net_forward(const dfn_net *net, float *out, const float *x, const float *cond,
                                       int cond_rows, const int *t, const int *labels, int n, void *work,
                                       size_t work_bytes)
{
    dfn_mlp m = dfn__mlp_of(net);
    (void)cond;
    (void)cond_rows;
    return dfn_mlp_forward(&m, out, x, t, labels, n, work, work_bytes);
}

#ifndef DFN_NO_TRAINING
/* The MLP's training pass, split for threads in three parallel-fors whose
   results do not depend on the split: (1) the forward pass, block of rows by
   block of rows; (2) the backward pass of the activations, dh and dpre,
   which is also row by row; (3) the weight gradients dW = dpre^T h and
   db = sum of the rows of dpre, one block of output rows of one layer per
   task (each element sums over every row of the batch in the same order,
   whatever the blocks). */
typedef struct dfn__mlp_ttask {
    const dfn_mlp *m;
    const float *P;
    float *G;
    const dfn__mlp_train *b;
    const float *x, *dout;          /* x_t and d loss / d out (B, D)             */
    float *out;
    const int *t, *labels;
    int B, step, tasks;
} dfn__mlp_ttask;

/* Tasks for B rows of the MLP: one per thread when the batch is worth it. */
static int dfn__mlp_row_tasks(const dfn_mlp *m, int B)
{
    int T = dfn__parallel_workers();
    return dfn__worth_split((double)B * (double)m->lay.count, T) ? T : 1;
}

/* Rows [task step, (task + 1) step) of the batch, clipped; 0 when empty. */
static int dfn__task_rows(int task, int step, int B, int *lo)
{
    int hi = (task + 1) * step < B ? (task + 1) * step : B;
    *lo = task * step;
    return hi > *lo ? hi - *lo : 0;
}

static void dfn__mlp_forward_task(void *ctx, int task, int w)
{
    const dfn__mlp_ttask *k = (const dfn__mlp_ttask *)ctx;
    const dfn__mlp_train *b = k->b;
    size_t H = (size_t)k->m->cfg.hidden, D = (size_t)k->m->cfg.dim, o;
    dfn__mlp_acts a = b->a;
    int lo, n = dfn__task_rows(task, k->step, k->B, &lo);
    if (n == 0) return;
    o = (size_t)lo;
    a.x += o * k->m->lay.in_dim;
    a.pre += o * H;
    a.h += o * H;
    a.tmp += o * H;
    a.work = dfn__worker_work(w, b->a.work);
    dfn__mlp_forward_batch(k->m, k->P, &a, k->out + o * D, k->x + o * D, k->t + lo,
                           k->labels ? k->labels + lo : NULL, n);
}

/* (2) for rows lo .. lo+n-1: dpre_k (into b->dpre + k stride) for every
   layer, and din when the net has classes. */
static void dfn__mlp_backward_task(void *ctx, int task, int w)
{
    const dfn__mlp_ttask *k = (const dfn__mlp_ttask *)ctx;
    const dfn_mlp_config *c = &k->m->cfg;
    const dfn_mlp_layout *l = &k->m->lay;
    const dfn__mlp_train *b = k->b;
    int H = c->hidden, D = c->dim, I = (int)l->in_dim, lo, j, n = dfn__task_rows(task, k->step, k->B, &lo);
    size_t o = (size_t)lo * H, nH;
    float *dh = b->dh + o, *work = dfn__worker_work(w, b->a.work);
    if (n == 0) return;
    nH = (size_t)n * H;
    /* out = W_out h_L + b_out:  dh_L = dout W_out */
    dfn_gemm(0, 0, n, H, D, 1.0f, k->dout + (size_t)lo * D, D, k->P + l->w_out, H, 0.0f, dh, H, work);
    for (j = c->blocks; j >= 0; j--) {
        /* h_j = h_{j-1} + act(pre_j) (h_0 = act(pre_0)): dpre_j = dh_j act'(pre_j) */
        float *dpre = b->dpre + (size_t)j * b->a.stride + o;
        dfn_act_backward(c->act, nH, b->a.pre + (size_t)j * b->a.stride + o, dh, dpre);
        if (j > 0)     /* pre_j = W_j h_{j-1} + b_j:  dh_{j-1} = dh_j + dpre_j W_j */
            dfn_gemm(0, 0, n, H, H, 1.0f, dpre, H, k->P + l->blk + (size_t)(j - 1) * l->blk_stride, H,
                     1.0f, dh, H, work);
    }
    /* pre_0 = W_in in + b_in:  din = dpre_0 W_in */
    if (b->din)
        dfn_gemm(0, 0, n, I, H, 1.0f, b->dpre + o, H, k->P + l->w_in, I, 0.0f, b->din + (size_t)lo * I, I, work);
}

/* (3) Layer j (0: input, 1..L: blocks, L + 1: output) as (O, I) with its
   gradient, dpre and input h in the caller's views. */
static void dfn__mlp_layer_grads(const dfn__mlp_ttask *k, int j, int *O, int *I, float **dW, float **db,
                                 const float **dpre, const float **in)
{
    const dfn_mlp_layout *l = &k->m->lay;
    const dfn__mlp_train *b = k->b;
    int H = k->m->cfg.hidden, L = k->m->cfg.blocks;
    if (j == 0) {
        *O = H; *I = (int)l->in_dim; *dW = k->G + l->w_in; *db = k->G + l->b_in;
        *dpre = b->dpre; *in = b->a.x;
    } else if (j <= L) {
        *O = H; *I = H; *dW = k->G + l->blk + (size_t)(j - 1) * l->blk_stride; *db = *dW + (size_t)H * H;
        *dpre = b->dpre + (size_t)j * b->a.stride; *in = b->a.h + (size_t)(j - 1) * b->a.stride;
    } else {
        *O = k->m->cfg.dim; *I = H; *dW = k->G + l->w_out; *db = k->G + l->b_out;
        *dpre = k->dout; *in = b->a.h + (size_t)L * b->a.stride;
    }
}

/* Output rows of layer j's dW per task: a share per task (at least 16). */
static int dfn__mlp_grad_rows(const dfn__mlp_ttask *k, int j)
{
    int O = j == k->m->cfg.blocks + 1 ? k->m->cfg.dim : k->m->cfg.hidden, r = (O + k->tasks - 1) / k->tasks;
    return r < 16 ? 16 : r;
}

static int dfn__mlp_grad_blocks(const dfn__mlp_ttask *k, int j)
{
    int O = j == k->m->cfg.blocks + 1 ? k->m->cfg.dim : k->m->cfg.hidden, r = dfn__mlp_grad_rows(k, j);
    return (O + r - 1) / r;
}

static void dfn__mlp_grad_task(void *ctx, int task, int w)
{
    const dfn__mlp_ttask *k = (const dfn__mlp_ttask *)ctx;
    const float *dpre, *in;
    float *dW, *db;
    int j = 0, O, I, r0, rows, r;
    while (task >= dfn__mlp_grad_blocks(k, j)) task -= dfn__mlp_grad_blocks(k, j++);
    dfn__mlp_layer_grads(k, j, &O, &I, &dW, &db, &dpre, &in);
    rows = dfn__mlp_grad_rows(k, j);
    r0 = task * rows;
    rows = O - r0 < rows ? O - r0 : rows;
    /* dW[r0 .. r0+rows-1] += dpre[:, r0 ..]^T in;  db[r0 ..] += sum over the batch of dpre[:, r0 ..] */
    dfn_gemm(1, 0, rows, I, k->B, 1.0f, dpre + r0, O, in, I, 1.0f, dW + (size_t)r0 * I, I,
             dfn__worker_work(w, k->b->a.work));
    /* row by row through the SIMD kernel (1 x + y is the sum, rounded once):
       gcc -O2 left the plain loop scalar, 7% of a batch-256 step */
    for (r = 0; r < k->B; r++)
        DFN__BEST(dfn__vec_axpy)((size_t)rows, 1.0f, dpre + (size_t)r * O + r0, db + r0);
}

/* The MLP's training memory for a batch: its views, laid out once
   (train_bind), then the activations. */
static size_t dfn__mlp_train_layout(const dfn_mlp_config *mc, int batch, void *mem)
{
    dfn__arena ar = dfn__arena_begin(mem);
    dfn__mlp_train *st = (dfn__mlp_train *)dfn__arena_take(&ar, sizeof(dfn__mlp_train));
    dfn__mlp_train probe, *b = st ? st : &probe;
    size_t B = (size_t)batch, H = (size_t)mc->hidden, BH = B * H * sizeof(float), L1 = (size_t)mc->blocks + 1;
    dfn__mlp_layout(mc, &b->m.lay);
    b->m.cfg = *mc;
    b->m.params = NULL;
    if (!st && (double)B * ((double)b->m.lay.in_dim * 2 + ((double)mc->blocks + 3) * 2 * (double)H) > 1e9)
        return 0;
    b->a.x = (float *)dfn__arena_take(&ar, B * b->m.lay.in_dim * sizeof(float));
    b->a.pre = (float *)dfn__arena_take(&ar, L1 * BH);
    b->a.h = (float *)dfn__arena_take(&ar, L1 * BH);
    b->a.stride = B * H;
    b->a.work = (float *)dfn__arena_take(&ar, dfn_gemm_work_size());
    b->dh = (float *)dfn__arena_take(&ar, BH);
    b->dpre = (float *)dfn__arena_take(&ar, L1 * BH);     /* dpre_j for every layer */
    b->a.tmp = b->dh;                    /* free until the backward pass starts */
    b->din = mc->num_classes > 0 ? (float *)dfn__arena_take(&ar, B * b->m.lay.in_dim * sizeof(float)) : NULL;
    return dfn__arena_size(&ar);
}

static size_t dfn__mlp_train_size(const void *cfg, int batch)
{
    return dfn__mlp_train_layout((const dfn_mlp_config *)cfg, batch, NULL);
}

static void dfn__mlp_train_bind(const void *cfg, int batch, void *mem)
{
    dfn__mlp_train_layout((const dfn_mlp_config *)cfg, batch, mem);
}

static void dfn__mlp_ttask_of(dfn__mlp_ttask *k, const dfn_net *net, void *mem, int B)
{
    int tasks;
    DFN_MEMSET(k, 0, sizeof *k);
    k->b = (const dfn__mlp_train *)dfn__arena_begin(mem).base;
    k->m = &k->b->m;
    k->P = net->params;
    k->B = B;
    tasks = dfn__mlp_row_tasks(k->m, B);
    k->step = (B + tasks - 1) / tasks;
    k->tasks = tasks;
}

static void dfn__mlp_train_forward(const dfn_net *net, void *mem, int batch, float *out, const float *x,
                                   const float *cond, const int *t, const int *labels)
{
    dfn__mlp_ttask k;
    (void)cond;
    dfn__mlp_ttask_of(&k, net, mem, batch);
    k.out = out; k.x = x; k.t = t; k.labels = labels;
    dfn__parallel_for(k.tasks, dfn__mlp_forward_task, &k);
}

/* The MLP's backward pass after its forward on the same memory: gradients
   added into G given dout. */
static void dfn__mlp_train_backward(const dfn_net *net, void *mem, int batch, float *G, const float *dout,
                                    const int *labels)
{
    const dfn_mlp_config *c;
    const dfn__mlp_train *b;
    dfn__mlp_ttask k;
    int i, j, jobs = 0, B = batch;
    dfn__mlp_ttask_of(&k, net, mem, batch);
    k.G = G; k.dout = dout; k.labels = labels;
    b = k.b;
    c = &k.m->cfg;
    dfn__parallel_for(k.tasks, dfn__mlp_backward_task, &k);
    for (j = 0; j <= c->blocks + 1; j++) jobs += dfn__mlp_grad_blocks(&k, j);
    dfn__parallel_for(jobs, dfn__mlp_grad_task, &k);
    if (b->din) {
        /* the class embedding was added to the t-embedding part of in */
        size_t e_off = (size_t)c->dim + (size_t)c->dim * c->input_emb_dim;
        for (i = 0; i < B; i++)
            dfn_vec_axpy((size_t)c->time_dim, 1.0f, b->din + (size_t)i * k.m->lay.in_dim + e_off,
                         G + k.m->lay.cls + (size_t)dfn__mlp_class_row(c, labels, i) * c->time_dim);
    }
}

#endif /* DFN_NO_TRAINING */

/* The stored config (format version 1): 9 values. */
static size_t dfn__mlp_config_save(const void *cfg, unsigned char *buf)
{
    const dfn_mlp_config *c = (const dfn_mlp_config *)cfg;
    dfn__wbuf w;
    dfn__wbuf_init(&w, buf, buf ? DFN__MLP_CONFIG_FILE_BYTES : 0);
    dfn__put_u32(&w, (uint32_t)c->dim);
    dfn__put_u32(&w, (uint32_t)c->hidden);
    dfn__put_u32(&w, (uint32_t)c->blocks);
    dfn__put_u32(&w, (uint32_t)c->time_dim);
    dfn__put_u32(&w, (uint32_t)c->input_emb_dim);
    dfn__put_f32(&w, c->input_scale);
    dfn__put_u32(&w, (uint32_t)c->num_classes);
    dfn__put_u32(&w, (uint32_t)c->act);
    dfn__put_u32(&w, (uint32_t)c->prediction);
    return w.len;
}

static dfn_result dfn__mlp_config_load(void *cfg, const unsigned char *buf, size_t len)
{
    dfn_mlp_config *c = (dfn_mlp_config *)cfg;
    dfn__rbuf r;
    DFN_MEMSET(c, 0, sizeof *c);
    dfn__rbuf_init(&r, buf, len);
    c->dim = (int)dfn__get_i32(&r);
    c->hidden = (int)dfn__get_i32(&r);
    c->blocks = (int)dfn__get_i32(&r);
    c->time_dim = (int)dfn__get_i32(&r);
    c->input_emb_dim = (int)dfn__get_i32(&r);
    c->input_scale = dfn__get_f32(&r);
    c->num_classes = (int)dfn__get_i32(&r);
    c->act = (dfn_activation)dfn__get_u32(&r);
    c->prediction = (dfn_prediction)dfn__get_u32(&r);
    return r.err || r.pos != len ? DFN_ERR_FORMAT : DFN_OK;
}

static int dfn__mlp_config_same(const void *pa, const void *pb)
{
    const dfn_mlp_config *a = (const dfn_mlp_config *)pa, *b = (const dfn_mlp_config *)pb;
    return a->dim == b->dim && a->hidden == b->hidden && a->blocks == b->blocks &&
           a->time_dim == b->time_dim && a->input_emb_dim == b->input_emb_dim &&
           (a->input_emb_dim == 0 || a->input_scale == b->input_scale) &&
           a->num_classes == b->num_classes && a->act == b->act && a->prediction == b->prediction;
}


/* The MLP's named tensors (manual section 9): its PyTorch twin's state_dict. */
static void dfn__nt_set(dfn_net_tensor *o, const char *a, int k, const char *b, size_t off, int conv,
                        int ndim, int s0, int s1, int s2, int s3)
{
    char *p = o->name;
    int i, n = 0;
    for (; *a; a++) p[n++] = *a;
    if (k >= 0) {
        char d[12];
        int m = 0;
        do { d[m++] = (char)('0' + k % 10); k /= 10; } while (k);
        while (m) p[n++] = d[--m];
        p[n++] = '.';
    }
    for (; *b; b++) p[n++] = *b;
    p[n] = 0;
    o->ndim = ndim;
    o->shape[0] = s0; o->shape[1] = s1; o->shape[2] = s2; o->shape[3] = s3;
    for (i = ndim; i < 4; i++) o->shape[i] = 0;
    o->count = 1;
    for (i = 0; i < ndim; i++) o->count *= (size_t)o->shape[i];
    o->offset = off;
    o->conv = conv;
}

static int dfn__mlp_tensor(const void *cfgv, int i, dfn_net_tensor *o)
{
    const dfn_mlp_config *c = (const dfn_mlp_config *)cfgv;
    dfn_mlp_layout l;
    int H = c->hidden, L = c->blocks, n = 2 * L + 4 + (c->num_classes > 0);
    if (!dfn__mlp_layout(c, &l)) return -1;
    if (!o || i < 0 || i >= n) return n;
    if (i == 0) dfn__nt_set(o, "inp.weight", -1, "", l.w_in, 0, 2, H, (int)l.in_dim, 0, 0);
    else if (i == 1) dfn__nt_set(o, "inp.bias", -1, "", l.b_in, 0, 1, H, 0, 0, 0);
    else if (i < 2 + 2 * L) {
        int b = (i - 2) / 2;
        size_t at = l.blk + (size_t)b * l.blk_stride;
        if ((i - 2) % 2 == 0) dfn__nt_set(o, "blocks.", b, "weight", at, 0, 2, H, H, 0, 0);
        else dfn__nt_set(o, "blocks.", b, "bias", at + (size_t)H * H, 0, 1, H, 0, 0, 0);
    } else if (i == 2 + 2 * L) dfn__nt_set(o, "out.weight", -1, "", l.w_out, 0, 2, c->dim, H, 0, 0);
    else if (i == 3 + 2 * L) dfn__nt_set(o, "out.bias", -1, "", l.b_out, 0, 1, c->dim, 0, 0, 0);
    else dfn__nt_set(o, "class_emb.weight", -1, "", l.cls, 0, 2, c->num_classes + 1, c->time_dim, 0, 0);
    return n;
}

static const dfn_net_ops dfn__mlp_ops = {
    DFN_NET_MLP, "mlp", sizeof(dfn_mlp_config), dfn__mlp_describe, dfn__mlp_net_init_weights,
    dfn__mlp_net_forward_size, dfn__mlp_net_forward,
#ifndef DFN_NO_TRAINING
    dfn__mlp_train_size, dfn__mlp_train_bind, dfn__mlp_train_forward, dfn__mlp_train_backward,
#else
    NULL, NULL, NULL, NULL,
#endif
    dfn__mlp_config_save, dfn__mlp_config_load, dfn__mlp_config_same, DFN__MLP_CONFIG_FILE_BYTES, dfn__mlp_tensor
};

DFNDEF const dfn_net_ops *dfn_mlp_net_ops(void) { return &dfn__mlp_ops; }

DFNDEF dfn_net dfn_mlp_net(const dfn_mlp *m)
{
    dfn_net n;
    n.ops = &dfn__mlp_ops;
    n.cfg = m ? &m->cfg : NULL;
    n.params = m ? m->params : NULL;
    n.count = m ? m->lay.count : 0;
    return n;
}

/* ------------------------------------------------------------------------- */
/*  The U-Net                                                                */
/* ------------------------------------------------------------------------- */

/* The network is planned once per call as a list of operations over
   tensors: tensor 0 is the input [x_t, cond], tensor i + 1 the output of
   operation i. Every operation owns a run of parameters (offset p) and a run
   of cached values per sample (offset a, in floats; for a batch of B the
   cache block holds B rows of each array, so an array at per-sample offset
   o starts at acts + B o). The forward pass walks the list, the backward
   pass walks it back; the same walk lays out the parameters. */

enum { DFN__U_IN, DFN__U_RES, DFN__U_ATTN, DFN__U_DOWN, DFN__U_UP, DFN__U_OUT };
#define DFN__UNET_MAX_OPS 72

/* The named weights of one operation: offsets in floats from the
   operation's first parameter, computed once by the plan and used by the
   initialization, the forward and the backward pass (and so by the files,
   which store the flat block). A GroupNorm is gamma (C) then beta (C); a
   convolution (Co, 3, 3, Ci) or a dense layer (Co, Ci) is followed by its
   bias wherever the pass reads it. Unused names are 0. */
typedef struct dfn__uweights {
    size_t norm1;         /* RES: GN1 of the input; ATTN, OUT: the GroupNorm    */
    size_t conv1, conv1_b;/* IN, UP: the conv; RES: conv1; OUT: the output conv */
    size_t emb, emb_b;    /* RES: W_p (Co, T), b_p: the time embedding's shift  */
    size_t norm2;         /* RES: GN2                                           */
    size_t conv2, conv2_b;/* RES: conv2 (zero at init)                          */
    size_t skip, skip_b;  /* RES with Ci != Co: the 1x1 conv of the input       */
    size_t qkv, qkv_b;    /* ATTN: W_qkv (3 Co, Co), b_qkv                      */
    size_t proj, proj_b;  /* ATTN: W_o (Co, Co) (zero at init), b_o             */
    size_t count;         /* the operation's parameters                         */
} dfn__uweights;

/* The embedding's weights at the start of the block: W_e1 (T, E), b_e1,
   W_e2 (T, T), b_e2, then the class embeddings (C + 1, T) (row C: none). */
typedef struct dfn__uemb {
    size_t w1, b1, w2, b2, cls, count;
} dfn__uemb;

typedef struct dfn__uop {
    int kind;
    int h, w;             /* output size (input size too, except DOWN and UP)  */
    int ci, co;           /* input channels (skip included), output channels   */
    int src, skip;        /* input tensor; tensor concatenated after it or -1  */
    size_t p, a;          /* first parameter; first cached float per sample    */
    dfn__uweights wt;     /* its weights, from p                               */
} dfn__uop;

typedef struct dfn__uplan {
    int n_ops;
    dfn__uop op[DFN__UNET_MAX_OPS];
    size_t tens_a[DFN__UNET_MAX_OPS + 1];  /* per-sample offset of each tensor  */
    size_t tens_g[DFN__UNET_MAX_OPS + 1];  /* per-sample offset of its gradient */
    int tens_c[DFN__UNET_MAX_OPS + 1], tens_hw[DFN__UNET_MAX_OPS + 1];
    size_t emb_a;         /* embedding caches: sin (ch), pre (T), s (T), e (T), se (T) */
    dfn__uemb emb;        /* the embedding's weights                            */
    size_t count;         /* parameters                                          */
    size_t acts;          /* cached floats per sample                            */
    size_t grads;         /* tensor-gradient floats per sample                   */
    size_t scratch_ps, scratch_fx;  /* backward scratch: B * ps + fx floats      */
    size_t col_img;       /* im2col floats of one image, largest conv            */
    size_t col_dw;        /* largest 3 x 3 kernel, k k Ci Co: the transposed dW
                             and the turned kernel of the conv backward         */
    int max_hw;
} dfn__uplan;

/* Lays out the weights of one operation (T: time_dim): the only place that
   knows their order. */
static void dfn__uop_weights(const dfn__uop *o, int T, dfn__uweights *w)
{
    size_t ci = (size_t)o->ci, co = (size_t)o->co, n = 0;
#define DFN__UW_TAKE(field, floats) (w->field = n, n += (floats))
    DFN_MEMSET(w, 0, sizeof *w);
    switch (o->kind) {
    case DFN__U_IN:
    case DFN__U_UP:                            /* UP: ci == co */
        DFN__UW_TAKE(conv1, co * 9 * ci);
        DFN__UW_TAKE(conv1_b, co);
        break;
    case DFN__U_RES:
        DFN__UW_TAKE(norm1, 2 * ci);
        DFN__UW_TAKE(conv1, co * 9 * ci);
        DFN__UW_TAKE(conv1_b, co);
        DFN__UW_TAKE(emb, co * (size_t)T);
        DFN__UW_TAKE(emb_b, co);
        DFN__UW_TAKE(norm2, 2 * co);
        DFN__UW_TAKE(conv2, co * 9 * co);
        DFN__UW_TAKE(conv2_b, co);
        if (ci != co) {
            DFN__UW_TAKE(skip, co * ci);
            DFN__UW_TAKE(skip_b, co);
        }
        break;
    case DFN__U_ATTN:
        DFN__UW_TAKE(norm1, 2 * co);
        DFN__UW_TAKE(qkv, 3 * co * co);
        DFN__UW_TAKE(qkv_b, 3 * co);
        DFN__UW_TAKE(proj, co * co);
        DFN__UW_TAKE(proj_b, co);
        break;
    case DFN__U_OUT:
        DFN__UW_TAKE(norm1, 2 * ci);
        DFN__UW_TAKE(conv1, co * 9 * ci);
        DFN__UW_TAKE(conv1_b, co);
        break;
    default:
        break;
    }
#undef DFN__UW_TAKE
    w->count = n;
}

/* Cached floats per sample, and the offset of the output inside them. */
static size_t dfn__uop_acts(const dfn__uop *o, int G, size_t *out_off)
{
    size_t hw = (size_t)o->h * o->w, ci = (size_t)o->ci, co = (size_t)o->co, n = 0;
    switch (o->kind) {
    case DFN__U_IN:   n = 0; break;
    case DFN__U_RES:  n = (o->skip >= 0 ? hw * ci : 0) + 2 * hw * ci + 2 * (size_t)G + 3 * hw * co +
                          2 * (size_t)G + co; break;   /* [cat] n1 s1 st1 h1 n2 s2 st2 e */
    case DFN__U_ATTN: n = hw * co + 2 * (size_t)G + 3 * hw * co + hw * hw + hw * co; break;
    case DFN__U_DOWN: n = 0; break;
    case DFN__U_UP:   n = hw * co; break;          /* the upsampled input */
    case DFN__U_OUT:  n = 2 * hw * ci + 2 * (size_t)G; *out_off = 0; return n;   /* n s st */
    }
    *out_off = n;
    return n + hw * co;
}

/* Backward scratch of one operation: B * ps + fx floats. */
static void dfn__uop_scratch(const dfn__uop *o, size_t *ps, size_t *fx)
{
    size_t hw = (size_t)o->h * o->w, ci = (size_t)o->ci, co = (size_t)o->co;
    *ps = 0;
    *fx = 0;
    switch (o->kind) {
    case DFN__U_RES:  *ps = (o->skip >= 0 ? hw * ci : 0) + hw * ci + 2 * hw * co + co; break;
    case DFN__U_ATTN: *ps = hw * co; *fx = hw * (hw + 4 * co); break;
    case DFN__U_UP:   *ps = hw * co; break;
    case DFN__U_OUT:  *ps = hw * ci; break;
    default: break;
    }
}

static int dfn__unet_add(dfn__uplan *pl, const dfn_unet_config *c, int kind, int h, int w,
                         int co, int src, int skip)
{
    dfn__uop *o;
    size_t out_off = 0, ps, fx, n;
    int T = c->time_dim, G = c->groups, i = pl->n_ops;
    if (i >= DFN__UNET_MAX_OPS) return -1;
    o = &pl->op[i];
    o->kind = kind;
    o->h = h;
    o->w = w;
    o->ci = pl->tens_c[src] + (skip >= 0 ? pl->tens_c[skip] : 0);
    o->co = co;
    o->src = src;
    o->skip = skip;
    o->p = pl->count;
    o->a = pl->acts;
    dfn__uop_weights(o, T, &o->wt);
    pl->count += o->wt.count;
    n = dfn__uop_acts(o, G, &out_off);
    pl->acts += n;
    pl->tens_a[i + 1] = o->a + out_off;
    pl->tens_c[i + 1] = co;
    pl->tens_hw[i + 1] = h * w;
    pl->tens_g[i + 1] = pl->grads;
    pl->grads += (size_t)h * w * co;
    dfn__uop_scratch(o, &ps, &fx);
    if (ps > pl->scratch_ps) pl->scratch_ps = ps;
    if (fx > pl->scratch_fx) pl->scratch_fx = fx;
    if (kind != DFN__U_DOWN && kind != DFN__U_ATTN) {
        int cmax = kind == DFN__U_UP || (kind == DFN__U_RES && co > o->ci) ? co : o->ci;
        size_t col = (size_t)h * w * 9 * (size_t)cmax;
        size_t dw = (size_t)9 * cmax * (size_t)co;         /* every conv has co outputs */
        if (col > pl->col_img) pl->col_img = col;
        if (dw > pl->col_dw) pl->col_dw = dw;
    }
    if (h * w > pl->max_hw) pl->max_hw = h * w;
    pl->n_ops++;
    return i + 1;
}

/* Plans the network of a checked config. */
static void dfn__unet_plan(const dfn_unet_config *c, dfn__uplan *pl)
{
    int stack[DFN__UNET_MAX_OPS], sp = 0, cur, l, b, h = c->height, w = c->width, ch;
    size_t T = (size_t)c->time_dim, E = (size_t)c->base_channels;
    DFN_MEMSET(pl, 0, sizeof *pl);
    pl->tens_c[0] = c->channels + c->cond_channels;
    pl->tens_hw[0] = h * w;
    pl->tens_a[0] = 0;
    pl->acts = (size_t)h * w * (size_t)pl->tens_c[0];
    pl->emb_a = pl->acts;
    pl->acts += E + 4 * T;
    pl->emb.w1 = 0;
    pl->emb.b1 = T * E;
    pl->emb.w2 = pl->emb.b1 + T;
    pl->emb.b2 = pl->emb.w2 + T * T;
    pl->emb.cls = pl->emb.b2 + T;
    pl->emb.count = pl->emb.cls + (c->num_classes > 0 ? ((size_t)c->num_classes + 1) * T : 0);
    pl->count = pl->emb.count;
    /* tensor 0 needs no gradient: its slot holds d SiLU(e) (B, T) instead */
    pl->grads = (size_t)h * w * (size_t)pl->tens_c[0] > T ? (size_t)h * w * (size_t)pl->tens_c[0] : T;
    pl->scratch_ps = 2 * T;                              /* the embedding's backward */
    ch = c->base_channels;
    cur = dfn__unet_add(pl, c, DFN__U_IN, h, w, ch, 0, -1);
    stack[sp++] = cur;
    for (l = 0; l < c->levels; l++) {
        ch = c->base_channels * c->mult[l];
        for (b = 0; b < c->blocks; b++) {
            cur = dfn__unet_add(pl, c, DFN__U_RES, h, w, ch, cur, -1);
            if (c->attention[l]) cur = dfn__unet_add(pl, c, DFN__U_ATTN, h, w, ch, cur, -1);
            stack[sp++] = cur;
        }
        if (l < c->levels - 1) {
            h /= 2;
            w /= 2;
            cur = dfn__unet_add(pl, c, DFN__U_DOWN, h, w, ch, cur, -1);
            stack[sp++] = cur;
        }
    }
    cur = dfn__unet_add(pl, c, DFN__U_RES, h, w, ch, cur, -1);
    if (c->mid_attention) cur = dfn__unet_add(pl, c, DFN__U_ATTN, h, w, ch, cur, -1);
    cur = dfn__unet_add(pl, c, DFN__U_RES, h, w, ch, cur, -1);
    for (l = c->levels - 1; l >= 0; l--) {
        ch = c->base_channels * c->mult[l];
        for (b = 0; b <= c->blocks; b++) {
            int s = stack[--sp];
            cur = dfn__unet_add(pl, c, DFN__U_RES, h, w, ch, cur, s);
            if (c->attention[l]) cur = dfn__unet_add(pl, c, DFN__U_ATTN, h, w, ch, cur, -1);
        }
        if (l > 0) {
            h *= 2;
            w *= 2;
            cur = dfn__unet_add(pl, c, DFN__U_UP, h, w, ch, cur, -1);
        }
    }
    dfn__unet_add(pl, c, DFN__U_OUT, h, w, c->channels, cur, -1);
    DFN_ASSERT(sp == 0);
}

DFNDEF dfn_unet_config dfn_unet_config_default(int channels, int height, int width)
{
    dfn_unet_config c;
    DFN_MEMSET(&c, 0, sizeof c);
    c.height = height;
    c.width = width;
    c.channels = channels;
    c.cond_channels = 0;
    c.base_channels = 32;
    c.levels = 3;
    c.mult[0] = 1;
    c.mult[1] = 2;
    c.mult[2] = 2;
    c.mult[3] = 2;
    c.blocks = 1;
    c.attention[2] = 1;
    c.mid_attention = 1;
    c.groups = 8;
    c.time_dim = 4 * c.base_channels;
    c.num_classes = 0;
    c.prediction = DFN_PREDICT_EPS;
    return c;
}

DFNDEF dfn_result dfn_unet_config_check(const dfn_unet_config *c)
{
    int l, div;
    double params, ch, cmax;
    if (!c) return DFN_ERR_NULL;
    if (c->levels < 1 || c->levels > DFN_UNET_MAX_LEVELS || c->blocks < 1 ||
        c->blocks > DFN_UNET_MAX_BLOCKS || c->channels < 1 || c->channels > 64 ||
        c->cond_channels < 0 || c->cond_channels > 64 || c->base_channels < 2 ||
        c->base_channels % 2 || c->base_channels > 1024 || c->groups < 1 || c->time_dim < 1 ||
        c->time_dim > 4096 || c->num_classes < 0 || c->num_classes > 1000000)
        return DFN_ERR_INVALID_ARG;
    if (!dfn__prediction_valid(c->prediction))
        return DFN_ERR_INVALID_ARG;
    div = 1 << (c->levels - 1);
    if (c->height < 1 || c->width < 1 || c->height > 256 || c->width > 256 ||
        c->height % div || c->width % div)
        return DFN_ERR_INVALID_ARG;
    /* a rough upper bound on the parameter count, in double, before any size_t math */
    cmax = 0.0;
    for (l = 0; l < c->levels; l++) {
        if (c->mult[l] < 1 || c->mult[l] > 64) return DFN_ERR_INVALID_ARG;
        ch = (double)c->base_channels * c->mult[l];
        if ((int)ch % c->groups) return DFN_ERR_INVALID_ARG;
        if (ch > cmax) cmax = ch;
        if (c->attention[l] != 0 && c->attention[l] != 1) return DFN_ERR_INVALID_ARG;
    }
    if (c->mid_attention != 0 && c->mid_attention != 1) return DFN_ERR_INVALID_ARG;
    if (cmax > 4096) return DFN_ERR_INVALID_ARG;
    params = (double)c->time_dim * (c->time_dim + c->base_channels + 2.0 + c->num_classes + 1.0) +
             (double)DFN__UNET_MAX_OPS * (3.0 * cmax * 9.0 * 3.0 * cmax + cmax * c->time_dim + 10 * cmax);
    if (params > 2147483647.0) return DFN_ERR_INVALID_ARG;
    return DFN_OK;
}

DFNDEF int dfn_unet_dim(const dfn_unet_config *cfg)
{
    if (dfn_unet_config_check(cfg) != DFN_OK) return 0;
    return cfg->height * cfg->width * cfg->channels;
}

DFNDEF size_t dfn_unet_num_params(const dfn_unet_config *cfg)
{
    dfn__uplan pl;
    if (dfn_unet_config_check(cfg) != DFN_OK) return 0;
    dfn__unet_plan(cfg, &pl);
    return pl.count;
}

DFNDEF dfn_result dfn_unet_init(dfn_unet *u, const dfn_unet_config *cfg, float *params)
{
    dfn_result r;
    if (!u || !cfg || !params) return DFN_ERR_NULL;
    if ((r = dfn_unet_config_check(cfg)) != DFN_OK) return r;
    u->cfg = *cfg;
    u->count = dfn_unet_num_params(cfg);
    u->params = params;
    return DFN_OK;
}

/* A GroupNorm's gamma (1) and beta (0). */
static void dfn__gn_init(float *p, int c)
{
    int i;
    for (i = 0; i < c; i++) {
        p[i] = 1.0f;
        p[c + i] = 0.0f;
    }
}

DFNDEF dfn_result dfn_unet_init_weights(dfn_unet *u, dfn_rng *rng)
{
    dfn__uplan pl;
    const dfn_unet_config *c;
    float *P;
    size_t T, E, ci, co;
    int i;
    if (!u || !u->params || !rng) return DFN_ERR_NULL;
    c = &u->cfg;
    dfn__unet_plan(c, &pl);
    P = u->params;
    T = (size_t)c->time_dim;
    E = (size_t)c->base_channels;
    /* each layer's weights and bias in one draw of fan-in F (they are adjacent) */
    dfn__uniform_fill(rng, P + pl.emb.w1, T * E + T, E);                   /* W_e1, b_e1 */
    dfn__uniform_fill(rng, P + pl.emb.w2, T * T + T, T);                   /* W_e2, b_e2 */
    if (c->num_classes > 0) dfn_rng_normal_fill(rng, P + pl.emb.cls, ((size_t)c->num_classes + 1) * T);
    for (i = 0; i < pl.n_ops; i++) {
        const dfn__uop *op = &pl.op[i];
        const dfn__uweights *w = &op->wt;
        float *q = P + op->p;
        ci = (size_t)op->ci;
        co = (size_t)op->co;
        switch (op->kind) {
        case DFN__U_IN:
        case DFN__U_UP:
            dfn__uniform_fill(rng, q + w->conv1, co * 9 * ci + co, 9 * ci);
            break;
        case DFN__U_RES:
            dfn__gn_init(q + w->norm1, op->ci);
            dfn__uniform_fill(rng, q + w->conv1, co * 9 * ci + co, 9 * ci);
            dfn__uniform_fill(rng, q + w->emb, co * T + co, T);
            dfn__gn_init(q + w->norm2, op->co);
            DFN_MEMSET(q + w->conv2, 0, (co * 9 * co + co) * sizeof(float));   /* conv2: 0 */
            if (ci != co) dfn__uniform_fill(rng, q + w->skip, co * ci + co, ci);
            break;
        case DFN__U_ATTN:
            dfn__gn_init(q + w->norm1, op->co);
            dfn__uniform_fill(rng, q + w->qkv, 3 * co * co + 3 * co, co);
            DFN_MEMSET(q + w->proj, 0, (co * co + co) * sizeof(float));        /* W_o: 0 */
            break;
        case DFN__U_OUT:
            dfn__gn_init(q + w->norm1, op->ci);
            DFN_MEMSET(q + w->conv1, 0, (co * 9 * ci + co) * sizeof(float));   /* 0 */
            break;
        default:
            break;
        }
    }
    return DFN_OK;
}

/* Where a pass keeps its values. */
typedef struct dfn__ubufs {
    float *acts;          /* B * plan.acts floats                             */
    float *grads;         /* B * plan.grads (training only)                   */
    float *scratch;       /* B * scratch_ps + scratch_fx (training only)      */
    float *col;           /* im2col scratch                                   */
    size_t col_floats;
    float *work;          /* GEMM scratch                                     */
} dfn__ubufs;

/* im2col floats for a batch of B: room for the largest conv of as many
   images as make about DFN__UNET_COL_ROWS GEMM rows at the largest size
   (at least one). 3 images of 28 x 28: each conv's products are big enough
   to split across threads (2 threads: 15% more steps/s than one image at a
   time), and the unrolled images stay in cache (the same speed on one
   thread; 5 images were 2-4% slower). The group size is the same for any
   number of threads, so the bits are. */
#define DFN__UNET_COL_ROWS 3072
static size_t dfn__unet_col_images(const dfn__uplan *pl, int B)
{
    size_t g = DFN__UNET_COL_ROWS / (size_t)pl->max_hw;
    if (g < 1) g = 1;
    if (g > (size_t)B) g = (size_t)B;
    return g;
}

static size_t dfn__unet_col(const dfn__uplan *pl, int B, int training)
{
    return pl->col_img * dfn__unet_col_images(pl, B) + (training ? 2 * pl->col_dw : 0);
}

static void dfn__unet_take(const dfn__uplan *pl, int B, int training, dfn__ubufs *u, dfn__arena *ar)
{
    u->acts = (float *)dfn__arena_take(ar, (size_t)B * pl->acts * sizeof(float));
    u->grads = training ? (float *)dfn__arena_take(ar, (size_t)B * pl->grads * sizeof(float)) : NULL;
    u->scratch = training ? (float *)dfn__arena_take(
                     ar, ((size_t)B * pl->scratch_ps + pl->scratch_fx) * sizeof(float)) : NULL;
    u->col_floats = dfn__unet_col(pl, B, training);
    u->col = (float *)dfn__arena_take(ar, u->col_floats * sizeof(float));
    u->work = (float *)dfn__arena_take(ar, dfn_gemm_work_size());
}

static size_t dfn__unet_bufs(const dfn__uplan *pl, int B, int training, dfn__ubufs *u, void *mem)
{
    dfn__arena ar = dfn__arena_begin(mem);
    dfn__unet_take(pl, B, training, u, &ar);
    return dfn__arena_size(&ar);
}

/* Per-sample floats of everything for a batch, in double (for size checks). */
static double dfn__unet_floats(const dfn__uplan *pl, int B, int training)
{
    double f = (double)B * pl->acts + (double)pl->col_img * (double)dfn__unet_col_images(pl, B);
    if (training) f += (double)B * (pl->grads + pl->scratch_ps) + pl->scratch_fx + 2.0 * (double)pl->col_dw;
    return f;
}

#define DFN__UT(pl, bu, B, i) ((bu)->acts + (size_t)(B) * (pl)->tens_a[i])   /* tensor i   */
#define DFN__UA(bu, B, off)   ((bu)->acts + (size_t)(B) * (off))             /* cache array */

/* The forward pass over B images. x (B, H, W, C); cond rows (index % cond_rows);
   out (B, H, W, C). */
static void dfn__unet_run(const dfn_unet *u, const dfn__uplan *pl, const float *P, const dfn__ubufs *bu,
                          int B, const float *x, const float *cond, int cond_row0, int cond_rows,
                          const int *t, const int *labels, float *out)
{
    const dfn_unet_config *c = &u->cfg;
    int T = c->time_dim, E = c->base_channels, G = c->groups, C = c->channels, CC = c->cond_channels;
    int HW = c->height * c->width, i, k, n;
    float *in0 = DFN__UT(pl, bu, B, 0), *work = bu->work;
    float *sin_e = DFN__UA(bu, B, pl->emb_a), *pre = sin_e + (size_t)B * E, *s1 = pre + (size_t)B * T;
    float *emb = s1 + (size_t)B * T, *semb = emb + (size_t)B * T;
    const dfn__uemb *ew = &pl->emb;

    /* tensor 0 = [x_t, cond] per pixel */
    for (n = 0; n < B; n++)
        for (k = 0; k < HW; k++) {
            float *d = in0 + ((size_t)n * HW + k) * (C + CC);
            DFN_MEMCPY(d, x + ((size_t)n * HW + k) * C, (size_t)C * sizeof(float));
            if (CC)
                DFN_MEMCPY(d + C, cond + ((size_t)((cond_row0 + n) % cond_rows) * HW + k) * CC,
                           (size_t)CC * sizeof(float));
        }
    /* e = W_e2 SiLU(W_e1 sin_emb(t) + b_e1) + b_e2 + class_emb[c]; semb = SiLU(e) */
    for (n = 0; n < B; n++) pre[n] = (float)t[n];              /* pre is free until the GEMM */
    dfn_sinusoidal_embedding(sin_e, E, pre, 1, 1.0f, B, E);
    dfn_linear_forward(pre, sin_e, P + ew->w1, P + ew->b1, B, E, T, work);
    dfn_act_forward(DFN_ACT_SILU, (size_t)B * T, pre, s1);
    dfn_linear_forward(emb, s1, P + ew->w2, P + ew->b2, B, T, T, work);
    if (c->num_classes > 0)
        for (n = 0; n < B; n++) {
            int row = labels && labels[n] >= 0 ? labels[n] : c->num_classes;
            dfn_vec_axpy((size_t)T, 1.0f, P + ew->cls + (size_t)row * T, emb + (size_t)n * T);
        }
    dfn_act_forward(DFN_ACT_SILU, (size_t)B * T, emb, semb);

    for (i = 0; i < pl->n_ops; i++) {
        const dfn__uop *o = &pl->op[i];
        const dfn__uweights *W = &o->wt;
        const float *q = P + o->p;
        int h = o->h, w = o->w, ci = o->ci, co = o->co;
        size_t hw = (size_t)h * w, BHW = (size_t)B * hw;
        const float *src = DFN__UT(pl, bu, B, o->src);
        float *dst = DFN__UT(pl, bu, B, i + 1);
        switch (o->kind) {
        case DFN__U_IN:
            dfn_conv2d_forward(dst, src, q + W->conv1, q + W->conv1_b, B, h, w, ci, co, 3, bu->col,
                               bu->col_floats, work);
            break;
        case DFN__U_RES: {
            float *a = DFN__UA(bu, B, o->a), *xin, *n1, *sa1, *st1, *h1, *n2, *sa2, *st2, *e;
            const float *g1 = q + W->norm1, *c1 = q + W->conv1, *pw = q + W->emb;
            const float *g2 = q + W->norm2, *c2 = q + W->conv2, *sk = q + W->skip;
            if (o->skip >= 0) {                           /* [h, skip] per pixel */
                const float *s2 = DFN__UT(pl, bu, B, o->skip);
                int ca = pl->tens_c[o->src], cb = pl->tens_c[o->skip];
                size_t r;
                xin = a;
                a += BHW * ci;
                for (r = 0; r < BHW; r++) {
                    DFN_MEMCPY(xin + r * ci, src + r * ca, (size_t)ca * sizeof(float));
                    DFN_MEMCPY(xin + r * ci + ca, s2 + r * cb, (size_t)cb * sizeof(float));
                }
            } else {
                xin = (float *)src;
            }
            n1 = a;  sa1 = n1 + BHW * ci;  st1 = sa1 + BHW * ci;  h1 = st1 + (size_t)B * 2 * G;
            n2 = h1 + BHW * co;  sa2 = n2 + BHW * co;  st2 = sa2 + BHW * co;  e = st2 + (size_t)B * 2 * G;
            dfn_groupnorm_forward(n1, st1, xin, g1, g1 + ci, B, (int)hw, ci, G);
            dfn_act_forward(DFN_ACT_SILU, BHW * ci, n1, sa1);
            dfn_conv2d_forward(h1, sa1, c1, q + W->conv1_b, B, h, w, ci, co, 3, bu->col,
                               bu->col_floats, work);
            dfn_linear_forward(e, semb, pw, q + W->emb_b, B, T, co, work);   /* W_p SiLU(e) + b_p */
            for (n = 0; n < B; n++) dfn_bias_add((int)hw, co, h1 + (size_t)n * hw * co, e + (size_t)n * co);
            dfn_groupnorm_forward(n2, st2, h1, g2, g2 + co, B, (int)hw, co, G);
            dfn_act_forward(DFN_ACT_SILU, BHW * co, n2, sa2);
            dfn_conv2d_forward(dst, sa2, c2, q + W->conv2_b, B, h, w, co, co, 3, bu->col,
                               bu->col_floats, work);
            if (ci != co) {                               /* + 1x1 conv of the input */
                dfn_gemm(0, 1, (int)BHW, co, ci, 1.0f, xin, ci, sk, ci, 1.0f, dst, co, work);
                dfn_bias_add((int)BHW, co, dst, q + W->skip_b);
            } else {
                dfn_vec_axpy(BHW * co, 1.0f, xin, dst);
            }
            break;
        }
        case DFN__U_ATTN: {
            float *nn = DFN__UA(bu, B, o->a), *st = nn + BHW * co, *qkv = st + (size_t)B * 2 * G;
            float *pr = qkv + BHW * 3 * co, *ov = pr + (size_t)B * hw * hw;
            dfn_groupnorm_forward(nn, st, src, q + W->norm1, q + W->norm1 + co, B, (int)hw, co, G);
            dfn_attention_forward(dst, qkv, pr, ov, nn, q + W->qkv, q + W->qkv_b, q + W->proj,
                                  q + W->proj_b, B, (int)hw, co, work);
            dfn_vec_axpy(BHW * co, 1.0f, src, dst);      /* residual */
            break;
        }
        case DFN__U_DOWN:
            dfn_avgpool2_forward(dst, src, B, 2 * h, 2 * w, co);
            break;
        case DFN__U_UP: {
            float *up = DFN__UA(bu, B, o->a);
            dfn_upsample2_forward(up, src, B, h / 2, w / 2, co);
            dfn_conv2d_forward(dst, up, q + W->conv1, q + W->conv1_b, B, h, w, co, co, 3, bu->col,
                               bu->col_floats, work);
            break;
        }
        case DFN__U_OUT: {
            float *nn = DFN__UA(bu, B, o->a), *sa = nn + BHW * ci, *st = sa + BHW * ci;
            dfn_groupnorm_forward(nn, st, src, q + W->norm1, q + W->norm1 + ci, B, (int)hw, ci, G);
            dfn_act_forward(DFN_ACT_SILU, BHW * ci, nn, sa);
            dfn_conv2d_forward(out, sa, q + W->conv1, q + W->conv1_b, B, h, w, ci, co, 3,
                               bu->col, bu->col_floats, work);
            break;
        }
        default:
            break;
        }
    }
}

DFNDEF size_t dfn_unet_forward_size(const dfn_unet_config *cfg, int chunk)
{
    dfn__uplan pl;
    dfn__ubufs bu;
    if (dfn_unet_config_check(cfg) != DFN_OK || chunk < 1) return 0;
    dfn__unet_plan(cfg, &pl);
    /* at most 1e9 floats, and the bytes must fit size_t with room to spare
       (32-bit targets) */
    if (dfn__unet_floats(&pl, chunk, 0) > 1e9 ||
        dfn__unet_floats(&pl, chunk, 0) * 4.0 > (double)((size_t)-1) / 2.0)
        return 0;
    return dfn__unet_bufs(&pl, chunk, 0, &bu, NULL);
}

static dfn_result dfn__unet_check_inputs(const dfn_unet *u, const int *t, const int *labels, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        if (t[i] < 0) return DFN_ERR_INVALID_ARG;
        if (labels && u->cfg.num_classes > 0 && (labels[i] < -1 || labels[i] >= u->cfg.num_classes))
            return DFN_ERR_INVALID_ARG;
    }
    return DFN_OK;
}

static dfn_result dfn__unet_forward(const dfn_unet *u, float *out, const float *x, const float *cond,
                                    int cond_rows, const int *t, const int *labels, int n,
                                    void *work, size_t work_bytes)
{
    dfn__uplan pl;
    dfn__ubufs bu;
    dfn_result r;
    size_t need, D;
    int chunk, i;
    if (!u || !u->params || !work) return DFN_ERR_NULL;
    if (n < 0) return DFN_ERR_INVALID_ARG;
    if (n == 0) return DFN_OK;
    if (!out || !x || !t) return DFN_ERR_NULL;
    if (u->cfg.cond_channels > 0 && (!cond || cond_rows < 1)) return DFN_ERR_NULL;
    if ((r = dfn__unet_check_inputs(u, t, labels, n)) != DFN_OK) return r;
    need = dfn_unet_forward_size(&u->cfg, 1);
    if (need == 0 || need > work_bytes) return DFN_ERR_BUFFER_TOO_SMALL;
    chunk = 1;
    while (chunk < n) {
        int next = chunk > n / 2 ? n : chunk * 2;
        need = dfn_unet_forward_size(&u->cfg, next);
        if (need == 0 || need > work_bytes) break;
        chunk = next;
    }
    dfn__unet_plan(&u->cfg, &pl);
    dfn__unet_bufs(&pl, chunk, 0, &bu, work);
    D = (size_t)u->cfg.height * u->cfg.width * u->cfg.channels;
    for (i = 0; i < n; i += chunk) {
        int b = n - i < chunk ? n - i : chunk;
        dfn__unet_run(u, &pl, u->params, &bu, b, x + (size_t)i * D, cond, i, cond_rows, t + i,
                      labels ? labels + i : NULL, out + (size_t)i * D);
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_unet_forward(const dfn_unet *u, float *out, const float *x,
                                   const float *cond, const int *t, const int *labels, int n,
                                   void *work, size_t work_bytes)
{
    return dfn__unet_forward(u, out, x, cond, n, t, labels, n, work, work_bytes);
}

DFNDEF int dfn_unet_predict(void *user, const float *x_t, const int *t,
                            const int *labels, int n, float *out)
{
    const dfn_unet_predictor *p = (const dfn_unet_predictor *)user;
    if (!p) return (int)DFN_ERR_NULL;
    return (int)dfn__unet_forward(p->model, out, x_t, p->cond, p->cond_rows, t, labels, n, p->work,
                                  p->work_bytes);
}

DFNDEF dfn_sampler_config dfn_unet_sampler_config(dfn_sampler_kind kind, int n, dfn_unet_predictor *p)
{
    dfn_sampler_config c = dfn_sampler_config_default(kind, n, p && p->model ? dfn_unet_dim(&p->model->cfg) : 0,
                                                      dfn_unet_predict, p);
    if (p && p->model) c.prediction = p->model->cfg.prediction;
    return c;
}

#ifndef DFN_NO_TRAINING
/* The backward pass after dfn__unet_run on the same buffers: dout (B, H, W, C)
   is d loss / d out; parameter gradients into G (accumulated: zero it first). */
static void dfn__unet_backward(const dfn_unet *u, const dfn__uplan *pl, const float *P, float *Gd,
                               const dfn__ubufs *bu, int B, const int *labels, const float *dout)
{
    const dfn_unet_config *c = &u->cfg;
    int T = c->time_dim, E = c->base_channels, G = c->groups, i, n;
    float *work = bu->work, *sc = bu->scratch;
    float *sin_e = DFN__UA(bu, B, pl->emb_a), *pre = sin_e + (size_t)B * E, *s1 = pre + (size_t)B * T;
    float *emb = s1 + (size_t)B * T, *semb = emb + (size_t)B * T;
    float *dsemb;
    const dfn__uemb *ew = &pl->emb;

    DFN_MEMSET(bu->grads, 0, (size_t)B * pl->grads * sizeof(float));
    /* d SiLU(e) accumulates over every ResBlock, in tensor 0's gradient slot */
    dsemb = bu->grads;

    for (i = pl->n_ops - 1; i >= 0; i--) {
        const dfn__uop *o = &pl->op[i];
        const dfn__uweights *W = &o->wt;
        const float *q = P + o->p;
        float *gq = Gd + o->p;
        int h = o->h, w = o->w, ci = o->ci, co = o->co;
        size_t hw = (size_t)h * w, BHW = (size_t)B * hw;
        const float *src = DFN__UT(pl, bu, B, o->src);
        const float *dY = o->kind == DFN__U_OUT ? dout : bu->grads + (size_t)B * pl->tens_g[i + 1];
        float *dsrc = o->src > 0 ? bu->grads + (size_t)B * pl->tens_g[o->src] : NULL;
        switch (o->kind) {
        case DFN__U_IN:
            dfn_conv2d_backward(NULL, gq + W->conv1, gq + W->conv1_b, dY, src, q + W->conv1, B, h, w, ci,
                                co, 3, bu->col, bu->col_floats, work);
            break;
        case DFN__U_RES: {
            float *a = DFN__UA(bu, B, o->a), *xin, *n1, *sa1, *st1, *h1, *n2, *sa2, *st2;
            float *dx, *d1, *dh1, *d2, *de;
            const float *g1 = q + W->norm1, *c1 = q + W->conv1, *pw = q + W->emb;
            const float *g2 = q + W->norm2, *c2 = q + W->conv2, *sk = q + W->skip;
            float *gg1 = gq + W->norm1, *gc1 = gq + W->conv1, *gpw = gq + W->emb;
            float *gg2 = gq + W->norm2, *gc2 = gq + W->conv2, *gsk = gq + W->skip;
            if (o->skip >= 0) {
                xin = a;
                a += BHW * ci;
                dx = sc;                                  /* d[h, skip], split at the end */
                d1 = dx + BHW * ci;
                DFN_MEMSET(dx, 0, BHW * ci * sizeof(float));
            } else {
                xin = (float *)src;
                dx = dsrc;
                d1 = sc;
            }
            dh1 = d1 + BHW * ci;  d2 = dh1 + BHW * co;  de = d2 + BHW * co;
            n1 = a;  sa1 = n1 + BHW * ci;  st1 = sa1 + BHW * ci;  h1 = st1 + (size_t)B * 2 * G;
            n2 = h1 + BHW * co;  sa2 = n2 + BHW * co;  st2 = sa2 + BHW * co;
            /* out = conv2(sa2) + skip(x) */
            if (ci != co)
                dfn_linear_backward(dx, gsk, gq + W->skip_b, dY, xin, sk, (int)BHW, ci, co, work);
            else
                dfn_vec_axpy(BHW * co, 1.0f, dY, dx);
            DFN_MEMSET(d2, 0, BHW * co * sizeof(float));
            dfn_conv2d_backward(d2, gc2, gq + W->conv2_b, dY, sa2, c2, B, h, w, co, co, 3,
                                bu->col, bu->col_floats, work);
            /* sa2 = SiLU(n2), n2 = GN2(h1) */
            dfn_act_backward(DFN_ACT_SILU, BHW * co, n2, d2, d2);
            DFN_MEMSET(dh1, 0, BHW * co * sizeof(float));
            dfn_groupnorm_backward(dh1, gg2, gg2 + co, d2, h1, st2, g2, B, (int)hw, co, G);
            /* h1 = conv1(sa1) + (W_p semb + b_p) per channel */
            DFN_MEMSET(de, 0, (size_t)B * co * sizeof(float));
            for (n = 0; n < B; n++) dfn_bias_grad((int)hw, co, dh1 + (size_t)n * hw * co, de + (size_t)n * co);
            dfn_linear_backward(dsemb, gpw, gq + W->emb_b, de, semb, pw, B, T, co, work);
            DFN_MEMSET(d1, 0, BHW * ci * sizeof(float));
            dfn_conv2d_backward(d1, gc1, gq + W->conv1_b, dh1, sa1, c1, B, h, w, ci, co, 3,
                                bu->col, bu->col_floats, work);
            /* sa1 = SiLU(n1), n1 = GN1(x) */
            dfn_act_backward(DFN_ACT_SILU, BHW * ci, n1, d1, d1);
            dfn_groupnorm_backward(dx, gg1, gg1 + ci, d1, xin, st1, g1, B, (int)hw, ci, G);
            if (o->skip >= 0) {                           /* split d[h, skip] */
                float *dskip = bu->grads + (size_t)B * pl->tens_g[o->skip];
                int ca = pl->tens_c[o->src], cb = pl->tens_c[o->skip];
                size_t r;
                for (r = 0; r < BHW; r++) {
                    dfn_vec_axpy((size_t)ca, 1.0f, dx + r * ci, dsrc + r * ca);
                    dfn_vec_axpy((size_t)cb, 1.0f, dx + r * ci + ca, dskip + r * cb);
                }
            }
            break;
        }
        case DFN__U_ATTN: {
            float *nn = DFN__UA(bu, B, o->a), *st = nn + BHW * co, *qkv = st + (size_t)B * 2 * G;
            float *pr = qkv + BHW * 3 * co, *ov = pr + (size_t)B * hw * hw;
            float *dn = sc, *asc = sc + BHW * co;
            dfn_vec_axpy(BHW * co, 1.0f, dY, dsrc);      /* residual */
            DFN_MEMSET(dn, 0, BHW * co * sizeof(float));
            dfn_attention_backward(dn, gq + W->qkv, gq + W->qkv_b, gq + W->proj, gq + W->proj_b, dY, nn,
                                   qkv, pr, ov, q + W->qkv, q + W->proj, B, (int)hw, co, asc, work);
            dfn_groupnorm_backward(dsrc, gq + W->norm1, gq + W->norm1 + co, dn, src, st, q + W->norm1, B,
                                   (int)hw, co, G);
            break;
        }
        case DFN__U_DOWN:
            dfn_avgpool2_backward(dsrc, dY, B, 2 * h, 2 * w, co);
            break;
        case DFN__U_UP: {
            float *up = DFN__UA(bu, B, o->a), *du = sc;
            DFN_MEMSET(du, 0, BHW * co * sizeof(float));
            dfn_conv2d_backward(du, gq + W->conv1, gq + W->conv1_b, dY, up, q + W->conv1, B, h, w, co, co,
                                3, bu->col, bu->col_floats, work);
            dfn_upsample2_backward(dsrc, du, B, h / 2, w / 2, co);
            break;
        }
        case DFN__U_OUT: {
            float *nn = DFN__UA(bu, B, o->a), *sa = nn + BHW * ci, *st = sa + BHW * ci, *ds = sc;
            DFN_MEMSET(ds, 0, BHW * ci * sizeof(float));
            dfn_conv2d_backward(ds, gq + W->conv1, gq + W->conv1_b, dY, sa, q + W->conv1,
                                B, h, w, ci, co, 3, bu->col, bu->col_floats, work);
            dfn_act_backward(DFN_ACT_SILU, BHW * ci, nn, ds, ds);
            dfn_groupnorm_backward(dsrc, gq + W->norm1, gq + W->norm1 + ci, ds, src, st, q + W->norm1, B,
                                   (int)hw, ci, G);
            break;
        }
        default:
            break;
        }
    }
    /* the embedding: semb = SiLU(emb), emb = W_e2 s1 + b_e2 + class_emb, s1 = SiLU(pre),
       pre = W_e1 sin_e + b_e1 */
    {
        float *demb = sc, *ds1 = sc + (size_t)B * T;
        dfn_act_backward(DFN_ACT_SILU, (size_t)B * T, emb, dsemb, demb);
        if (c->num_classes > 0)
            for (n = 0; n < B; n++) {
                int row = labels && labels[n] >= 0 ? labels[n] : c->num_classes;
                dfn_vec_axpy((size_t)T, 1.0f, demb + (size_t)n * T, Gd + ew->cls + (size_t)row * T);
            }
        DFN_MEMSET(ds1, 0, (size_t)B * T * sizeof(float));
        dfn_linear_backward(ds1, Gd + ew->w2, Gd + ew->b2, demb, s1, P + ew->w2, B, T, T, work);
        dfn_act_backward(DFN_ACT_SILU, (size_t)B * T, pre, ds1, ds1);
        dfn_linear_backward(NULL, Gd + ew->w1, Gd + ew->b1, ds1, sin_e, P + ew->w1, B, E, T, work);
    }
}
#endif /* DFN_NO_TRAINING */

/* The U-Net's dfn_net operations. */
static dfn_unet dfn__unet_of(const dfn_net *net)
{
    dfn_unet u;
    u.cfg = *(const dfn_unet_config *)net->cfg;
    u.count = net->count;
    u.params = net->params;
    return u;
}

static dfn_result dfn__unet_describe(const void *cfg, dfn_net_shape *s)
{
    const dfn_unet_config *c = (const dfn_unet_config *)cfg;
    dfn_result r = dfn_unet_config_check(c);
    if (r != DFN_OK) return r;
    s->params = dfn_unet_num_params(c);
    s->dim = s->out_dim = c->height * c->width * c->channels;
    s->cond_dim = c->height * c->width * c->cond_channels;
    s->num_classes = c->num_classes;
    s->prediction = c->prediction;
    return DFN_OK;
}

static void dfn__unet_net_init_weights(const dfn_net *net, dfn_rng *rng)
{
    dfn_unet u = dfn__unet_of(net);
    dfn_unet_init_weights(&u, rng);
}

static size_t dfn__unet_net_forward_size(const void *cfg, int chunk)
{
    return dfn_unet_forward_size((const dfn_unet_config *)cfg, chunk);
}

static dfn_result dfn__unet_net_forward(const dfn_net *net, float *out, const float *x, const float *cond,
                                        int cond_rows, const int *t, const int *labels, int n, void *work,
                                        size_t work_bytes)
{
    dfn_unet u = dfn__unet_of(net);
    return dfn__unet_forward(&u, out, x, cond, cond_rows, t, labels, n, work, work_bytes);
}

#ifndef DFN_NO_TRAINING
/* The training memory: the plan and the views of its buffers, laid out once
   (train_bind), then the buffers. */
typedef struct dfn__unet_train {
    dfn__uplan pl;
    dfn__ubufs bu;
} dfn__unet_train;

static size_t dfn__unet_train_layout(const dfn_unet_config *c, int batch, void *mem)
{
    dfn__arena ar = dfn__arena_begin(mem);
    dfn__unet_train *st = (dfn__unet_train *)dfn__arena_take(&ar, sizeof(dfn__unet_train));
    dfn__unet_train probe, *u = st ? st : &probe;
    dfn__unet_plan(c, &u->pl);
    if (!st && dfn__unet_floats(&u->pl, batch, 1) > 1e9) return 0;
    dfn__unet_take(&u->pl, batch, 1, &u->bu, &ar);
    return dfn__arena_size(&ar);
}

static size_t dfn__unet_train_size(const void *cfg, int batch)
{
    return dfn__unet_train_layout((const dfn_unet_config *)cfg, batch, NULL);
}

static void dfn__unet_train_bind(const void *cfg, int batch, void *mem)
{
    dfn__unet_train_layout((const dfn_unet_config *)cfg, batch, mem);
}

static void dfn__unet_train_forward(const dfn_net *net, void *mem, int batch, float *out, const float *x,
                                    const float *cond, const int *t, const int *labels)
{
    const dfn__unet_train *st = (const dfn__unet_train *)dfn__arena_begin(mem).base;
    dfn_unet u = dfn__unet_of(net);
    dfn__unet_run(&u, &st->pl, net->params, &st->bu, batch, x, cond, 0, batch, t, labels, out);
}

static void dfn__unet_train_backward(const dfn_net *net, void *mem, int batch, float *grads,
                                     const float *dout, const int *labels)
{
    const dfn__unet_train *st = (const dfn__unet_train *)dfn__arena_begin(mem).base;
    dfn_unet u = dfn__unet_of(net);
    dfn__unet_backward(&u, &st->pl, net->params, grads, &st->bu, batch, labels, dout);
}
#endif /* DFN_NO_TRAINING */

/* The stored config (format version 1): 20 u32. */
static size_t dfn__unet_config_save(const void *cfg, unsigned char *buf)
{
    const dfn_unet_config *c = (const dfn_unet_config *)cfg;
    dfn__wbuf w;
    int l;
    dfn__wbuf_init(&w, buf, buf ? DFN__UNET_CONFIG_FILE_BYTES : 0);
    dfn__put_u32(&w, (uint32_t)c->height);
    dfn__put_u32(&w, (uint32_t)c->width);
    dfn__put_u32(&w, (uint32_t)c->channels);
    dfn__put_u32(&w, (uint32_t)c->cond_channels);
    dfn__put_u32(&w, (uint32_t)c->base_channels);
    dfn__put_u32(&w, (uint32_t)c->levels);
    for (l = 0; l < DFN_UNET_MAX_LEVELS; l++) dfn__put_u32(&w, (uint32_t)c->mult[l]);
    dfn__put_u32(&w, (uint32_t)c->blocks);
    for (l = 0; l < DFN_UNET_MAX_LEVELS; l++) dfn__put_u32(&w, (uint32_t)c->attention[l]);
    dfn__put_u32(&w, (uint32_t)c->mid_attention);
    dfn__put_u32(&w, (uint32_t)c->groups);
    dfn__put_u32(&w, (uint32_t)c->time_dim);
    dfn__put_u32(&w, (uint32_t)c->num_classes);
    dfn__put_u32(&w, (uint32_t)c->prediction);
    return w.len;
}

static dfn_result dfn__unet_config_load(void *cfg, const unsigned char *buf, size_t len)
{
    dfn_unet_config *u = (dfn_unet_config *)cfg;
    dfn__rbuf r;
    int l;
    DFN_MEMSET(u, 0, sizeof *u);
    dfn__rbuf_init(&r, buf, len);
    u->height = (int)dfn__get_i32(&r);
    u->width = (int)dfn__get_i32(&r);
    u->channels = (int)dfn__get_i32(&r);
    u->cond_channels = (int)dfn__get_i32(&r);
    u->base_channels = (int)dfn__get_i32(&r);
    u->levels = (int)dfn__get_i32(&r);
    for (l = 0; l < DFN_UNET_MAX_LEVELS; l++) u->mult[l] = (int)dfn__get_i32(&r);
    u->blocks = (int)dfn__get_i32(&r);
    for (l = 0; l < DFN_UNET_MAX_LEVELS; l++) u->attention[l] = (int)dfn__get_i32(&r);
    u->mid_attention = (int)dfn__get_i32(&r);
    u->groups = (int)dfn__get_i32(&r);
    u->time_dim = (int)dfn__get_i32(&r);
    u->num_classes = (int)dfn__get_i32(&r);
    u->prediction = (dfn_prediction)dfn__get_u32(&r);
    return r.err || r.pos != len ? DFN_ERR_FORMAT : DFN_OK;
}

static int dfn__unet_config_same(const void *pa, const void *pb)
{
    const dfn_unet_config *a = (const dfn_unet_config *)pa, *b = (const dfn_unet_config *)pb;
    int l, same = a->height == b->height && a->width == b->width && a->channels == b->channels &&
                  a->cond_channels == b->cond_channels && a->base_channels == b->base_channels &&
                  a->levels == b->levels && a->blocks == b->blocks && a->mid_attention == b->mid_attention &&
                  a->groups == b->groups && a->time_dim == b->time_dim && a->num_classes == b->num_classes &&
                  a->prediction == b->prediction;
    for (l = 0; l < a->levels && same; l++)
        same = a->mult[l] == b->mult[l] && a->attention[l] == b->attention[l];
    return same;
}


/* The U-Net's named tensors: the embedding (emb1, emb2, class_emb), the
   input conv (inp), then layers.k for the k-th ResBlock, attention or
   upsampling of the plan, and the output (out_norm, out_conv). Walks the
   plan to tensor i. */
static int dfn__unet_tensor(const void *cfgv, int want, dfn_net_tensor *o)
{
    const dfn_unet_config *c = (const dfn_unet_config *)cfgv;
    dfn__uplan pl;
    dfn_net_tensor tmp;
    int i = 0, k = 0, op, T = c->time_dim, E = c->base_channels;
    if (dfn_unet_config_check(c) != DFN_OK) return -1;
    dfn__unet_plan(c, &pl);
    if (!o || want < 0) o = &tmp;
#define DFN__NT(a, kk, b, off, conv, nd, s0, s1, s2, s3) \
    do { if (i == want) dfn__nt_set(o, a, kk, b, off, conv, nd, s0, s1, s2, s3); i++; } while (0)
    DFN__NT("emb1.weight", -1, "", pl.emb.w1, 0, 2, T, E, 0, 0);
    DFN__NT("emb1.bias", -1, "", pl.emb.b1, 0, 1, T, 0, 0, 0);
    DFN__NT("emb2.weight", -1, "", pl.emb.w2, 0, 2, T, T, 0, 0);
    DFN__NT("emb2.bias", -1, "", pl.emb.b2, 0, 1, T, 0, 0, 0);
    if (c->num_classes > 0) DFN__NT("class_emb.weight", -1, "", pl.emb.cls, 0, 2, c->num_classes + 1, T, 0, 0);
    for (op = 0; op < pl.n_ops; op++) {
        const dfn__uop *u = &pl.op[op];
        const dfn__uweights *w = &u->wt;
        size_t p = u->p;
        int ci = u->ci, co = u->co;
        switch (u->kind) {
        case DFN__U_IN:
            DFN__NT("inp.weight", -1, "", p + w->conv1, 1, 4, co, ci, 3, 3);
            DFN__NT("inp.bias", -1, "", p + w->conv1_b, 0, 1, co, 0, 0, 0);
            break;
        case DFN__U_RES:
            DFN__NT("layers.", k, "norm1.weight", p + w->norm1, 0, 1, ci, 0, 0, 0);
            DFN__NT("layers.", k, "norm1.bias", p + w->norm1 + (size_t)ci, 0, 1, ci, 0, 0, 0);
            DFN__NT("layers.", k, "conv1.weight", p + w->conv1, 1, 4, co, ci, 3, 3);
            DFN__NT("layers.", k, "conv1.bias", p + w->conv1_b, 0, 1, co, 0, 0, 0);
            DFN__NT("layers.", k, "emb.weight", p + w->emb, 0, 2, co, T, 0, 0);
            DFN__NT("layers.", k, "emb.bias", p + w->emb_b, 0, 1, co, 0, 0, 0);
            DFN__NT("layers.", k, "norm2.weight", p + w->norm2, 0, 1, co, 0, 0, 0);
            DFN__NT("layers.", k, "norm2.bias", p + w->norm2 + (size_t)co, 0, 1, co, 0, 0, 0);
            DFN__NT("layers.", k, "conv2.weight", p + w->conv2, 1, 4, co, co, 3, 3);
            DFN__NT("layers.", k, "conv2.bias", p + w->conv2_b, 0, 1, co, 0, 0, 0);
            if (ci != co) {
                DFN__NT("layers.", k, "skip.weight", p + w->skip, 0, 4, co, ci, 1, 1);
                DFN__NT("layers.", k, "skip.bias", p + w->skip_b, 0, 1, co, 0, 0, 0);
            }
            k++;
            break;
        case DFN__U_ATTN:
            DFN__NT("layers.", k, "norm.weight", p + w->norm1, 0, 1, co, 0, 0, 0);
            DFN__NT("layers.", k, "norm.bias", p + w->norm1 + (size_t)co, 0, 1, co, 0, 0, 0);
            DFN__NT("layers.", k, "qkv.weight", p + w->qkv, 0, 2, 3 * co, co, 0, 0);
            DFN__NT("layers.", k, "qkv.bias", p + w->qkv_b, 0, 1, 3 * co, 0, 0, 0);
            DFN__NT("layers.", k, "proj.weight", p + w->proj, 0, 2, co, co, 0, 0);
            DFN__NT("layers.", k, "proj.bias", p + w->proj_b, 0, 1, co, 0, 0, 0);
            k++;
            break;
        case DFN__U_UP:
            DFN__NT("layers.", k, "conv.weight", p + w->conv1, 1, 4, co, ci, 3, 3);
            DFN__NT("layers.", k, "conv.bias", p + w->conv1_b, 0, 1, co, 0, 0, 0);
            k++;
            break;
        case DFN__U_OUT:
            DFN__NT("out_norm.weight", -1, "", p + w->norm1, 0, 1, ci, 0, 0, 0);
            DFN__NT("out_norm.bias", -1, "", p + w->norm1 + (size_t)ci, 0, 1, ci, 0, 0, 0);
            DFN__NT("out_conv.weight", -1, "", p + w->conv1, 1, 4, co, ci, 3, 3);
            DFN__NT("out_conv.bias", -1, "", p + w->conv1_b, 0, 1, co, 0, 0, 0);
            break;
        default:
            break;
        }
    }
#undef DFN__NT
    return i;
}

static const dfn_net_ops dfn__unet_ops = {
    DFN_NET_UNET, "unet", sizeof(dfn_unet_config), dfn__unet_describe, dfn__unet_net_init_weights,
    dfn__unet_net_forward_size, dfn__unet_net_forward,
#ifndef DFN_NO_TRAINING
    dfn__unet_train_size, dfn__unet_train_bind, dfn__unet_train_forward, dfn__unet_train_backward,
#else
    NULL, NULL, NULL, NULL,
#endif
    dfn__unet_config_save, dfn__unet_config_load, dfn__unet_config_same, DFN__UNET_CONFIG_FILE_BYTES, dfn__unet_tensor
};

DFNDEF const dfn_net_ops *dfn_unet_net_ops(void) { return &dfn__unet_ops; }

DFNDEF dfn_net dfn_unet_net(const dfn_unet *u)
{
    dfn_net n;
    n.ops = &dfn__unet_ops;
    n.cfg = u ? &u->cfg : NULL;
    n.params = u ? u->params : NULL;
    n.count = u ? u->count : 0;
    return n;
}

/* ------------------------------------------------------------------------- */
/*  Guidance: a noise-aware classifier and a constraint                      */
/* ------------------------------------------------------------------------- */

DFNDEF dfn_classifier_config dfn_classifier_config_default(int dim, int num_classes)
{
    dfn_classifier_config c;
    DFN_MEMSET(&c, 0, sizeof c);
    c.dim = dim;
    c.num_classes = num_classes;
    c.hidden = 64;
    c.time_dim = 32;
    c.act = DFN_ACT_SILU;
    return c;
}

DFNDEF size_t dfn_classifier_num_params(const dfn_classifier_config *c)
{
    double in, total;
    if (!c || c->dim < 1 || c->num_classes < 2 || c->hidden < 1 || c->time_dim < 2 || c->time_dim % 2)
        return 0;
    if (c->act != DFN_ACT_IDENTITY && c->act != DFN_ACT_RELU && c->act != DFN_ACT_SILU &&
        c->act != DFN_ACT_GELU)
        return 0;
    in = (double)c->dim + c->time_dim;
    total = (double)c->hidden * (in + 1) + (double)c->hidden * ((double)c->hidden + 1) +
            (double)c->num_classes * ((double)c->hidden + 1);
    if (total > 268435456.0 || in > 1e7) return 0;
    return (size_t)total;
}

DFNDEF dfn_result dfn_classifier_init(dfn_classifier *c, const dfn_classifier_config *cfg, float *params)
{
    if (!c || !cfg || !params) return DFN_ERR_NULL;
    if (dfn_classifier_num_params(cfg) == 0) return DFN_ERR_INVALID_ARG;
    c->cfg = *cfg;
    c->count = dfn_classifier_num_params(cfg);
    c->params = params;
    return DFN_OK;
}

/* Offsets of W_1, b_1, W_2, b_2, W_3, b_3 in the flat block. */
typedef struct dfn__clf_views {
    size_t in_dim, w1, b1, w2, b2, w3, b3;
} dfn__clf_views;

static dfn__clf_views dfn__clf_offsets(const dfn_classifier_config *c)
{
    dfn__clf_views v;
    size_t H = (size_t)c->hidden;
    v.in_dim = (size_t)c->dim + (size_t)c->time_dim;
    v.w1 = 0;
    v.b1 = v.w1 + H * v.in_dim;
    v.w2 = v.b1 + H;
    v.b2 = v.w2 + H * H;
    v.w3 = v.b2 + H;
    v.b3 = v.w3 + (size_t)c->num_classes * H;
    return v;
}

DFNDEF dfn_result dfn_classifier_init_weights(dfn_classifier *c, dfn_rng *rng)
{
    dfn__clf_views v;
    size_t H;
    if (!c || !c->params || !rng) return DFN_ERR_NULL;
    v = dfn__clf_offsets(&c->cfg);
    H = (size_t)c->cfg.hidden;
    dfn__uniform_fill(rng, c->params + v.w1, H * v.in_dim + H, v.in_dim);                 /* W_1, b_1 */
    dfn__uniform_fill(rng, c->params + v.w2, H * H + H, H);                                /* W_2, b_2 */
    dfn__uniform_fill(rng, c->params + v.w3, (size_t)c->cfg.num_classes * H + (size_t)c->cfg.num_classes, H);
    return DFN_OK;
}

/* The workspace for n rows: forward values, backward buffers, GEMM scratch. */
typedef struct dfn__clf_work {
    float *in, *pre1, *h1, *pre2, *h2, *logits;   /* forward                       */
    float *tf;                                    /* (n) timesteps as floats       */
    int   *t;                                     /* (n) for the guidance hook     */
    float *dlogits, *dh, *dpre, *din, *gscratch;  /* backward                      */
    float *gemm;
} dfn__clf_work;

static size_t dfn__clf_work_layout(const dfn_classifier_config *c, int n, dfn__clf_work *w, void *mem)
{
    dfn__arena a = dfn__arena_begin(mem);
    size_t N = (size_t)n, H = (size_t)c->hidden, C = (size_t)c->num_classes, f = sizeof(float);
    size_t in_dim = (size_t)c->dim + (size_t)c->time_dim;
    w->in = (float *)dfn__arena_take(&a, N * in_dim * f);
    w->pre1 = (float *)dfn__arena_take(&a, N * H * f);
    w->h1 = (float *)dfn__arena_take(&a, N * H * f);
    w->pre2 = (float *)dfn__arena_take(&a, N * H * f);
    w->h2 = (float *)dfn__arena_take(&a, N * H * f);
    w->logits = (float *)dfn__arena_take(&a, N * C * f);
    w->tf = (float *)dfn__arena_take(&a, N * f);
    w->t = (int *)dfn__arena_take(&a, N * sizeof(int));
    w->dlogits = (float *)dfn__arena_take(&a, N * C * f);
    w->dh = (float *)dfn__arena_take(&a, N * H * f);
    w->dpre = (float *)dfn__arena_take(&a, N * H * f);
    w->din = (float *)dfn__arena_take(&a, N * in_dim * f);
    w->gscratch = (float *)dfn__arena_take(&a, dfn_classifier_num_params(c) * f);
    w->gemm = (float *)dfn__arena_take(&a, dfn_gemm_work_size());
    return dfn__arena_size(&a);
}

DFNDEF size_t dfn_classifier_work_size(const dfn_classifier_config *cfg, int n)
{
    dfn__clf_work w;
    if (dfn_classifier_num_params(cfg) == 0 || n < 1) return 0;
    if ((double)n * ((double)cfg->dim + cfg->time_dim + 6.0 * cfg->hidden + 2.0 * cfg->num_classes) > 1e9)
        return 0;
    return dfn__clf_work_layout(cfg, n, &w, NULL);
}

/* Forward for n rows into w; logits left in w->logits, log-probabilities
   written to logp when not NULL. */
static void dfn__clf_forward(const dfn_classifier *c, const dfn__clf_work *w, float *logp,
                             const float *x, const int *t, int n)
{
    const dfn_classifier_config *cf = &c->cfg;
    dfn__clf_views v = dfn__clf_offsets(cf);
    const float *P = c->params;
    int H = cf->hidden, C = cf->num_classes, i, j;
    size_t NH = (size_t)n * H;
    for (i = 0; i < n; i++) {
        w->tf[i] = (float)t[i];
        for (j = 0; j < cf->dim; j++) w->in[(size_t)i * v.in_dim + j] = x[(size_t)i * cf->dim + j];
    }
    /* [x, temb(t)] */
    dfn_sinusoidal_embedding(w->in + cf->dim, (int)v.in_dim, w->tf, 1, 1.0f, n, cf->time_dim);
    /* h_1 = act(W_1 in + b_1); h_2 = act(W_2 h_1 + b_2); logits = W_3 h_2 + b_3 */
    dfn_linear_forward(w->pre1, w->in, P + v.w1, P + v.b1, n, (int)v.in_dim, H, w->gemm);
    dfn_act_forward(cf->act, NH, w->pre1, w->h1);
    dfn_linear_forward(w->pre2, w->h1, P + v.w2, P + v.b2, n, H, H, w->gemm);
    dfn_act_forward(cf->act, NH, w->pre2, w->h2);
    dfn_linear_forward(w->logits, w->h2, P + v.w3, P + v.b3, n, H, C, w->gemm);
    if (logp)
        for (i = 0; i < n; i++) {
            /* log softmax: logits - (max + log sum exp(logits - max)), in double */
            const float *z = w->logits + (size_t)i * C;
            double mx = z[0], sum = 0.0;
            for (j = 1; j < C; j++) if (z[j] > mx) mx = z[j];
            for (j = 0; j < C; j++) sum += DFN_EXP((double)z[j] - mx);
            for (j = 0; j < C; j++) logp[(size_t)i * C + j] = (float)((double)z[j] - mx - DFN_LOG(sum));
        }
}

static dfn_result dfn__clf_check(const dfn_classifier *c, const float *x, const int *t, int n,
                                 void *work, size_t work_bytes)
{
    size_t need;
    int i;
    if (!c || !c->params || !x || !t || !work) return DFN_ERR_NULL;
    if (n < 1) return DFN_ERR_INVALID_ARG;
    for (i = 0; i < n; i++)
        if (t[i] < 0) return DFN_ERR_INVALID_ARG;
    need = dfn_classifier_work_size(&c->cfg, n);
    if (need == 0 || need > work_bytes) return DFN_ERR_BUFFER_TOO_SMALL;
    return DFN_OK;
}

DFNDEF dfn_result dfn_classifier_forward(const dfn_classifier *c, float *logp, const float *x,
                                         const int *t, int n, void *work, size_t work_bytes)
{
    dfn__clf_work w;
    dfn_result r;
    if (!logp) return DFN_ERR_NULL;
    if ((r = dfn__clf_check(c, x, t, n, work, work_bytes)) != DFN_OK) return r;
    dfn__clf_work_layout(&c->cfg, n, &w, work);
    dfn__clf_forward(c, &w, logp, x, t, n);
    return DFN_OK;
}

/* The classifier's dfn_net operations. */
static dfn_classifier dfn__clf_of(const dfn_net *net)
{
    dfn_classifier c;
    c.cfg = *(const dfn_classifier_config *)net->cfg;
    c.count = net->count;
    c.params = net->params;
    return c;
}

static dfn_result dfn__clf_describe(const void *cfg, dfn_net_shape *s)
{
    const dfn_classifier_config *c = (const dfn_classifier_config *)cfg;
    if ((s->params = dfn_classifier_num_params(c)) == 0) return DFN_ERR_INVALID_ARG;
    s->dim = c->dim;
    s->out_dim = c->num_classes;
    s->cond_dim = 0;
    s->num_classes = 0;                  /* labels are not an input */
    s->prediction = DFN_PREDICT_EPS;     /* (not a noise network: unused) */
    return DFN_OK;
}

static void dfn__clf_net_init_weights(const dfn_net *net, dfn_rng *rng)
{
    dfn_classifier c = dfn__clf_of(net);
    dfn_classifier_init_weights(&c, rng);
}

static size_t dfn__clf_net_forward_size(const void *cfg, int chunk)
{
    return dfn_classifier_work_size((const dfn_classifier_config *)cfg, chunk);
}

/* Any n, in the largest chunks the workspace holds. */
static dfn_result dfn__clf_net_forward(const dfn_net *net, float *out, const float *x, const float *cond,
                                       int cond_rows, const int *t, const int *labels, int n, void *work,
                                       size_t work_bytes)
{
    dfn_classifier c = dfn__clf_of(net);
    size_t need = dfn_classifier_work_size(&c.cfg, 1);
    int chunk = 1, i;
    dfn_result r = DFN_OK;
    (void)cond; (void)cond_rows; (void)labels;
    if (need == 0 || need > work_bytes) return DFN_ERR_BUFFER_TOO_SMALL;
    while (chunk < n) {
        int next = chunk > n / 2 ? n : chunk * 2;
        need = dfn_classifier_work_size(&c.cfg, next);
        if (need == 0 || need > work_bytes) break;
        chunk = next;
    }
    for (i = 0; i < n && r == DFN_OK; i += chunk) {
        int b = n - i < chunk ? n - i : chunk;
        r = dfn_classifier_forward(&c, out + (size_t)i * c.cfg.num_classes, x + (size_t)i * c.cfg.dim, t + i, b,
                                   work, work_bytes);
    }
    return r;
}

/* The stored config: u32 dim, num_classes, hidden, time_dim, act. */
static size_t dfn__clf_config_save(const void *cfg, unsigned char *buf)
{
    const dfn_classifier_config *c = (const dfn_classifier_config *)cfg;
    dfn__wbuf w;
    dfn__wbuf_init(&w, buf, buf ? DFN__CLF_CONFIG_FILE_BYTES : 0);
    dfn__put_u32(&w, (uint32_t)c->dim);
    dfn__put_u32(&w, (uint32_t)c->num_classes);
    dfn__put_u32(&w, (uint32_t)c->hidden);
    dfn__put_u32(&w, (uint32_t)c->time_dim);
    dfn__put_u32(&w, (uint32_t)c->act);
    return w.len;
}

static dfn_result dfn__clf_config_load(void *cfg, const unsigned char *buf, size_t len)
{
    dfn_classifier_config *c = (dfn_classifier_config *)cfg;
    dfn__rbuf r;
    DFN_MEMSET(c, 0, sizeof *c);
    dfn__rbuf_init(&r, buf, len);
    c->dim = (int)dfn__get_i32(&r);
    c->num_classes = (int)dfn__get_i32(&r);
    c->hidden = (int)dfn__get_i32(&r);
    c->time_dim = (int)dfn__get_i32(&r);
    c->act = (dfn_activation)dfn__get_u32(&r);
    return r.err || r.pos != len ? DFN_ERR_FORMAT : DFN_OK;
}

static int dfn__clf_config_same(const void *pa, const void *pb)
{
    const dfn_classifier_config *a = (const dfn_classifier_config *)pa, *b = (const dfn_classifier_config *)pb;
    return a->dim == b->dim && a->num_classes == b->num_classes && a->hidden == b->hidden &&
           a->time_dim == b->time_dim && a->act == b->act;
}

static const dfn_net_ops dfn__clf_ops = {
    DFN_NET_CLASSIFIER, "classifier", sizeof(dfn_classifier_config), dfn__clf_describe,
    dfn__clf_net_init_weights, dfn__clf_net_forward_size, dfn__clf_net_forward,
    NULL, NULL, NULL, NULL,
    dfn__clf_config_save, dfn__clf_config_load, dfn__clf_config_same, DFN__CLF_CONFIG_FILE_BYTES, NULL
};

DFNDEF const dfn_net_ops *dfn_classifier_net_ops(void) { return &dfn__clf_ops; }

DFNDEF dfn_net dfn_classifier_net(const dfn_classifier *c)
{
    dfn_net n;
    n.ops = &dfn__clf_ops;
    n.cfg = c ? &c->cfg : NULL;
    n.params = c ? c->params : NULL;
    n.count = c ? c->count : 0;
    return n;
}

#ifndef DFN_NO_TRAINING
DFNDEF dfn_result dfn_classifier_backward(const dfn_classifier *c, float *grads, float *dx,
                                          double *objective, const float *x, const int *t,
                                          const int *labels, float weight, int n,
                                          void *work, size_t work_bytes)
{
    dfn__clf_work w;
    dfn__clf_views v;
    dfn_result r;
    const float *P;
    float *G;
    double obj = 0.0;
    int H, C, D, i, j;
    size_t NH;
    if ((r = dfn__clf_check(c, x, t, n, work, work_bytes)) != DFN_OK) return r;
    if (!labels) return DFN_ERR_NULL;
    for (i = 0; i < n; i++)
        if (labels[i] < -1 || labels[i] >= c->cfg.num_classes) return DFN_ERR_INVALID_ARG;
    dfn__clf_work_layout(&c->cfg, n, &w, work);
    v = dfn__clf_offsets(&c->cfg);
    H = c->cfg.hidden; C = c->cfg.num_classes; D = c->cfg.dim;
    NH = (size_t)n * H;
    P = c->params;
    G = grads ? grads : w.gscratch;       /* weight gradients are computed either way */
    if (!grads) DFN_MEMSET(G, 0, c->count * sizeof(float));
    dfn__clf_forward(c, &w, NULL, x, t, n);

    /* L = sum_i w_i log softmax(z_i)[y_i]:  dL/dz_ij = w_i (1[j = y_i] - softmax(z_i)_j) */
    for (i = 0; i < n; i++) {
        const float *z = w.logits + (size_t)i * C;
        float *dz = w.dlogits + (size_t)i * C;
        double mx = z[0], sum = 0.0, wi = labels[i] >= 0 ? weight : 0.0;
        for (j = 1; j < C; j++) if (z[j] > mx) mx = z[j];
        for (j = 0; j < C; j++) sum += DFN_EXP((double)z[j] - mx);
        for (j = 0; j < C; j++) {
            double pj = DFN_EXP((double)z[j] - mx) / sum;
            dz[j] = (float)(wi * ((j == labels[i] ? 1.0 : 0.0) - pj));
        }
        if (labels[i] >= 0) obj += wi * ((double)z[labels[i]] - mx - DFN_LOG(sum));
    }
    if (objective) *objective = obj;
    if (!(obj - obj == 0.0)) return DFN_ERR_NOT_FINITE;

    /* Backward, each line undoing one line of the forward. */
    DFN_MEMSET(w.dh, 0, NH * sizeof(float));
    dfn_linear_backward(w.dh, G + v.w3, G + v.b3, w.dlogits, w.h2, P + v.w3, n, H, C, w.gemm);
    dfn_act_backward(c->cfg.act, NH, w.pre2, w.dh, w.dpre);
    DFN_MEMSET(w.dh, 0, NH * sizeof(float));
    dfn_linear_backward(w.dh, G + v.w2, G + v.b2, w.dpre, w.h1, P + v.w2, n, H, H, w.gemm);
    dfn_act_backward(c->cfg.act, NH, w.pre1, w.dh, w.dpre);
    DFN_MEMSET(w.din, 0, (size_t)n * v.in_dim * sizeof(float));
    dfn_linear_backward(w.din, G + v.w1, G + v.b1, w.dpre, w.in, P + v.w1, n, (int)v.in_dim, H, w.gemm);
    /* dL/dx: the first D columns of dL/din (the t-embedding does not depend on x) */
    if (dx)
        for (i = 0; i < n; i++)
            for (j = 0; j < D; j++) dx[(size_t)i * D + j] = w.din[(size_t)i * v.in_dim + j];
    return DFN_OK;
}

/* The trainer's arrays in mem (NULL: measure only); returns the bytes needed. */
static size_t dfn__clf_trainer_layout(const dfn_classifier_config *cfg, int batch,
                                      dfn_classifier_trainer *tr, void *mem)
{
    dfn__arena a = dfn__arena_begin(mem);
    size_t P = dfn_classifier_num_params(cfg), BD = (size_t)batch * (size_t)cfg->dim;
    tr->grads = (float *)dfn__arena_take(&a, P * sizeof(float));
    tr->adam_m = (float *)dfn__arena_take(&a, P * sizeof(float));
    tr->adam_v = (float *)dfn__arena_take(&a, P * sizeof(float));
    tr->xt = (float *)dfn__arena_take(&a, BD * sizeof(float));
    tr->eps = (float *)dfn__arena_take(&a, BD * sizeof(float));
    tr->t = (int *)dfn__arena_take(&a, (size_t)batch * sizeof(int));
    tr->work_bytes = dfn_classifier_work_size(cfg, batch);
    tr->work = dfn__arena_take(&a, tr->work_bytes);
    return dfn__arena_size(&a);
}

DFNDEF size_t dfn_classifier_trainer_size(const dfn_classifier_config *cfg, int batch)
{
    dfn_classifier_trainer tmp;
    if (dfn_classifier_num_params(cfg) == 0 || batch < 1 || dfn_classifier_work_size(cfg, batch) == 0) return 0;
    return dfn__clf_trainer_layout(cfg, batch, &tmp, NULL);
}

DFNDEF dfn_result dfn_classifier_trainer_init(dfn_classifier_trainer *tr, dfn_classifier *clf,
                                              const dfn_schedule *s, int batch, float lr,
                                              void *mem, size_t bytes)
{
    size_t P;
    if (!tr || !clf || !clf->params || !s || !s->alphabar || !mem) return DFN_ERR_NULL;
    if (batch < 1 || !(lr > 0.0f) || !dfn__finite(lr)) return DFN_ERR_INVALID_ARG;
    if (dfn_classifier_trainer_size(&clf->cfg, batch) == 0) return DFN_ERR_INVALID_ARG;
    if (bytes < dfn_classifier_trainer_size(&clf->cfg, batch)) return DFN_ERR_BUFFER_TOO_SMALL;
    DFN_MEMSET(tr, 0, sizeof *tr);
    P = clf->count;
    dfn__clf_trainer_layout(&clf->cfg, batch, tr, mem);
    DFN_MEMSET(tr->adam_m, 0, P * sizeof(float));
    DFN_MEMSET(tr->adam_v, 0, P * sizeof(float));
    tr->clf = clf;
    tr->schedule = s;
    tr->batch = batch;
    tr->lr = lr;
    tr->memory = mem;
    return DFN_OK;
}

DFNDEF dfn_result dfn_classifier_train_step(dfn_classifier_trainer *tr, const float *x0,
                                            const int *labels, dfn_rng *rng, float *loss)
{
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    dfn_adam_coefs ac;
    dfn_result r;
    double obj = 0.0, bc1, bc2;
    size_t P;
    int B, D, k;
    if (!tr || !tr->clf || !tr->memory || !x0 || !labels || !rng) return DFN_ERR_NULL;
    B = tr->batch;
    D = tr->clf->cfg.dim;
    P = tr->clf->count;
    for (k = 0; k < B; k++)
        if (labels[k] < 0 || labels[k] >= tr->clf->cfg.num_classes) return DFN_ERR_INVALID_ARG;
    if (!dfn__all_finite(x0, (size_t)B * D)) return DFN_ERR_NOT_FINITE;
    /* x_t = q_sample(x_0, t, eps) with t ~ U{1..T} (section 1) */
    for (k = 0; k < B; k++) tr->t[k] = 1 + (int)dfn_rng_below(rng, (uint32_t)tr->schedule->T);
    dfn_rng_normal_fill(rng, tr->eps, (size_t)B * D);
    if ((r = dfn_q_sample(tr->schedule, tr->xt, x0, tr->eps, tr->t, B, D)) != DFN_OK) return r;
    /* weight -1/B: the objective is the mean cross-entropy, grads its gradient */
    DFN_MEMSET(tr->grads, 0, P * sizeof(float));
    r = dfn_classifier_backward(tr->clf, tr->grads, NULL, &obj, tr->xt, tr->t, labels,
                                -1.0f / (float)B, B, tr->work, tr->work_bytes);
    if (loss) *loss = (float)obj;
    if (r != DFN_OK) return r;
    if (!dfn__all_finite(tr->grads, P)) return DFN_ERR_NOT_FINITE;
    /* Adam with bias correction (no decay, no clipping, no EMA) */
    tr->step++;
    bc1 = 1.0 - DFN_EXP((double)tr->step * DFN_LOG((double)b1));
    bc2 = 1.0 - DFN_EXP((double)tr->step * DFN_LOG((double)b2));
    ac.beta1 = b1;
    ac.beta2 = b2;
    ac.step_size = (float)(tr->lr / bc1);
    ac.v_scale = (float)(1.0 / bc2);
    ac.eps = eps;
    ac.decay = 0.0f;
    ac.grad_scale = 1.0f;
    ac.ema_decay = 0.0f;
    dfn_adam_update(P, tr->clf->params, tr->adam_m, tr->adam_v, tr->grads, NULL, &ac);
    return DFN_OK;
}

DFNDEF int dfn_classifier_guide(void *user, const dfn_guide_info *info)
{
    dfn_classifier_guidance *g = (dfn_classifier_guidance *)user;
    dfn__clf_work w;
    dfn_result r;
    int k;
    if (!g || !g->clf || !info || !g->grad || !g->work) return (int)DFN_ERR_NULL;
    if (info->dim != g->clf->cfg.dim) return (int)DFN_ERR_MISMATCH;
    if (g->scale == 0.0f) return 0;
    if (dfn_classifier_work_size(&g->clf->cfg, info->n) > g->work_bytes || info->n < 1)
        return (int)DFN_ERR_BUFFER_TOO_SMALL;
    /* The hook's t array lives in the workspace; backward lays it out the same way. */
    dfn__clf_work_layout(&g->clf->cfg, info->n, &w, g->work);
    for (k = 0; k < info->n; k++) w.t[k] = info->t;
    /* g = grad_x log p(y | x_t, t) per row (0 for label -1), then section 9's convention */
    r = dfn_classifier_backward(g->clf, NULL, g->grad, NULL, info->x_t, w.t, info->labels, 1.0f,
                                info->n, g->work, g->work_bytes);
    if (r != DFN_OK) return (int)r;
    dfn_guide_add_score(info, g->grad, g->scale);
    return 0;
}
#endif /* DFN_NO_TRAINING */

DFNDEF int dfn_halfspace_guide(void *user, const dfn_guide_info *info)
{
    const dfn_halfspace_guidance *h = (const dfn_halfspace_guidance *)user;
    double a2 = 0.0, ab, coef, s2;
    int i, j, D;
    if (!h || !h->a || !info || !info->eps_hat || !info->x0_hat) return (int)DFN_ERR_NULL;
    D = info->dim;
    for (j = 0; j < D; j++) a2 += (double)h->a[j] * h->a[j];
    if (!(a2 > 0.0) || !(h->strength >= 0.0f)) return (int)DFN_ERR_INVALID_ARG;
    ab = (double)info->sqrt_alphabar * info->sqrt_alphabar;
    if (ab <= 0.0 || ab >= 1.0) return 0;
    /* grad P(x0_hat) = max(0, a . x0_hat - b) a / |a|^2;
       g = -(sqrt(ab) / (1 - ab)) strength grad P;  eps_hat -= sqrt(1 - ab) g
       (in (a, s): g = -(a / s^2) strength grad P, eps_hat -= s g) */
    s2 = info->schedule && info->schedule->process == DFN_PROCESS_FLOW
       ? (double)info->sqrt_one_minus_alphabar * info->sqrt_one_minus_alphabar : 1.0 - ab;
    coef = (double)h->strength * info->sqrt_alphabar * info->sqrt_one_minus_alphabar / s2 / a2;
    for (i = 0; i < info->n; i++) {
        const float *x0 = info->x0_hat + (size_t)i * D;
        float *e = info->eps_hat + (size_t)i * D;
        double viol = -(double)h->b;
        for (j = 0; j < D; j++) viol += (double)h->a[j] * x0[j];
        if (viol <= 0.0) continue;
        for (j = 0; j < D; j++) e[j] = (float)(e[j] + coef * viol * h->a[j]);
    }
    return 0;
}

#ifndef DFN_NO_TRAINING

/* ------------------------------------------------------------------------- */
/*  Gradient checker                                                         */
/* ------------------------------------------------------------------------- */

DFNDEF dfn_result dfn_check_grad(dfn_loss_fn f, void *user, float *params, size_t n,
                                 const float *grad, size_t stride, float h, double floor,
                                 double *max_rel_err, size_t *worst_index)
{
    size_t i;
    double worst = 0.0;
    size_t where = 0;
    if (!f || !params || !grad || !max_rel_err) return DFN_ERR_NULL;
    if (!(h > 0.0f) || stride < 1 || !(floor > 0.0)) return DFN_ERR_INVALID_ARG;
    for (i = 0; i < n; i += stride) {
        float keep = params[i];
        double up, down, num, err;
        params[i] = keep + h;
        up = f(user, params);
        params[i] = keep - h;
        down = f(user, params);
        params[i] = keep;
        /* the step actually taken in float, not h itself */
        num = (up - down) / ((double)(keep + h) - (double)(keep - h));
        if (!(up == up) || !(down == down) || up - up != 0.0 || down - down != 0.0)
            return DFN_ERR_NOT_FINITE;
        err = DFN_SQRT((num - grad[i]) * (num - grad[i])) /
              (DFN_SQRT(num * num) + DFN_SQRT((double)grad[i] * grad[i]) > floor
                   ? DFN_SQRT(num * num) + DFN_SQRT((double)grad[i] * grad[i]) : floor);
        if (err > worst) { worst = err; where = i; }
    }
    *max_rel_err = worst;
    if (worst_index) *worst_index = where;
    return DFN_OK;
}

/* ------------------------------------------------------------------------- */
/*  Training                                                                 */
/* ------------------------------------------------------------------------- */

DFNDEF dfn_train_config dfn_train_config_default(void)
{
    dfn_train_config c;
    DFN_MEMSET(&c, 0, sizeof c);
    c.batch = 256;
    c.lr = 1e-3f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.weight_decay = 0.0f;
    c.grad_clip = 0.0f;
    c.warmup_steps = 0;
    c.total_steps = 0;
    c.min_lr_ratio = 0.0f;
    c.ema_decay = 0.999f;
    c.weighting = DFN_WEIGHT_UNIFORM;
    c.min_snr_gamma = 5.0f;
    c.p_uncond = 0.1f;
    c.time_sampling = DFN_TIME_UNIFORM;
    c.logit_mean = 0.0f;
    c.logit_std = 1.0f;
    return c;
}

static dfn_result dfn__train_check(const dfn_train_config *c)
{
    if (!c) return DFN_ERR_NULL;
    if (c->batch < 1 || !(c->lr > 0.0f) || !dfn__finite(c->lr)) return DFN_ERR_INVALID_ARG;
    if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f) || !(c->beta2 >= 0.0f && c->beta2 < 1.0f) ||
        !(c->eps > 0.0f) || !dfn__finite(c->eps))
        return DFN_ERR_INVALID_ARG;
    if (!(c->weight_decay >= 0.0f) || !dfn__finite(c->weight_decay) ||
        !(c->grad_clip >= 0.0f) || !dfn__finite(c->grad_clip))
        return DFN_ERR_INVALID_ARG;
    if (c->warmup_steps < 0 || c->total_steps < 0 || !(c->min_lr_ratio >= 0.0f && c->min_lr_ratio <= 1.0f))
        return DFN_ERR_INVALID_ARG;
    if (!(c->ema_decay >= 0.0f && c->ema_decay < 1.0f)) return DFN_ERR_INVALID_ARG;
    if (c->weighting != DFN_WEIGHT_UNIFORM && c->weighting != DFN_WEIGHT_MIN_SNR) return DFN_ERR_INVALID_ARG;
    if (!(c->min_snr_gamma > 0.0f) || !dfn__finite(c->min_snr_gamma)) return DFN_ERR_INVALID_ARG;
    if (!(c->p_uncond >= 0.0f && c->p_uncond <= 1.0f)) return DFN_ERR_INVALID_ARG;
    if (c->time_sampling != DFN_TIME_UNIFORM && c->time_sampling != DFN_TIME_LOGIT_NORMAL)
        return DFN_ERR_INVALID_ARG;
    if (c->time_sampling == DFN_TIME_LOGIT_NORMAL &&
        (!(c->logit_std > 0.0f) || !dfn__finite(c->logit_std) || !dfn__finite(c->logit_mean)))
        return DFN_ERR_INVALID_ARG;
    return DFN_OK;
}

/* The step's buffers, at the start of the trainer's memory: laid out once by
   dfn__trainer_layout (at init), found there by every step. */
typedef struct dfn__tstate {
    dfn_net_shape shape;
    float *xt, *eps, *target, *out, *dout, *w;   /* (B, D) each; w: (B)          */
    int   *t, *labels;                   /* (B)                                  */
    void  *net_mem;                      /* the network's training memory        */
    void  *cfg;                          /* the network's config, copied at init:
                                            the layout above follows it, so a
                                            later change to the model's config
                                            cannot reach the steps            */
} dfn__tstate;

/* Lays out (mem) or measures (mem NULL) a trainer's memory for a described
   network: the state, the four parameter-shaped blocks, the step's buffers,
   then the network's own, which it lays out too. 0 when too large. */
static size_t dfn__trainer_layout(const dfn_net *net, const dfn_net_shape *s, const dfn_train_config *c,
                                  dfn_trainer *tr, void *mem)
{
    dfn__arena ar = dfn__arena_begin(mem);
    size_t P = s->params * sizeof(float), B = (size_t)c->batch, nb;
    size_t BD = B * (size_t)s->dim * sizeof(float);
    double f = (double)c->batch * 5.0 * s->dim + 4.0 * (double)s->params;
    dfn__tstate *st;
    float *xt, *eps, *target, *out, *dout, *w;
    int *t, *labels;
    void *net_mem, *cfg;
    if (f > 1e9 || net->ops->config_bytes == 0 || net->ops->config_bytes > DFN_NET_CONFIG_MAX) return 0;
    nb = net->ops->train_size(net->cfg, c->batch);
    if (nb == 0 || f * 4.0 + (double)nb > (double)((size_t)-1) / 2.0) return 0;
    st = (dfn__tstate *)dfn__arena_take(&ar, sizeof(dfn__tstate));
    tr->grads = (float *)dfn__arena_take(&ar, P);
    tr->adam_m = (float *)dfn__arena_take(&ar, P);
    tr->adam_v = (float *)dfn__arena_take(&ar, P);
    tr->ema = c->ema_decay > 0.0f ? (float *)dfn__arena_take(&ar, P) : NULL;
    xt = (float *)dfn__arena_take(&ar, BD);
    eps = (float *)dfn__arena_take(&ar, BD);
    target = (float *)dfn__arena_take(&ar, BD);
    out = (float *)dfn__arena_take(&ar, BD);
    dout = (float *)dfn__arena_take(&ar, BD);
    w = (float *)dfn__arena_take(&ar, B * sizeof(float));
    t = (int *)dfn__arena_take(&ar, B * sizeof(int));
    labels = (int *)dfn__arena_take(&ar, B * sizeof(int));
    net_mem = dfn__arena_take(&ar, nb);
    cfg = dfn__arena_take(&ar, net->ops->config_bytes);
    if (st) {
        st->shape = *s;
        st->xt = xt; st->eps = eps; st->target = target; st->out = out; st->dout = dout; st->w = w;
        st->t = t; st->labels = labels; st->net_mem = net_mem; st->cfg = cfg;
        DFN_MEMCPY(cfg, net->cfg, net->ops->config_bytes);
        net->ops->train_bind(net->cfg, c->batch, net_mem);
        tr->state = st;
        tr->acts = (float *)net_mem;
    }
    return dfn__arena_size(&ar);
}

/* The shape of a network the trainer can train: DFN_ERR_INVALID_ARG for one
   without training operations. */
static dfn_result dfn__trainable(const dfn_net *net, dfn_net_shape *s)
{
    dfn_result r;
    if (!net || !net->ops || !net->cfg) return DFN_ERR_NULL;
    if ((r = dfn_net_describe(net->ops, net->cfg, s)) != DFN_OK) return r;
    if (!net->ops->train_size || !net->ops->train_bind || !net->ops->train_forward ||
        !net->ops->train_backward || s->out_dim != s->dim)
        return DFN_ERR_INVALID_ARG;
    return DFN_OK;
}

DFNDEF size_t dfn_trainer_size_net(const dfn_net *net, const dfn_train_config *cfg)
{
    dfn_trainer tr;
    dfn_net_shape s;
    if (dfn__trainable(net, &s) != DFN_OK || dfn__train_check(cfg) != DFN_OK) return 0;
    return dfn__trainer_layout(net, &s, cfg, &tr, NULL);
}

/* A network of kind ops over cfg, without weights (for sizes). */
static dfn_net dfn__net_view(const dfn_net_ops *ops, const void *cfg)
{
    dfn_net n;
    n.ops = ops;
    n.cfg = cfg;
    n.params = NULL;
    n.count = 0;
    return n;
}

DFNDEF size_t dfn_trainer_size(const dfn_mlp_config *model_cfg, const dfn_train_config *cfg)
{
    dfn_net n = dfn__net_view(&dfn__mlp_ops, model_cfg);
    return dfn_trainer_size_net(&n, cfg);
}

DFNDEF size_t dfn_trainer_size_unet(const dfn_unet_config *model_cfg, const dfn_train_config *cfg)
{
    dfn_net n = dfn__net_view(&dfn__unet_ops, model_cfg);
    return dfn_trainer_size_net(&n, cfg);
}

DFNDEF dfn_result dfn_trainer_init_net(dfn_trainer *tr, const dfn_net *net, const dfn_schedule *s,
                                       const dfn_train_config *cfg, void *mem, size_t bytes)
{
    dfn_net_shape sh;
    dfn_result r;
    size_t need, P;
    if (!tr || !net || !net->params || !s || !s->alphabar || !mem) return DFN_ERR_NULL;
    if ((r = dfn__train_check(cfg)) != DFN_OK) return r;
    if ((r = dfn__trainable(net, &sh)) != DFN_OK) return r;
    if (net->count != sh.params) return DFN_ERR_INVALID_ARG;
    DFN_MEMSET(tr, 0, sizeof *tr);
    need = dfn__trainer_layout(net, &sh, cfg, tr, NULL);
    if (need == 0) return DFN_ERR_INVALID_ARG;               /* too large to lay out */
    if (bytes < need) return DFN_ERR_BUFFER_TOO_SMALL;
    tr->cfg = *cfg;
    tr->schedule = s;
    tr->memory = mem;
    tr->net = *net;
    dfn__trainer_layout(net, &sh, cfg, tr, mem);
    tr->net.cfg = ((dfn__tstate *)tr->state)->cfg;   /* the trainer's own copy */
    P = sh.params * sizeof(float);
    DFN_MEMSET(tr->grads, 0, P);
    DFN_MEMSET(tr->adam_m, 0, P);
    DFN_MEMSET(tr->adam_v, 0, P);
    tr->ema_net = tr->net;
    if (tr->ema) {
        DFN_MEMCPY(tr->ema, net->params, P);
        tr->ema_net.params = tr->ema;
    }
    return DFN_OK;
}

/* The 0.7 views of a trainer of an MLP or a U-Net. */
static void dfn__trainer_views(dfn_trainer *tr, dfn_mlp *m, dfn_unet *u)
{
    tr->model = m;
    tr->unet = u;
    if (m) tr->ema_model = *m;
    if (u) tr->ema_unet = *u;
    tr->ema_model.params = tr->ema_net.params;
    tr->ema_unet.params = tr->ema_net.params;
}

DFNDEF dfn_result dfn_trainer_init(dfn_trainer *tr, dfn_mlp *model, const dfn_schedule *s,
                                   const dfn_train_config *cfg, void *mem, size_t bytes)
{
    dfn_net n = dfn_mlp_net(model);
    dfn_result r;
    if (!model) return DFN_ERR_NULL;
    r = dfn_trainer_init_net(tr, &n, s, cfg, mem, bytes);
    if (r == DFN_OK) dfn__trainer_views(tr, model, NULL);
    return r;
}

DFNDEF dfn_result dfn_trainer_init_unet(dfn_trainer *tr, dfn_unet *model, const dfn_schedule *s,
                                        const dfn_train_config *cfg, void *mem, size_t bytes)
{
    dfn_net n = dfn_unet_net(model);
    dfn_result r;
    if (!model) return DFN_ERR_NULL;
    r = dfn_trainer_init_net(tr, &n, s, cfg, mem, bytes);
    if (r == DFN_OK) dfn__trainer_views(tr, NULL, model);
    return r;
}

#ifndef DFN_NO_MALLOC
DFNDEF dfn_result dfn_trainer_alloc_net(dfn_trainer *tr, const dfn_net *net, const dfn_schedule *s,
                                        const dfn_train_config *cfg, void *alloc_ctx)
{
    dfn_net_shape sh;
    dfn_result r;
    size_t bytes;
    void *mem;
    if (!tr || !net) return DFN_ERR_NULL;
    DFN_MEMSET(tr, 0, sizeof *tr);
    if ((r = dfn__train_check(cfg)) != DFN_OK) return r;
    if ((r = dfn__trainable(net, &sh)) != DFN_OK) return r;
    bytes = dfn_trainer_size_net(net, cfg);
    if (bytes == 0) return DFN_ERR_INVALID_ARG;
    mem = DFN_MALLOC(bytes, alloc_ctx);
    if (!mem) return DFN_ERR_OUT_OF_MEMORY;
    r = dfn_trainer_init_net(tr, net, s, cfg, mem, bytes);
    if (r != DFN_OK) {
        DFN_FREE(mem, alloc_ctx);
        DFN_MEMSET(tr, 0, sizeof *tr);
    }
    return r;
}

DFNDEF dfn_result dfn_trainer_alloc(dfn_trainer *tr, dfn_mlp *model, const dfn_schedule *s,
                                    const dfn_train_config *cfg, void *alloc_ctx)
{
    dfn_net n = dfn_mlp_net(model);
    dfn_result r;
    if (!model) return DFN_ERR_NULL;
    r = dfn_trainer_alloc_net(tr, &n, s, cfg, alloc_ctx);
    if (r == DFN_OK) dfn__trainer_views(tr, model, NULL);
    return r;
}

DFNDEF dfn_result dfn_trainer_alloc_unet(dfn_trainer *tr, dfn_unet *model, const dfn_schedule *s,
                                         const dfn_train_config *cfg, void *alloc_ctx)
{
    dfn_net n = dfn_unet_net(model);
    dfn_result r;
    if (!model) return DFN_ERR_NULL;
    r = dfn_trainer_alloc_net(tr, &n, s, cfg, alloc_ctx);
    if (r == DFN_OK) dfn__trainer_views(tr, NULL, model);
    return r;
}

DFNDEF void dfn_trainer_free(dfn_trainer *tr, void *alloc_ctx)
{
    (void)alloc_ctx;
    if (!tr) return;
    if (tr->memory) DFN_FREE(tr->memory, alloc_ctx);
    DFN_MEMSET(tr, 0, sizeof *tr);
}
#endif

/* Section 5, Min-SNR-gamma: the loss weight of timestep t. */
static float dfn__loss_weight(const dfn_trainer *tr, dfn_prediction pred, int t)
{
    double snr = tr->schedule->snr[t], g = tr->cfg.min_snr_gamma, m;
    if (tr->cfg.weighting == DFN_WEIGHT_UNIFORM) return 1.0f;
    m = snr < g ? snr : g;
    switch (pred) {
    case DFN_PREDICT_EPS: return snr > 0.0 ? (float)(m / snr) : 1.0f;   /* limit at SNR -> 0 */
    case DFN_PREDICT_V:
        if (tr->schedule->process == DFN_PROCESS_FLOW) {
            /* the x0 weight m times |dx0/dv|^2 = s^2 / (a^2 + s^2)^2 (section 12),
               which is 1 / (SNR + 1) on VP */
            double a = tr->schedule->sqrt_alphabar[t], s = tr->schedule->sqrt_one_minus_alphabar[t];
            return (float)(m * s * s / ((a * a + s * s) * (a * a + s * s)));
        }
        return (float)(m / (snr + 1.0));
    case DFN_PREDICT_FLOW: {
        /* the x0 weight m times |dx0/dw|^2 = s^2 / (a + s)^2 (section 12) */
        double a = tr->schedule->sqrt_alphabar[t], s = tr->schedule->sqrt_one_minus_alphabar[t];
        return (float)(m * s * s / ((a + s) * (a + s)));
    }
    default:              return (float)m;
    }
}

/* Section 5 (uniform) or section 12 (logit-normal): one training timestep. */
DFNDEF int dfn_train_time(const dfn_train_config *c, int T, dfn_rng *rng)
{
    double u;
    int t;
    if (!c || !rng || T < 1 || T > DFN_MAX_T) return 0;
    if (c->time_sampling != DFN_TIME_UNIFORM && c->time_sampling != DFN_TIME_LOGIT_NORMAL) return 0;
    if (c->time_sampling == DFN_TIME_UNIFORM) return 1 + (int)dfn_rng_below(rng, (uint32_t)T);
    u = 1.0 / (1.0 + DFN_EXP(-((double)c->logit_mean + (double)c->logit_std * dfn_rng_normal(rng))));
    t = (int)(u * T);                          /* ceil(u T) for u T not whole */
    if ((double)t < u * T) t++;
    return t < 1 ? 1 : t > T ? T : t;
}

/* Forward, loss and backward on one batch with t and eps given (in b);
   gradients into tr->grads (overwritten). */
static dfn_result dfn__train_loss_grad(dfn_trainer *tr, dfn__tstate *b, const float *x0,
                                       const float *cond, const int *labels, float *loss_out)
{
    const dfn_net *net = &tr->net;
    int B = tr->cfg.batch, D = b->shape.dim, i, j;
    double loss = 0.0;
    dfn_result r;

    /* x_t in closed form (section 1) and the target of the parameterization (sections 4, 5). */
    if ((r = dfn_q_sample(tr->schedule, b->xt, x0, b->eps, b->t, B, D)) != DFN_OK) return r;
    if ((r = dfn_prediction_target(tr->schedule, b->shape.prediction, b->target, x0, b->eps, b->t, B, D)) != DFN_OK)
        return r;
    net->ops->train_forward(net, b->net_mem, B, b->out, b->xt, cond, b->t, labels);

    /* loss = (1/B) sum_i w_i (1/D) ||out_i - target_i||^2;  dloss/dout = 2 w_i (out - target) / (B D) */
    for (i = 0; i < B; i++) {
        double w = b->w[i] = dfn__loss_weight(tr, b->shape.prediction, b->t[i]), row = 0.0;
        for (j = 0; j < D; j++) {
            size_t o = (size_t)i * D + j;
            double d = (double)b->out[o] - b->target[o];
            row += d * d;
            b->dout[o] = (float)(2.0 * w * d / ((double)B * D));
        }
        loss += w * row / D;
    }
    loss /= B;
    if (loss_out) *loss_out = (float)loss;
    if (!(loss - loss == 0.0)) return DFN_ERR_NOT_FINITE;

    /* Backward, layer by layer from the output (each line undoes one line of the forward). */
    DFN_MEMSET(tr->grads, 0, b->shape.params * sizeof(float));
    net->ops->train_backward(net, b->net_mem, B, tr->grads, b->dout, labels);
    return DFN_OK;
}

/* t in 0..T is the caller's (or the draw's); labels in -1..C-1; cond when needed. */
static dfn_result dfn__train_inputs(const dfn__tstate *b, const int *t, const int *labels,
                                    const float *cond, int B)
{
    if (b->shape.cond_dim > 0 && !cond) return DFN_ERR_NULL;
    return dfn__net_check_inputs(&b->shape, t, 0, labels, B);
}

DFNDEF dfn_result dfn_trainer_loss_grad_cond(dfn_trainer *tr, const float *x0, const float *cond,
                                             const int *labels, const int *t, const float *eps,
                                             float *loss)
{
    dfn__tstate *b;
    dfn_result r;
    int i, B;
    if (!tr || !tr->state || !tr->memory || !x0 || !t || !eps) return DFN_ERR_NULL;
    b = (dfn__tstate *)tr->state;
    B = tr->cfg.batch;
    for (i = 0; i < B; i++)
        if (t[i] < 1 || t[i] > tr->schedule->T) return DFN_ERR_INVALID_ARG;
    if ((r = dfn__train_inputs(b, t, labels, cond, B)) != DFN_OK) return r;
    DFN_MEMCPY(b->t, t, (size_t)B * sizeof(int));
    DFN_MEMCPY(b->eps, eps, (size_t)B * b->shape.dim * sizeof(float));
    return dfn__train_loss_grad(tr, b, x0, cond, labels, loss);
}

DFNDEF dfn_result dfn_trainer_loss_grad(dfn_trainer *tr, const float *x0, const int *labels,
                                        const int *t, const float *eps, float *loss)
{
    return dfn_trainer_loss_grad_cond(tr, x0, NULL, labels, t, eps, loss);
}

DFNDEF float dfn_train_lr(const dfn_train_config *c, long step)
{
    double lr, progress;
    if (!c) return 0.0f;
    lr = c->lr;
    if (step < c->warmup_steps) return (float)(lr * (double)(step + 1) / (double)c->warmup_steps);
    if (c->total_steps > c->warmup_steps) {
        progress = (double)(step - c->warmup_steps) / (double)(c->total_steps - c->warmup_steps);
        if (progress > 1.0) progress = 1.0;
        lr = lr * (c->min_lr_ratio + (1.0 - c->min_lr_ratio) * 0.5 * (1.0 + DFN_COS(DFN__PI * progress)));
    }
    return (float)lr;
}

/* Parameters [task step, (task + 1) step) of an Adam update. */
typedef struct dfn__adam_task {
    float *p, *m, *v, *ema;
    const float *g;
    const dfn_adam_coefs *c;
    size_t n, step;
} dfn__adam_task;

static void dfn__adam_run_task(void *ctx, int task, int w)
{
    const dfn__adam_task *a = (const dfn__adam_task *)ctx;
    size_t lo = (size_t)task * a->step, hi = lo + a->step < a->n ? lo + a->step : a->n;
    (void)w;
    if (lo < hi)
        dfn_adam_update(hi - lo, a->p + lo, a->m + lo, a->v + lo, a->g + lo, a->ema ? a->ema + lo : NULL, a->c);
}

DFNDEF dfn_result dfn_train_step_cond(dfn_trainer *tr, const float *x0, const float *cond,
                                      const int *labels, dfn_rng *rng, float *loss)
{
    dfn__tstate *b;
    dfn_result r;
    const dfn_train_config *c;
    size_t P;
    int B, D, k;
    float lr, clip_scale = 1.0f, norm;
    double bc1, bc2;
    if (!tr || !tr->state || !tr->memory || !x0 || !rng) return DFN_ERR_NULL;
    if (tr->step < 0 || tr->step > 0x7ffffffeL) return DFN_ERR_INVALID_ARG;
    c = &tr->cfg;
    b = (dfn__tstate *)tr->state;
    B = c->batch;
    D = b->shape.dim;
    P = b->shape.params;
    if (!dfn__all_finite(x0, (size_t)B * D)) return DFN_ERR_NOT_FINITE;
    if (b->shape.cond_dim > 0) {
        if (!cond) return DFN_ERR_NULL;
        if (!dfn__all_finite(cond, (size_t)B * b->shape.cond_dim)) return DFN_ERR_NOT_FINITE;
    }

    /* t ~ U{1..T} (or logit-normal), eps ~ N(0, I) per example; labels
       dropped to "none" with p_uncond. */
    for (k = 0; k < B; k++) b->t[k] = dfn_train_time(c, tr->schedule->T, rng);
    dfn_rng_normal_fill(rng, b->eps, (size_t)B * D);
    if ((r = dfn__train_inputs(b, b->t, labels, cond, B)) != DFN_OK) return r;
    if (labels && b->shape.num_classes > 0) {
        for (k = 0; k < B; k++) b->labels[k] = dfn_rng_uniform(rng) < c->p_uncond ? -1 : labels[k];
        labels = b->labels;
    }
    if ((r = dfn__train_loss_grad(tr, b, x0, cond, labels, loss)) != DFN_OK) return r;

    norm = DFN_SQRTF(dfn_vec_sum_sq(P, tr->grads));
    tr->last_grad_norm = norm;
    if (!dfn__finite(norm)) return DFN_ERR_NOT_FINITE;
    if (c->grad_clip > 0.0f && norm > c->grad_clip) clip_scale = c->grad_clip / norm;

    /* Adam (Kingma & Ba 2015) with bias correction; AdamW's decoupled decay. */
    lr = dfn_train_lr(c, tr->step);
    tr->last_lr = lr;
    tr->step++;
    bc1 = 1.0 - DFN_EXP((double)tr->step * DFN_LOG((double)c->beta1));
    bc2 = 1.0 - DFN_EXP((double)tr->step * DFN_LOG((double)c->beta2));
    if (c->beta1 == 0.0f) bc1 = 1.0;
    if (c->beta2 == 0.0f) bc2 = 1.0;
    {
        dfn_adam_coefs ac;
        ac.beta1 = c->beta1;
        ac.beta2 = c->beta2;
        ac.step_size = (float)(lr / bc1);
        ac.v_scale = (float)(1.0 / bc2);
        ac.eps = c->eps;
        ac.decay = lr * c->weight_decay;
        ac.grad_scale = clip_scale;
        /* EMA of the weights: ema = d ema + (1 - d) p, with the decay warmed
           up as d_k = min(decay, (1 + k) / (10 + k)) so that a short run's
           EMA is not dominated by the random initial weights. */
        ac.ema_decay = (float)(1.0 + (double)tr->step) / (float)(10.0 + (double)tr->step);
        if (ac.ema_decay > c->ema_decay) ac.ema_decay = c->ema_decay;
        /* Adam and the EMA in one pass over the parameters (per element:
           any split across threads gives the same bits) */
        {
            dfn__adam_task at;
            int T = dfn__parallel_workers(), tasks = T > 1 && P >= (size_t)16384 * T ? T : 1;
            at.p = tr->net.params; at.m = tr->adam_m; at.v = tr->adam_v; at.g = tr->grads;
            at.ema = tr->ema; at.c = &ac; at.n = P;
            at.step = ((P + (size_t)tasks - 1) / (size_t)tasks + 15) / 16 * 16;
            dfn__parallel_for(tasks, dfn__adam_run_task, &at);
        }
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_train_step(dfn_trainer *tr, const float *x0, const int *labels,
                                 dfn_rng *rng, float *loss)
{
    return dfn_train_step_cond(tr, x0, NULL, labels, rng, loss);
}

#endif /* DFN_NO_TRAINING */

/* ######################################################################### */
/*  PART 3  files, data and images                                           */
/* ######################################################################### */

/* ------------------------------------------------------------------------- */
/*  Points from text                                                         */
/* ------------------------------------------------------------------------- */

static int dfn__is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

static int dfn__is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* [p, e) equals the lower-case word w, ignoring case. */
static int dfn__word_is(const char *p, const char *e, const char *w)
{
    for (; p < e && *w; p++, w++) {
        char ch = *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p;
        if (ch != *w) return 0;
    }
    return p == e && !*w;
}

/* The number spelled by all of [p, e) (grammar in the API comment).
   Returns 0 when it is not a number, 1 with *v for a finite float, 2 for
   NaN, infinity or a value beyond the float range.

   Up to 19 significant digits go into a uint64 mantissa M (later digits
   only move the decimal exponent E or are dropped: below 1e-18 relative),
   so the value is M 10^E. Out-of-range magnitudes are decided on the digit
   count alone; otherwise the double (M 10^E) comes from M rounded to
   double and at most three multiplications or divisions by exact powers of
   ten (10^0 .. 10^22), each rounded once: within 1e-15 relative of the
   exact value, and the one rounding to float that follows is then the
   correct one except within that distance of a halfway point between two
   floats, where it may be the neighbour (1 ulp). No libc, no locale. */
static int dfn__parse_float(const char *p, const char *e, float *v)
{
    static const double pow10[23] = {
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
    };
    const int cap = 1000000000;          /* digit counts saturate here (a 1 GB line) */
    const int xcap = 100000;             /* |exponent| saturates here: far out of range */
    uint64_t mant = 0;
    int neg = 0, nd = 0, dexp = 0, any = 0, x = 0, xneg = 0;
    double d;
    float f;
    if (p < e && (*p == '+' || *p == '-')) { neg = *p == '-'; p++; }
    if (p == e) return 0;
    if (!dfn__is_digit(*p) && *p != '.')
        return dfn__word_is(p, e, "nan") || dfn__word_is(p, e, "inf") ||
               dfn__word_is(p, e, "infinity") ? 2 : 0;
    for (; p < e && dfn__is_digit(*p); p++) {
        any = 1;
        if (nd < 19) {
            if (mant || *p != '0') { mant = mant * 10u + (uint64_t)(*p - '0'); nd++; }
        } else if (dexp < cap) {
            dexp++;                                  /* dropped integer digit */
        }
    }
    if (p < e && *p == '.') {
        for (p++; p < e && dfn__is_digit(*p); p++) {
            any = 1;
            if (nd < 19) {
                if (mant || *p != '0') { mant = mant * 10u + (uint64_t)(*p - '0'); nd++; }
                if (dexp > -cap) dexp--;
            }                                        /* else: dropped fraction digit */
        }
    }
    if (!any) return 0;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) { xneg = *p == '-'; p++; }
        if (p == e || !dfn__is_digit(*p)) return 0;
        for (; p < e && dfn__is_digit(*p); p++)
            if (x < xcap) x = x * 10 + (*p - '0');
    }
    if (p != e) return 0;
    dexp += xneg ? -x : x;
    if (mant == 0) {
        *v = neg ? -0.0f : 0.0f;
        return 1;
    }
    /* M 10^E lies in [10^(nd - 1 + E), 10^(nd + E)). */
    if (nd + dexp > 39) return 2;                    /* >= 1e39 > FLT_MAX      */
    if (nd + dexp < -45) {                           /* < 1e-46: rounds to 0   */
        *v = neg ? -0.0f : 0.0f;
        return 1;
    }
    d = (double)mant;                                /* E in [-64, 39)         */
    if (dexp < 0) {
        for (; dexp < -22; dexp += 22) d /= 1e22;
        d /= pow10[-dexp];
    } else {
        for (; dexp > 22; dexp -= 22) d *= 1e22;
        d *= pow10[dexp];
    }
    /* Values from FLT_MAX + half an ulp = 2^128 - 2^103 on round to infinity
       (decided here: converting them to float would be undefined in ISO C). */
    if (d >= 340282356779733661637539395458142568448.0) return 2;
    f = (float)d;
    *v = neg ? -f : f;
    return 1;
}

/* The next field of a trimmed line: fields are separated by one comma
   (with blanks around it) or by blanks. Sets [*fs, *fe) and moves *q past
   the separator. Returns 0 at the end of the line, 1 for a field, and -1
   for a field that is empty (a leading, doubled or trailing comma). */
static int dfn__next_field(const char **q, const char *e, const char **fs, const char **fe)
{
    const char *p = *q;
    int comma = 0;
    if (p == e) return 0;
    *fs = p;
    while (p < e && !dfn__is_blank(*p) && *p != ',') p++;
    *fe = p;
    while (p < e && dfn__is_blank(*p)) p++;
    if (p < e && *p == ',') {
        comma = 1;
        for (p++; p < e && dfn__is_blank(*p); p++) {}
    }
    *q = p;
    if (*fs == *fe) return -1;
    if (comma && p == e) {                           /* "1,2," ends in an empty field */
        *fs = *fe = e;
        return -1;
    }
    return 1;
}

/* The parser's state between lines (shared by the memory and file versions). */
typedef struct dfn__points_state {
    int    cols;
    float *out;           /* NULL: count only                   */
    int    max_rows;
    int    rows;          /* rows stored or counted so far      */
    int    line;          /* 1-based number of the current line */
    int    header_done;   /* the first content line was seen    */
} dfn__points_state;

static dfn_result dfn__points_check(int cols, const float *out, int max_rows, int *rows,
                                    int *error_line)
{
    if (error_line) *error_line = 0;
    if (!rows) return DFN_ERR_NULL;
    *rows = 0;
    if (cols < 1) return DFN_ERR_INVALID_ARG;
    if (out && (max_rows < 0 || (max_rows > 0 && dfn__count(max_rows, cols) == 0)))
        return DFN_ERR_INVALID_ARG;
    return DFN_OK;
}

static void dfn__points_begin(dfn__points_state *st, int cols, float *out, int max_rows)
{
    st->cols = cols;
    st->out = out;
    st->max_rows = max_rows;
    st->rows = 0;
    st->line = 0;
    st->header_done = 0;
}

/* One line [p, e), without its '\n'. */
/* A line over DFN_POINTS_MAX_LINE - 1 bytes (both readers): counted, and
   malformed. */
static dfn_result dfn__points_too_long(dfn__points_state *st)
{
    if (st->line < DFN__INT_MAX) st->line++;
    return DFN_ERR_FORMAT;
}

static dfn_result dfn__points_line(dfn__points_state *st, const char *p, const char *e)
{
    const char *q, *fs, *fe;
    int col = 0, kind;
    float v = 0.0f;
    if (st->line < DFN__INT_MAX) st->line++;
    if (st->line == 1 && e - p >= 3 && (unsigned char)p[0] == 0xefu &&
        (unsigned char)p[1] == 0xbbu && (unsigned char)p[2] == 0xbfu)
        p += 3;                                      /* UTF-8 byte order mark  */
    while (p < e && dfn__is_blank(*p)) p++;
    while (e > p && dfn__is_blank(e[-1])) e--;
    if (p == e || *p == '#') return DFN_OK;          /* blank or comment       */
    if (!st->header_done) {
        /* The first content line is a header when none of its fields is a number. */
        int numbers = 0;
        st->header_done = 1;
        q = p;
        while ((kind = dfn__next_field(&q, e, &fs, &fe)) != 0)
            if (kind > 0 && dfn__parse_float(fs, fe, &v) != 0) numbers++;
        if (numbers == 0) return DFN_OK;
    }
    if ((st->out && st->rows >= st->max_rows) || st->rows == DFN__INT_MAX)
        return DFN_ERR_BUFFER_TOO_SMALL;
    q = p;
    while ((kind = dfn__next_field(&q, e, &fs, &fe)) != 0) {
        if (kind < 0 || col == st->cols) return DFN_ERR_FORMAT;
        kind = dfn__parse_float(fs, fe, &v);
        if (kind == 0) return DFN_ERR_FORMAT;
        if (kind == 2) return DFN_ERR_NOT_FINITE;
        if (st->out) st->out[(size_t)st->rows * (size_t)st->cols + (size_t)col] = v;
        col++;
    }
    if (col != st->cols) return DFN_ERR_FORMAT;
    st->rows++;
    return DFN_OK;
}

DFNDEF dfn_result dfn_points_parse(const char *text, size_t len, int cols, float *out,
                                   int max_rows, int *rows, int *error_line)
{
    dfn__points_state st;
    const char *p, *end, *nl;
    dfn_result r = dfn__points_check(cols, out, max_rows, rows, error_line);
    if (r != DFN_OK) return r;
    if (!text && len > 0) return DFN_ERR_NULL;
    dfn__points_begin(&st, cols, out, max_rows);
    if (len > 0) {
        for (p = text, end = text + len; p < end; p = nl + 1) {
            for (nl = p; nl < end && *nl != '\n'; nl++) {}
            if ((size_t)(nl - p) > (size_t)DFN_POINTS_MAX_LINE - 1) {   /* as dfn_points_load */
                r = dfn__points_too_long(&st);
                break;
            }
            if ((r = dfn__points_line(&st, p, nl)) != DFN_OK) break;
            if (nl == end) break;
        }
    }
    *rows = st.rows;
    if (r != DFN_OK && error_line) *error_line = st.line;
    return r;
}

/* ------------------------------------------------------------------------- */
/*  Toy data sets in 2D                                                      */
/* ------------------------------------------------------------------------- */



/* The data sets are computed in Q30 fixed point (value * 2^30 in an
   int64) from the rng's integers and its normals, with one rounding to
   float at the end: integer arithmetic only, so the same bits everywhere,
   whatever the compiler does with floating point (FMA contraction, x87
   excess precision). Magnitudes stay below 32 (2^35 in Q30), and every
   product below 2^64. */

/* u = dfn_rng_uniform as the integer u 2^24 (exact: u is a multiple of 2^-24). */
static uint32_t dfn__uniform24(dfn_rng *rng)
{
    return (uint32_t)(dfn_rng_uniform(rng) * 16777216.0f);
}

/* dfn_rng_normal in Q30: the scaling is exact, the conversion truncates. */
static int64_t dfn__normal_q30(dfn_rng *rng)
{
    return (int64_t)(dfn_rng_normal(rng) * 1073741824.0f);
}

/* 2 pi turns, for turns in Q32 (below 2^34): the radian angle in Q30. */
static int64_t dfn__turns_to_radians_q30(uint64_t turns)
{
    const uint64_t two_pi_q30 = 6746518852u;              /* round(2 pi * 2^30)   */
    return (int64_t)(((turns >> 2) * two_pi_q30) >> 30);
}

/* One point of each data set, standardized as out = (raw - mean) * a with
   a = 1/std per coordinate. The moments are closed forms (derived in the
   comments; each checked offline against a Simpson integration with 20000
   intervals in double precision, agreeing to 1e-13, and in the tests on a
   fresh sample of 400000 points); the Q30 constants are round(value 2^30).
   Angles are fractions of a turn in Q32: 2 pi turn / 2^32 radians. */
static void dfn__data2d_point(dfn_data2d kind, dfn_rng *rng, float *out)
{
    int64_t c, s, r, x, y, zx, zy;
    uint64_t turns;
    int side;
    switch (kind) {
    case DFN_DATA2D_MOONS:
        /* t = pi u (half a turn: u 2^24 << 7); upper (cos t, sin t) or lower
           (1 - cos t, 1/2 - sin t); noise 0.1. With E cos t = 0, E sin t = 2/pi,
           E cos^2 t = E sin^2 t = 1/2:
             E x = 1/2,  E x^2 = (1/2 + 3/2)/2 = 1,
             var x = 3/4 + 0.01 = 0.76,                  a_x = 1.14707867
             E y = 1/4,  E y^2 = (1/2 + (1/4 - 2/pi + 1/2))/2 = 5/8 - 1/pi,
             var y = 9/16 - 1/pi + 0.01 = 0.254190114,   a_y = 1.98344733 */
        side = (int)dfn_rng_below(rng, 2);
        dfn__sincos_turn(dfn__uniform24(rng) << 7, &c, &s);
        zx = dfn__normal_q30(rng);
        zy = dfn__normal_q30(rng);
        if (side) { c = DFN__Q30 - c; s = DFN__Q30 / 2 - s; }
        x = c - DFN__Q30 / 2 + dfn__mul_q30(107374182, zx);          /* 0.1  */
        y = s - DFN__Q30 / 4 + dfn__mul_q30(107374182, zy);
        x = dfn__mul_q30(x, 1231666343);                                 /* a_x  */
        y = dfn__mul_q30(y, 2129710353);                                 /* a_y  */
        break;
    case DFN_DATA2D_SWISS_ROLL:
        /* t = 3 pi/2 (1 + 2u) in [a, b) = [3 pi/2, 9 pi/2): 3/4 + 3u/2 turns,
           in Q32 3 * 2^30 + 384 (u 2^24). (t cos t, t sin t); noise 1.0.
             E t cos t = [t sin t + cos t]_a^b / 3 pi = 2
             E t sin t = [sin t - t cos t]_a^b / 3 pi = 2/(3 pi) = 0.212206591
             E t^2 = (b^3 - a^3) / (9 pi) = 39 pi^2/4,
             int_a^b t^2 cos 2t dt = [t^2 sin 2t/2 + t cos 2t/2 - sin 2t/4]_a^b = -3 pi/2,
             E t^2 cos^2 t = 39 pi^2/8 - 1/4,  E t^2 sin^2 t = 39 pi^2/8 + 1/4
             var x = 39 pi^2/8 - 1/4 - 4 + 1 = 44.8643215,          a_x = 0.149296439
             var y = 39 pi^2/8 + 1/4 - 4/(9 pi^2) + 1 = 49.3192898, a_y = 0.142393968 */
        turns = ((uint64_t)3 << 30) + (uint64_t)384 * dfn__uniform24(rng);
        dfn__sincos_turn((uint32_t)turns, &c, &s);
        r = dfn__turns_to_radians_q30(turns);
        zx = dfn__normal_q30(rng);
        zy = dfn__normal_q30(rng);
        x = dfn__mul_q30(r, c) - 2 * DFN__Q30 + zx;
        y = dfn__mul_q30(r, s) - 227855092 + zy;                         /* 2/(3 pi) */
        x = dfn__mul_q30(x, 160305830);
        y = dfn__mul_q30(y, 152894359);
        break;
    case DFN_DATA2D_GAUSSIANS8: {
        /* The mixture documented with DFN_DATA2D_GAUSSIANS8_RADIUS:
           var = R^2 E cos^2(k pi/4) + s^2 = R^2/2 + s^2 = 32/33 + 1/33 = 1.
           R = 1495315679, D = R/sqrt(2) = 1057347856, s = 186914460 in Q30. */
        static const int32_t centers[16] = {
            1495315679, 0,  1057347856, 1057347856,  0, 1495315679,  -1057347856, 1057347856,
            -1495315679, 0,  -1057347856, -1057347856,  0, -1495315679,  1057347856, -1057347856
        };
        int k = (int)dfn_rng_below(rng, 8);
        zx = dfn__normal_q30(rng);
        zy = dfn__normal_q30(rng);
        x = centers[2 * k] + dfn__mul_q30(186914460, zx);
        y = centers[2 * k + 1] + dfn__mul_q30(186914460, zy);
        break;
    }
    case DFN_DATA2D_CHECKERBOARD: {
        /* Column i = -2..1, then one of the two rows j with i + j even. x is
           uniform on [-2, 2); so is y (even columns hold rows -2 and 0, odd
           ones -1 and 1): both have variance 16/12, a = sqrt(3)/2 = 0.866025404.
           E xy = (sum over the 8 square centers of x y) / 8 = 2/8, so the
           standardized correlation is (1/4) / (4/3) = 3/16. */
        int col = (int)dfn_rng_below(rng, 4);
        int row = 2 * (int)dfn_rng_below(rng, 2) - 2 + (col & 1);
        x = (int64_t)(col - 2) * DFN__Q30 + ((int64_t)dfn__uniform24(rng) << 6);
        y = (int64_t)row * DFN__Q30 + ((int64_t)dfn__uniform24(rng) << 6);
        x = dfn__mul_q30(x, 929887697);
        y = dfn__mul_q30(y, 929887697);
        break;
    }
    case DFN_DATA2D_CIRCLES:
        /* Radius 1 or 1/2, angle 2 pi u (u 2^24 << 8); noise 0.08. Mean 0;
           E x^2 = E r^2 E cos^2 = (1 + 1/4)/2 * 1/2 = 5/16,
           var = 5/16 + 0.0064 = 0.3189, a = 1.77081316 (both coordinates). */
        side = (int)dfn_rng_below(rng, 2);
        dfn__sincos_turn(dfn__uniform24(rng) << 8, &c, &s);
        zx = dfn__normal_q30(rng);
        zy = dfn__normal_q30(rng);
        if (side) { c /= 2; s /= 2; }                                     /* radius 1/2  */
        x = c + dfn__mul_q30(85899346, zx);                              /* 0.08 */
        y = s + dfn__mul_q30(85899346, zy);
        x = dfn__mul_q30(x, 1901396150);
        y = dfn__mul_q30(y, 1901396150);
        break;
    default: /* DFN_DATA2D_SPIRAL */
        /* r = L sqrt(u), L = 3 pi (1.5 turns): density 2r/L^2 on [0, L).
           floor(sqrt(u) 2^32) = isqrt((u 2^24) << 40), times 3/2 is r in Q32
           turns. Arm (-r cos r, r sin r) or its mirror (r cos r, -r sin r);
           noise 0.3. The mirror makes the mean 0. With sin 2L = 0, cos 2L = 1:
             int_0^L r^3 cos 2r dr
               = [r^3 sin 2r/2 + 3r^2 cos 2r/4 - 3r sin 2r/4 - 3 cos 2r/8]_0^L = 3L^2/4,
             E r^2 cos^2 r = (L^4/4 + 3L^2/4) / L^2 = L^2/4 + 3/4,  E r^2 sin^2 r = L^2/4 - 3/4
             var x = 9 pi^2/4 + 3/4 + 0.09 = 23.0466099,  a_x = 0.208303456
             var y = 9 pi^2/4 - 3/4 + 0.09 = 21.5466099,  a_y = 0.215432155 */
        side = (int)dfn_rng_below(rng, 2);
        turns = (dfn__isqrt64((uint64_t)dfn__uniform24(rng) << 40) * 3u) >> 1;
        dfn__sincos_turn((uint32_t)turns, &c, &s);
        r = dfn__turns_to_radians_q30(turns);
        zx = dfn__normal_q30(rng);
        zy = dfn__normal_q30(rng);
        x = -dfn__mul_q30(r, c);
        y = dfn__mul_q30(r, s);
        if (side) { x = -x; y = -y; }
        x = dfn__mul_q30(x + dfn__mul_q30(322122547, zx), 223664132);   /* 0.3, a_x */
        y = dfn__mul_q30(y + dfn__mul_q30(322122547, zy), 231318515);
        break;
    }
    /* One rounding (int64 -> float), then an exact scaling by 2^-30. */
    out[0] = (float)x * (1.0f / 1073741824.0f);
    out[1] = (float)y * (1.0f / 1073741824.0f);
}

DFNDEF dfn_result dfn_data2d_sample(dfn_data2d kind, dfn_rng *rng, float *xy, int n)
{
    int i;
    if (!rng || (n > 0 && !xy)) return DFN_ERR_NULL;
    if ((int)kind < 0 || (int)kind >= DFN_DATA2D_COUNT || n < 0 || (n > 0 && dfn__count(n, 2) == 0))
        return DFN_ERR_INVALID_ARG;
    for (i = 0; i < n; i++) dfn__data2d_point(kind, rng, xy + 2 * (size_t)i);
    return DFN_OK;
}

static const char *const dfn__data2d_names[DFN_DATA2D_COUNT] = {
    "moons", "swissroll", "8gaussians", "checkerboard", "circles", "spiral"
};

DFNDEF const char *dfn_data2d_name(dfn_data2d kind)
{
    if ((int)kind < 0 || (int)kind >= DFN_DATA2D_COUNT) return NULL;
    return dfn__data2d_names[kind];
}

DFNDEF dfn_result dfn_data2d_from_name(const char *name, dfn_data2d *kind)
{
    int k;
    if (!name || !kind) return DFN_ERR_NULL;
    for (k = 0; k < DFN_DATA2D_COUNT; k++) {
        const char *a = name, *b = dfn__data2d_names[k];
        while (*a && *a == *b) { a++; b++; }
        if (*a == *b) { *kind = (dfn_data2d)k; return DFN_OK; }
    }
    return DFN_ERR_INVALID_ARG;
}

/* ------------------------------------------------------------------------- */
/*  Files                                                                    */
/* ------------------------------------------------------------------------- */

#ifndef DFN_NO_STDIO

DFNDEF dfn_result dfn_points_load(const char *path, int cols, float *out, int max_rows,
                                  int *rows, int *error_line)
{
    char buf[DFN_POINTS_MAX_LINE];
    dfn__points_state st;
    size_t have = 0, scanned = 0, start, i, got;
    int eof = 0;
    FILE *f;
    dfn_result r = dfn__points_check(cols, out, max_rows, rows, error_line);
    if (r != DFN_OK) return r;
    if (!path) return DFN_ERR_NULL;
    f = fopen(path, "rb");
    if (!f) return DFN_ERR_IO;
    dfn__points_begin(&st, cols, out, max_rows);
    /* buf[0 .. have) holds the start of the current line and perhaps more
       lines; bytes before `scanned` hold no '\n'. */
    while (r == DFN_OK && !eof) {
        got = fread(buf + have, 1, sizeof buf - have, f);
        if (got < sizeof buf - have) {
            if (ferror(f)) { r = DFN_ERR_IO; break; }
            eof = 1;
        }
        have += got;
        start = 0;
        for (i = scanned; i < have && r == DFN_OK; i++) {
            if (buf[i] != '\n') continue;
            r = dfn__points_line(&st, buf + start, buf + i);
            start = i + 1;
        }
        if (r != DFN_OK) break;
        for (i = start; i < have; i++) buf[i - start] = buf[i];   /* keep the partial line */
        have -= start;
        scanned = have;
        if (eof && have > 0) r = dfn__points_line(&st, buf, buf + have);   /* no final '\n' */
        else if (!eof && have == sizeof buf) r = dfn__points_too_long(&st);
    }
    fclose(f);
    *rows = st.rows;
    if (r != DFN_OK && r != DFN_ERR_IO && error_line) *error_line = st.line;
    return r;
}

#ifndef DFN_NO_MALLOC
/* dfn_file_read_all for files whose buffer (size + 1 bytes, the NUL
   included) fits in max bytes; a longer one is `over` (before anything is
   allocated). Files above DFN_FILE_MAX_BYTES stay DFN_ERR_INVALID_ARG. */
static dfn_result dfn__file_read(const char *path, size_t max, dfn_result over, void *alloc_ctx,
                                 unsigned char **data, size_t *len)
{
    FILE *f;
    long size;
    unsigned char *buf;
    if (!data || !len) return DFN_ERR_NULL;
    *data = NULL;
    *len = 0;
    if (!path) return DFN_ERR_NULL;
    f = fopen(path, "rb");
    if (!f) return DFN_ERR_IO;
    /* One byte first: a directory opens, and seeks to a huge size, but
       cannot be read. */
    if ((fgetc(f) == EOF && ferror(f)) || fseek(f, 0, SEEK_END) != 0 ||
        (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return DFN_ERR_IO;
    }
    if ((unsigned long)size >= max || (unsigned long)size > (unsigned long)DFN_FILE_MAX_BYTES) {
        fclose(f);
        return (unsigned long)size >= max ? over : DFN_ERR_INVALID_ARG;
    }
    buf = (unsigned char *)DFN_MALLOC((size_t)size + 1, alloc_ctx);
    if (!buf) {
        fclose(f);
        return DFN_ERR_OUT_OF_MEMORY;
    }
    /* Exactly size bytes, then end of file (a directory fails here). */
    if ((size > 0 && fread(buf, 1, (size_t)size, f) != (size_t)size) ||
        fgetc(f) != EOF || ferror(f)) {
        fclose(f);
        DFN_FREE(buf, alloc_ctx);
        return DFN_ERR_IO;
    }
    fclose(f);
    buf[size] = 0;
    *data = buf;
    *len = (size_t)size;
    return DFN_OK;
}

DFNDEF dfn_result dfn_file_read_all(const char *path, void *alloc_ctx, unsigned char **data,
                                    size_t *len)
{
    return dfn__file_read(path, DFN_FILE_MAX_BYTES + 1, DFN_ERR_INVALID_ARG, alloc_ctx, data, len);
}

DFNDEF void dfn_file_free(void *data, void *alloc_ctx)
{
    (void)alloc_ctx;
    if (data) DFN_FREE(data, alloc_ctx);
}

DFNDEF dfn_result dfn_file_write_all(const char *path, const void *data, size_t len)
{
    size_t n = 0;
    char *tmp;
    FILE *f;
    int ok;
    if (!path || (!data && len > 0)) return DFN_ERR_NULL;
    while (path[n]) n++;
    if (n == 0) return DFN_ERR_INVALID_ARG;
    if (n > (size_t)-1 - 5) return DFN_ERR_INVALID_ARG;
    tmp = (char *)DFN_MALLOC(n + 5, NULL);
    if (!tmp) return DFN_ERR_OUT_OF_MEMORY;
    DFN_MEMCPY(tmp, path, n);
    DFN_MEMCPY(tmp + n, ".tmp", 5);
    f = fopen(tmp, "wb");
    if (!f) {
        DFN_FREE(tmp, NULL);
        return DFN_ERR_IO;
    }
    ok = len == 0 || fwrite(data, 1, len, f) == len;
    ok = fflush(f) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (ok && rename(tmp, path) != 0) {
#ifdef _WIN32
        /* rename does not replace an existing file there. */
        ok = remove(path) == 0 && rename(tmp, path) == 0;
#else
        ok = 0;
#endif
    }
    if (!ok) remove(tmp);
    DFN_FREE(tmp, NULL);
    return ok ? DFN_OK : DFN_ERR_IO;
}
#endif /* DFN_NO_MALLOC */
#endif /* DFN_NO_STDIO */

/* ------------------------------------------------------------------------- */
/*  Images: IDX files, procedural shapes, grids, PNG and PGM                 */
/* ------------------------------------------------------------------------- */

static uint32_t dfn__get_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void dfn__set_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)((v >> 16) & 0xffu);
    p[2] = (unsigned char)((v >> 8) & 0xffu);
    p[3] = (unsigned char)(v & 0xffu);
}

DFNDEF dfn_result dfn_idx_info_mem(const void *data, size_t len, dfn_idx_info *info)
{
    const unsigned char *p = (const unsigned char *)data;
    dfn_idx_info in;
    size_t count = 1, bytes;
    int i, zero = 0;
    if (info) DFN_MEMSET(info, 0, sizeof *info);
    if (!info || (!data && len > 0)) return DFN_ERR_NULL;
    DFN_MEMSET(&in, 0, sizeof in);
    if (len < 4 || p[0] != 0 || p[1] != 0) return DFN_ERR_FORMAT;
    switch (p[2]) {
    case DFN_IDX_UBYTE: case DFN_IDX_SBYTE: in.elem_bytes = 1; break;
    case DFN_IDX_SHORT:                     in.elem_bytes = 2; break;
    case DFN_IDX_INT: case DFN_IDX_FLOAT:   in.elem_bytes = 4; break;
    case DFN_IDX_DOUBLE:                    in.elem_bytes = 8; break;
    default: return DFN_ERR_FORMAT;
    }
    in.type = p[2];
    in.ndims = p[3];
    if (in.ndims < 1 || in.ndims > DFN_IDX_MAX_DIMS) return DFN_ERR_FORMAT;
    in.data_offset = 4 + 4 * (size_t)in.ndims;
    if (len < in.data_offset) return DFN_ERR_FORMAT;                 /* truncated header */
    for (i = 0; i < in.ndims; i++) {
        in.dims[i] = dfn__get_be32(p + 4 + 4 * i);
        zero |= in.dims[i] == 0;
    }
    /* A zero size makes the product 0, whatever the other sizes are. */
    for (i = 0; i < in.ndims && !zero; i++) {
        if (count > ((size_t)-1) / in.dims[i]) return DFN_ERR_FORMAT; /* overflows size_t */
        count *= in.dims[i];
    }
    if (zero) count = 0;
    if (count > ((size_t)-1 - in.data_offset) / in.elem_bytes) return DFN_ERR_FORMAT;
    bytes = count * in.elem_bytes;
    if (len != in.data_offset + bytes) return DFN_ERR_FORMAT;        /* truncated or trailing */
    in.count = count;
    *info = in;
    return DFN_OK;
}

DFNDEF dfn_result dfn_idx_images_mem_c(const void *data, size_t len, int downsample, float *out,
                                       size_t cap, int *n, int *h, int *w, int *c)
{
    dfn_idx_info in;
    const unsigned char *px;
    size_t N, H, W, C, f, oh, ow, k, y, x, a, b, ch;
    long ff;
    float denom;
    dfn_result r;
    if (n) *n = 0;
    if (h) *h = 0;
    if (w) *w = 0;
    if (c) *c = 0;
    if ((r = dfn_idx_info_mem(data, len, &in)) != DFN_OK) return r;
    if (in.type != DFN_IDX_UBYTE || (in.ndims != 3 && in.ndims != 4)) return DFN_ERR_FORMAT;
    N = in.dims[0];
    H = in.dims[1];
    W = in.dims[2];
    C = in.ndims == 4 ? in.dims[3] : 1;
    if (H == 0 || W == 0 || C < 1 || C > 4 || N > (size_t)DFN__INT_MAX || H > (size_t)DFN__INT_MAX ||
        W > (size_t)DFN__INT_MAX)
        return DFN_ERR_FORMAT;
    if (downsample < 1 || downsample > 16) return DFN_ERR_INVALID_ARG;
    f = (size_t)downsample;
    if (H % f != 0 || W % f != 0) return DFN_ERR_INVALID_ARG;
    oh = H / f;
    ow = W / f;
    if (n) *n = (int)N;
    if (h) *h = (int)oh;
    if (w) *w = (int)ow;
    if (c) *c = (int)C;
    if (!out || N == 0) return DFN_OK;          /* N = 0: H W C was never multiplied out */
    if (cap / (oh * ow * C) < N) return DFN_ERR_BUFFER_TOO_SMALL;     /* N oh ow C <= count: no overflow */
    /* The mean of f^2 bytes, mapped to [-1, 1]: (2 sum - 255 f^2) / (255 f^2).
       Both are integers below 2^24, exact in float: one rounding, in the
       division. */
    ff = 255L * (long)(f * f);
    denom = (float)ff;
    px = (const unsigned char *)data + in.data_offset;
    for (k = 0; k < N; k++) {
        const unsigned char *img = px + k * H * W * C;
        float *o = out + k * oh * ow * C;
        for (y = 0; y < oh; y++) {
            for (x = 0; x < ow; x++) {
                for (ch = 0; ch < C; ch++) {
                    long sum = 0;
                    for (a = 0; a < f; a++)
                        for (b = 0; b < f; b++) sum += img[((y * f + a) * W + x * f + b) * C + ch];
                    o[(y * ow + x) * C + ch] = (float)(2 * sum - ff) / denom;
                }
            }
        }
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_idx_images_mem(const void *data, size_t len, int downsample, float *out,
                                     size_t cap, int *n, int *h, int *w)
{
    dfn_idx_info in;
    dfn_result r;
    if (n) *n = 0;
    if (h) *h = 0;
    if (w) *w = 0;
    if ((r = dfn_idx_info_mem(data, len, &in)) != DFN_OK) return r;
    if (in.ndims != 3) return DFN_ERR_FORMAT;          /* grey only: (n, H, W) */
    return dfn_idx_images_mem_c(data, len, downsample, out, cap, n, h, w, NULL);
}

DFNDEF dfn_result dfn_idx_labels_mem(const void *data, size_t len, int *labels, int cap, int *n)
{
    dfn_idx_info in;
    const unsigned char *px;
    size_t i;
    dfn_result r;
    if (n) *n = 0;
    if ((r = dfn_idx_info_mem(data, len, &in)) != DFN_OK) return r;
    if (in.type != DFN_IDX_UBYTE || in.ndims != 1 || in.dims[0] > (uint32_t)DFN__INT_MAX)
        return DFN_ERR_FORMAT;
    if (n) *n = (int)in.dims[0];
    if (!labels) return DFN_OK;
    if (cap < 0 || (size_t)cap < in.count) return DFN_ERR_BUFFER_TOO_SMALL;
    px = (const unsigned char *)data + in.data_offset;
    for (i = 0; i < in.count; i++) labels[i] = px[i];
    return DFN_OK;
}

#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
DFNDEF void dfn_image_set_free(dfn_image_set *set, void *alloc_ctx)
{
    (void)alloc_ctx;
    if (!set) return;
    if (set->images) DFN_FREE(set->images, alloc_ctx);
    if (set->labels) DFN_FREE(set->labels, alloc_ctx);
    DFN_MEMSET(set, 0, sizeof *set);
}

DFNDEF dfn_result dfn_idx_load_ex(dfn_image_set *set, const char *images_path, const char *labels_path,
                                  int downsample, const dfn_limits *limits, void *alloc_ctx)
{
    dfn_limits d = dfn_limits_default();
    dfn_image_set s;
    unsigned char *buf = NULL;
    size_t len = 0, total = 0, held;
    int nl = 0;
    dfn_result r;
    if (set) DFN_MEMSET(set, 0, sizeof *set);
    if (!set || !images_path) return DFN_ERR_NULL;
    if (!limits) limits = &d;
    DFN_MEMSET(&s, 0, sizeof s);
    if ((r = dfn__file_read(images_path, limits->max_bytes, DFN_ERR_LIMIT, alloc_ctx, &buf, &len)) != DFN_OK)
        return r;
    r = dfn_idx_images_mem_c(buf, len, downsample, NULL, 0, &s.n, &s.h, &s.w, &s.c);
    if (r == DFN_OK) {
        total = (size_t)s.n * (size_t)s.h * (size_t)s.w * (size_t)s.c;   /* at most len */
        /* the file's own sides, and the floats beside the file */
        if ((size_t)s.h * (size_t)downsample > (size_t)limits->max_side ||
            (size_t)s.w * (size_t)downsample > (size_t)limits->max_side ||
            total > (limits->max_bytes - len - 1) / sizeof(float))        /* len + 1 < max_bytes */
            r = DFN_ERR_LIMIT;
        else if (!(s.images = (float *)DFN_MALLOC(total ? total * sizeof(float) : 1, alloc_ctx)))
            r = DFN_ERR_OUT_OF_MEMORY;
        else r = dfn_idx_images_mem_c(buf, len, downsample, s.images, total, NULL, NULL, NULL, NULL);
    }
    dfn_file_free(buf, alloc_ctx);
    buf = NULL;
    held = total * sizeof(float);
    if (r == DFN_OK && labels_path) {
        if ((r = dfn__file_read(labels_path, limits->max_bytes - held, DFN_ERR_LIMIT, alloc_ctx, &buf, &len)) ==
                DFN_OK &&
            (r = dfn_idx_labels_mem(buf, len, NULL, 0, &nl)) == DFN_OK) {
            if (nl != s.n) r = DFN_ERR_MISMATCH;
            else if ((size_t)nl > (limits->max_bytes - held - len - 1) / sizeof(int)) r = DFN_ERR_LIMIT;
            else if ((size_t)nl > ((size_t)-1) / sizeof(int) ||
                     !(s.labels = (int *)DFN_MALLOC(nl ? (size_t)nl * sizeof(int) : 1, alloc_ctx)))
                r = DFN_ERR_OUT_OF_MEMORY;
            else r = dfn_idx_labels_mem(buf, len, s.labels, nl, NULL);
        }
        dfn_file_free(buf, alloc_ctx);
    }
    if (r != DFN_OK) {
        dfn_image_set_free(&s, alloc_ctx);
        return r;
    }
    *set = s;
    return DFN_OK;
}

DFNDEF dfn_result dfn_idx_load(dfn_image_set *set, const char *images_path,
                               const char *labels_path, int downsample, void *alloc_ctx)
{
    return dfn_idx_load_ex(set, images_path, labels_path, downsample, NULL, alloc_ctx);
}
#endif

/* Is the point (dx, dy) from the centre inside shape k of size s? Units of
   1/8 pixel; every product stays far below 2^31. */
static int dfn__shape_inside(int k, int32_t dx, int32_t dy, int32_t s)
{
    int32_t d2 = dx * dx + dy * dy, ax = dx < 0 ? -dx : dx, ay = dy < 0 ? -dy : dy;
    switch (k) {
    case DFN_SHAPES_DISC:   return d2 <= s * s;
    case DFN_SHAPES_SQUARE: return ax <= s && ay <= s;
    case DFN_SHAPES_RING:   return s * s <= 4 * d2 && d2 <= s * s;
    default:                return (ax <= s && 3 * ay <= s) || (ay <= s && 3 * ax <= s);
    }
}

DFNDEF dfn_result dfn_shapes_sample(dfn_rng *rng, float *out, int *labels, int n, int size)
{
    int img, i, j, a, b;
    if (!rng || (n > 0 && !out)) return DFN_ERR_NULL;
    if (n < 0 || size < DFN_SHAPES_MIN_SIZE || size > DFN_SHAPES_MAX_SIZE ||
        (n > 0 && dfn__count(n, size * size) == 0))
        return DFN_ERR_INVALID_ARG;
    for (img = 0; img < n; img++) {
        int32_t S = 8 * size, lo = S / 5, hi = S / 3, s, cx, cy;
        int k = (int)dfn_rng_below(rng, DFN_SHAPES_COUNT);
        float *o = out + (size_t)img * (size_t)(size * size);
        s = lo + (int32_t)dfn_rng_below(rng, (uint32_t)(hi - lo + 1));
        cx = s + (int32_t)dfn_rng_below(rng, (uint32_t)(S - 2 * s + 1));
        cy = s + (int32_t)dfn_rng_below(rng, (uint32_t)(S - 2 * s + 1));
        if (labels) labels[img] = k;
        for (i = 0; i < size; i++) {
            for (j = 0; j < size; j++) {
                int m = 0;
                for (a = 0; a < 4; a++)
                    for (b = 0; b < 4; b++)
                        m += dfn__shape_inside(k, 8 * j + 1 + 2 * b - cx, 8 * i + 1 + 2 * a - cy, s);
                o[i * size + j] = (float)(m - 8) * 0.125f;   /* m/8 - 1, exact */
            }
        }
    }
    return DFN_OK;
}

DFNDEF const char *dfn_shapes_name(int k)
{
    static const char *const names[DFN_SHAPES_COUNT] = { "disc", "square", "ring", "cross" };
    return k >= 0 && k < DFN_SHAPES_COUNT ? names[k] : NULL;
}

DFNDEF dfn_result dfn_image_grid(float *out, size_t cap, const float *images, int n, int h,
                                 int w, int c, int cols, int pad, float pad_value, int *gh,
                                 int *gw)
{
    int64_t rows, H, W;
    size_t total, i, rowlen;
    int k, y;
    if (gh) *gh = 0;
    if (gw) *gw = 0;
    if (n < 1 || h < 1 || w < 1 || c < 1 || cols < 1 || pad < 0) return DFN_ERR_INVALID_ARG;
    rows = (int64_t)(n - 1) / cols + 1;
    H = rows * h + (rows + 1) * (int64_t)pad;                 /* each below 2^63 */
    W = (int64_t)cols * w + ((int64_t)cols + 1) * pad;
    if (H > DFN__INT_MAX || W > DFN__INT_MAX) return DFN_ERR_INVALID_ARG;
    total = dfn__count((int)H, (int)W);
    if (total == 0 || total > (((size_t)-1) / 64) / (size_t)c) return DFN_ERR_INVALID_ARG;
    total *= (size_t)c;
    if (gh) *gh = (int)H;
    if (gw) *gw = (int)W;
    if (!out) return DFN_OK;
    if (!images) return DFN_ERR_NULL;
    if (cap < total) return DFN_ERR_BUFFER_TOO_SMALL;
    for (i = 0; i < total; i++) out[i] = pad_value;
    rowlen = (size_t)w * (size_t)c;
    for (k = 0; k < n; k++) {
        size_t oy = (size_t)pad + (size_t)(k / cols) * (size_t)(h + pad);
        size_t ox = (size_t)pad + (size_t)(k % cols) * (size_t)(w + pad);
        for (y = 0; y < h; y++)
            DFN_MEMCPY(out + ((oy + (size_t)y) * (size_t)W + ox) * (size_t)c,
                       images + ((size_t)k * (size_t)h + (size_t)y) * rowlen, rowlen * sizeof(float));
    }
    return DFN_OK;
}

/* The pixel byte of a finite v: round((v + 1) 127.5), halves up, clamped
   to 0..255, in integer arithmetic. The thresholds between bytes are
   v = 2 m / 255; the only dyadic one is v = 0 (127.5 -> 128). For |v| >=
   2^-16, q = v 2^40 is an integer (exact), so the formula below is exact;
   for smaller |v| the result is 128 for v >= 0 and 127 for v < 0, which
   q = floor(v 2^40) also gives. */
static unsigned char dfn__pixel_byte(float v)
{
    float s;
    int64_t q;
    uint64_t y;
    if (v <= -1.0f) return 0;
    if (v >= 1.0f) return 255;
    s = v * 1099511627776.0f;                              /* 2^40: exact scaling */
    q = (int64_t)s;                                        /* toward 0 */
    if (s < 0.0f && (float)q != s) q -= 1;                 /* floor */
    y = ((uint64_t)(q + ((int64_t)1 << 40))) * 255u + ((uint64_t)1 << 40);
    return (unsigned char)(y >> 41);
}

DFNDEF size_t dfn_png_size(int h, int w, int c)
{
    uint64_t raw, z;
    if (h < 1 || w < 1 || (c != 1 && c != 3)) return 0;
    raw = (uint64_t)h * (1 + (uint64_t)w * (uint64_t)c);
    if (raw > 0x7fffffffu) return 0;
    z = 2 + 5 * ((raw + 65534) / 65535) + raw + 4;
    if (z > 0x7fffffffu) return 0;
    if (z > (uint64_t)((size_t)-1) - 57) return 0;
    return (size_t)(8 + 25 + 12 + z + 12);
}

DFNDEF dfn_result dfn_png_encode(const float *image, int h, int w, int c, void *out,
                                 size_t cap, size_t *len)
{
    static const unsigned char sig[8] = { 137, 80, 78, 71, 13, 10, 26, 10 };
    unsigned char *o = (unsigned char *)out, *chunk;
    size_t size = dfn_png_size(h, w, c), pos, raw, left, in_block = 0, count, i;
    uint32_t ad_a = 1, ad_b = 0;
    int y;
    if (len) *len = 0;
    if (!image || !out) return DFN_ERR_NULL;
    if (size == 0) return DFN_ERR_INVALID_ARG;
    if (cap < size) return DFN_ERR_BUFFER_TOO_SMALL;
    count = (size_t)h * (size_t)w * (size_t)c;
    if (!dfn__all_finite(image, count)) return DFN_ERR_NOT_FINITE;
    raw = (size_t)h * (1 + (size_t)w * (size_t)c);
    DFN_MEMCPY(o, sig, 8);
    /* IHDR: width, height, bit depth 8, colour type 0 (grey) or 2 (RGB),
       compression 0, filter method 0, no interlace. */
    dfn__set_be32(o + 8, 13);
    DFN_MEMCPY(o + 12, "IHDR", 4);
    dfn__set_be32(o + 16, (uint32_t)w);
    dfn__set_be32(o + 20, (uint32_t)h);
    o[24] = 8;
    o[25] = (unsigned char)(c == 1 ? 0 : 2);
    o[26] = o[27] = o[28] = 0;
    dfn__set_be32(o + 29, dfn_crc32(0, o + 12, 17));
    /* IDAT: the zlib stream. */
    chunk = o + 33;
    dfn__set_be32(chunk, (uint32_t)(size - 8 - 25 - 12 - 12));
    DFN_MEMCPY(chunk + 4, "IDAT", 4);
    pos = 41;
    o[pos++] = 0x78;                 /* CM 8 (deflate), CINFO 7 (32K window)      */
    o[pos++] = 0x01;                 /* FLEVEL 0, no dictionary; 0x7801 % 31 == 0  */
    left = raw;
    for (y = 0; y < h; y++) {
        size_t row = 1 + (size_t)w * (size_t)c;
        const float *src = image + (size_t)y * (size_t)w * (size_t)c;
        for (i = 0; i < row; i++) {
            unsigned char byte = i == 0 ? 0 : dfn__pixel_byte(src[i - 1]);   /* filter type 0 */
            if (in_block == 0) {
                /* A stored block: BFINAL (last one), BTYPE 00, then LEN and
                   its complement NLEN, little-endian. */
                size_t blk = left < 65535 ? left : 65535;
                o[pos++] = (unsigned char)(left == blk ? 1 : 0);
                o[pos++] = (unsigned char)(blk & 0xffu);
                o[pos++] = (unsigned char)(blk >> 8);
                o[pos++] = (unsigned char)(~blk & 0xffu);
                o[pos++] = (unsigned char)((~blk >> 8) & 0xffu);
                in_block = blk;
            }
            o[pos++] = byte;
            in_block--;
            left--;
            ad_a += byte;
            if (ad_a >= 65521u) ad_a -= 65521u;
            ad_b += ad_a;
            if (ad_b >= 65521u) ad_b -= 65521u;
        }
    }
    dfn__set_be32(o + pos, (ad_b << 16) | ad_a);      /* Adler-32, big-endian */
    pos += 4;
    dfn__set_be32(o + pos, dfn_crc32(0, chunk + 4, pos - 41 + 4));
    pos += 4;
    /* IEND */
    dfn__set_be32(o + pos, 0);
    DFN_MEMCPY(o + pos + 4, "IEND", 4);
    dfn__set_be32(o + pos + 8, dfn_crc32(0, o + pos + 4, 4));
    pos += 12;
    DFN_ASSERT(pos == size);
    if (len) *len = pos;
    return DFN_OK;
}

/* Decimal digits of v >= 0 into p (when not NULL); returns how many. */
static size_t dfn__put_decimal(char *p, int v)
{
    char tmp[16];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    if (p)
        for (i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
    return n;
}

DFNDEF size_t dfn_pnm_size(int h, int w, int c)
{
    uint64_t body;
    size_t header;
    if (h < 1 || w < 1 || (c != 1 && c != 3)) return 0;
    header = 3 + dfn__put_decimal(NULL, w) + 1 + dfn__put_decimal(NULL, h) + 5;   /* "P5\n" "w h\n255\n" */
    body = (uint64_t)h * (uint64_t)w * (uint64_t)c;
    if (body > (uint64_t)((size_t)-1 - header) || body > ((uint64_t)1 << 62)) return 0;
    return header + (size_t)body;
}

DFNDEF dfn_result dfn_pnm_encode(const float *image, int h, int w, int c, void *out,
                                 size_t cap, size_t *len)
{
    char *o = (char *)out;
    size_t size = dfn_pnm_size(h, w, c), pos = 0, count, i;
    if (len) *len = 0;
    if (!image || !out) return DFN_ERR_NULL;
    if (size == 0) return DFN_ERR_INVALID_ARG;
    if (cap < size) return DFN_ERR_BUFFER_TOO_SMALL;
    count = (size_t)h * (size_t)w * (size_t)c;
    if (!dfn__all_finite(image, count)) return DFN_ERR_NOT_FINITE;
    o[pos++] = 'P';
    o[pos++] = c == 1 ? '5' : '6';
    o[pos++] = '\n';
    pos += dfn__put_decimal(o + pos, w);
    o[pos++] = ' ';
    pos += dfn__put_decimal(o + pos, h);
    DFN_MEMCPY(o + pos, "\n255\n", 5);
    pos += 5;
    for (i = 0; i < count; i++) o[pos + i] = (char)dfn__pixel_byte(image[i]);
    pos += count;
    DFN_ASSERT(pos == size);
    if (len) *len = pos;
    return DFN_OK;
}

#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
static dfn_result dfn__image_save(const char *path, const float *image, int h, int w, int c,
                                  int png)
{
    size_t size, len = 0;
    void *buf;
    dfn_result r;
    if (!path || !image) return DFN_ERR_NULL;
    size = png ? dfn_png_size(h, w, c) : dfn_pnm_size(h, w, c);
    if (size == 0) return DFN_ERR_INVALID_ARG;
    if (!(buf = DFN_MALLOC(size, NULL))) return DFN_ERR_OUT_OF_MEMORY;
    r = png ? dfn_png_encode(image, h, w, c, buf, size, &len)
            : dfn_pnm_encode(image, h, w, c, buf, size, &len);
    if (r == DFN_OK) r = dfn_file_write_all(path, buf, len);
    DFN_FREE(buf, NULL);
    return r;
}

DFNDEF dfn_result dfn_png_save(const char *path, const float *image, int h, int w, int c)
{
    return dfn__image_save(path, image, h, w, c, 1);
}

DFNDEF dfn_result dfn_pnm_save(const char *path, const float *image, int h, int w, int c)
{
    return dfn__image_save(path, image, h, w, c, 0);
}
#endif

/* ------------------------------------------------------------------------- */
/*  Model files                                                              */
/* ------------------------------------------------------------------------- */

/* The library's networks, by stored id, with what the model files' API of
   0.7 keeps for each: where dfn_model_info holds its config, and the views
   of a loaded model (lm->model or lm->unet) set up from lm->net. */
typedef struct dfn__builtin_net {
    const dfn_net_ops *ops;
    size_t info_config;                      /* offset in dfn_model_info     */
    void (*views)(dfn_loaded_model *lm);
} dfn__builtin_net;

static void dfn__mlp_loaded_views(dfn_loaded_model *lm)
{
    dfn_mlp_init(&lm->model, &lm->info.mlp, lm->net.params);
    lm->ema_model = lm->model;
    lm->ema_model.params = lm->ema_net.params;
}

static void dfn__unet_loaded_views(dfn_loaded_model *lm)
{
    dfn_unet_init(&lm->unet, &lm->info.unet, lm->net.params);
    lm->ema_unet = lm->unet;
    lm->ema_unet.params = lm->ema_net.params;
}

static void dfn__clf_loaded_views(dfn_loaded_model *lm)
{
    dfn_classifier_init(&lm->classifier, &lm->info.classifier, lm->net.params);
}

static const dfn__builtin_net dfn__builtin_nets[] = {
    { &dfn__mlp_ops, offsetof(dfn_model_info, mlp), dfn__mlp_loaded_views },
    { &dfn__unet_ops, offsetof(dfn_model_info, unet), dfn__unet_loaded_views },
    { &dfn__clf_ops, offsetof(dfn_model_info, classifier), dfn__clf_loaded_views }
};

static const dfn__builtin_net *dfn__builtin(uint32_t kind)
{
    size_t i;
    for (i = 0; i < sizeof dfn__builtin_nets / sizeof dfn__builtin_nets[0]; i++)
        if (dfn__builtin_nets[i].ops->kind == kind) return &dfn__builtin_nets[i];
    return NULL;
}

DFNDEF const dfn_net_ops *dfn_net_ops_find(uint32_t kind)
{
    const dfn__builtin_net *b = dfn__builtin(kind);
    return b ? b->ops : NULL;
}

/* The network's stored config: at most DFN_NET_CONFIG_MAX bytes, and a
   config struct of as many, aligned for any member. */
typedef union dfn__config_buf {
    unsigned char bytes[DFN_NET_CONFIG_MAX];
    double d;
    void *p;
    long l;
} dfn__config_buf;

#define DFN__FLAG_EMA 1u
#define DFN__FLAG_OPT 2u

static void dfn__put_f64(dfn__wbuf *w, double v)
{
    uint64_t u;
    DFN_MEMCPY(&u, &v, 8);
    dfn__put_u32(w, (uint32_t)u);
    dfn__put_u32(w, (uint32_t)(u >> 32));
}

static double dfn__get_f64(dfn__rbuf *r)
{
    uint64_t u = dfn__get_u32(r);
    double v;
    u |= (uint64_t)dfn__get_u32(r) << 32;
    DFN_MEMCPY(&v, &u, 8);
    return v;
}

/* Writes the whole image (w counting only when its p is NULL); cfgb: the
   network's config as config_save wrote it. */
static void dfn__model_write(dfn__wbuf *w, const dfn_net *net, const unsigned char *cfgb, size_t cfg_len,
                             const dfn_schedule *s, const dfn_trainer *tr, int with_optimizer)
{
    const dfn_schedule_config *sc = &s->config;
    size_t P = net->count;
    uint32_t flags = (tr && tr->ema ? DFN__FLAG_EMA : 0u) | (with_optimizer ? DFN__FLAG_OPT : 0u);
    int t;
    /* the oldest version that holds the model: 1 (the bytes of 0.7.0 on)
       unless the schedule is a flow one or one of diffusers' kinds (5-7) */
    uint32_t version = sc->kind >= DFN_SCHEDULE_FLOW ? 2u : 1u;
    dfn__put_bytes(w, "DFNM", 4);
    dfn__put_u32(w, version);
    dfn__put_u32(w, flags);
    dfn__put_u32(w, net->ops->kind);
    if (net->ops->config_file_bytes == 0) dfn__put_u32(w, (uint32_t)cfg_len);
    dfn__put_bytes(w, cfgb, cfg_len);
    dfn__put_u32(w, (uint32_t)sc->kind);
    dfn__put_u32(w, (uint32_t)s->T);
    dfn__put_u32(w, (uint32_t)(sc->zero_terminal_snr != 0));
    dfn__put_f64(w, sc->beta_start);
    dfn__put_f64(w, sc->beta_end);
    dfn__put_f64(w, sc->cosine_s);
    dfn__put_f64(w, sc->sigmoid_start);
    dfn__put_f64(w, sc->sigmoid_end);
    dfn__put_f64(w, sc->sigmoid_tau);
    dfn__put_f64(w, sc->max_beta);
    if (version >= 2) dfn__put_f64(w, sc->flow_shift);
    if (sc->kind == DFN_SCHEDULE_CUSTOM)
        for (t = 1; t <= s->T; t++) dfn__put_f32(w, s->beta[t]);   /* exactly the given betas */
    dfn__put_u32(w, (uint32_t)P);
    dfn__put_f32s(w, net->params, P);
    if (flags & DFN__FLAG_EMA) dfn__put_f32s(w, tr->ema, P);
    if (flags & DFN__FLAG_OPT) {
        dfn__put_u32(w, (uint32_t)tr->step);      /* 0 .. 2^31 - 2, checked by the caller */
        dfn__put_u32(w, 0u);
        dfn__put_f32s(w, tr->adam_m, P);
        dfn__put_f32s(w, tr->adam_v, P);
    }
    if (w->p && !w->err) {
        uint32_t crc = dfn_crc32(0, w->p, w->len);
        dfn__put_u32(w, crc);
    } else {
        dfn__put_u32(w, 0);
    }
}

/* Checks what a save is given and writes the network's config into cfgb. */
static dfn_result dfn__model_save_check(const dfn_net *net, const dfn_schedule *s, const dfn_trainer *tr,
                                        int with_optimizer, dfn__config_buf *cfgb, size_t *cfg_len)
{
    dfn_net_shape sh;
    dfn_result r;
    size_t n;
    if (!net || !net->ops || !net->cfg || !net->params || !s || !s->alphabar) return DFN_ERR_NULL;
    if (with_optimizer && (!tr || tr->step < 0 || tr->step > 0x7ffffffeL)) return DFN_ERR_INVALID_ARG;
    if (tr && (!tr->state || tr->net.ops != net->ops || tr->net.count != net->count)) return DFN_ERR_MISMATCH;
    if (s->config.kind == DFN_SCHEDULE_CUSTOM && s->config.zero_terminal_snr) return DFN_ERR_INVALID_ARG;
    if ((r = dfn__net_shape(net, &sh)) != DFN_OK) return r;
    /* the readers refuse non-finite floats (dfn_model_info_mem): never write one */
    if (!dfn__all_finite(net->params, sh.params) || (tr && tr->ema && !dfn__all_finite(tr->ema, sh.params)) ||
        (with_optimizer && (!dfn__all_finite(tr->adam_m, sh.params) || !dfn__all_finite(tr->adam_v, sh.params))))
        return DFN_ERR_NOT_FINITE;
    if (!net->ops->config_save) return DFN_ERR_INVALID_ARG;
    n = net->ops->config_save(net->cfg, NULL);
    if (n > DFN_NET_CONFIG_MAX || (net->ops->config_file_bytes && n != net->ops->config_file_bytes))
        return DFN_ERR_INVALID_ARG;
    if (net->ops->config_save(net->cfg, cfgb->bytes) != n) return DFN_ERR_INVALID_ARG;
    *cfg_len = n;
    return DFN_OK;
}

DFNDEF size_t dfn_model_save_net_size(const dfn_net *net, const dfn_schedule *s, const dfn_trainer *tr,
                                      int with_optimizer)
{
    dfn__config_buf cb;
    dfn__wbuf w;
    size_t n;
    if (dfn__model_save_check(net, s, tr, with_optimizer, &cb, &n) != DFN_OK) return 0;
    dfn__wbuf_init(&w, NULL, 0);
    dfn__model_write(&w, net, cb.bytes, n, s, tr, with_optimizer);
    return w.err ? 0 : w.len;
}

DFNDEF dfn_result dfn_model_save_net_mem(void *buf, size_t cap, size_t *written, const dfn_net *net,
                                         const dfn_schedule *s, const dfn_trainer *tr, int with_optimizer)
{
    dfn__config_buf cb;
    dfn__wbuf w;
    dfn_result r;
    size_t n;
    if (written) *written = 0;
    if (!buf) return DFN_ERR_NULL;
    if ((r = dfn__model_save_check(net, s, tr, with_optimizer, &cb, &n)) != DFN_OK) return r;
    if (cap < dfn_model_save_net_size(net, s, tr, with_optimizer)) return DFN_ERR_BUFFER_TOO_SMALL;
    dfn__wbuf_init(&w, buf, cap);
    dfn__model_write(&w, net, cb.bytes, n, s, tr, with_optimizer);
    if (w.err) return DFN_ERR_BUFFER_TOO_SMALL;
    if (written) *written = w.len;
    return DFN_OK;
}

DFNDEF size_t dfn_model_save_size(const dfn_mlp *m, const dfn_schedule *s, const dfn_trainer *tr,
                                  int with_optimizer)
{
    dfn_net n = dfn_mlp_net(m);
    return m ? dfn_model_save_net_size(&n, s, tr, with_optimizer) : 0;
}

DFNDEF dfn_result dfn_model_save_mem(void *buf, size_t cap, size_t *written, const dfn_mlp *m,
                                     const dfn_schedule *s, const dfn_trainer *tr, int with_optimizer)
{
    dfn_net n = dfn_mlp_net(m);
    if (!m) return DFN_ERR_NULL;
    return dfn_model_save_net_mem(buf, cap, written, &n, s, tr, with_optimizer);
}

DFNDEF size_t dfn_model_save_unet_size(const dfn_unet *u, const dfn_schedule *s, const dfn_trainer *tr,
                                       int with_optimizer)
{
    dfn_net n = dfn_unet_net(u);
    return u ? dfn_model_save_net_size(&n, s, tr, with_optimizer) : 0;
}

DFNDEF dfn_result dfn_model_save_unet_mem(void *buf, size_t cap, size_t *written, const dfn_unet *u,
                                          const dfn_schedule *s, const dfn_trainer *tr,
                                          int with_optimizer)
{
    dfn_net n = dfn_unet_net(u);
    if (!u) return DFN_ERR_NULL;
    return dfn_model_save_net_mem(buf, cap, written, &n, s, tr, with_optimizer);
}

/* The stored config of a file of ops's kind, loaded into cb and described:
   DFN_ERR_FORMAT when the bytes do not make a valid config. */
static dfn_result dfn__model_config(const dfn_net_ops *ops, const void *buf, const dfn_model_info *info,
                                    dfn__config_buf *cb, dfn_net_shape *sh)
{
    if (!ops->config_load || ops->config_bytes == 0 || ops->config_bytes > DFN_NET_CONFIG_MAX)
        return DFN_ERR_INVALID_ARG;
    DFN_MEMSET(cb, 0, sizeof *cb);
    if (ops->config_load(cb->bytes, (const unsigned char *)buf + info->config_offset, info->config_len) != DFN_OK ||
        dfn_net_describe(ops, cb->bytes, sh) != DFN_OK)
        return DFN_ERR_FORMAT;
    return DFN_OK;
}

/* Parses and validates the header; r is left just after the parameter count. */
static dfn_result dfn__model_header(dfn__rbuf *r, const void *buf, size_t len, dfn_model_info *info,
                                    uint32_t *flags)
{
    unsigned char magic[4];
    uint32_t kind, stored_crc;
    dfn_schedule_config *sc;
    const dfn__builtin_net *lib;
    dfn_net_shape sh;
    size_t cfg_len;
    if (!buf || !info) return DFN_ERR_NULL;
    sc = &info->schedule;                 /* after the check: &NULL->member is undefined */
    DFN_MEMSET(info, 0, sizeof *info);
    dfn__rbuf_init(r, buf, len);
    dfn__get_bytes(r, magic, 4);
    if (r->err || magic[0] != 'D' || magic[1] != 'F' || magic[2] != 'N' || magic[3] != 'M')
        return DFN_ERR_FORMAT;
    info->version = dfn__get_u32(r);
    if (r->err) return DFN_ERR_FORMAT;
    if (info->version != 1 && info->version != DFN_MODEL_VERSION) return DFN_ERR_VERSION;
    if (len < 12) return DFN_ERR_FORMAT;
    {
        /* the checksum covers every byte before the last four */
        dfn__rbuf tail;
        dfn__rbuf_init(&tail, (const unsigned char *)buf + len - 4, 4);
        stored_crc = dfn__get_u32(&tail);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION   /* fuzzers reach the parser behind it */
        if (dfn_crc32(0, buf, len - 4) != stored_crc) return DFN_ERR_CHECKSUM;
#else
        (void)stored_crc;
#endif
    }
    *flags = dfn__get_u32(r);
    kind = dfn__get_u32(r);
    lib = dfn__builtin(kind);
    if ((!lib && (kind < DFN_NET_USER || kind > DFN_NET_USER_LAST)) || (*flags & ~(DFN__FLAG_EMA | DFN__FLAG_OPT)))
        return DFN_ERR_FORMAT;
    info->net = (dfn_net_kind)kind;
    /* the network's config: the library's are described (and copied into
       info); a program's own is only located */
    cfg_len = lib ? lib->ops->config_file_bytes : (size_t)dfn__get_u32(r);
    if (r->err || cfg_len > DFN_NET_CONFIG_MAX || cfg_len > r->len - r->pos) return DFN_ERR_FORMAT;
    info->config_offset = r->pos;
    info->config_len = cfg_len;
    r->pos += cfg_len;
    if (lib) {
        dfn__config_buf cb;
        dfn_result res = dfn__model_config(lib->ops, buf, info, &cb, &sh);
        if (res != DFN_OK) return res;
        DFN_MEMCPY((unsigned char *)info + lib->info_config, cb.bytes, lib->ops->config_bytes);
    }
    *sc = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR, 1);
    sc->kind = (dfn_schedule_kind)dfn__get_u32(r);
    sc->T = (int)dfn__get_i32(r);
    sc->zero_terminal_snr = (int)dfn__get_i32(r);
    sc->beta_start = dfn__get_f64(r);
    sc->beta_end = dfn__get_f64(r);
    sc->cosine_s = dfn__get_f64(r);
    sc->sigmoid_start = dfn__get_f64(r);
    sc->sigmoid_end = dfn__get_f64(r);
    sc->sigmoid_tau = dfn__get_f64(r);
    sc->max_beta = dfn__get_f64(r);
    if (info->version >= 2) sc->flow_shift = dfn__get_f64(r);   /* version 1: 1 (no flow) */
    if (r->err) return DFN_ERR_FORMAT;
    /* Every value a reader will size memory with is checked before use (a
       negative int from a huge u32 fails these too). */
    if (sc->T < 1 || sc->T > DFN_MAX_T ||
        (unsigned)sc->kind > (unsigned)(info->version >= 2 ? DFN_SCHEDULE_LINEAR_BETAS : DFN_SCHEDULE_CUSTOM) ||
        (sc->zero_terminal_snr != 0 && sc->zero_terminal_snr != 1))
        return DFN_ERR_FORMAT;
    {
        /* the schedule's parameters as dfn_schedule_init checks them (custom
           betas are read later; any non-NULL pointer stands in for them) */
        dfn_schedule_config probe = *sc;
        if (probe.kind == DFN_SCHEDULE_CUSTOM) probe.betas = (const float *)buf;
        if (dfn__schedule_check(&probe) != DFN_OK) return DFN_ERR_FORMAT;
    }
    if (sc->kind == DFN_SCHEDULE_CUSTOM) {
        if ((size_t)sc->T > (r->len - r->pos) / 4) return DFN_ERR_FORMAT;
        r->pos += (size_t)sc->T * 4;     /* the betas: read by dfn_model_read */
    }
    info->has_ema = (*flags & DFN__FLAG_EMA) != 0;
    info->has_optimizer = (*flags & DFN__FLAG_OPT) != 0;
    {
        /* the rest must be exactly: P, the blocks, [step], CRC */
        size_t P, blocks, need;
        uint32_t stored = dfn__get_u32(r);
        if (r->err || (lib && stored != (uint32_t)sh.params) || stored < 1 || stored > 0x7fffffffu)
            return DFN_ERR_FORMAT;
        P = info->params = (size_t)stored;
        blocks = 1 + (size_t)info->has_ema + 2 * (size_t)info->has_optimizer;
        if (P > (r->len - r->pos) / 4 / blocks) return DFN_ERR_FORMAT;
        need = blocks * P * 4 + (info->has_optimizer ? 8 : 0) + 4;
        if (r->len - r->pos != need) return DFN_ERR_FORMAT;
        {
            /* every stored float finite (the weights, EMA and Adam moments:
               the step count between them is skipped): a file with NaN or
               infinity in it never loads */
            const unsigned char *f = r->p + r->pos;
            size_t k, n = blocks * P, skip = (1 + (size_t)info->has_ema) * P;
            for (k = 0; k < n; k++) {
                const unsigned char *q = f + 4 * k + (k >= skip && info->has_optimizer ? 8 : 0);
                if ((q[3] & 0x7f) == 0x7f && (q[2] & 0x80)) return DFN_ERR_NOT_FINITE;   /* exponent all ones */
            }
        }
        if (info->has_optimizer) {
            /* the step count, after the weights and the EMA: 0 .. 2^31 - 2, so
               that it fits any long and the next step too */
            dfn__rbuf st = *r;
            uint32_t lo, hi;
            st.pos += (1 + (size_t)info->has_ema) * P * 4;
            lo = dfn__get_u32(&st);
            hi = dfn__get_u32(&st);
            if (st.err || hi != 0 || lo > 0x7ffffffeu) return DFN_ERR_FORMAT;
            info->step = (long)lo;
        }
    }
    return DFN_OK;
}

DFNDEF dfn_result dfn_model_info_mem(const void *buf, size_t len, dfn_model_info *info)
{
    dfn__rbuf r;
    uint32_t flags;
    return dfn__model_header(&r, buf, len, info, &flags);
}

DFNDEF dfn_result dfn_model_read_net(const void *buf, size_t len, const dfn_net *net, float *ema,
                                     dfn_trainer *tr, float *betas)
{
    dfn_model_info info;
    dfn__config_buf cb;
    dfn_net_shape sh, fs;
    dfn__rbuf r;
    uint32_t flags;
    size_t P;
    float *params;
    dfn_result res = dfn__model_header(&r, buf, len, &info, &flags);
    if (res != DFN_OK) return res;
    if (!net || !net->params || !net->ops || !net->cfg) return DFN_ERR_NULL;
    if (dfn__net_shape(net, &sh) != DFN_OK || (uint32_t)info.net != net->ops->kind || info.params != sh.params)
        return DFN_ERR_MISMATCH;
    if ((res = dfn__model_config(net->ops, buf, &info, &cb, &fs)) != DFN_OK) return res;
    if (!net->ops->config_same(net->cfg, cb.bytes) || (tr && tr->net.params != net->params))
        return DFN_ERR_MISMATCH;
    P = sh.params;
    params = net->params;
    if (betas && info.schedule.kind == DFN_SCHEDULE_CUSTOM) {
        dfn__rbuf b = r;
        b.pos -= (size_t)info.schedule.T * 4 + 4;        /* the betas precede P */
        dfn__get_f32s(&b, betas, (size_t)info.schedule.T);
    }
    dfn__get_f32s(&r, params, P);
    if (info.has_ema) {
        if (tr && tr->ema) dfn__get_f32s(&r, tr->ema, P);
        else if (ema) dfn__get_f32s(&r, ema, P);
        else r.pos += P * 4;
        if (tr && tr->ema && ema) DFN_MEMCPY(ema, tr->ema, P * sizeof(float));
    } else if (tr && tr->ema) {
        DFN_MEMCPY(tr->ema, params, P * sizeof(float));      /* start the EMA at the weights */
    }
    if (info.has_optimizer && tr) {
        r.pos += 8;                               /* validated by the header */
        tr->step = info.step;
        dfn__get_f32s(&r, tr->adam_m, P);
        dfn__get_f32s(&r, tr->adam_v, P);
    }
    return r.err ? DFN_ERR_FORMAT : DFN_OK;
}

DFNDEF dfn_result dfn_model_read(const void *buf, size_t len, dfn_mlp *m, float *ema,
                                 dfn_trainer *tr, float *betas)
{
    dfn_net n = dfn_mlp_net(m);
    if (!m) {
        dfn_model_info info;
        dfn_result r = dfn_model_info_mem(buf, len, &info);
        return r != DFN_OK ? r : DFN_ERR_NULL;
    }
    return dfn_model_read_net(buf, len, &n, ema, tr, betas);
}

DFNDEF dfn_result dfn_model_read_unet(const void *buf, size_t len, dfn_unet *u, float *ema,
                                      dfn_trainer *tr, float *betas)
{
    dfn_net n = dfn_unet_net(u);
    if (!u) {
        dfn_model_info info;
        dfn_result r = dfn_model_info_mem(buf, len, &info);
        return r != DFN_OK ? r : DFN_ERR_NULL;
    }
    return dfn_model_read_net(buf, len, &n, ema, tr, betas);
}

/* The one block dfn_model_load_net_mem allocates for a file of info (with
   config_bytes of config), laid out in mem or (mem NULL) measured: config,
   params, EMA, custom betas (only for a custom schedule), schedule tables.
   0 when the sizes do not fit a size_t. */
static size_t dfn__model_load_layout(const dfn_model_info *info, size_t config_bytes, void *mem,
                                     void **cfg, float **params, float **ema, float **betas, void **smem)
{
    dfn__arena a = dfn__arena_begin(mem);
    size_t P = info->params, T = (size_t)info->schedule.T, sbytes = dfn_schedule_size(info->schedule.T);
    if (sbytes == 0 || P > ((size_t)-1) / 16 || T > ((size_t)-1) / 16) return 0;
    *cfg = dfn__arena_take(&a, config_bytes);
    *params = (float *)dfn__arena_take(&a, P * sizeof(float));
    *ema = info->has_ema ? (float *)dfn__arena_take(&a, P * sizeof(float)) : NULL;
    *betas = info->schedule.kind == DFN_SCHEDULE_CUSTOM ? (float *)dfn__arena_take(&a, T * sizeof(float)) : NULL;
    *smem = dfn__arena_take(&a, sbytes);
    return dfn__arena_size(&a);
}

/* The limits of a file of info loaded with config_bytes of config, and
   `extra` bytes held besides (the file itself, when read by the loader). */
static dfn_result dfn__model_limits(const dfn_model_info *info, const dfn_limits *limits,
                                    size_t config_bytes, size_t extra)
{
    dfn_limits d = dfn_limits_default();
    const dfn_limits *l = limits ? limits : &d;
    void *c, *sm;
    float *p, *e, *b;
    size_t bytes;
    if (info->schedule.T > l->max_T || info->params > l->max_params) return DFN_ERR_LIMIT;
    if (info->net == DFN_NET_UNET && (info->unet.height > l->max_side || info->unet.width > l->max_side))
        return DFN_ERR_LIMIT;
    bytes = dfn__model_load_layout(info, config_bytes, NULL, &c, &p, &e, &b, &sm);
    if (bytes == 0 || bytes > l->max_bytes || extra > l->max_bytes - bytes) return DFN_ERR_LIMIT;
    return DFN_OK;
}

DFNDEF dfn_result dfn_model_check_limits(const dfn_model_info *info, const dfn_limits *limits)
{
    const dfn__builtin_net *lib;
    if (!info) return DFN_ERR_NULL;
    lib = dfn__builtin((uint32_t)info->net);
    return dfn__model_limits(info, limits, lib ? lib->ops->config_bytes : DFN_NET_CONFIG_MAX, 0);
}

#ifndef DFN_NO_MALLOC
/* The loader, with `extra` bytes held by the caller counted in the limits. */
static dfn_result dfn__model_load(const void *buf, size_t len, const dfn_net_ops *ops,
                                  const dfn_limits *limits, size_t extra, void *alloc_ctx,
                                  dfn_loaded_model *out)
{
    const dfn__builtin_net *lib;
    dfn_model_info info;
    dfn_result r;
    size_t sbytes, bytes;
    float *params, *ema, *betas;
    void *smem, *cfg;
    if (!out) return DFN_ERR_NULL;
    DFN_MEMSET(out, 0, sizeof *out);
    if ((r = dfn_model_info_mem(buf, len, &info)) != DFN_OK) return r;
    lib = dfn__builtin((uint32_t)info.net);
    if (!ops) ops = lib ? lib->ops : NULL;
    if (!ops || ops->kind != (uint32_t)info.net) return DFN_ERR_MISMATCH;
    if (ops->config_bytes == 0 || ops->config_bytes > DFN_NET_CONFIG_MAX) return DFN_ERR_INVALID_ARG;
    if ((r = dfn__model_limits(&info, limits, ops->config_bytes, extra)) != DFN_OK) return r;
    sbytes = dfn_schedule_size(info.schedule.T);
    bytes = dfn__model_load_layout(&info, ops->config_bytes, NULL, &cfg, &params, &ema, &betas, &smem);
    out->memory = DFN_MALLOC(bytes, alloc_ctx);
    if (!out->memory) return DFN_ERR_OUT_OF_MEMORY;
    dfn__model_load_layout(&info, ops->config_bytes, out->memory, &cfg, &params, &ema, &betas, &smem);
    DFN_MEMSET(cfg, 0, ops->config_bytes);
    r = ops->config_load ? ops->config_load(cfg, (const unsigned char *)buf + info.config_offset, info.config_len)
                         : DFN_ERR_INVALID_ARG;
    if (r == DFN_OK) r = dfn_net_init(&out->net, ops, cfg, params);
    if (r == DFN_OK) r = dfn_model_read_net(buf, len, &out->net, ema, NULL, betas);
    if (r == DFN_OK) {
        if (info.schedule.kind == DFN_SCHEDULE_CUSTOM) info.schedule.betas = betas;
        r = dfn_schedule_init(&out->schedule, &info.schedule, smem, sbytes);
        info.schedule.betas = NULL;
    }
    if (r != DFN_OK) {
        DFN_FREE(out->memory, alloc_ctx);
        DFN_MEMSET(out, 0, sizeof *out);
        return r == DFN_ERR_INVALID_ARG ? DFN_ERR_FORMAT : r;
    }
    out->info = info;
    out->ema = ema;
    out->ema_net = out->net;
    if (ema) out->ema_net.params = ema;
    out->step = info.step;
    if (lib && lib->ops == ops) lib->views(out);
    return DFN_OK;
}

DFNDEF dfn_result dfn_model_load_net_mem_ex(const void *buf, size_t len, const dfn_net_ops *ops,
                                            const dfn_limits *limits, void *alloc_ctx,
                                            dfn_loaded_model *out)
{
    return dfn__model_load(buf, len, ops, limits, 0, alloc_ctx, out);
}

DFNDEF dfn_result dfn_model_load_net_mem(const void *buf, size_t len, const dfn_net_ops *ops,
                                         void *alloc_ctx, dfn_loaded_model *out)
{
    return dfn__model_load(buf, len, ops, NULL, 0, alloc_ctx, out);
}

DFNDEF dfn_result dfn_model_load_mem(const void *buf, size_t len, void *alloc_ctx,
                                     dfn_loaded_model *out)
{
    return dfn__model_load(buf, len, NULL, NULL, 0, alloc_ctx, out);
}

DFNDEF void dfn_model_free(dfn_loaded_model *lm, void *alloc_ctx)
{
    (void)alloc_ctx;
    if (!lm) return;
    if (lm->memory) DFN_FREE(lm->memory, alloc_ctx);
    DFN_MEMSET(lm, 0, sizeof *lm);
}
#endif

#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
DFNDEF dfn_result dfn_model_load_net_ex(const char *path, const dfn_net_ops *ops, const dfn_limits *limits,
                                        void *alloc_ctx, dfn_loaded_model *out)
{
    dfn_limits d = dfn_limits_default();
    unsigned char *data;
    size_t len;
    dfn_result r;
    if (!out) return DFN_ERR_NULL;
    DFN_MEMSET(out, 0, sizeof *out);
    if (!limits) limits = &d;
    if ((r = dfn__file_read(path, limits->max_bytes, DFN_ERR_LIMIT, alloc_ctx, &data, &len)) != DFN_OK) return r;
    r = dfn__model_load(data, len, ops, limits, len + 1, alloc_ctx, out);     /* the file's buffer */
    dfn_file_free(data, alloc_ctx);
    return r;
}

DFNDEF dfn_result dfn_model_load_net(const char *path, const dfn_net_ops *ops, void *alloc_ctx,
                                     dfn_loaded_model *out)
{
    return dfn_model_load_net_ex(path, ops, NULL, alloc_ctx, out);
}

DFNDEF dfn_result dfn_model_load(const char *path, void *alloc_ctx, dfn_loaded_model *out)
{
    return dfn_model_load_net(path, NULL, alloc_ctx, out);
}

/* The file written whole from one buffer. */
DFNDEF dfn_result dfn_model_save_net(const char *path, const dfn_net *net, const dfn_schedule *s,
                                     const dfn_trainer *tr, int with_optimizer)
{
    dfn__config_buf cb;
    size_t bytes, written, n;
    void *buf;
    dfn_result r;
    if (!path) return DFN_ERR_NULL;
    if ((r = dfn__model_save_check(net, s, tr, with_optimizer, &cb, &n)) != DFN_OK) return r;
    bytes = dfn_model_save_net_size(net, s, tr, with_optimizer);
    if (bytes == 0) return DFN_ERR_INVALID_ARG;
    buf = DFN_MALLOC(bytes, NULL);
    if (!buf) return DFN_ERR_OUT_OF_MEMORY;
    r = dfn_model_save_net_mem(buf, bytes, &written, net, s, tr, with_optimizer);
    if (r == DFN_OK) r = dfn_file_write_all(path, buf, written);
    DFN_FREE(buf, NULL);
    return r;
}

DFNDEF dfn_result dfn_model_save(const char *path, const dfn_mlp *m, const dfn_schedule *s,
                                 const dfn_trainer *tr, int with_optimizer)
{
    dfn_net n = dfn_mlp_net(m);
    if (!path || !m) return DFN_ERR_NULL;
    return dfn_model_save_net(path, &n, s, tr, with_optimizer);
}

DFNDEF dfn_result dfn_model_save_unet(const char *path, const dfn_unet *u, const dfn_schedule *s,
                                      const dfn_trainer *tr, int with_optimizer)
{
    dfn_net n = dfn_unet_net(u);
    if (!path || !u) return DFN_ERR_NULL;
    return dfn_model_save_net(path, &n, s, tr, with_optimizer);
}
#endif

/* ------------------------------------------------------------------------- */
/*  A small JSON reader and writer (safetensors headers, metadata, configs)  */
/* ------------------------------------------------------------------------- */
/* The reader walks a JSON text in place (no tree, no allocation): each
   function takes the next token or value and sets the sticky err on
   anything RFC 8259 does not allow. The callers know the shape they
   expect, so nothing is skipped blindly and no recursion is needed. */

/* String helpers (the library includes no <string.h> functions but memcpy
   and memset, which a program may replace). */
static size_t dfn__strlen(const char *s)
{
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

static int dfn__strcmp(const char *a, const char *b)
{
    while (*a && *a == *b) { a++; b++; }
    return (int)(unsigned char)*a - (int)(unsigned char)*b;
}

static DFN__MAYBE_UNUSED int dfn__memeq(const void *a, const void *b, size_t n)
{
    const unsigned char *p = (const unsigned char *)a, *q = (const unsigned char *)b;
    size_t i;
    for (i = 0; i < n; i++) if (p[i] != q[i]) return 0;
    return 1;
}

typedef struct dfn__json {
    const char *p, *e;
    int err;
} dfn__json;

static void dfn__js_ws(dfn__json *j)
{
    while (j->p < j->e && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

/* The next non-blank character (0 at the end or after an error). */
static char dfn__js_peek(dfn__json *j)
{
    dfn__js_ws(j);
    return j->err || j->p == j->e ? 0 : *j->p;
}

/* Takes character c (after blanks), or sets err. */
static int dfn__js_take(dfn__json *j, char c)
{
    if (dfn__js_peek(j) != c) { j->err = 1; return 0; }
    j->p++;
    return 1;
}

static int dfn__js_hex4(const char *p, unsigned *v)
{
    int i;
    *v = 0;
    for (i = 0; i < 4; i++) {
        char ch = p[i];
        unsigned d = ch >= '0' && ch <= '9' ? (unsigned)(ch - '0') :
                     ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10) :
                     ch >= 'A' && ch <= 'F' ? (unsigned)(ch - 'A' + 10) : 16u;
        if (d > 15) return 0;
        *v = *v * 16 + d;
    }
    return 1;
}

/* A string, decoded to UTF-8 into out (cap bytes, NUL added; out NULL:
   only measured). Returns the decoded length (without the NUL). Errors
   (err): not a string, a control character, a bad escape or surrogate
   pair, \u0000, invalid UTF-8 in the input, or more than cap - 1 bytes. */
static size_t dfn__js_string(dfn__json *j, char *out, size_t cap)
{
    size_t n = 0;
    if (!dfn__js_take(j, '"')) return 0;
    while (!j->err) {
        unsigned char ch;
        unsigned long cp;
        int k, len;
        if (j->p == j->e) { j->err = 1; break; }
        ch = (unsigned char)*j->p;
        if (ch == '"') { j->p++; break; }
        if (ch < 0x20) { j->err = 1; break; }
        if (ch == '\\') {
            char c2;
            if (j->e - j->p < 2) { j->err = 1; break; }
            c2 = j->p[1];
            j->p += 2;
            switch (c2) {
            case '"': cp = '"'; break;
            case '\\': cp = '\\'; break;
            case '/': cp = '/'; break;
            case 'b': cp = 8; break;
            case 'f': cp = 12; break;
            case 'n': cp = 10; break;
            case 'r': cp = 13; break;
            case 't': cp = 9; break;
            case 'u': {
                unsigned hi, lo;
                if (j->e - j->p < 4 || !dfn__js_hex4(j->p, &hi)) { j->err = 1; return 0; }
                j->p += 4;
                if (hi >= 0xDC00 && hi <= 0xDFFF) { j->err = 1; return 0; }
                if (hi >= 0xD800 && hi <= 0xDBFF) {
                    if (j->e - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' || !dfn__js_hex4(j->p + 2, &lo) ||
                        lo < 0xDC00 || lo > 0xDFFF) { j->err = 1; return 0; }
                    j->p += 6;
                    cp = 0x10000ul + (((unsigned long)hi - 0xD800) << 10) + (lo - 0xDC00);
                } else {
                    cp = hi;
                }
                if (cp == 0) { j->err = 1; return 0; }
                break;
            }
            default: j->err = 1; return 0;
            }
            /* encode cp as UTF-8 */
            {
                unsigned char b[4];
                if (cp < 0x80) { b[0] = (unsigned char)cp; len = 1; }
                else if (cp < 0x800) { b[0] = (unsigned char)(0xC0 | (cp >> 6)); b[1] = (unsigned char)(0x80 | (cp & 63)); len = 2; }
                else if (cp < 0x10000) { b[0] = (unsigned char)(0xE0 | (cp >> 12)); b[1] = (unsigned char)(0x80 | ((cp >> 6) & 63));
                                         b[2] = (unsigned char)(0x80 | (cp & 63)); len = 3; }
                else { b[0] = (unsigned char)(0xF0 | (cp >> 18)); b[1] = (unsigned char)(0x80 | ((cp >> 12) & 63));
                       b[2] = (unsigned char)(0x80 | ((cp >> 6) & 63)); b[3] = (unsigned char)(0x80 | (cp & 63)); len = 4; }
                for (k = 0; k < len; k++) {
                    if (out) { if (n + 1 >= cap) { j->err = 1; return 0; } out[n] = (char)b[k]; }
                    n++;
                }
            }
            continue;
        }
        /* raw UTF-8: one well-formed sequence (no overlong forms, no surrogates) */
        if (ch < 0x80) { len = 1; cp = ch; }
        else if (ch >= 0xC2 && ch <= 0xDF) { len = 2; cp = ch & 31u; }
        else if (ch >= 0xE0 && ch <= 0xEF) { len = 3; cp = ch & 15u; }
        else if (ch >= 0xF0 && ch <= 0xF4) { len = 4; cp = ch & 7u; }
        else { j->err = 1; break; }
        if (j->e - j->p < len) { j->err = 1; break; }
        for (k = 1; k < len; k++) {
            unsigned char c = (unsigned char)j->p[k];
            if ((c & 0xC0) != 0x80) { j->err = 1; return 0; }
            cp = (cp << 6) | (c & 63u);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
            j->err = 1;
            break;
        }
        for (k = 0; k < len; k++) {
            if (out) { if (n + 1 >= cap) { j->err = 1; return 0; } out[n] = j->p[k]; }
            n++;
        }
        j->p += len;
    }
    if (j->err) return 0;
    if (out) { if (n >= cap) { j->err = 1; return 0; } out[n] = 0; }
    return n;
}

/* The span of a JSON number token (RFC 8259 grammar) at the cursor; 0 if
   there is none. */
static int dfn__js_number_span(dfn__json *j, const char **s, const char **e)
{
    const char *p;
    dfn__js_ws(j);
    p = j->p;
    *s = p;
    if (p < j->e && *p == '-') p++;
    if (p == j->e || !dfn__is_digit(*p)) return 0;
    if (*p == '0') p++;
    else while (p < j->e && dfn__is_digit(*p)) p++;
    if (p < j->e && *p == '.') {
        p++;
        if (p == j->e || !dfn__is_digit(*p)) return 0;
        while (p < j->e && dfn__is_digit(*p)) p++;
    }
    if (p < j->e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < j->e && (*p == '+' || *p == '-')) p++;
        if (p == j->e || !dfn__is_digit(*p)) return 0;
        while (p < j->e && dfn__is_digit(*p)) p++;
    }
    *e = p;
    j->p = p;
    return 1;
}

/* A non-negative integer (digits only, no sign, fraction or exponent) up
   to max. */
static uint64_t dfn__js_uint(dfn__json *j, uint64_t max)
{
    const char *s, *e;
    uint64_t v = 0;
    if (j->err) return 0;
    if (!dfn__js_number_span(j, &s, &e)) { j->err = 1; return 0; }
    for (; s < e; s++) {
        if (!dfn__is_digit(*s)) { j->err = 1; return 0; }
        if (v > (max - (uint64_t)(*s - '0')) / 10u) { j->err = 1; return 0; }
        v = v * 10u + (uint64_t)(*s - '0');
    }
    return v;
}

/* The double a decimal number spells. Up to 15 significant digits with a
   decimal exponent within +-22 (every number the library writes that
   round-trips this way, and the usual hand-written ones: 0.00085, 1e-4,
   25) convert exactly: M and 10^E are exact doubles, so one
   multiplication or division rounds once, correctly (Clinger 1990).
   Longer ones are within about 1e-15 relative (dfn__parse_float's
   method, in double). Returns 0 for a value beyond the double range. */
static int dfn__decimal_to_double(const char *p, const char *e, double *v)
{
    static const double pow10[23] = {
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
    };
    uint64_t mant = 0;
    int neg = 0, nd = 0, dexp = 0, x = 0, xneg = 0;
    double d;
    if (p < e && (*p == '-' || *p == '+')) { neg = *p == '-'; p++; }
    for (; p < e && dfn__is_digit(*p); p++) {
        if (nd < 19) { if (mant || *p != '0') { mant = mant * 10u + (uint64_t)(*p - '0'); nd++; } }
        else if (dexp < 100000) dexp++;
    }
    if (p < e && *p == '.')
        for (p++; p < e && dfn__is_digit(*p); p++)
            if (nd < 19) {
                if (mant || *p != '0') { mant = mant * 10u + (uint64_t)(*p - '0'); nd++; }
                dexp--;
            }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) { xneg = *p == '-'; p++; }
        for (; p < e && dfn__is_digit(*p); p++)
            if (x < 100000) x = x * 10 + (*p - '0');
    }
    dexp += xneg ? -x : x;
    if (mant == 0) { *v = neg ? -0.0 : 0.0; return 1; }
    if (nd + dexp > 310) return 0;
    if (nd + dexp < -330) { *v = neg ? -0.0 : 0.0; return 1; }
    d = (double)mant;
    if (nd <= 15 && dexp >= -22 && dexp <= 22) {
        d = dexp < 0 ? d / pow10[-dexp] : d * pow10[dexp];
    } else if (dexp < 0) {
        for (; dexp < -22; dexp += 22) d /= 1e22;
        d /= pow10[-dexp];
    } else {
        for (; dexp > 22; dexp -= 22) d *= 1e22;
        d *= pow10[dexp];
    }
    if (!(d <= 1.7976931348623157e308)) return 0;
    *v = neg ? -d : d;
    return 1;
}

/* A finite JSON number as a double. */
static double dfn__js_double(dfn__json *j)
{
    const char *s, *e;
    double v = 0.0;
    if (j->err) return 0.0;
    if (!dfn__js_number_span(j, &s, &e) || !dfn__decimal_to_double(s, e, &v)) j->err = 1;
    return v;
}

/* Takes the literal word w ("true", "false", "null") if it is next. */
static int dfn__js_word(dfn__json *j, const char *w)
{
    size_t n = dfn__strlen(w);
    dfn__js_ws(j);
    if (j->err || (size_t)(j->e - j->p) < n || !dfn__memeq(j->p, w, n)) return 0;
    j->p += n;
    return 1;
}

/* Object walking: call with *first = 1 after taking '{'. Returns 1 with the
   key decoded into key (cap bytes) and the cursor at its value, 0 at the
   closing '}' (taken) or on an error (err). */
static int dfn__js_next_key(dfn__json *j, int *first, char *key, size_t cap)
{
    char c = dfn__js_peek(j);
    if (j->err) return 0;
    if (c == '}') {
        if (!*first) { /* fine: "a": 1 } */ }
        j->p++;
        return 0;
    }
    if (!*first && !dfn__js_take(j, ',')) return 0;
    *first = 0;
    dfn__js_string(j, key, cap);
    if (!j->err) dfn__js_take(j, ':');
    return !j->err;
}

/* Array walking, the same: 1 at an element, 0 after ']' or on an error. */
static int dfn__js_next_elem(dfn__json *j, int *first)
{
    char c = dfn__js_peek(j);
    if (j->err) return 0;
    if (c == ']') { j->p++; return 0; }
    if (!*first && !dfn__js_take(j, ',')) return 0;
    *first = 0;
    return !j->err;
}

/* -- writing ------------------------------------------------------------- */

static void dfn__jw_str(dfn__wbuf *w, const char *s)
{
    dfn__put_bytes(w, s, dfn__strlen(s));
}

/* A JSON string literal of s (quotes, escapes for '"', '\\' and control
   characters; UTF-8 passed through). */
static void dfn__jw_quoted(dfn__wbuf *w, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    dfn__put_bytes(w, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char b[2];
            b[0] = '\\';
            b[1] = (char)c;
            dfn__put_bytes(w, b, 2);
        } else if (c < 0x20) {
            char b[6];
            b[0] = '\\'; b[1] = 'u'; b[2] = '0'; b[3] = '0';
            b[4] = hex[c >> 4]; b[5] = hex[c & 15];
            dfn__put_bytes(w, b, 6);
        } else {
            dfn__put_bytes(w, s, 1);
        }
    }
    dfn__put_bytes(w, "\"", 1);
}

static void dfn__jw_uint(dfn__wbuf *w, uint64_t v)
{
    char b[24];
    int n = 0, i;
    do { b[n++] = (char)('0' + (int)(v % 10u)); v /= 10u; } while (v);
    for (i = 0; i < n / 2; i++) { char t = b[i]; b[i] = b[n - 1 - i]; b[n - 1 - i] = t; }
    dfn__put_bytes(w, b, (size_t)n);
}

static void dfn__jw_int(dfn__wbuf *w, long v)
{
    if (v < 0) {
        dfn__put_bytes(w, "-", 1);
        dfn__jw_uint(w, (uint64_t)(-(v + 1)) + 1u);
    } else {
        dfn__jw_uint(w, (uint64_t)v);
    }
}

/* A finite double as the shortest decimal of at most 17 significant digits
   that reads back (dfn__decimal_to_double) to the same bits; 17 digits
   (within 1 ulp) when none does. No libc, no locale. Writes 0-terminated
   text into b (32 bytes): plain digits ("0.0001", "25", "1000") when the
   decimal exponent is within -5..17, else "8.5e-22". */
static void dfn__fmt_double(double v, char *b)
{
    static const double p10[23] = {
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
    };
    double a = v < 0 ? -v : v, s, back;
    int e10 = 0, P, o = 0, i;
    char dig[24];
    int nd = 0, lead = 0;
    if (!(a > 0.0) || a > 1.7976931348623157e308) { b[0] = '0'; b[1] = 0; return; }
    s = a;                                   /* e10 = floor(log10(a)), about */
    while (s >= 10.0) { s /= 10.0; e10++; }
    while (s < 1.0) { s *= 10.0; e10--; }
    for (P = 1; P <= 17; P++) {
        int sh = P - 1 - e10, k = sh, t = 0;
        double m = a;
        uint64_t M, q;
        char txt[48];
        for (; k > 22; k -= 22) m *= 1e22;
        for (; k < -22; k += 22) m /= 1e22;
        m = k >= 0 ? m * p10[k] : m / p10[-k];
        if (!(m < 1e18)) continue;
        M = (uint64_t)(m + 0.5);
        if (M == 0) continue;
        nd = 0;
        for (q = M; q; q /= 10u) dig[nd++] = (char)('0' + (int)(q % 10u));
        for (i = 0; i < nd / 2; i++) { char c = dig[i]; dig[i] = dig[nd - 1 - i]; dig[nd - 1 - i] = c; }
        lead = nd - sh;                      /* value = 0.dig x 10^lead */
        while (nd > 1 && dig[nd - 1] == '0') nd--;
        for (i = 0; i < nd; i++) txt[t++] = dig[i];
        txt[t++] = 'e';
        k = lead - nd;
        if (k < 0) { txt[t++] = '-'; k = -k; }
        {
            char eb[8];
            int en = 0;
            do { eb[en++] = (char)('0' + k % 10); k /= 10; } while (k);
            while (en) txt[t++] = eb[--en];
        }
        if (dfn__decimal_to_double(txt, txt + t, &back) && back == a) break;
        if (P == 17) break;                  /* keep the 17 digits */
    }
    if (v < 0) b[o++] = '-';
    if (lead > 0 && lead <= 17) {
        for (i = 0; i < lead; i++) b[o++] = i < nd ? dig[i] : '0';
        if (nd > lead) {
            b[o++] = '.';
            for (; i < nd; i++) b[o++] = dig[i];
        }
    } else if (lead <= 0 && lead > -5) {
        b[o++] = '0';
        b[o++] = '.';
        for (i = 0; i < -lead; i++) b[o++] = '0';
        for (i = 0; i < nd; i++) b[o++] = dig[i];
    } else {
        int ex = lead - 1, en = 0;
        char eb[8];
        b[o++] = dig[0];
        if (nd > 1) {
            b[o++] = '.';
            for (i = 1; i < nd; i++) b[o++] = dig[i];
        }
        b[o++] = 'e';
        if (ex < 0) { b[o++] = '-'; ex = -ex; }
        do { eb[en++] = (char)('0' + ex % 10); ex /= 10; } while (ex);
        while (en) b[o++] = eb[--en];
    }
    b[o] = 0;
}

static void dfn__jw_double(dfn__wbuf *w, double v)
{
    char b[40];
    dfn__fmt_double(v, b);
    dfn__jw_str(w, b);
}

/* ------------------------------------------------------------------------- */
/*  safetensors                                                              */
/* ------------------------------------------------------------------------- */

static const char *const dfn__st_names[DFN_ST_DTYPE_COUNT] = {
    "F32", "F16", "BF16", "F64", "I8", "U8", "I16", "U16", "I32", "U32",
    "I64", "U64", "BOOL", "F8_E4M3", "F8_E5M2"
};
static const unsigned char dfn__st_sizes[DFN_ST_DTYPE_COUNT] = {
    4, 2, 2, 8, 1, 1, 2, 2, 4, 4, 8, 8, 1, 1, 1
};

DFNDEF const char *dfn_st_dtype_name(dfn_st_dtype dtype)
{
    return (int)dtype >= 0 && (int)dtype < DFN_ST_DTYPE_COUNT ? dfn__st_names[dtype] : "?";
}

DFNDEF size_t dfn_st_dtype_size(dfn_st_dtype dtype)
{
    return (int)dtype >= 0 && (int)dtype < DFN_ST_DTYPE_COUNT ? dfn__st_sizes[dtype] : 0;
}

static uint64_t dfn__get_u64le(const unsigned char *p)
{
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* The parser's output, or (mem NULL) its counts. */
typedef struct dfn__st_out {
    dfn_safetensors *st;
    char *str;                 /* next free string byte                    */
    size_t str_left;
    int n_t, n_m;              /* counted                                  */
    size_t str_bytes;          /* string bytes counted (NULs included)     */
    int max_t;
    int *idx;                  /* n_t scratch indices (the checks)         */
} dfn__st_out;

/* One string value: decoded into the output (or measured). */
static const char *dfn__st_string(dfn__json *j, dfn__st_out *o)
{
    dfn__json save = *j;
    size_t n = dfn__js_string(j, NULL, 0);
    char *s;
    if (j->err) return NULL;
    o->str_bytes += n + 1;
    if (!o->str) return "";
    if (n + 1 > o->str_left) { j->err = 1; return NULL; }
    *j = save;
    s = o->str;
    dfn__js_string(j, s, n + 1);
    o->str += n + 1;
    o->str_left -= n + 1;
    return j->err ? NULL : s;
}

/* The header object, once to count (o->st NULL) and once to fill. */
static dfn_result dfn__st_header(const char *p, size_t n, dfn__st_out *o)
{
    dfn__json j;
    int first = 1, seen_meta = 0;
    char key[16];
    j.p = p;
    j.e = p + n;
    j.err = 0;
    if (!dfn__js_take(&j, '{')) return DFN_ERR_FORMAT;
    for (;;) {
        dfn__json at = j;
        const char *name;
        char c = dfn__js_peek(&j);
        if (j.err) return DFN_ERR_FORMAT;
        if (c == '}') { j.p++; break; }
        if (!first && !dfn__js_take(&j, ',')) return DFN_ERR_FORMAT;
        first = 0;
        at = j;
        /* "__metadata__" is told apart by its decoded name */
        {
            size_t kl;
            dfn__json probe = j;
            char k2[16];
            kl = dfn__js_string(&probe, NULL, 0);
            if (probe.err) return DFN_ERR_FORMAT;
            probe = j;
            if (kl == 12) {
                dfn__js_string(&probe, k2, sizeof k2);
                if (!probe.err && dfn__strcmp(k2, "__metadata__") == 0) {
                    int f2 = 1;
                    if (seen_meta) return DFN_ERR_FORMAT;
                    seen_meta = 1;
                    j = probe;
                    if (!dfn__js_take(&j, ':') || !dfn__js_take(&j, '{')) return DFN_ERR_FORMAT;
                    for (;;) {
                        const char *mk, *mv;
                        char c3 = dfn__js_peek(&j);
                        if (j.err) return DFN_ERR_FORMAT;
                        if (c3 == '}') { j.p++; break; }
                        if (!f2 && !dfn__js_take(&j, ',')) return DFN_ERR_FORMAT;
                        f2 = 0;
                        mk = dfn__st_string(&j, o);
                        if (j.err || !dfn__js_take(&j, ':')) return DFN_ERR_FORMAT;
                        mv = dfn__st_string(&j, o);
                        if (j.err) return DFN_ERR_FORMAT;
                        if (o->st) {
                            o->st->meta[o->n_m].key = mk;
                            o->st->meta[o->n_m].value = mv;
                        }
                        o->n_m++;
                        if (o->n_m > DFN_ST_MAX_META) return DFN_ERR_LIMIT;
                    }
                    continue;
                }
            }
        }
        (void)at;
        /* a tensor */
        name = dfn__st_string(&j, o);
        if (j.err || !dfn__js_take(&j, ':') || !dfn__js_take(&j, '{')) return DFN_ERR_FORMAT;
        if (o->n_t >= o->max_t) return DFN_ERR_LIMIT;
        {
            int f2 = 1, have = 0, d, ndim = 0;
            dfn_st_dtype dt = DFN_ST_F32;
            uint64_t shape[DFN_ST_MAX_DIMS], beg = 0, end = 0;
            while (dfn__js_next_key(&j, &f2, key, sizeof key)) {
                if (dfn__strcmp(key, "dtype") == 0 && !(have & 1)) {
                    char dn[16];
                    dfn__js_string(&j, dn, sizeof dn);
                    if (j.err) return DFN_ERR_FORMAT;
                    for (d = 0; d < DFN_ST_DTYPE_COUNT; d++)
                        if (dfn__strcmp(dn, dfn__st_names[d]) == 0) break;
                    if (d == DFN_ST_DTYPE_COUNT) return DFN_ERR_FORMAT;
                    dt = (dfn_st_dtype)d;
                    have |= 1;
                } else if (dfn__strcmp(key, "shape") == 0 && !(have & 2)) {
                    int f3 = 1;
                    if (!dfn__js_take(&j, '[')) return DFN_ERR_FORMAT;
                    while (dfn__js_next_elem(&j, &f3)) {
                        if (ndim == DFN_ST_MAX_DIMS) return DFN_ERR_FORMAT;
                        shape[ndim++] = dfn__js_uint(&j, (uint64_t)-1);
                    }
                    have |= 2;
                } else if (dfn__strcmp(key, "data_offsets") == 0 && !(have & 4)) {
                    int f3 = 1, k = 0;
                    if (!dfn__js_take(&j, '[')) return DFN_ERR_FORMAT;
                    while (dfn__js_next_elem(&j, &f3)) {
                        uint64_t v = dfn__js_uint(&j, (uint64_t)-1);
                        if (k == 0) beg = v; else if (k == 1) end = v; else return DFN_ERR_FORMAT;
                        k++;
                    }
                    if (k != 2) return DFN_ERR_FORMAT;
                    have |= 4;
                } else {
                    return DFN_ERR_FORMAT;          /* an unknown or repeated key */
                }
                if (j.err) return DFN_ERR_FORMAT;
            }
            if (j.err || have != 7) return DFN_ERR_FORMAT;
            if (o->st) {
                dfn_st_tensor *t = &o->st->tensors[o->n_t];
                uint64_t cnt = 1, sz = dfn__st_sizes[dt];
                DFN_MEMSET(t, 0, sizeof *t);
                t->name = name;
                t->dtype = dt;
                t->ndim = ndim;
                for (d = 0; d < ndim; d++) {
                    t->shape[d] = shape[d];
                    if (shape[d] && cnt > (uint64_t)-1 / shape[d]) return DFN_ERR_FORMAT;
                    cnt *= shape[d];
                }
                if (cnt > (uint64_t)-1 / sz || end < beg || end - beg != cnt * sz) return DFN_ERR_FORMAT;
                if (end > (uint64_t)o->st->data_bytes) return DFN_ERR_FORMAT;
                t->count = cnt;
                t->data = o->st->data + (size_t)beg;
                t->bytes = (size_t)(end - beg);
            }
            o->n_t++;
        }
    }
    if (dfn__js_peek(&j) != 0 || j.err) return DFN_ERR_FORMAT;     /* only blanks after '}' */
    return DFN_OK;
}

/* Heap sort of idx[0..n) by less(a, b). */
static void dfn__st_sort(int *idx, int n, const dfn_st_tensor *t, int by_name)
{
    int i, end;
#define DFN__ST_LESS(a, b) (by_name ? dfn__strcmp(t[a].name, t[b].name) < 0 : t[a].data < t[b].data || \
                            (t[a].data == t[b].data && t[a].bytes < t[b].bytes))
    for (i = n / 2 - 1; i >= 0; i--) {
        int r = i;
        for (;;) {
            int c = 2 * r + 1, tmp;
            if (c >= n) break;
            if (c + 1 < n && DFN__ST_LESS(idx[c], idx[c + 1])) c++;
            if (!DFN__ST_LESS(idx[r], idx[c])) break;
            tmp = idx[r]; idx[r] = idx[c]; idx[c] = tmp;
            r = c;
        }
    }
    for (end = n - 1; end > 0; end--) {
        int r = 0, tmp = idx[0];
        idx[0] = idx[end];
        idx[end] = tmp;
        for (;;) {
            int c = 2 * r + 1;
            if (c >= end) break;
            if (c + 1 < end && DFN__ST_LESS(idx[c], idx[c + 1])) c++;
            if (!DFN__ST_LESS(idx[r], idx[c])) break;
            tmp = idx[r]; idx[r] = idx[c]; idx[c] = tmp;
            r = c;
        }
    }
#undef DFN__ST_LESS
}

/* Reads N and finds the header; the counting pass. */
static dfn_result dfn__st_measure(const void *buf, size_t len, const dfn_limits *limits, size_t *hlen,
                                  dfn__st_out *o)
{
    dfn_limits d = dfn_limits_default();
    uint64_t N;
    dfn_result r;
    if (!buf) return DFN_ERR_NULL;
    if (!limits) limits = &d;
    if (len < 8) return DFN_ERR_FORMAT;
    N = dfn__get_u64le((const unsigned char *)buf);
    if (N > DFN_ST_MAX_HEADER || N > (uint64_t)(len - 8) || N < 2) return DFN_ERR_FORMAT;
    DFN_MEMSET(o, 0, sizeof *o);
    o->max_t = limits->max_tensors;
    *hlen = (size_t)N;
    if ((r = dfn__st_header((const char *)buf + 8, (size_t)N, o)) != DFN_OK) return r;
    return DFN_OK;
}

/* The layout of dfn_st_parse's memory (mem NULL: measured). */
static size_t dfn__st_layout(void *mem, int n_t, int n_m, size_t str_bytes, dfn_st_tensor **t,
                             dfn_st_meta **m, int **idx, char **str)
{
    dfn__arena a = dfn__arena_begin(mem);
    *t = (dfn_st_tensor *)dfn__arena_take(&a, (size_t)n_t * sizeof(dfn_st_tensor));
    *m = (dfn_st_meta *)dfn__arena_take(&a, (size_t)n_m * sizeof(dfn_st_meta));
    *idx = (int *)dfn__arena_take(&a, (size_t)n_t * sizeof(int));
    *str = (char *)dfn__arena_take(&a, str_bytes);
    return dfn__arena_size(&a);
}

DFNDEF dfn_result dfn_st_parse_size(const void *buf, size_t len, const dfn_limits *limits, size_t *bytes)
{
    dfn__st_out o;
    dfn_st_tensor *t;
    dfn_st_meta *m;
    int *idx;
    char *str;
    size_t hl;
    dfn_result r;
    if (!bytes) return DFN_ERR_NULL;
    *bytes = 0;
    if ((r = dfn__st_measure(buf, len, limits, &hl, &o)) != DFN_OK) return r;
    *bytes = dfn__st_layout(NULL, o.n_t, o.n_m, o.str_bytes, &t, &m, &idx, &str);
    return DFN_OK;
}

DFNDEF dfn_result dfn_st_parse(dfn_safetensors *st, const void *buf, size_t len, const dfn_limits *limits,
                               void *mem, size_t bytes)
{
    dfn__st_out o, f;
    dfn_safetensors s;
    size_t hl, need;
    dfn_result r;
    int i, *idx;
    char *str;
    if (!st || !buf || !mem) return DFN_ERR_NULL;
    DFN_MEMSET(st, 0, sizeof *st);
    if ((r = dfn__st_measure(buf, len, limits, &hl, &o)) != DFN_OK) return r;
    need = dfn__st_layout(NULL, o.n_t, o.n_m, o.str_bytes, &s.tensors, &s.meta, &idx, &str);
    if (bytes < need) return DFN_ERR_BUFFER_TOO_SMALL;
    dfn__st_layout(mem, o.n_t, o.n_m, o.str_bytes, &s.tensors, &s.meta, &idx, &str);
    s.header_bytes = hl;
    s.data = (const unsigned char *)buf + 8 + hl;
    s.data_bytes = len - 8 - hl;
    s.n_tensors = o.n_t;
    s.n_meta = o.n_m;
    DFN_MEMSET(&f, 0, sizeof f);
    f.st = &s;
    f.str = str;
    f.str_left = o.str_bytes;
    f.max_t = o.n_t;
    if ((r = dfn__st_header((const char *)buf + 8, hl, &f)) != DFN_OK) return r;
    if (f.n_t != o.n_t || f.n_m != o.n_m) return DFN_ERR_FORMAT;
    /* names and metadata keys unique */
    for (i = 0; i < s.n_tensors; i++) idx[i] = i;
    dfn__st_sort(idx, s.n_tensors, s.tensors, 1);
    for (i = 1; i < s.n_tensors; i++)
        if (dfn__strcmp(s.tensors[idx[i - 1]].name, s.tensors[idx[i]].name) == 0) return DFN_ERR_FORMAT;
    for (i = 0; i < s.n_meta; i++) {
        int k;
        for (k = 0; k < i; k++)
            if (dfn__strcmp(s.meta[k].key, s.meta[i].key) == 0) return DFN_ERR_FORMAT;
    }
    /* the data bytes tiled exactly: sorted by begin, each starts where the last ended */
    for (i = 0; i < s.n_tensors; i++) idx[i] = i;
    dfn__st_sort(idx, s.n_tensors, s.tensors, 0);
    {
        const unsigned char *at = s.data;
        for (i = 0; i < s.n_tensors; i++) {
            const dfn_st_tensor *t = &s.tensors[idx[i]];
            if (t->data != at) return DFN_ERR_FORMAT;
            at += t->bytes;
        }
        if (at != s.data + s.data_bytes) return DFN_ERR_FORMAT;
    }
    *st = s;
    return DFN_OK;
}

DFNDEF const dfn_st_tensor *dfn_st_find(const dfn_safetensors *st, const char *name)
{
    int i;
    if (!st || !name) return NULL;
    for (i = 0; i < st->n_tensors; i++)
        if (dfn__strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

DFNDEF const char *dfn_st_meta_find(const dfn_safetensors *st, const char *key)
{
    int i;
    if (!st || !key) return NULL;
    for (i = 0; i < st->n_meta; i++)
        if (dfn__strcmp(st->meta[i].key, key) == 0) return st->meta[i].value;
    return NULL;
}

DFNDEF dfn_result dfn_st_read_floats(const dfn_st_tensor *t, float *out, size_t n)
{
    size_t i;
    const unsigned char *p;
    if (!t || (!out && n > 0)) return DFN_ERR_NULL;
    if ((uint64_t)n != t->count) return DFN_ERR_MISMATCH;
    p = t->data;
    switch (t->dtype) {
    case DFN_ST_F32:
        for (i = 0; i < n; i++, p += 4) {
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            DFN_MEMCPY(&out[i], &u, 4);
        }
        return DFN_OK;
    case DFN_ST_F16:
        for (i = 0; i < n; i++, p += 2) out[i] = dfn_f16_to_f32((uint16_t)((unsigned)p[0] | (unsigned)p[1] << 8));
        return DFN_OK;
    case DFN_ST_BF16:
        for (i = 0; i < n; i++, p += 2) {
            uint32_t u = ((uint32_t)p[0] | (uint32_t)p[1] << 8) << 16;
            DFN_MEMCPY(&out[i], &u, 4);
        }
        return DFN_OK;
    default:
        return DFN_ERR_MISMATCH;
    }
}

/* -- writing ------------------------------------------------------------- */

static void dfn__put_u64(dfn__wbuf *w, uint64_t v)
{
    dfn__put_u32(w, (uint32_t)v);
    dfn__put_u32(w, (uint32_t)(v >> 32));
}

/* One tensor's header entry. */
static void dfn__st_entry(dfn__wbuf *w, const char *name, const char *dtype, int ndim, const uint64_t *shape,
                          uint64_t beg, uint64_t end)
{
    int d;
    dfn__jw_quoted(w, name);
    dfn__jw_str(w, ":{\"dtype\":\"");
    dfn__jw_str(w, dtype);
    dfn__jw_str(w, "\",\"shape\":[");
    for (d = 0; d < ndim; d++) {
        if (d) dfn__jw_str(w, ",");
        dfn__jw_uint(w, shape[d]);
    }
    dfn__jw_str(w, "],\"data_offsets\":[");
    dfn__jw_uint(w, beg);
    dfn__jw_str(w, ",");
    dfn__jw_uint(w, end);
    dfn__jw_str(w, "]}");
}

static void dfn__st_meta_write(dfn__wbuf *w, const dfn_st_meta *meta, int n_meta)
{
    int i;
    if (n_meta <= 0) return;
    dfn__jw_str(w, "\"__metadata__\":{");
    for (i = 0; i < n_meta; i++) {
        if (i) dfn__jw_str(w, ",");
        dfn__jw_quoted(w, meta[i].key);
        dfn__jw_str(w, ":");
        dfn__jw_quoted(w, meta[i].value);
    }
    dfn__jw_str(w, "}");
}

/* Element count of an output tensor; 0 with *ok 0 when it overflows. */
static uint64_t dfn__st_out_count(const dfn_st_out *t, int *ok)
{
    uint64_t c = 1;
    int d;
    *ok = t->ndim >= 0 && t->ndim <= DFN_ST_MAX_DIMS;
    for (d = 0; *ok && d < t->ndim; d++) {
        if (t->shape[d] && c > ((uint64_t)1 << 60) / t->shape[d]) *ok = 0;
        c *= t->shape[d];
    }
    return *ok ? c : 0;
}

static dfn_result dfn__st_write_check(const dfn_st_out *tensors, int n, const dfn_st_meta *meta, int n_meta)
{
    int i, k, ok;
    uint64_t total = 0;
    if ((n > 0 && !tensors) || (n_meta > 0 && !meta)) return DFN_ERR_NULL;
    if (n < 0 || n_meta < 0) return DFN_ERR_INVALID_ARG;
    for (i = 0; i < n; i++) {
        uint64_t c = dfn__st_out_count(&tensors[i], &ok);
        if (!tensors[i].name || !tensors[i].name[0] || !ok) return DFN_ERR_INVALID_ARG;
        if (c > 0 && !tensors[i].data) return DFN_ERR_NULL;
        if (dfn__strcmp(tensors[i].name, "__metadata__") == 0) return DFN_ERR_INVALID_ARG;
        if (c > (((uint64_t)1 << 61) - total) / 4) return DFN_ERR_INVALID_ARG;
        total += 4 * c;
        for (k = 0; k < i; k++) if (dfn__strcmp(tensors[k].name, tensors[i].name) == 0) return DFN_ERR_INVALID_ARG;
    }
    for (i = 0; i < n_meta; i++) {
        if (!meta[i].key || !meta[i].value) return DFN_ERR_NULL;
        for (k = 0; k < i; k++) if (dfn__strcmp(meta[k].key, meta[i].key) == 0) return DFN_ERR_INVALID_ARG;
    }
    if (total > (uint64_t)((size_t)-1 / 2)) return DFN_ERR_INVALID_ARG;
    return DFN_OK;
}

/* A header of n entries from entry(ctx, i, w, off) (which writes entry i
   at data offset *off and advances it), with "__metadata__" first, its
   length before it and spaces after it up to a multiple of 8 bytes. */
static void dfn__st_header_write(dfn__wbuf *w, const dfn_st_meta *meta, int n_meta, int n,
                                 void (*entry)(void *ctx, int i, dfn__wbuf *w, uint64_t *off), void *ctx)
{
    dfn__wbuf cnt;
    size_t hl = 0, start = 0;
    uint64_t off;
    int pass, i;
    for (pass = 0; pass < 2; pass++) {
        dfn__wbuf *o = pass ? w : &cnt;
        off = 0;
        if (!pass) {
            dfn__wbuf_init(&cnt, NULL, 0);
        } else {
            hl = (cnt.len + 7) / 8 * 8;
            dfn__put_u64(w, (uint64_t)hl);
            start = w->len;
        }
        dfn__jw_str(o, "{");
        dfn__st_meta_write(o, meta, n_meta);
        for (i = 0; i < n; i++) {
            if (i || n_meta > 0) dfn__jw_str(o, ",");
            entry(ctx, i, o, &off);
        }
        dfn__jw_str(o, "}");
    }
    while (!w->err && w->len - start < hl) dfn__put_bytes(w, " ", 1);
}

static void dfn__st_out_entry(void *ctx, int i, dfn__wbuf *w, uint64_t *off)
{
    const dfn_st_out *t = (const dfn_st_out *)ctx + i;
    int ok;
    uint64_t c = dfn__st_out_count(t, &ok);
    dfn__st_entry(w, t->name, "F32", t->ndim, t->shape, *off, *off + 4 * c);
    *off += 4 * c;
}

static void dfn__st_write(dfn__wbuf *w, const dfn_st_out *tensors, int n, const dfn_st_meta *meta, int n_meta)
{
    int i, ok;
    dfn__st_header_write(w, meta, n_meta, n, dfn__st_out_entry, (void *)tensors);
    for (i = 0; i < n; i++) dfn__put_f32s(w, tensors[i].data, (size_t)dfn__st_out_count(&tensors[i], &ok));
}

DFNDEF size_t dfn_st_write_size(const dfn_st_out *tensors, int n, const dfn_st_meta *meta, int n_meta)
{
    dfn__wbuf w;
    if (dfn__st_write_check(tensors, n, meta, n_meta) != DFN_OK) return 0;
    dfn__wbuf_init(&w, NULL, 0);
    dfn__st_write(&w, tensors, n, meta, n_meta);
    return w.err ? 0 : w.len;
}

DFNDEF dfn_result dfn_st_write_mem(void *buf, size_t cap, size_t *written, const dfn_st_out *tensors, int n,
                                   const dfn_st_meta *meta, int n_meta)
{
    dfn__wbuf w;
    dfn_result r;
    size_t need;
    if (!buf || !written) return DFN_ERR_NULL;
    *written = 0;
    if ((r = dfn__st_write_check(tensors, n, meta, n_meta)) != DFN_OK) return r;
    need = dfn_st_write_size(tensors, n, meta, n_meta);
    if (need == 0) return DFN_ERR_INVALID_ARG;
    if (cap < need) return DFN_ERR_BUFFER_TOO_SMALL;
    dfn__wbuf_init(&w, buf, cap);
    dfn__st_write(&w, tensors, n, meta, n_meta);
    if (w.err) return DFN_ERR_BUFFER_TOO_SMALL;
    *written = w.len;
    return DFN_OK;
}


/* ------------------------------------------------------------------------- */
/*  Models as safetensors                                                    */
/* ------------------------------------------------------------------------- */

DFNDEF int dfn_net_tensors(const dfn_net *net, dfn_net_tensor *out, int cap)
{
    int n, i;
    if (!net || !net->ops || !net->cfg || !net->ops->tensor) return -1;
    n = net->ops->tensor(net->cfg, -1, NULL);
    if (n < 0) return -1;
    for (i = 0; out && i < n && i < cap; i++) net->ops->tensor(net->cfg, i, &out[i]);
    return n;
}

static void dfn__detail(dfn_error_detail *d, const char *what, const char *prefix, const char *why)
{
    size_t n = 0;
    if (!d) return;
    if (prefix) for (; *prefix && n + 1 < sizeof d->what; prefix++) d->what[n++] = *prefix;
    for (; what && *what && n + 1 < sizeof d->what; what++) d->what[n++] = *what;
    d->what[n] = 0;
    d->why = why;
}

/* Element k of a float tensor of the file; of an I8 one, times its row's
   scale (scale: the "_scale" tensor, one value per first-dimension row). */
static float dfn__st_elem(const dfn_st_tensor *t, size_t k, const dfn_st_tensor *scale)
{
    const unsigned char *p = t->data;
    uint32_t u;
    float f;
    if (t->dtype == DFN_ST_I8) {
        size_t cols = (size_t)(t->count / t->shape[0]);
        return dfn__st_elem(scale, k / cols, NULL) * (float)((int)p[k] - (p[k] & 0x80u ? 256 : 0));
    }
    if (t->dtype == DFN_ST_F16) return dfn_f16_to_f32((uint16_t)((unsigned)p[2 * k] | (unsigned)p[2 * k + 1] << 8));
    if (t->dtype == DFN_ST_BF16) u = ((uint32_t)p[2 * k] | (uint32_t)p[2 * k + 1] << 8) << 16;
    else u = (uint32_t)p[4 * k] | (uint32_t)p[4 * k + 1] << 8 | (uint32_t)p[4 * k + 2] << 16 |
             (uint32_t)p[4 * k + 3] << 24;
    DFN_MEMCPY(&f, &u, 4);
    return f;
}

/* One named tensor of the network into dst (the flat block), from the
   file's tensor called prefix + nt->name. */
static dfn_result dfn__st_take(const dfn_safetensors *st, const dfn_net_tensor *nt, const char *prefix,
                               float *dst, dfn_error_detail *detail)
{
    char name[DFN_TENSOR_NAME_MAX + 16];
    const dfn_st_tensor *t, *sc = NULL;
    size_t n = 0, k;
    int d;
    const char *q;
    for (q = prefix; *q; q++) name[n++] = *q;
    for (q = nt->name; *q; q++) name[n++] = *q;
    name[n] = 0;
    t = dfn_st_find(st, name);
    if (!t) { dfn__detail(detail, name, NULL, "missing"); return DFN_ERR_MISMATCH; }
    if (t->dtype != DFN_ST_F32 && t->dtype != DFN_ST_F16 && t->dtype != DFN_ST_BF16 && t->dtype != DFN_ST_I8) {
        dfn__detail(detail, name, NULL, "dtype is not F32, F16, BF16 or I8");
        return DFN_ERR_MISMATCH;
    }
    if (t->ndim != nt->ndim) { dfn__detail(detail, name, NULL, "shape differs"); return DFN_ERR_MISMATCH; }
    for (d = 0; d < nt->ndim; d++)
        if (t->shape[d] != (uint64_t)nt->shape[d]) { dfn__detail(detail, name, NULL, "shape differs"); return DFN_ERR_MISMATCH; }
    if (t->dtype == DFN_ST_I8) {
        /* its scales: one float per row of the first dimension */
        const char *suffix = "_scale";
        if (nt->ndim < 1 || nt->shape[0] < 1 || n + 7 > sizeof name) {
            dfn__detail(detail, name, NULL, "I8 needs rows");
            return DFN_ERR_MISMATCH;
        }
        for (q = suffix; *q; q++) name[n++] = *q;
        name[n] = 0;
        sc = dfn_st_find(st, name);
        if (!sc) { dfn__detail(detail, name, NULL, "missing (the scales of an I8 tensor)"); return DFN_ERR_MISMATCH; }
        if ((sc->dtype != DFN_ST_F32 && sc->dtype != DFN_ST_F16 && sc->dtype != DFN_ST_BF16) || sc->ndim != 1 ||
            sc->shape[0] != (uint64_t)nt->shape[0]) {
            dfn__detail(detail, name, NULL, "scales must be one float per row");
            return DFN_ERR_MISMATCH;
        }
    }
    dst += nt->offset;
    if (nt->conv) {            /* file (Co, Ci, kh, kw) -> block (Co, kh, kw, Ci) */
        size_t co = (size_t)nt->shape[0], ci = (size_t)nt->shape[1], kk = (size_t)nt->shape[2] * nt->shape[3], o, i, s;
        for (o = 0; o < co; o++)
            for (i = 0; i < ci; i++)
                for (s = 0; s < kk; s++) dst[(o * kk + s) * ci + i] = dfn__st_elem(t, (o * ci + i) * kk + s, sc);
    } else {
        for (k = 0; k < nt->count; k++) dst[k] = dfn__st_elem(t, k, sc);
    }
    return DFN_OK;
}

/* Whether a file tensor's name is net's (after prefix), or the "_scale"
   tensor of one of net's. */
static int dfn__st_is_net_name(const dfn_net *net, int n, const char *name)
{
    dfn_net_tensor nt;
    int i;
    for (i = 0; i < n; i++) {
        size_t k;
        net->ops->tensor(net->cfg, i, &nt);
        if (dfn__strcmp(nt.name, name) == 0) return 1;
        for (k = 0; nt.name[k] && nt.name[k] == name[k]; k++) {}
        if (!nt.name[k] && dfn__strcmp(name + k, "_scale") == 0) return 1;
    }
    return 0;
}

DFNDEF dfn_result dfn_model_read_safetensors(const dfn_safetensors *st, const dfn_net *net, float *ema,
                                             dfn_error_detail *detail)
{
    dfn_net_shape sh;
    dfn_net_tensor nt;
    dfn_result r;
    int n, i;
    if (detail) { detail->what[0] = 0; detail->why = ""; }
    if (!st || !net || !net->params) return DFN_ERR_NULL;
    if ((r = dfn__net_shape(net, &sh)) != DFN_OK) return r;
    n = dfn_net_tensors(net, NULL, 0);
    if (n < 0) return DFN_ERR_INVALID_ARG;
    /* every tensor of the file is the network's, its EMA's or the schedule's */
    for (i = 0; i < st->n_tensors; i++) {
        const char *nm = st->tensors[i].name;
        int ok = dfn__strcmp(nm, "schedule.betas") == 0 || dfn__st_is_net_name(net, n, nm) ||
                 (nm[0] == 'e' && nm[1] == 'm' && nm[2] == 'a' && nm[3] == '.' && dfn__st_is_net_name(net, n, nm + 4));
        if (!ok) { dfn__detail(detail, nm, NULL, "not a tensor of this network"); return DFN_ERR_MISMATCH; }
    }
    for (i = 0; i < n; i++) {
        net->ops->tensor(net->cfg, i, &nt);
        if ((r = dfn__st_take(st, &nt, "", net->params, detail)) != DFN_OK) return r;
        if (ema && (r = dfn__st_take(st, &nt, "ema.", ema, detail)) != DFN_OK) return r;
    }
    if (!dfn__all_finite(net->params, sh.params) || (ema && !dfn__all_finite(ema, sh.params))) {
        dfn__detail(detail, ema && dfn__all_finite(net->params, sh.params) ? "ema." : "weights", NULL,
                    "NaN or infinity");
        return DFN_ERR_NOT_FINITE;
    }
    return DFN_OK;
}

/* -- the metadata's JSON ------------------------------------------------- */

static const char *const dfn__act_names[4] = { "identity", "relu", "silu", "gelu" };
static const char *const dfn__pred_names[4] = { "eps", "v", "x0", "flow" };
static const char *const dfn__sched_names[8] = {
    "linear", "cosine", "sigmoid", "custom", "flow", "scaled_linear", "sigmoid_betas", "linear_betas"
};

DFNDEF const char *dfn_schedule_kind_name(dfn_schedule_kind kind)
{
    return (int)kind >= 0 && (int)kind < 8 ? dfn__sched_names[kind] : NULL;
}

static void dfn__jw_key(dfn__wbuf *w, const char *k, int first)
{
    if (!first) dfn__jw_str(w, ",");
    dfn__jw_quoted(w, k);
    dfn__jw_str(w, ":");
}

static void dfn__jw_kint(dfn__wbuf *w, const char *k, long v) { dfn__jw_key(w, k, 0); dfn__jw_int(w, v); }

static void dfn__json_mlp(dfn__wbuf *w, const dfn_mlp_config *c)
{
    dfn__jw_key(w, "dim", 1);
    dfn__jw_int(w, c->dim);
    dfn__jw_kint(w, "hidden", c->hidden);
    dfn__jw_kint(w, "blocks", c->blocks);
    dfn__jw_kint(w, "time_dim", c->time_dim);
    dfn__jw_kint(w, "input_emb_dim", c->input_emb_dim);
    dfn__jw_key(w, "input_scale", 0);
    dfn__jw_double(w, (double)c->input_scale);
    dfn__jw_kint(w, "num_classes", c->num_classes);
    dfn__jw_key(w, "act", 0);
    dfn__jw_quoted(w, dfn__act_names[c->act]);
    dfn__jw_key(w, "prediction", 0);
    dfn__jw_quoted(w, dfn__pred_names[c->prediction]);
}

static void dfn__json_unet(dfn__wbuf *w, const dfn_unet_config *c)
{
    int l;
    dfn__jw_key(w, "height", 1);
    dfn__jw_int(w, c->height);
    dfn__jw_kint(w, "width", c->width);
    dfn__jw_kint(w, "channels", c->channels);
    dfn__jw_kint(w, "cond_channels", c->cond_channels);
    dfn__jw_kint(w, "base_channels", c->base_channels);
    dfn__jw_kint(w, "levels", c->levels);
    dfn__jw_key(w, "mult", 0);
    dfn__jw_str(w, "[");
    for (l = 0; l < c->levels; l++) { if (l) dfn__jw_str(w, ","); dfn__jw_int(w, c->mult[l]); }
    dfn__jw_str(w, "]");
    dfn__jw_kint(w, "blocks", c->blocks);
    dfn__jw_key(w, "attention", 0);
    dfn__jw_str(w, "[");
    for (l = 0; l < c->levels; l++) { if (l) dfn__jw_str(w, ","); dfn__jw_int(w, c->attention[l]); }
    dfn__jw_str(w, "]");
    dfn__jw_kint(w, "mid_attention", c->mid_attention);
    dfn__jw_kint(w, "groups", c->groups);
    dfn__jw_kint(w, "time_dim", c->time_dim);
    dfn__jw_kint(w, "num_classes", c->num_classes);
    dfn__jw_key(w, "prediction", 0);
    dfn__jw_quoted(w, dfn__pred_names[c->prediction]);
}

static void dfn__json_schedule(dfn__wbuf *w, const dfn_schedule_config *c)
{
    dfn__jw_key(w, "kind", 1);
    dfn__jw_quoted(w, dfn__sched_names[c->kind]);
    dfn__jw_kint(w, "T", c->T);
    dfn__jw_key(w, "beta_start", 0);    dfn__jw_double(w, c->beta_start);
    dfn__jw_key(w, "beta_end", 0);      dfn__jw_double(w, c->beta_end);
    dfn__jw_key(w, "cosine_s", 0);      dfn__jw_double(w, c->cosine_s);
    dfn__jw_key(w, "sigmoid_start", 0); dfn__jw_double(w, c->sigmoid_start);
    dfn__jw_key(w, "sigmoid_end", 0);   dfn__jw_double(w, c->sigmoid_end);
    dfn__jw_key(w, "sigmoid_tau", 0);   dfn__jw_double(w, c->sigmoid_tau);
    dfn__jw_key(w, "max_beta", 0);      dfn__jw_double(w, c->max_beta);
    dfn__jw_kint(w, "zero_terminal_snr", c->zero_terminal_snr != 0);
    dfn__jw_key(w, "flow_shift", 0);    dfn__jw_double(w, c->flow_shift);
}

/* An int field value within [lo, hi]. */
static int dfn__js_int_in(dfn__json *j, long lo, long hi)
{
    const char *s, *e;
    double v = 0.0;
    if (j->err) return 0;
    /* the range first: converting a double outside long's range is undefined */
    if (!dfn__js_number_span(j, &s, &e) || !dfn__decimal_to_double(s, e, &v) || !(v >= (double)lo) ||
        !(v <= (double)hi) || v != (double)(long)v) {
        j->err = 1;
        return 0;
    }
    return (int)v;
}

/* An array of up to cap ints within [lo, hi] into v; returns the count. */
static int dfn__js_int_array(dfn__json *j, int *v, int cap, long lo, long hi)
{
    int first = 1, n = 0;
    if (!dfn__js_take(j, '[')) return 0;
    while (dfn__js_next_elem(j, &first)) {
        int x = dfn__js_int_in(j, lo, hi);
        if (n == cap) { j->err = 1; return 0; }
        v[n++] = x;
    }
    return n;
}

/* A string value that must be one of names: its index. */
static int dfn__js_enum(dfn__json *j, const char *const *names, int n)
{
    char s[32];
    int k;
    dfn__js_string(j, s, sizeof s);
    if (j->err) return 0;
    k = dfn__name_index(names, n, s);
    if (k < 0) j->err = 1;
    return k < 0 ? 0 : k;
}

/* The MLP's config from its JSON (the keys dfn__json_mlp writes; missing
   ones take dfn_mlp_config_default(dim)'s values; dim is required). */
static dfn_result dfn__json_read_mlp(const char *s, dfn_mlp_config *c, dfn_error_detail *d)
{
    dfn__json j;
    char key[32];
    int first = 1, pass;
    for (pass = 0; pass < 2; pass++) {      /* pass 0 finds dim for the defaults */
        int dim = 0;
        j.p = s; j.e = s + dfn__strlen(s); j.err = 0;
        if (pass) {
            if (c->dim < 1 || c->dim > 1 << 20) { dfn__detail(d, "config.dim", NULL, "missing or out of range"); return DFN_ERR_FORMAT; }
            dim = c->dim;
            *c = dfn_mlp_config_default(dim);
        } else {
            c->dim = 0;
        }
        first = 1;
        if (!dfn__js_take(&j, '{')) { dfn__detail(d, "config", NULL, "not a JSON object"); return DFN_ERR_FORMAT; }
        while (dfn__js_next_key(&j, &first, key, sizeof key)) {
            if (dfn__strcmp(key, "dim") == 0) c->dim = dfn__js_int_in(&j, 1, 1 << 20);
            else if (dfn__strcmp(key, "hidden") == 0) c->hidden = dfn__js_int_in(&j, 1, 1 << 20);
            else if (dfn__strcmp(key, "blocks") == 0) c->blocks = dfn__js_int_in(&j, 0, 1 << 20);
            else if (dfn__strcmp(key, "time_dim") == 0) c->time_dim = dfn__js_int_in(&j, 2, 1 << 20);
            else if (dfn__strcmp(key, "input_emb_dim") == 0) c->input_emb_dim = dfn__js_int_in(&j, 0, 1 << 20);
            else if (dfn__strcmp(key, "input_scale") == 0) c->input_scale = (float)dfn__js_double(&j);
            else if (dfn__strcmp(key, "num_classes") == 0) c->num_classes = dfn__js_int_in(&j, 0, 1000000);
            else if (dfn__strcmp(key, "act") == 0) c->act = (dfn_activation)dfn__js_enum(&j, dfn__act_names, 4);
            else if (dfn__strcmp(key, "prediction") == 0) c->prediction = (dfn_prediction)dfn__js_enum(&j, dfn__pred_names, 4);
            else { dfn__detail(d, key, "config.", "unknown field"); return DFN_ERR_FORMAT; }
            if (j.err) { dfn__detail(d, key, "config.", "bad value"); return DFN_ERR_FORMAT; }
        }
        if (j.err || dfn__js_peek(&j) != 0) { dfn__detail(d, "config", NULL, "not a JSON object"); return DFN_ERR_FORMAT; }
    }
    if (dfn_mlp_config_check(c) != DFN_OK) { dfn__detail(d, "config", NULL, "not a valid MLP"); return DFN_ERR_FORMAT; }
    return DFN_OK;
}

static dfn_result dfn__json_read_unet(const char *s, dfn_unet_config *c, dfn_error_detail *d)
{
    dfn__json j;
    char key[32];
    int first = 1, nm = -1, na = -1, mult[DFN_UNET_MAX_LEVELS], att[DFN_UNET_MAX_LEVELS], l;
    *c = dfn_unet_config_default(1, 32, 32);
    j.p = s; j.e = s + dfn__strlen(s); j.err = 0;
    if (!dfn__js_take(&j, '{')) { dfn__detail(d, "config", NULL, "not a JSON object"); return DFN_ERR_FORMAT; }
    while (dfn__js_next_key(&j, &first, key, sizeof key)) {
        if (dfn__strcmp(key, "height") == 0) c->height = dfn__js_int_in(&j, 1, 4096);
        else if (dfn__strcmp(key, "width") == 0) c->width = dfn__js_int_in(&j, 1, 4096);
        else if (dfn__strcmp(key, "channels") == 0) c->channels = dfn__js_int_in(&j, 1, 64);
        else if (dfn__strcmp(key, "cond_channels") == 0) c->cond_channels = dfn__js_int_in(&j, 0, 64);
        else if (dfn__strcmp(key, "base_channels") == 0) c->base_channels = dfn__js_int_in(&j, 2, 4096);
        else if (dfn__strcmp(key, "levels") == 0) c->levels = dfn__js_int_in(&j, 1, DFN_UNET_MAX_LEVELS);
        else if (dfn__strcmp(key, "mult") == 0) nm = dfn__js_int_array(&j, mult, DFN_UNET_MAX_LEVELS, 1, 64);
        else if (dfn__strcmp(key, "blocks") == 0) c->blocks = dfn__js_int_in(&j, 1, DFN_UNET_MAX_BLOCKS);
        else if (dfn__strcmp(key, "attention") == 0) na = dfn__js_int_array(&j, att, DFN_UNET_MAX_LEVELS, 0, 1);
        else if (dfn__strcmp(key, "mid_attention") == 0) c->mid_attention = dfn__js_int_in(&j, 0, 1);
        else if (dfn__strcmp(key, "groups") == 0) c->groups = dfn__js_int_in(&j, 1, 4096);
        else if (dfn__strcmp(key, "time_dim") == 0) c->time_dim = dfn__js_int_in(&j, 1, 4096);
        else if (dfn__strcmp(key, "num_classes") == 0) c->num_classes = dfn__js_int_in(&j, 0, 1000000);
        else if (dfn__strcmp(key, "prediction") == 0) c->prediction = (dfn_prediction)dfn__js_enum(&j, dfn__pred_names, 4);
        else { dfn__detail(d, key, "config.", "unknown field"); return DFN_ERR_FORMAT; }
        if (j.err) { dfn__detail(d, key, "config.", "bad value"); return DFN_ERR_FORMAT; }
    }
    if (j.err || dfn__js_peek(&j) != 0) { dfn__detail(d, "config", NULL, "not a JSON object"); return DFN_ERR_FORMAT; }
    if (nm >= 0 && nm != c->levels) { dfn__detail(d, "config.mult", NULL, "needs one value per level"); return DFN_ERR_FORMAT; }
    if (na >= 0 && na != c->levels) { dfn__detail(d, "config.attention", NULL, "needs one value per level"); return DFN_ERR_FORMAT; }
    for (l = 0; l < DFN_UNET_MAX_LEVELS; l++) {
        if (nm >= 0) c->mult[l] = l < nm ? mult[l] : 0;
        if (na >= 0) c->attention[l] = l < na ? att[l] : 0;
    }
    if (dfn_unet_config_check(c) != DFN_OK) { dfn__detail(d, "config", NULL, "not a valid U-Net"); return DFN_ERR_FORMAT; }
    return DFN_OK;
}

static dfn_result dfn__json_read_schedule(const char *s, dfn_schedule_config *c, dfn_error_detail *d)
{
    dfn__json j;
    char key[32];
    int first = 1, kind = -1, T = 0, pass;
    for (pass = 0; pass < 2; pass++) {       /* pass 0: kind and T for the defaults */
        j.p = s; j.e = s + dfn__strlen(s); j.err = 0;
        first = 1;
        if (pass) {
            if (kind < 0 || T < 1) { dfn__detail(d, kind < 0 ? "schedule.kind" : "schedule.T", NULL, "missing"); return DFN_ERR_FORMAT; }
            *c = dfn_schedule_config_default((dfn_schedule_kind)kind, T);
        }
        if (!dfn__js_take(&j, '{')) { dfn__detail(d, "schedule", NULL, "not a JSON object"); return DFN_ERR_FORMAT; }
        while (dfn__js_next_key(&j, &first, key, sizeof key)) {
            if (dfn__strcmp(key, "kind") == 0) kind = dfn__js_enum(&j, dfn__sched_names, 8);
            else if (dfn__strcmp(key, "T") == 0) T = dfn__js_int_in(&j, 1, DFN_MAX_T);
            else if (dfn__strcmp(key, "zero_terminal_snr") == 0) { int z = dfn__js_int_in(&j, 0, 1); if (pass) c->zero_terminal_snr = z; }
            else {
                static const char *const dk[8] = { "beta_start", "beta_end", "cosine_s", "sigmoid_start",
                                                   "sigmoid_end", "sigmoid_tau", "max_beta", "flow_shift" };
                int k = dfn__name_index(dk, 8, key);
                double v;
                if (k < 0) { dfn__detail(d, key, "schedule.", "unknown field"); return DFN_ERR_FORMAT; }
                v = dfn__js_double(&j);
                if (pass) {
                    double *f[8];
                    f[0] = &c->beta_start; f[1] = &c->beta_end; f[2] = &c->cosine_s; f[3] = &c->sigmoid_start;
                    f[4] = &c->sigmoid_end; f[5] = &c->sigmoid_tau; f[6] = &c->max_beta; f[7] = &c->flow_shift;
                    *f[k] = v;
                }
            }
            if (j.err) { dfn__detail(d, key, "schedule.", "bad value"); return DFN_ERR_FORMAT; }
        }
        if (j.err || dfn__js_peek(&j) != 0) { dfn__detail(d, "schedule", NULL, "not a JSON object"); return DFN_ERR_FORMAT; }
    }
    return DFN_OK;
}

/* -- writing a model ------------------------------------------------------ */

/* The metadata of a model (three JSON texts in one buffer: at most a few
   hundred bytes each). */
typedef struct dfn__st_model_meta {
    char json[3072];
    dfn_st_meta meta[5];
    int n_meta;
} dfn__st_model_meta;

static dfn_result dfn__st_model_meta_make(const dfn_net *net, const dfn_schedule *s, dfn_weight_format fmt,
                                          dfn__st_model_meta *m)
{
    dfn__wbuf w;
    size_t at[4];
    char *ver = m->json;
    dfn__wbuf_init(&w, m->json, sizeof m->json);
    /* "MAJOR.MINOR.PATCH" */
    dfn__jw_uint(&w, DFN_VERSION_MAJOR); dfn__jw_str(&w, ".");
    dfn__jw_uint(&w, DFN_VERSION_MINOR); dfn__jw_str(&w, ".");
    dfn__jw_uint(&w, DFN_VERSION_PATCH); dfn__put_bytes(&w, "", 1);
    at[0] = w.len;
    dfn__jw_str(&w, net->ops->kind == DFN_NET_MLP ? "mlp" : "unet");
    dfn__put_bytes(&w, "", 1);
    at[1] = w.len;
    dfn__jw_str(&w, "{");
    if (net->ops->kind == DFN_NET_MLP) dfn__json_mlp(&w, (const dfn_mlp_config *)net->cfg);
    else dfn__json_unet(&w, (const dfn_unet_config *)net->cfg);
    dfn__jw_str(&w, "}");
    dfn__put_bytes(&w, "", 1);
    at[2] = w.len;
    dfn__jw_str(&w, "{");
    dfn__json_schedule(&w, &s->config);
    dfn__jw_str(&w, "}");
    dfn__put_bytes(&w, "", 1);
    if (w.err) return DFN_ERR_INVALID_ARG;
    m->meta[0].key = "diffusion.h"; m->meta[0].value = ver;
    m->meta[1].key = "network";     m->meta[1].value = m->json + at[0];
    m->meta[2].key = "config";      m->meta[2].value = m->json + at[1];
    m->meta[3].key = "schedule";    m->meta[3].value = m->json + at[2];
    m->n_meta = 4;
    if (fmt != DFN_WEIGHTS_F32) {   /* informational: each tensor's dtype says it */
        m->meta[4].key = "weight_format";
        m->meta[4].value = dfn_weight_format_name(fmt);
        m->n_meta = 5;
    }
    return DFN_OK;
}

typedef struct dfn__st_model_ctx {
    const dfn_net *net;
    int n;                       /* network tensors                      */
    int ema;                     /* EMA written too                      */
    int T;                       /* > 0: schedule.betas (T) at the end   */
    dfn_weight_format fmt;       /* of the matrices (section 13)         */
} dfn__st_model_ctx;

/* The format a tensor is stored in: fmt for matrices and convolution
   kernels (ndim >= 2) except the class-embedding table, else F32. */
static dfn_weight_format dfn__st_tensor_format(const dfn_net_tensor *nt, dfn_weight_format fmt)
{
    return nt->ndim >= 2 && dfn__strcmp(nt->name, "class_emb.weight") != 0 ? fmt : DFN_WEIGHTS_F32;
}

/* File tensor i of a model: network tensor *k of block *e (0 the weights,
   1 the EMA), *sc 1 for its "_scale" tensor (int8); 0 past them all
   (schedule.betas). */
static int dfn__st_model_item(const dfn__st_model_ctx *c, int i, int *k, int *e, int *sc)
{
    dfn_net_tensor nt;
    int b, j;
    for (b = 0; b < (c->ema ? 2 : 1); b++)
        for (j = 0; j < c->n; j++) {
            *k = j; *e = b; *sc = 0;
            if (i-- == 0) return 1;
            if (c->fmt == DFN_WEIGHTS_I8) {
                c->net->ops->tensor(c->net->cfg, j, &nt);
                *sc = 1;
                if (dfn__st_tensor_format(&nt, c->fmt) == DFN_WEIGHTS_I8 && i-- == 0) return 1;
            }
        }
    return 0;
}

static int dfn__st_model_count(const dfn__st_model_ctx *c)
{
    int i = 0, k, e, sc;
    while (dfn__st_model_item(c, i, &k, &e, &sc)) i++;
    return i + (c->T > 0);
}

static void dfn__st_model_entry(void *ctx, int i, dfn__wbuf *w, uint64_t *off)
{
    static const char *const dt[3] = { "F32", "F16", "I8" };
    static const unsigned char per[3] = { 4, 2, 1 };
    const dfn__st_model_ctx *c = (const dfn__st_model_ctx *)ctx;
    dfn_net_tensor nt;
    uint64_t shape[4], bytes;
    char name[DFN_TENSOR_NAME_MAX + 16];
    int d, k, e, sc;
    dfn_weight_format f;
    if (!dfn__st_model_item(c, i, &k, &e, &sc)) {         /* schedule.betas */
        shape[0] = (uint64_t)c->T;
        dfn__st_entry(w, "schedule.betas", "F32", 1, shape, *off, *off + 4 * shape[0]);
        *off += 4 * shape[0];
        return;
    }
    c->net->ops->tensor(c->net->cfg, k, &nt);
    for (d = 0; d < nt.ndim; d++) shape[d] = (uint64_t)nt.shape[d];
    {
        size_t n = 0;
        const char *q;
        if (e) for (q = "ema."; *q; q++) name[n++] = *q;
        for (q = nt.name; *q; q++) name[n++] = *q;
        if (sc) for (q = "_scale"; *q; q++) name[n++] = *q;
        name[n] = 0;
    }
    if (sc) {                                            /* one float per row */
        dfn__st_entry(w, name, "F32", 1, shape, *off, *off + 4 * shape[0]);
        *off += 4 * shape[0];
        return;
    }
    f = dfn__st_tensor_format(&nt, c->fmt);
    bytes = per[f] * (uint64_t)nt.count;
    dfn__st_entry(w, name, dt[f], nt.ndim, shape, *off, *off + bytes);
    *off += bytes;
}

/* Element k of a tensor in the file's order, from block p: convolutions
   are (Co, 3, 3, Ci) in the block and (Co, Ci, kh, kw) in the file. */
static float dfn__st_file_elem(const dfn_net_tensor *nt, const float *p, size_t k)
{
    if (nt->conv) {
        size_t ci = (size_t)nt->shape[1], kk = (size_t)nt->shape[2] * nt->shape[3], per = ci * kk;
        size_t o = k / per, r = k % per;
        return p[nt->offset + (o * kk + r % kk) * ci + r / kk];
    }
    return p[nt->offset + k];
}

/* Row r's scale of tensor nt (file order). */
static float dfn__st_row_scale(const dfn_net_tensor *nt, const float *p, size_t r)
{
    size_t cols = nt->count / (size_t)nt->shape[0], j;
    float mx = 0.0f;
    for (j = 0; j < cols; j++) {
        float v = dfn__st_file_elem(nt, p, r * cols + j);
        if (v < 0.0f) v = -v;
        if (v > mx) mx = v;
    }
    return dfn__q8_scale(mx);
}

/* The data of the network's tensors from block p in the file's order and
   format, each int8 tensor followed by its scales. */
static void dfn__st_model_data(dfn__wbuf *w, const dfn__st_model_ctx *c, const float *p)
{
    dfn_net_tensor nt;
    int i;
    for (i = 0; i < c->n; i++) {
        dfn_weight_format f;
        size_t k, r, rows, cols;
        c->net->ops->tensor(c->net->cfg, i, &nt);
        f = dfn__st_tensor_format(&nt, c->fmt);
        if (f == DFN_WEIGHTS_F32 && !nt.conv) { dfn__put_f32s(w, p + nt.offset, nt.count); continue; }
        if (f != DFN_WEIGHTS_I8) {
            for (k = 0; k < nt.count; k++) {
                float v = dfn__st_file_elem(&nt, p, k);
                if (f == DFN_WEIGHTS_F32) { dfn__put_f32(w, v); continue; }
                {
                    uint16_t h = dfn_f32_to_f16(v);
                    unsigned char b[2];
                    b[0] = (unsigned char)(h & 0xffu); b[1] = (unsigned char)(h >> 8);
                    dfn__put_bytes(w, b, 2);
                }
            }
            continue;
        }
        rows = (size_t)nt.shape[0];
        cols = nt.count / rows;
        for (r = 0; r < rows; r++) {
            float s = dfn__st_row_scale(&nt, p, r);
            for (k = 0; k < cols; k++) {
                unsigned char b = (unsigned char)dfn__q8(dfn__st_file_elem(&nt, p, r * cols + k), s);
                dfn__put_bytes(w, &b, 1);
            }
        }
        for (r = 0; r < rows; r++) dfn__put_f32(w, dfn__st_row_scale(&nt, p, r));
    }
}

/* Whether every matrix of block p fits fp16 (beyond it the writer refuses,
   rather than store infinity). */
static int dfn__st_fits_f16(const dfn__st_model_ctx *c, const float *p)
{
    dfn_net_tensor nt;
    size_t k;
    int i;
    for (i = 0; i < c->n; i++) {
        c->net->ops->tensor(c->net->cfg, i, &nt);
        if (dfn__st_tensor_format(&nt, c->fmt) != DFN_WEIGHTS_F16) continue;
        for (k = 0; k < nt.count; k++)
            if ((dfn_f32_to_f16(p[nt.offset + k]) & 0x7c00u) == 0x7c00u) return 0;
    }
    return 1;
}

static dfn_result dfn__st_model_write(dfn__wbuf *w, const dfn_net *net, const dfn_schedule *s, const float *ema,
                                      dfn_weight_format fmt)
{
    dfn__st_model_meta mm;
    dfn__st_model_ctx c;
    dfn_net_shape sh;
    dfn_result r;
    int t;
    if (!net || !net->ops || !net->cfg || !net->params || !s || !s->alphabar) return DFN_ERR_NULL;
    if (net->ops->kind != DFN_NET_MLP && net->ops->kind != DFN_NET_UNET) return DFN_ERR_INVALID_ARG;
    if (s->config.kind == DFN_SCHEDULE_CUSTOM && s->config.zero_terminal_snr) return DFN_ERR_INVALID_ARG;
    if (!dfn_weight_format_name(fmt)) return DFN_ERR_INVALID_ARG;
    if ((r = dfn__net_shape(net, &sh)) != DFN_OK) return r;
    if (!dfn__all_finite(net->params, sh.params) || (ema && !dfn__all_finite(ema, sh.params)))
        return DFN_ERR_NOT_FINITE;
    if ((r = dfn__st_model_meta_make(net, s, fmt, &mm)) != DFN_OK) return r;
    c.net = net;
    c.n = dfn_net_tensors(net, NULL, 0);
    c.ema = ema != NULL;
    c.T = s->config.kind == DFN_SCHEDULE_CUSTOM ? s->T : 0;
    c.fmt = fmt;
    if (c.n < 0) return DFN_ERR_INVALID_ARG;
    if (fmt == DFN_WEIGHTS_F16 && (!dfn__st_fits_f16(&c, net->params) || (ema && !dfn__st_fits_f16(&c, ema))))
        return DFN_ERR_INVALID_ARG;
    dfn__st_header_write(w, mm.meta, mm.n_meta, dfn__st_model_count(&c), dfn__st_model_entry, &c);
    dfn__st_model_data(w, &c, net->params);
    if (ema) dfn__st_model_data(w, &c, ema);
    for (t = 1; t <= c.T; t++) dfn__put_f32(w, s->beta[t]);
    return DFN_OK;
}

DFNDEF size_t dfn_model_save_safetensors_size_as(const dfn_net *net, const dfn_schedule *s, const float *ema,
                                                 dfn_weight_format fmt)
{
    dfn__wbuf w;
    dfn__wbuf_init(&w, NULL, 0);
    if (dfn__st_model_write(&w, net, s, ema, fmt) != DFN_OK || w.err) return 0;
    return w.len;
}

DFNDEF dfn_result dfn_model_save_safetensors_mem_as(void *buf, size_t cap, size_t *written, const dfn_net *net,
                                                    const dfn_schedule *s, const float *ema, dfn_weight_format fmt)
{
    dfn__wbuf w;
    dfn_result r;
    size_t need;
    if (!buf || !written) return DFN_ERR_NULL;
    *written = 0;
    dfn__wbuf_init(&w, NULL, 0);
    if ((r = dfn__st_model_write(&w, net, s, ema, fmt)) != DFN_OK) return r;
    need = w.len;
    if (w.err) return DFN_ERR_INVALID_ARG;
    if (cap < need) return DFN_ERR_BUFFER_TOO_SMALL;
    dfn__wbuf_init(&w, buf, cap);
    dfn__st_model_write(&w, net, s, ema, fmt);
    if (w.err) return DFN_ERR_BUFFER_TOO_SMALL;
    *written = w.len;
    return DFN_OK;
}

DFNDEF size_t dfn_model_save_safetensors_size(const dfn_net *net, const dfn_schedule *s, const float *ema)
{
    return dfn_model_save_safetensors_size_as(net, s, ema, DFN_WEIGHTS_F32);
}

DFNDEF dfn_result dfn_model_save_safetensors_mem(void *buf, size_t cap, size_t *written, const dfn_net *net,
                                                 const dfn_schedule *s, const float *ema)
{
    return dfn_model_save_safetensors_mem_as(buf, cap, written, net, s, ema, DFN_WEIGHTS_F32);
}

/* -- loading a model ------------------------------------------------------ */

DFNDEF dfn_result dfn_model_info_safetensors(const dfn_safetensors *st, dfn_model_info *info,
                                             dfn_error_detail *d)
{
    const dfn__builtin_net *lib;
    const char *netname, *cfgs, *schs;
    const dfn_st_tensor *bt;
    dfn_net_tensor nt;
    dfn_net_shape sh;
    dfn__config_buf cb;
    dfn_result r;
    char name[DFN_TENSOR_NAME_MAX + 8];
    size_t n = 0;
    const char *q;
    if (d) { d->what[0] = 0; d->why = ""; }
    if (!st || !info) return DFN_ERR_NULL;
    DFN_MEMSET(info, 0, sizeof *info);
    netname = dfn_st_meta_find(st, "network");
    cfgs = dfn_st_meta_find(st, "config");
    schs = dfn_st_meta_find(st, "schedule");
    if (!netname || !cfgs || !schs) {
        dfn__detail(d, !netname ? "network" : !cfgs ? "config" : "schedule", "__metadata__.", "missing");
        return DFN_ERR_FORMAT;
    }
    if (dfn__strcmp(netname, "mlp") == 0) {
        info->net = DFN_NET_MLP;
        r = dfn__json_read_mlp(cfgs, &info->mlp, d);
    } else if (dfn__strcmp(netname, "unet") == 0) {
        info->net = DFN_NET_UNET;
        r = dfn__json_read_unet(cfgs, &info->unet, d);
    } else {
        dfn__detail(d, "network", "__metadata__.", "not \"mlp\" or \"unet\"");
        return DFN_ERR_FORMAT;
    }
    if (r == DFN_OK) r = dfn__json_read_schedule(schs, &info->schedule, d);
    if (r != DFN_OK) return r;
    if (info->schedule.kind == DFN_SCHEDULE_CUSTOM) {
        bt = dfn_st_find(st, "schedule.betas");
        if (!bt || bt->ndim != 1 || bt->shape[0] != (uint64_t)info->schedule.T) {
            dfn__detail(d, "schedule.betas", NULL, bt ? "shape differs" : "missing");
            return DFN_ERR_FORMAT;
        }
    }
    lib = dfn__builtin((uint32_t)info->net);
    DFN_MEMCPY(cb.bytes, info->net == DFN_NET_MLP ? (const void *)&info->mlp : (const void *)&info->unet,
               lib->ops->config_bytes);
    if ((r = dfn_net_describe(lib->ops, cb.bytes, &sh)) != DFN_OK) return r;
    info->params = sh.params;
    lib->ops->tensor(cb.bytes, 0, &nt);
    for (q = "ema."; *q; q++) name[n++] = *q;
    for (q = nt.name; *q; q++) name[n++] = *q;
    name[n] = 0;
    info->has_ema = dfn_st_find(st, name) != NULL;
    info->version = 0;
    return DFN_OK;
}

#ifndef DFN_NO_MALLOC
static dfn_result dfn__st_model_load(const void *buf, size_t len, const dfn_limits *limits, size_t extra,
                                     void *alloc_ctx, dfn_loaded_model *out, dfn_error_detail *d)
{
    dfn_limits dl = dfn_limits_default();
    dfn_safetensors st;
    dfn_model_info info;
    const dfn__builtin_net *lib = NULL;
    const dfn_st_tensor *bt = NULL;
    dfn__config_buf cb;
    size_t pbytes = 0, sbytes, bytes;
    void *pmem = NULL, *cfg, *smem;
    float *params, *ema, *betas;
    dfn_result r;
    if (d) { d->what[0] = 0; d->why = ""; }
    if (!out) return DFN_ERR_NULL;
    DFN_MEMSET(out, 0, sizeof *out);
    if (!buf) return DFN_ERR_NULL;
    if (!limits) limits = &dl;
    if ((r = dfn_st_parse_size(buf, len, limits, &pbytes)) != DFN_OK) return r;
    if (pbytes > limits->max_bytes || extra > limits->max_bytes - pbytes) return DFN_ERR_LIMIT;
    pmem = DFN_MALLOC(pbytes, alloc_ctx);
    if (!pmem) return DFN_ERR_OUT_OF_MEMORY;
    r = dfn_st_parse(&st, buf, len, limits, pmem, pbytes);
    if (r == DFN_OK) r = dfn_model_info_safetensors(&st, &info, d);
    if (r == DFN_OK) {
        lib = dfn__builtin((uint32_t)info.net);
        DFN_MEMCPY(cb.bytes, info.net == DFN_NET_MLP ? (const void *)&info.mlp : (const void *)&info.unet,
                   lib->ops->config_bytes);
        if (info.schedule.kind == DFN_SCHEDULE_CUSTOM) bt = dfn_st_find(&st, "schedule.betas");
        r = dfn__model_limits(&info, limits, lib->ops->config_bytes, extra + pbytes);
    }
    if (r != DFN_OK) {
        DFN_FREE(pmem, alloc_ctx);
        return r;
    }
    sbytes = dfn_schedule_size(info.schedule.T);
    bytes = dfn__model_load_layout(&info, lib->ops->config_bytes, NULL, &cfg, &params, &ema, &betas, &smem);
    out->memory = DFN_MALLOC(bytes, alloc_ctx);
    if (!out->memory) {
        DFN_FREE(pmem, alloc_ctx);
        return DFN_ERR_OUT_OF_MEMORY;
    }
    dfn__model_load_layout(&info, lib->ops->config_bytes, out->memory, &cfg, &params, &ema, &betas, &smem);
    DFN_MEMCPY(cfg, cb.bytes, lib->ops->config_bytes);
    r = dfn_net_init(&out->net, lib->ops, cfg, params);
    if (r == DFN_OK) r = dfn_model_read_safetensors(&st, &out->net, ema, d);
    if (r == DFN_OK && betas) {
        r = dfn_st_read_floats(bt, betas, (size_t)info.schedule.T);
        if (r != DFN_OK) { dfn__detail(d, "schedule.betas", NULL, "dtype is not F32, F16 or BF16"); r = DFN_ERR_FORMAT; }
        info.schedule.betas = betas;
    }
    if (r == DFN_OK) {
        r = dfn_schedule_init(&out->schedule, &info.schedule, smem, sbytes);
        if (r != DFN_OK) { dfn__detail(d, "schedule", "__metadata__.", "not a valid schedule"); r = DFN_ERR_FORMAT; }
    }
    info.schedule.betas = NULL;
    DFN_FREE(pmem, alloc_ctx);
    if (r != DFN_OK) {
        DFN_FREE(out->memory, alloc_ctx);
        DFN_MEMSET(out, 0, sizeof *out);
        return r;
    }
    out->info = info;
    out->ema = ema;
    out->ema_net = out->net;
    if (ema) out->ema_net.params = ema;
    out->step = 0;
    lib->views(out);
    return DFN_OK;
}

DFNDEF dfn_result dfn_model_load_safetensors_mem(const void *buf, size_t len, const dfn_limits *limits,
                                                 void *alloc_ctx, dfn_loaded_model *out, dfn_error_detail *detail)
{
    return dfn__st_model_load(buf, len, limits, 0, alloc_ctx, out, detail);
}
#endif

#if !defined(DFN_NO_STDIO) && !defined(DFN_NO_MALLOC)
DFNDEF dfn_result dfn_model_load_safetensors(const char *path, const dfn_limits *limits, void *alloc_ctx,
                                             dfn_loaded_model *out, dfn_error_detail *detail)
{
    dfn_limits d = dfn_limits_default();
    unsigned char *data;
    size_t len;
    dfn_result r;
    if (detail) { detail->what[0] = 0; detail->why = ""; }
    if (!out) return DFN_ERR_NULL;
    DFN_MEMSET(out, 0, sizeof *out);
    if (!limits) limits = &d;
    if ((r = dfn__file_read(path, limits->max_bytes, DFN_ERR_LIMIT, alloc_ctx, &data, &len)) != DFN_OK) return r;
    r = dfn__st_model_load(data, len, limits, len + 1, alloc_ctx, out, detail);
    dfn_file_free(data, alloc_ctx);
    return r;
}

DFNDEF dfn_result dfn_model_save_safetensors_as(const char *path, const dfn_net *net, const dfn_schedule *s,
                                                const float *ema, dfn_weight_format fmt)
{
    size_t bytes, written;
    void *buf;
    dfn_result r;
    if (!path) return DFN_ERR_NULL;
    bytes = dfn_model_save_safetensors_size_as(net, s, ema, fmt);
    if (bytes == 0) {
        dfn__wbuf w;
        dfn__wbuf_init(&w, NULL, 0);
        r = dfn__st_model_write(&w, net, s, ema, fmt);
        return r != DFN_OK ? r : DFN_ERR_INVALID_ARG;
    }
    buf = DFN_MALLOC(bytes, NULL);
    if (!buf) return DFN_ERR_OUT_OF_MEMORY;
    r = dfn_model_save_safetensors_mem_as(buf, bytes, &written, net, s, ema, fmt);
    if (r == DFN_OK) r = dfn_file_write_all(path, buf, written);
    DFN_FREE(buf, NULL);
    return r;
}

DFNDEF dfn_result dfn_model_save_safetensors(const char *path, const dfn_net *net, const dfn_schedule *s,
                                             const float *ema)
{
    return dfn_model_save_safetensors_as(path, net, s, ema, DFN_WEIGHTS_F32);
}
#endif


/* ------------------------------------------------------------------------- */
/*  diffusers scheduler configs                                              */
/* ------------------------------------------------------------------------- */

DFNDEF dfn_diffusers_config dfn_diffusers_config_default(int ddim)
{
    dfn_diffusers_config c;
    DFN_MEMSET(&c, 0, sizeof c);
    c.ddim = ddim != 0;
    c.schedule = dfn_schedule_config_default(DFN_SCHEDULE_LINEAR_BETAS, 1000);
    c.prediction = DFN_PREDICT_EPS;
    c.spacing = DFN_DIFFUSERS_LEADING;
    c.steps_offset = 0;
    c.clip_sample = 1;
    c.clip_sample_range = 1.0;
    c.set_alpha_to_one = 1;
    c.variance = DFN_VARIANCE_SMALL;
    return c;
}

static const char *const dfn__dif_sched[4] = { "linear", "scaled_linear", "sigmoid", "squaredcos_cap_v2" };
static const char *const dfn__dif_pred[3] = { "epsilon", "v_prediction", "sample" };
static const char *const dfn__dif_spacing[3] = { "linspace", "leading", "trailing" };
static const char *const dfn__dif_var[4] = { "fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log" };

/* true or false. */
static int dfn__js_bool(dfn__json *j)
{
    if (dfn__js_word(j, "true")) return 1;
    if (!dfn__js_word(j, "false")) j->err = 1;
    return 0;
}

DFNDEF dfn_result dfn_diffusers_config_read(const char *json, size_t len, dfn_diffusers_config *out,
                                            float *betas, int cap, dfn_error_detail *d)
{
    dfn_diffusers_config c;
    dfn__json j;
    char key[64];
    int first = 1, sched = 0, have_betas = 0, n_betas = 0, ddim = -1, pass;
    if (d) { d->what[0] = 0; d->why = ""; }
    if (!json || !out) return DFN_ERR_NULL;
    /* pass 0 finds the class (its defaults), pass 1 reads the fields */
    for (pass = 0; pass < 2; pass++) {
        j.p = json; j.e = json + len; j.err = 0;
        first = 1;
        if (pass) c = dfn_diffusers_config_default(ddim > 0);
        if (!dfn__js_take(&j, '{')) { dfn__detail(d, "config", NULL, "not a JSON object"); return DFN_ERR_FORMAT; }
        while (dfn__js_next_key(&j, &first, key, sizeof key)) {
            const char *why = "bad value";
            int k;
            if (dfn__strcmp(key, "_class_name") == 0) {
                char s[32];
                dfn__js_string(&j, s, sizeof s);
                if (!j.err) {
                    if (dfn__strcmp(s, "DDIMScheduler") == 0) ddim = 1;
                    else if (dfn__strcmp(s, "DDPMScheduler") == 0) ddim = 0;
                    else { j.err = 1; why = "not DDPMScheduler or DDIMScheduler"; }
                }
            } else if (!pass) {
                /* the first pass skips every other value: strings, numbers,
                   literals, and arrays of numbers (trained_betas) */
                char ch = dfn__js_peek(&j);
                if (ch == '"') dfn__js_string(&j, NULL, 0);
                else if (ch == '[') {
                    int f2 = 1;
                    j.p++;
                    while (dfn__js_next_elem(&j, &f2)) dfn__js_double(&j);
                } else if (!dfn__js_word(&j, "true") && !dfn__js_word(&j, "false") && !dfn__js_word(&j, "null"))
                    dfn__js_double(&j);
            } else if (dfn__strcmp(key, "num_train_timesteps") == 0) {
                c.schedule.T = dfn__js_int_in(&j, 1, DFN_MAX_T);
            } else if (dfn__strcmp(key, "beta_start") == 0) {
                c.schedule.beta_start = dfn__js_double(&j);
            } else if (dfn__strcmp(key, "beta_end") == 0) {
                c.schedule.beta_end = dfn__js_double(&j);
            } else if (dfn__strcmp(key, "beta_schedule") == 0) {
                sched = dfn__js_enum(&j, dfn__dif_sched, 4);
                why = "not linear, scaled_linear, sigmoid or squaredcos_cap_v2";
            } else if (dfn__strcmp(key, "trained_betas") == 0) {
                if (!dfn__js_word(&j, "null")) {
                    int f2 = 1;
                    if (dfn__js_take(&j, '['))
                        while (dfn__js_next_elem(&j, &f2)) {
                            double v = dfn__js_double(&j);
                            if (n_betas >= cap || !betas) {
                                dfn__detail(d, "trained_betas", NULL, "more values than the caller's array");
                                return DFN_ERR_BUFFER_TOO_SMALL;
                            }
                            betas[n_betas++] = (float)v;
                        }
                    have_betas = 1;
                }
            } else if (dfn__strcmp(key, "rescale_betas_zero_snr") == 0) {
                c.schedule.zero_terminal_snr = dfn__js_bool(&j);
            } else if (dfn__strcmp(key, "prediction_type") == 0) {
                k = dfn__js_enum(&j, dfn__dif_pred, 3);
                c.prediction = k == 0 ? DFN_PREDICT_EPS : k == 1 ? DFN_PREDICT_V : DFN_PREDICT_X0;
                why = "not epsilon, v_prediction or sample";
            } else if (dfn__strcmp(key, "timestep_spacing") == 0) {
                c.spacing = (dfn_diffusers_spacing)dfn__js_enum(&j, dfn__dif_spacing, 3);
                why = "not linspace, leading or trailing";
            } else if (dfn__strcmp(key, "steps_offset") == 0) {
                c.steps_offset = dfn__js_int_in(&j, 0, DFN_MAX_T);
            } else if (dfn__strcmp(key, "clip_sample") == 0) {
                c.clip_sample = dfn__js_bool(&j);
            } else if (dfn__strcmp(key, "clip_sample_range") == 0) {
                c.clip_sample_range = dfn__js_double(&j);
                if (!(c.clip_sample_range > 0.0) || c.clip_sample_range > 3.4e38) j.err = 1;
            } else if (dfn__strcmp(key, "set_alpha_to_one") == 0 && c.ddim) {
                c.set_alpha_to_one = dfn__js_bool(&j);
            } else if (dfn__strcmp(key, "variance_type") == 0 && !c.ddim) {
                k = dfn__js_enum(&j, dfn__dif_var, 4);
                c.variance = k < 2 ? DFN_VARIANCE_SMALL : DFN_VARIANCE_LARGE;
                why = "not fixed_small(_log) or fixed_large(_log): the library has no learned variance";
            } else if (dfn__strcmp(key, "thresholding") == 0) {
                if (dfn__js_bool(&j)) { j.err = 1; why = "thresholding is not implemented"; }
            } else if (dfn__strcmp(key, "dynamic_thresholding_ratio") == 0 ||
                       dfn__strcmp(key, "sample_max_value") == 0) {
                dfn__js_double(&j);
            } else if (key[0] == '_') {
                char ch = dfn__js_peek(&j);
                if (ch == '"') dfn__js_string(&j, NULL, 0);
                else if (!dfn__js_word(&j, "true") && !dfn__js_word(&j, "false") && !dfn__js_word(&j, "null"))
                    dfn__js_double(&j);
            } else {
                dfn__detail(d, key, NULL, c.ddim ? "not a DDIMScheduler field" : "not a DDPMScheduler field");
                return DFN_ERR_FORMAT;
            }
            if (j.err) { dfn__detail(d, key, NULL, why); return DFN_ERR_FORMAT; }
        }
        if (j.err || dfn__js_peek(&j) != 0) { dfn__detail(d, "config", NULL, "not a JSON object"); return DFN_ERR_FORMAT; }
    }
    if (have_betas) {
        if (n_betas != c.schedule.T) { dfn__detail(d, "trained_betas", NULL, "needs num_train_timesteps values"); return DFN_ERR_FORMAT; }
        c.schedule.kind = DFN_SCHEDULE_CUSTOM;
        c.schedule.betas = betas;
    } else {
        static const dfn_schedule_kind kinds[4] = { DFN_SCHEDULE_LINEAR_BETAS, DFN_SCHEDULE_SCALED_LINEAR,
                                                    DFN_SCHEDULE_SIGMOID_BETAS, DFN_SCHEDULE_COSINE };
        c.schedule.kind = kinds[sched];
        c.schedule.cosine_s = 0.008;
        c.schedule.max_beta = 0.999;
    }
    /* the schedule as dfn_schedule_init checks it, without its tables */
    if (dfn__schedule_check(&c.schedule) != DFN_OK) {
        dfn__detail(d, have_betas ? "trained_betas" : !dfn__open_unit(c.schedule.beta_start) ? "beta_start" : "beta_end",
                    NULL, "not a valid schedule");
        return DFN_ERR_FORMAT;
    }
    {
        int t;
        for (t = 1; t <= c.schedule.T; t++)
            if (!dfn__open_unit(dfn__raw_beta(&c.schedule, t))) {
                dfn__detail(d, have_betas ? "trained_betas" : "beta_end", NULL, "a beta outside (0, 1)");
                return DFN_ERR_FORMAT;
            }
        if (!(1.0 - dfn__raw_beta(&c.schedule, 1) < 1.0)) {
            dfn__detail(d, have_betas ? "trained_betas" : "beta_start", NULL, "beta_1 too small");
            return DFN_ERR_FORMAT;
        }
        if (c.schedule.zero_terminal_snr) {
            double ab = 1.0, a1 = 1.0;
            for (t = 1; t <= c.schedule.T; t++) {
                ab *= 1.0 - dfn__raw_beta(&c.schedule, t);
                if (t == 1) a1 = DFN_SQRT(ab);
            }
            if (c.schedule.T < 2 || !(a1 > DFN_SQRT(ab))) {
                dfn__detail(d, "rescale_betas_zero_snr", NULL, "needs T >= 2 and alphas_cumprod decreasing");
                return DFN_ERR_FORMAT;
            }
        }
    }
    *out = c;
    return DFN_OK;
}

/* numpy's np.round: to the nearest integer, halves to even. */
static double dfn__round_half_even(double v)
{
    double f = (double)(int64_t)v, r;
    if (f > v) f -= 1.0;                         /* floor */
    r = v - f;
    if (r > 0.5) return f + 1.0;
    if (r < 0.5) return f;
    return (f / 2.0 == (double)(int64_t)(f / 2.0)) ? f : f + 1.0;
}

DFNDEF dfn_result dfn_diffusers_timesteps(const dfn_diffusers_config *c, int S, int *out)
{
    int T, i;
    if (!c || !out) return DFN_ERR_NULL;
    T = c->schedule.T;
    if (S < 1 || S > T || T < 1 || T > DFN_MAX_T) return DFN_ERR_INVALID_ARG;
    for (i = 0; i < S; i++) {
        double v;
        int k = S - 1 - i;                       /* diffusers' list, reversed */
        switch (c->spacing) {
        case DFN_DIFFUSERS_LINSPACE: {
            /* np.linspace(0, T - 1, S): k * step, step = (T - 1)/(S - 1); the end exact */
            double step = S > 1 ? (double)(T - 1) / (double)(S - 1) : 0.0;
            v = S > 1 && k == S - 1 ? (double)(T - 1) : (double)k * step;
            out[i] = (int)dfn__round_half_even(v) + 1;
            break;
        }
        case DFN_DIFFUSERS_LEADING:
            out[i] = k * (T / S) + c->steps_offset + 1;
            break;
        case DFN_DIFFUSERS_TRAILING: {
            /* np.arange(T, 0, -T/S): length ceil(T / (T/S)) from the step
               given; element m is T + m * delta with delta = (T - T/S) - T,
               as numpy fills it (diffusers gives S + 1 steps where that
               length is S + 1: the library refuses those) */
            double ratio = (double)T / (double)S, delta = ((double)T - ratio) - (double)T;
            double n = (double)T / ratio;
            int len = (int)n;
            if ((double)len < n) len++;
            if (len != S) return DFN_ERR_INVALID_ARG;
            v = (double)T + (double)i * delta;
            out[i] = (int)dfn__round_half_even(v);        /* - 1 + 1 */
            break;
        }
        default:
            return DFN_ERR_INVALID_ARG;
        }
    }
    for (i = 0; i < S; i++)
        if (out[i] < 1 || out[i] > T || (i > 0 && out[i] >= out[i - 1])) return DFN_ERR_INVALID_ARG;
    return DFN_OK;
}

DFNDEF dfn_result dfn_diffusers_sampler_setup(const dfn_diffusers_config *c, int S, int *timesteps,
                                              dfn_sampler_config *sc, dfn_error_detail *d)
{
    dfn_result r;
    int i, all;
    if (d) { d->what[0] = 0; d->why = ""; }
    if (!c || !timesteps || !sc) return DFN_ERR_NULL;
    if ((r = dfn_diffusers_timesteps(c, S, timesteps)) != DFN_OK) {
        dfn__detail(d, c->spacing == DFN_DIFFUSERS_LEADING ? "steps_offset" : "timestep_spacing", NULL,
                    "gives timesteps outside 1..T or not decreasing for this S");
        return r;
    }
    all = S == c->schedule.T;
    for (i = 0; all && i < S; i++) all = timesteps[i] == S - i;
    sc->prediction = c->prediction;
    sc->clip_x0 = c->clip_sample;
    sc->clip_min = (float)-c->clip_sample_range;
    sc->clip_max = (float)c->clip_sample_range;
    sc->final_alphabar_1 = 0;
    sc->variance = DFN_VARIANCE_SMALL;
    if (c->ddim) {
        if (c->clip_sample) {
            dfn__detail(d, "clip_sample", NULL, "DDIM here recomputes eps from the clipped x0; diffusers keeps it");
            return DFN_ERR_INVALID_ARG;
        }
        sc->kind = DFN_SAMPLER_DDIM;
        sc->eta = 0.0f;
        sc->final_alphabar_1 = !c->set_alpha_to_one;
    } else if (all) {
        sc->kind = DFN_SAMPLER_DDPM;
        sc->variance = c->variance;
    } else {
        if (c->variance == DFN_VARIANCE_LARGE) {
            dfn__detail(d, "variance_type", NULL, "fixed_large with fewer steps than T");
            return DFN_ERR_INVALID_ARG;
        }
        sc->kind = DFN_SAMPLER_DDIM;
        sc->eta = 1.0f;
    }
    sc->steps = S;
    sc->spacing = DFN_SPACING_CUSTOM;
    sc->timesteps = timesteps;
    return DFN_OK;
}

/* The next field of the pretty-printed config: ",\n  " and the key. */
static void dfn__jw_line(dfn__wbuf *w, const char *k)
{
    dfn__jw_str(w, ",\n  ");
    dfn__jw_key(w, k, 1);
}

DFNDEF dfn_result dfn_diffusers_config_write(const dfn_diffusers_config *c, const dfn_schedule *s, char *buf,
                                             size_t cap, size_t *written)
{
    const dfn_schedule_config *sc;
    const char *name = NULL;
    dfn__wbuf w;
    int t, pred;
    if (!c || !buf || !written) return DFN_ERR_NULL;
    *written = 0;
    sc = &c->schedule;
    switch (sc->kind) {
    case DFN_SCHEDULE_LINEAR_BETAS: name = "linear"; break;
    case DFN_SCHEDULE_SCALED_LINEAR: name = "scaled_linear"; break;
    case DFN_SCHEDULE_SIGMOID_BETAS: name = "sigmoid"; break;
    case DFN_SCHEDULE_LINEAR: if (sc->T == 1000) name = "linear"; break;
    case DFN_SCHEDULE_COSINE: if (sc->cosine_s == 0.008 && sc->max_beta == 0.999) name = "squaredcos_cap_v2"; break;
    case DFN_SCHEDULE_FLOW: return DFN_ERR_INVALID_ARG;
    default: break;
    }
    if (!name && (!s || !s->beta || s->T != sc->T || s->config.kind != sc->kind)) return DFN_ERR_INVALID_ARG;
    if (!name && sc->kind == DFN_SCHEDULE_CUSTOM && sc->zero_terminal_snr) return DFN_ERR_INVALID_ARG;
    if ((int)c->prediction < 0 || (int)c->prediction > 2 || (int)c->spacing < 0 || (int)c->spacing > 2)
        return DFN_ERR_INVALID_ARG;
    pred = c->prediction == DFN_PREDICT_EPS ? 0 : c->prediction == DFN_PREDICT_V ? 1 : 2;
    dfn__wbuf_init(&w, buf, cap);
    dfn__jw_str(&w, "{\n  ");
    dfn__jw_key(&w, "_class_name", 1);
    dfn__jw_quoted(&w, c->ddim ? "DDIMScheduler" : "DDPMScheduler");
    dfn__jw_line(&w, "num_train_timesteps");
    dfn__jw_int(&w, sc->T);
    dfn__jw_line(&w, "beta_start");
    dfn__jw_double(&w, name ? sc->beta_start : 0.0001);
    dfn__jw_line(&w, "beta_end");
    dfn__jw_double(&w, name ? sc->beta_end : 0.02);
    dfn__jw_line(&w, "beta_schedule");
    dfn__jw_quoted(&w, name ? name : "linear");
    dfn__jw_line(&w, "trained_betas");
    if (name) {
        dfn__jw_str(&w, "null");
    } else {
        /* the betas before any zero-terminal-SNR rescale (which is written as the flag) */
        dfn__jw_str(&w, "[");
        for (t = 1; t <= sc->T; t++) {
            double b = sc->kind == DFN_SCHEDULE_CUSTOM ? (double)s->beta[t] : (double)(float)dfn__raw_beta(sc, t);
            if (t > 1) dfn__jw_str(&w, ", ");
            dfn__jw_double(&w, b);
        }
        dfn__jw_str(&w, "]");
    }
    dfn__jw_line(&w, "rescale_betas_zero_snr");
    dfn__jw_str(&w, sc->zero_terminal_snr ? "true" : "false");
    dfn__jw_line(&w, "prediction_type");
    dfn__jw_quoted(&w, dfn__dif_pred[pred]);
    dfn__jw_line(&w, "timestep_spacing");
    dfn__jw_quoted(&w, dfn__dif_spacing[c->spacing]);
    dfn__jw_line(&w, "steps_offset");
    dfn__jw_int(&w, c->steps_offset);
    dfn__jw_line(&w, "clip_sample");
    dfn__jw_str(&w, c->clip_sample ? "true" : "false");
    dfn__jw_line(&w, "clip_sample_range");
    dfn__jw_double(&w, c->clip_sample_range);
    if (c->ddim) {
        dfn__jw_line(&w, "set_alpha_to_one");
        dfn__jw_str(&w, c->set_alpha_to_one ? "true" : "false");
    } else {
        dfn__jw_line(&w, "variance_type");
        dfn__jw_quoted(&w, c->variance == DFN_VARIANCE_LARGE ? "fixed_large" : "fixed_small");
    }
    dfn__jw_line(&w, "thresholding");
    dfn__jw_str(&w, "false\n}\n");
    dfn__put_bytes(&w, "", 1);
    if (w.err) return DFN_ERR_BUFFER_TOO_SMALL;
    *written = w.len - 1;
    return DFN_OK;
}

/* ######################################################################### */
/*  PART 4  kernels and threads                                              */
/* ######################################################################### */

/* ------------------------------------------------------------------------- */
/*  Portable math: exp, log, sin, cos, tanh from + - * / only                */
/* ------------------------------------------------------------------------- */
/* Each function is one fixed sequence of IEEE-754 double operations (round
   to nearest), so it gives the same bits wherever doubles are IEEE and
   a * b + c is not contracted. Range reductions are Cody-Waite with the
   split constants of fdlibm (Sun, 1993); the polynomials are plain Taylor
   series, long enough that truncation is below 1e-17 relative. */

#define DFN__PM_LN2_HI 6.93147180369123816490e-01   /* 32 bits: k LN2_HI exact */
#define DFN__PM_LN2_LO 1.90821492927058770002e-10
#define DFN__PM_PIO2_1  1.57079632673412561417e+00  /* first 33 bits of pi/2 */
#define DFN__PM_PIO2_2  6.07710050630396597660e-11  /* next 33 bits          */
#define DFN__PM_PIO2_2T 2.02226624879595063154e-21  /* pi/2 - PIO2_1 - PIO2_2 */

static double dfn__pm_from_bits(uint64_t b)
{
    double d;
    DFN_MEMCPY(&d, &b, sizeof d);
    return d;
}

static uint64_t dfn__pm_bits(double d)
{
    uint64_t b;
    DFN_MEMCPY(&b, &d, sizeof b);
    return b;
}

/* x 2^k for |k| <= 2100, in two exact power-of-two steps. */
static double dfn__pm_scale(double x, int k)
{
    int h = k / 2;
    x *= dfn__pm_from_bits((uint64_t)(h + 1023) << 52);
    return x * dfn__pm_from_bits((uint64_t)(k - h + 1023) << 52);
}

/* Nearest integer of |x| < 2^51 as a double (ties away from zero are not
   needed: any fixed choice works for the reductions). */
static double dfn__pm_round(double x)
{
    const double magic = 6755399441055744.0;   /* 1.5 * 2^52 */
    return x >= 0.0 ? (x + magic) - magic : (x - magic) + magic;
}

/* e^r - 1 for |r| <= 0.35: Taylor to degree 15. */
static double dfn__pm_expm1_small(double r)
{
    double p = 1.0 / 1307674368000.0;           /* 1/15! */
    p = p * r + 1.0 / 87178291200.0;
    p = p * r + 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    return r + (r * r) * p;
}

/* e^x = 2^k e^r, k = round(x / ln 2), r = x - k ln 2 in [-0.347, 0.347]. */
DFNDEF double dfn_math_exp(double x)
{
    double k, r;
    if (x != x) return x;
    if (x > 709.782712893384) return dfn__pm_from_bits(0x7ff0000000000000u);
    if (x < -745.2) return 0.0;
    k = dfn__pm_round(x * 1.44269504088896338700);
    r = (x - k * DFN__PM_LN2_HI) - k * DFN__PM_LN2_LO;
    return dfn__pm_scale(1.0 + dfn__pm_expm1_small(r), (int)k);
}

/* x = m 2^e with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(f),
   f = (m - 1) / (m + 1), |f| <= 0.172, series to f^25. */
DFNDEF double dfn_math_log(double x)
{
    uint64_t b = dfn__pm_bits(x);
    double m, f, s, p;
    int e = 0, i;
    if (x != x) return x;
    if (x < 0.0) return dfn__pm_from_bits(0x7ff8000000000000u);
    if (x == 0.0) return dfn__pm_from_bits(0xfff0000000000000u);
    if (b >= 0x7ff0000000000000u) return x;             /* +inf */
    if (b < 0x0010000000000000u) {                      /* subnormal: scale up */
        x *= 18014398509481984.0;                       /* 2^54 */
        b = dfn__pm_bits(x);
        e = -54;
    }
    e += (int)(b >> 52) - 1023;
    m = dfn__pm_from_bits((b & 0x000fffffffffffffu) | 0x3ff0000000000000u);
    if (m > 1.41421356237309504880) { m *= 0.5; e++; }
    f = (m - 1.0) / (m + 1.0);
    s = f * f;
    p = 2.0 / 25.0;
    for (i = 23; i >= 3; i -= 2) p = p * s + 2.0 / (double)i;
    p = (f * s) * p + 2.0 * f;                          /* 2 atanh(f) */
    return (double)e * DFN__PM_LN2_HI + ((double)e * DFN__PM_LN2_LO + p);
}

/* sin and cos of r in [-pi/4 - eps, pi/4 + eps]: Taylor to r^19, r^18. */
static double dfn__pm_sin_small(double r)
{
    double s = r * r, p = -1.0 / 121645100408832000.0;  /* -1/19! */
    p = p * s + 1.0 / 355687428096000.0;
    p = p * s - 1.0 / 1307674368000.0;
    p = p * s + 1.0 / 6227020800.0;
    p = p * s - 1.0 / 39916800.0;
    p = p * s + 1.0 / 362880.0;
    p = p * s - 1.0 / 5040.0;
    p = p * s + 1.0 / 120.0;
    p = p * s - 1.0 / 6.0;
    return r + (r * s) * p;
}

static double dfn__pm_cos_small(double r)
{
    double s = r * r, p = 1.0 / 6402373705728000.0;      /* 1/18! */
    p = p * s - 1.0 / 20922789888000.0;
    p = p * s + 1.0 / 87178291200.0;
    p = p * s - 1.0 / 479001600.0;
    p = p * s + 1.0 / 3628800.0;
    p = p * s - 1.0 / 40320.0;
    p = p * s + 1.0 / 720.0;
    p = p * s - 1.0 / 24.0;
    p = p * s + 0.5;
    return 1.0 - s * p;
}

/* sin(x + q pi/2) for q = 0 (sin) or 1 (cos): x = k pi/2 + r. */
static double dfn__pm_sincos(double x, int q)
{
    double k, r;
    int quadrant;
    if (!(x > -1125899906842624.0 && x < 1125899906842624.0))   /* 2^50, NaN, inf */
        return dfn__pm_from_bits(0x7ff8000000000000u);
    k = dfn__pm_round(x * 0.636619772367581343076);
    r = x - k * DFN__PM_PIO2_1;
    r = r - k * DFN__PM_PIO2_2;
    r = r - k * DFN__PM_PIO2_2T;
    quadrant = (int)((uint64_t)(int64_t)k & 3u) + q;
    switch (quadrant & 3) {
    case 0:  return dfn__pm_sin_small(r);
    case 1:  return dfn__pm_cos_small(r);
    case 2:  return -dfn__pm_sin_small(r);
    default: return -dfn__pm_cos_small(r);
    }
}

DFNDEF double dfn_math_sin(double x) { return dfn__pm_sincos(x, 0); }
DFNDEF double dfn_math_cos(double x) { return dfn__pm_sincos(x, 1); }

/* tanh |x| = em1 / (em1 + 2), em1 = e^(2|x|) - 1; 1 beyond |x| = 22. */
DFNDEF double dfn_math_tanh(double x)
{
    double a = x < 0.0 ? -x : x, em1, t;
    if (x != x) return x;
    if (a > 22.0) return x < 0.0 ? -1.0 : 1.0;
    em1 = 2.0 * a < 0.34 ? dfn__pm_expm1_small(2.0 * a) : dfn_math_exp(2.0 * a) - 1.0;
    t = em1 / (em1 + 2.0);
    return x < 0.0 ? -t : t;
}

/* ------------------------------------------------------------------------- */
/*  Kernels: GEMM, vector ops, bias, activations                             */
/* ------------------------------------------------------------------------- */

/* SIMD dispatch and determinism
   -----------------------------
   Each kernel exists as a plain reference (suffix _ref, reads like the
   formula), a portable blocked C version (_scalar) and one version per SIMD
   instruction set the compiler targets (_sse2, _avx2, _avx512, _neon,
   _wasm, _helium). The public functions call the best one, chosen at
   compile time from the compiler's predefined macros:

       __AVX512F__                      -> "avx512"  (AVX-512F only)
       __AVX2__ and __FMA__             -> "avx2"
       __SSE2__ (always on x86-64)      -> "sse2"
       __ARM_NEON (AArch64, ARMv7+neon) -> "neon"
       __wasm_simd128__                 -> "wasm_simd128"
       __ARM_FEATURE_MVE & 2 (M55, M85) -> "helium"
       anything else, or DFN_NO_SIMD    -> "scalar"

   so build with -mavx2 -mfma, -mavx512f, -march=native, -msimd128, ... to
   get the faster paths. Every path the target supports is compiled (an
   -mavx512f -mfma build has scalar, sse2, avx2 and avx512) and listed by
   dfn_kernel_variants(). There is no runtime CPU detection: a binary built
   for AVX-512 stops with SIGILL on a CPU without it.

   Determinism. No kernel depends on -ffast-math (do not build with it: the
   exp range reduction and rounding trick need IEEE arithmetic) or on
   threads, and no result depends on the alignment of a pointer or on the
   contents of the work memory:
   - The same build, given the same inputs, gives the same bits, every call.
   - GEMM: the sum over k runs in order k = 0, 1, ..., K-1 inside each
     DFN_GEMM_KC block for every element, whatever its position; M and N
     blocking do not change it. So row i of C is the same whether A has
     1 row or 1000 (batch invariance) and any M x N sub-block of a product
     equals the product of the sub-blocks. alpha is applied per KC block:
     changing DFN_GEMM_KC changes rounding when K > KC.
   - Elementwise kernels run the same arithmetic on every element (the tail
     of an array goes through the vector code on a padded copy), so an
     element's result does not depend on n or on its index.
   - dot / sum_sq use a fixed set of partial sums per variant and a fixed
     reduction tree: reproducible for a build, but different variants round
     differently.
   - Bit-identical across ALL variants: dfn_bias_add, dfn_bias_grad (plain
     float adds in the same order) and the ReLU / identity activations.
     vec_scale too (one multiply), and dfn_adam_update (separate IEEE
     multiplies, adds, divides and square roots in the scalar loop's order;
     the variants without a correctly rounded vector divide and square root,
     ARMv7 NEON and Helium, run the scalar loop).
   - NOT bit-identical across variants (they differ by rounding, typically
     one to a few ulp): GEMM (FMA vs separate multiply-add, K blocking,
     double accumulation in _ref), dot, sum_sq, axpy (fused in the FMA
     variants), SiLU and GELU (own exp in _scalar and SIMD, libm in _ref).
     Across platforms with the same variant (say scalar on x86-64 and on
     Cortex-M) results agree when the compiler does not contract a*b + c into
     an FMA on one and not the other (-ffp-contract=off to be sure; clang
     contracts by default when the target has FMA, gcc does in GNU C modes
     but not with -std=c99).

   Activations
   -----------
   The _ref variant uses the formulas with DFN_EXPF and DFN_TANHF. The
   scalar and SIMD variants share one algorithm (written once below, see
   DFN__ELEMENTWISE_KERNELS) built on an own exp:
     exp(x): clamp x to [-87.33654, 88] (exp(-87.33654) = 2^-126, the
       smallest normal float), n = round(x log2 e) (the 1.5 * 2^23 trick,
       or the target's round-to-nearest instruction: the same integer),
       r = x - n ln2 in two steps (Cody-Waite), e^r by a degree-6
       polynomial (minimax on [-ln2/2, ln2/2], fitted for this file; its own
       relative error is 7e-10), times 2^n built in the exponent bits
       (AVX-512: vscalefps, the same product).
       Below -87.33654 the result is 0 (no denormals), above 88 it is e^88.
     SiLU and GELU are x sigmoid(v) = x / (1 + e^-v), v = x for SiLU and
       v = 2u for GELU, u = sqrt(2/pi)(x + 0.044715 x^3): the tanh form
       0.5 x (1 + tanh u) = x sigmoid(2u), without the cancellation of
       1 + tanh u for negative x. e^-v is taken at x clamped to [-87, 87]
       (SiLU) or [-10, 10] (GELU, where |2u| <= 87.32), so it is a normal
       float: no overflow, no denormal, and the exp needs no clamp or select
       of its own (exp_core below). 1 - sigmoid(v) = e^-v sigmoid(v): no
       cancellation either. GELU's forward pass takes e^-2u as 2^t with
       t = -2u log2 e, log2 e folded into the constant (exp2_core: n =
       round(t), r = (t - n) ln2, the same polynomial; one multiply fewer,
       and a relative error of about |2u| 2^-24 more, like the rounding of
       u itself).
     SiLU  = x / (1 + e^-x),        SiLU'  = s (1 + x (1 - s)),  s = sigmoid(x)
     GELU  = x / (1 + e^-2u),       GELU'  = s + 2 sqrt(2/pi) x s (1 - s) (1 + 3 0.044715 x^2),
                                             s = sigmoid(2u)
       f with the unclamped x above the clamp (so f(x) = x there: e^-v
       rounds away in 1 + e^-v) and 0 below it (|f| < 1.5e-36 at the
       clamp); f' at the clamped x: 1 above the clamp and within 3e-36 of
       0 below it.
   Finite inputs give finite outputs (u is taken at the clamped x), and a
   NaN x gives a NaN f (x / (1 + e^-v) keeps it).
   Measured against double precision (AVX-512: every 7th float in each
   range; scalar, SSE2, AVX2: every 23rd; the maxima over those variants;
   NEON under qemu and WASM under node through the tests' tolerances below):
     exp,     x in [-87.33, 88]         0.99 ulp
     SiLU,    x in [-87, 1e4]           2.4 ulp
     GELU,    x in [0, 1e4]             1.9 ulp
     GELU,    x in [-5, 0]              48 ulp near x = -5 (relative 2.9e-6,
                                        where GELU's condition number is 35:
                                        the rounding of u in float)
     GELU,    x in [-9, -5]             relative 1.4e-5, absolute < 1e-12
     SiLU', GELU' (|x| <= 87 / 10)      absolute 2.4e-7
   For comparison, the _ref GELU (float tanhf form) has an absolute error of
   up to 8e-8 for negative x, which is 100% relative below x = -5.
   tests/test_kernels.c checks every variant against double precision with
   tolerances 2-4x above these numbers.

   Sine and cosine
   ---------------
   The sinusoidal embeddings (dfn_sinusoidal_embedding) take sin and cos of
   u = scale v f_k, 16 values at a time with AVX-512, through one algorithm
   written once in DFN__ELEMENTWISE_KERNELS (scalar twin included):
     n = round(u 2/pi) with the 1.5 * 2^23 trick; r = u - n pi/2 in three
       steps (Cody-Waite: pi/2 split into 8, 12 and 24 significant bits, so
       n times the first two parts is exact for |n| < 4096, which covers
       |u| <= 4096 = DFN__SINCOS_MAX, with or without FMA); |r| <= pi/4.
     sin r = r + r^3 (P0 + P1 r^2 + P2 r^4), cos r = 1 - r^2/2 + r^4 (Q0 +
       Q1 r^2 + Q2 r^4): Chebyshev fits for this file, within about 1 ulp.
     the quadrant j = n mod 4 (computed in float, exactly) picks s, c and
       their signs: sin u = s, c, -s, -c and cos u = c, -s, -c, s.
   Measured against sin and cos in double on 400,001 points in [-4096, 4096]
   plus the floats next to multiples of pi/2, every variant: absolute error
   at most 9.3e-8 (libm's sinf / cosf: 3.3e-8); below |u| = 0.78 (no
   reduction) within 2 ulp of the value. The test allows 2.5e-7. Arguments
   beyond 4096 (and NaN) go to DFN_SINF / DFN_COSF; with DFN_PORTABLE_MATH
   or without SIMD every argument does.

   Memory. Nothing here allocates. dfn_gemm packs panels of op(A) and op(B)
   into the caller's `work` (see dfn_gemm_work_size), except that the
   AVX-512 path reads A in place, stored either way (activations, im2col
   matrices, the dY of dW = dY^T X), for whole slivers of 12 rows (24 in
   the narrow tile); the edge tiles of C go
   through a small stack tile (at most DFN__GEMM_MR_MAX x DFN__GEMM_NR_MAX
   floats, 1.5 KB with AVX-512). */

/* GEMM blocking (BLIS / GotoBLAS loop nest), in elements. The defaults suit
   desktop caches (32-48 KB L1d, >= 512 KB L2): a KC x NR sliver of packed B
   stays in L1 while an MC x KC block of packed A sits in L2 and a KC x NC
   panel of B in L2/L3. Smaller values shrink dfn_gemm_work_size() (4 *
   KC * (MC + NC) bytes plus 64), e.g. 32 / 128 / 64 for a microcontroller.
   Changing KC changes rounding when K > KC. */
#ifndef DFN_GEMM_MC
#  define DFN_GEMM_MC 144
#endif
#ifndef DFN_GEMM_KC
#  define DFN_GEMM_KC 256
#endif
#ifndef DFN_GEMM_NC
#  define DFN_GEMM_NC 1024
#endif
#if DFN_GEMM_MC < 1 || DFN_GEMM_KC < 1 || DFN_GEMM_NC < 1
#  error "diffusion.h: DFN_GEMM_MC, DFN_GEMM_KC and DFN_GEMM_NC must be positive"
#endif


/* Register blocks of the GEMM micro-kernels (rows of A x columns of B). */
#define DFN__MR_scalar 4
#define DFN__NR_scalar 4
#define DFN__MR_sse2   4
#define DFN__NR_sse2   8
#define DFN__MR_avx2   6
#define DFN__NR_avx2   16
#define DFN__MR_avx512 12
#define DFN__NR_avx512 32
#define DFN__MR_avx512n 24 /* products with N <= 16 (convolutions with 16 output channels) */
#define DFN__NR_avx512n 16
#if defined(__aarch64__) || defined(_M_ARM64)
#  define DFN__MR_neon 8   /* 32 q registers: 16 accumulators */
#else
#  define DFN__MR_neon 4   /* ARMv7: 16 q registers           */
#endif
#define DFN__NR_neon   8
#define DFN__MR_wasm   4
#define DFN__NR_wasm   8
#define DFN__MR_helium 4
#define DFN__NR_helium 8

/* The largest register block compiled in: the size of the edge tile. */
#if defined(DFN__HAVE_AVX512)
#  define DFN__GEMM_MR_MAX 24
#  define DFN__GEMM_NR_MAX 32
#elif defined(DFN__HAVE_AVX2)
#  define DFN__GEMM_MR_MAX 6
#  define DFN__GEMM_NR_MAX 16
#elif defined(DFN__HAVE_NEON)
#  define DFN__GEMM_MR_MAX DFN__MR_neon
#  define DFN__GEMM_NR_MAX 8
#elif defined(DFN__HAVE_SSE2) || defined(DFN__HAVE_WASM) || defined(DFN__HAVE_HELIUM)
#  define DFN__GEMM_MR_MAX 4
#  define DFN__GEMM_NR_MAX 8
#else
#  define DFN__GEMM_MR_MAX 4
#  define DFN__GEMM_NR_MAX 4
#endif

/* Floats of the packed A block (MC rounded down to a multiple of MR, at
   least MR) and of the packed B panel, for any compiled variant. */
#define DFN__GEMM_MAXI(a, b) ((a) > (b) ? (a) : (b))
#define DFN__GEMM_PACK_A ((size_t)DFN__GEMM_MAXI(DFN_GEMM_MC, DFN__GEMM_MR_MAX) * DFN_GEMM_KC)
#define DFN__GEMM_PACK_B ((size_t)DFN__GEMM_MAXI(DFN_GEMM_NC, DFN__GEMM_NR_MAX) * DFN_GEMM_KC)
#define DFN__GEMM_WORK_ALIGN 64

/* Constants of the activations (see "Activations" above). */
#define DFN__EXP_LO   (-87.33654f)       /* ln(2^-126)                     */
#define DFN__EXP_HI   88.0f
#define DFN__LOG2E    1.44269504089f
#define DFN__LN2_HI   0.693359375f        /* 9 significant bits: n ln2_hi exact */
#define DFN__LN2_LO   (-2.12194440054e-4f) /* ln 2 - DFN__LN2_HI             */
#define DFN__ROUND_MAGIC 12582912.0f      /* 1.5 * 2^23                     */
#define DFN__EXP_P5   1.989098091e-04f    /* e^r = 1 + r + r^2 (P0 + P1 r + ... + P5 r^5) */
#define DFN__EXP_P4   1.393364160e-03f
#define DFN__EXP_P3   8.333310485e-03f
#define DFN__EXP_P2   4.166646674e-02f
#define DFN__EXP_P1   1.666666716e-01f
#define DFN__EXP_P0   5.000000000e-01f
#define DFN__GELU_C   0.7978845608028654f /* sqrt(2/pi)                     */
#define DFN__GELU_2C  1.5957691216057308f
#define DFN__GELU_2C_LOG2E 2.302208198144325f /* 2 sqrt(2/pi) log2 e        */
#define DFN__LN2      0.6931471805599453f
#define DFN__GELU_A   0.044715f
#define DFN__GELU_3A  0.134145f
#define DFN__GELU_CLAMP 10.0f
#define DFN__SILU_CLAMP 87.0f
/* Constants of the sine and cosine (see "Sine and cosine" above; DFN__SINCOS_MAX
   is with the shared definitions). */
#define DFN__2_OVER_PI 0.636619772367581f
#define DFN__PIO2_1   1.5703125f          /* 8 significant bits             */
#define DFN__PIO2_2   4.837512969970703125e-4f   /* 12 significant bits     */
#define DFN__PIO2_3   7.549789954891882e-8f      /* pi/2 - the two above    */
#define DFN__SIN_P0   (-1.6666663464e-01f) /* sin r = r + r^3 (P0 + P1 r^2 + P2 r^4) */
#define DFN__SIN_P1   8.3327095455e-03f
#define DFN__SIN_P2   (-1.9587916162e-04f)
#define DFN__COS_P0   4.1666663481e-02f   /* cos r = 1 - r^2/2 + r^4 (P0 + P1 r^2 + P2 r^4) */
#define DFN__COS_P1   (-1.3888265664e-03f)
#define DFN__COS_P2   2.4548159306e-05f

/* ------------------------------------------------------------------------- */
/*  Shared pieces                                                            */
/* ------------------------------------------------------------------------- */

typedef void (*dfn__ukr_fn)(int kc, const float *a, const float *b, float *c,
                            size_t ldc, float alpha, float beta);
/* The same tile with A read in place: element (r, k) of the tile at
   a[r rs + k ks] (A stored (M, K): rs = lda, ks = 1; stored (K, M): rs = 1,
   ks = lda). */
typedef void (*dfn__ukr_a_fn)(int kc, const float *a, size_t rs, size_t ks, const float *b, float *c,
                              size_t ldc, float alpha, float beta);

static void dfn__gemm_check(int trans_a, int trans_b, int M, int N, int K,
                            int lda, int ldb, int ldc)
{
    (void)trans_a; (void)trans_b; (void)M; (void)N; (void)K;
    (void)lda; (void)ldb; (void)ldc;
    DFN_ASSERT(M >= 0 && N >= 0 && K >= 0);
    DFN_ASSERT(M == 0 || K == 0 || lda >= (trans_a ? M : K));
    DFN_ASSERT(N == 0 || K == 0 || ldb >= (trans_b ? K : N));
    DFN_ASSERT(M == 0 || ldc >= N);
}

/* C = beta C over the M x N window; beta == 0 writes zeros without reading. */
static void dfn__gemm_scale_c(int M, int N, float beta, float *C, int ldc)
{
    int i, j;
    if (beta == 1.0f) return;
    for (i = 0; i < M; i++) {
        float *c = C + (size_t)i * (size_t)ldc;
        if (beta == 0.0f)
            for (j = 0; j < N; j++) c[j] = 0.0f;
        else
            for (j = 0; j < N; j++) c[j] *= beta;
    }
}

/* Transposes a 4 x 4 block: dst[j ldd + i] = src[i lds + j]. One per ISA. */
typedef void (*dfn__tr4_fn)(const float *src, size_t lds, float *dst, size_t ldd);

static DFN__INLINE void dfn__tr4_scalar(const float *src, size_t lds, float *dst, size_t ldd)
{
    int i, j;
    for (i = 0; i < 4; i++)
        for (j = 0; j < 4; j++) dst[(size_t)j * ldd + i] = src[(size_t)i * lds + j];
}

/* Packing a panel P (kb x width, zero-padded to kb x w) as dst[k w + q].
   From storage where P[k][q] = src[k ld + q] (each k a contiguous run): */
static DFN__FORCE_INLINE void dfn__gemm_pack_runs(const float *src, size_t ld, int kb, int width,
                                                  int w, float *dst)
{
    int k, q;
    if (width == w) {          /* w is a constant here: an inline vector copy */
        for (k = 0; k < kb; k++, src += ld, dst += w)
            DFN_MEMCPY(dst, src, (size_t)w * sizeof(float));
    } else {
        for (k = 0; k < kb; k++, src += ld, dst += w) {
            for (q = 0; q < width; q++) dst[q] = src[q];
            for (; q < w; q++) dst[q] = 0.0f;
        }
    }
}

/* ... and from storage where P[k][q] = src[q ld + k] (a transpose, done in
   4 x 4 blocks by tr4). */
static DFN__FORCE_INLINE void dfn__gemm_pack_transposed(const float *src, size_t ld, int kb, int width,
                                                        int w, dfn__tr4_fn tr4, float *dst)
{
    int k, q = 0, i;
    for (; q + 4 <= width; q += 4) {
        const float *s = src + (size_t)q * ld;
        for (k = 0; k + 4 <= kb; k += 4) tr4(s + k, ld, dst + (size_t)k * w + q, (size_t)w);
        for (; k < kb; k++)
            for (i = 0; i < 4; i++) dst[(size_t)k * w + q + i] = s[(size_t)i * ld + k];
    }
    for (; q < width; q++)
        for (k = 0; k < kb; k++) dst[(size_t)k * w + q] = src[(size_t)q * ld + k];
    for (; q < w; q++)
        for (k = 0; k < kb; k++) dst[(size_t)k * w + q] = 0.0f;
}

/* Packs op(A)[i0 .. i0+mb-1][p0 .. p0+kb-1] as ceil(mb / mr) slivers of mr
   rows: sliver s holds, for k = 0 .. kb-1, the mr values
   op(A)[i0 + s mr + r][p0 + k], r = 0 .. mr-1, one after the other. Rows past
   mb are zero. */
static DFN__FORCE_INLINE void dfn__gemm_pack_a(int trans_a, const float *A, int lda, int i0, int p0,
                                               int mb, int kb, int mr, dfn__tr4_fn tr4, float *dst)
{
    int s;
    for (s = 0; s < mb; s += mr, dst += (size_t)mr * kb) {
        int rows = mb - s < mr ? mb - s : mr;
        if (trans_a)       /* A (K, M): the rows of a sliver are contiguous at each k */
            dfn__gemm_pack_runs(A + (size_t)p0 * (size_t)lda + i0 + s, (size_t)lda, kb, rows, mr, dst);
        else               /* A (M, K): each row contiguous in k */
            dfn__gemm_pack_transposed(A + (size_t)(i0 + s) * (size_t)lda + p0, (size_t)lda, kb, rows,
                                      mr, tr4, dst);
    }
}

/* Packs op(B)[p0 .. p0+kb-1][j0 .. j0+nb-1] as ceil(nb / nr) slivers of nr
   columns: sliver s holds, for k = 0 .. kb-1, the nr values
   op(B)[p0 + k][j0 + s nr + j], j = 0 .. nr-1. Columns past nb are zero. */
static DFN__FORCE_INLINE void dfn__gemm_pack_b(int trans_b, const float *B, int ldb, int p0, int j0,
                                               int kb, int nb, int nr, dfn__tr4_fn tr4, float *dst)
{
    int s;
    for (s = 0; s < nb; s += nr, dst += (size_t)nr * kb) {
        int cols = nb - s < nr ? nb - s : nr;
        if (trans_b)       /* B (N, K): each column of op(B) contiguous in k */
            dfn__gemm_pack_transposed(B + (size_t)(j0 + s) * (size_t)ldb + p0, (size_t)ldb, kb, cols,
                                      nr, tr4, dst);
        else               /* B (K, N): the columns of a sliver are contiguous at each k */
            dfn__gemm_pack_runs(B + (size_t)p0 * (size_t)ldb + j0 + s, (size_t)ldb, kb, cols, nr, dst);
    }
}

/* The blocked GEMM every non-reference variant runs, around its micro-kernel
   ukr, which computes one mr x nr tile: c = alpha a b + beta c (beta == 0:
   c not read) from an mr-row sliver a and an nr-column sliver b of length kc.
   Edge tiles run the same micro-kernel on a stack copy, so every element of C
   sees the same arithmetic. */
static DFN__FORCE_INLINE void dfn__gemm_blocked(int mr, int nr, dfn__ukr_fn ukr, dfn__ukr_a_fn ukr_a,
                              dfn__tr4_fn tr4,
                              int trans_a, int trans_b, int M, int N, int K,
                              float alpha, const float *A, int lda,
                              const float *B, int ldb, float beta,
                              float *C, int ldc, float *work)
{
    float tile[DFN__GEMM_MR_MAX * DFN__GEMM_NR_MAX];
    float *pa, *pb;
    int mc = DFN_GEMM_MC - DFN_GEMM_MC % mr, nc = DFN_GEMM_NC - DFN_GEMM_NC % nr;
    int ic, jc, pc, ir, jr, i, j;
    dfn__gemm_check(trans_a, trans_b, M, N, K, lda, ldb, ldc);
    DFN_ASSERT(mr <= DFN__GEMM_MR_MAX && nr <= DFN__GEMM_NR_MAX);
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        dfn__gemm_scale_c(M, N, beta, C, ldc);
        return;
    }
    DFN_ASSERT(work != NULL);
    if (mc < mr) mc = mr;
    if (nc < nr) nc = nr;
    {   /* 64-byte aligned start of the packed A block; packed B follows */
        size_t mis = (size_t)((uintptr_t)work % DFN__GEMM_WORK_ALIGN);
        pa = work + (mis ? (DFN__GEMM_WORK_ALIGN - mis) / sizeof(float) : 0);
        pb = pa + DFN__GEMM_PACK_A;
    }
    for (jc = 0; jc < N; jc += nc) {
        int nb = N - jc < nc ? N - jc : nc;
        for (pc = 0; pc < K; pc += DFN_GEMM_KC) {
            int kb = K - pc < DFN_GEMM_KC ? K - pc : DFN_GEMM_KC;
            float beta_k = pc == 0 ? beta : 1.0f;   /* later K blocks accumulate */
            dfn__gemm_pack_b(trans_b, B, ldb, pc, jc, kb, nb, nr, tr4, pb);
            for (ic = 0; ic < M; ic += mc) {
                int mb = M - ic < mc ? M - ic : mc;
                /* With a direct micro-kernel, whole slivers read A in place
                   (either storage); only the last, partial sliver is packed
                   (at the start of pa) */
                int direct = ukr_a != NULL, full = direct ? mb - mb % mr : 0;
                size_t rs = trans_a ? 1 : (size_t)lda, ks = trans_a ? (size_t)lda : 1;
                if (!direct) dfn__gemm_pack_a(trans_a, A, lda, ic, pc, mb, kb, mr, tr4, pa);
                else if (full < mb) dfn__gemm_pack_a(trans_a, A, lda, ic + full, pc, mb - full, kb, mr, tr4, pa);
                for (jr = 0; jr < nb; jr += nr) {
                    int n = nb - jr < nr ? nb - jr : nr;
                    const float *bp = pb + (size_t)jr * kb;
                    for (ir = 0; ir < mb; ir += mr) {
                        int m = mb - ir < mr ? mb - ir : mr;
                        const float *ap = direct ? pa : pa + (size_t)ir * kb;
                        float *c = C + (size_t)(ic + ir) * (size_t)ldc + jc + jr;
                        if (direct && ir < full && n == nr) {
                            ukr_a(kb, A + (size_t)(ic + ir) * rs + (size_t)pc * ks, rs, ks, bp, c, (size_t)ldc,
                                  alpha, beta_k);
                            continue;
                        }
                        if (direct && ir < full) {   /* a whole sliver, an edge column tile: pack it */
                            dfn__gemm_pack_a(trans_a, A, lda, ic + ir, pc, mr, kb, mr, tr4, pa + (size_t)mr * kb);
                            ap = pa + (size_t)mr * kb;
                        }
                        if (m == mr && n == nr) {
                            ukr(kb, ap, bp, c, (size_t)ldc, alpha, beta_k);
                            continue;
                        }
                        if (beta_k != 0.0f) {
                            for (i = 0; i < mr * nr; i++) tile[i] = 0.0f;
                            for (i = 0; i < m; i++)
                                for (j = 0; j < n; j++)
                                    tile[i * nr + j] = c[(size_t)i * (size_t)ldc + j];
                        }
                        ukr(kb, ap, bp, tile, (size_t)nr, alpha, beta_k);
                        for (i = 0; i < m; i++)
                            for (j = 0; j < n; j++)
                                c[(size_t)i * (size_t)ldc + j] = tile[i * nr + j];
                    }
                }
            }
        }
    }
}

/* y = x for n floats (y == x: nothing to do). */
static void dfn__kernel_copy(size_t n, const float *x, float *y)
{
    if (n > 0 && x != y) DFN_MEMCPY(y, x, n * sizeof(float));
}

/* ------------------------------------------------------------------------- */
/*  Reference kernels: the formulas, plainly                                 */
/* ------------------------------------------------------------------------- */

/* Triple loop; each dot product accumulated in double and rounded once. */
static void dfn__gemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha,
                          const float *A, int lda, const float *B, int ldb, float beta,
                          float *C, int ldc, float *work)
{
    int i, j, k;
    (void)work;
    dfn__gemm_check(trans_a, trans_b, M, N, K, lda, ldb, ldc);
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        dfn__gemm_scale_c(M, N, beta, C, ldc);
        return;
    }
    for (i = 0; i < M; i++) {
        for (j = 0; j < N; j++) {
            float *c = C + (size_t)i * (size_t)ldc + j;
            double sum = 0.0, v;
            for (k = 0; k < K; k++) {
                float a = trans_a ? A[(size_t)k * (size_t)lda + i] : A[(size_t)i * (size_t)lda + k];
                float b = trans_b ? B[(size_t)j * (size_t)ldb + k] : B[(size_t)k * (size_t)ldb + j];
                sum += (double)a * (double)b;
            }
            v = (double)alpha * sum;
            if (beta != 0.0f) v += (double)beta * (double)*c;
            *c = (float)v;
        }
    }
}

static void dfn__vec_axpy_ref(size_t n, float a, const float *x, float *y)
{
    size_t i;
    for (i = 0; i < n; i++) y[i] += a * x[i];
}

static void dfn__vec_scale_ref(size_t n, float a, float *x)
{
    size_t i;
    for (i = 0; i < n; i++) x[i] *= a;
}

static float dfn__vec_dot_ref(size_t n, const float *x, const float *y)
{
    double s = 0.0;
    size_t i;
    for (i = 0; i < n; i++) s += (double)x[i] * (double)y[i];
    return (float)s;
}

static float dfn__vec_sum_sq_ref(size_t n, const float *x)
{
    double s = 0.0;
    size_t i;
    for (i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    return (float)s;
}

static void dfn__bias_add_ref(int rows, int cols, float *y, const float *bias)
{
    int r, c;
    for (r = 0; r < rows; r++)
        for (c = 0; c < cols; c++) y[(size_t)r * (size_t)cols + c] += bias[c];
}

static void dfn__bias_grad_ref(int rows, int cols, const float *dy, float *dbias)
{
    int r, c;
    for (r = 0; r < rows; r++)
        for (c = 0; c < cols; c++) dbias[c] += dy[(size_t)r * (size_t)cols + c];
}

/* sigmoid(x), and 1 - sigmoid(x) in *one_minus, without overflow. */
static float dfn__sigmoid_ref(float x, float *one_minus)
{
    float e = DFN_EXPF(-(x < 0.0f ? -x : x));
    float p = 1.0f / (1.0f + e), q = e * p;
    *one_minus = x > 0.0f ? q : p;
    return x > 0.0f ? p : q;
}

static float dfn__act_ref(int act, float x)
{
    float sm;
    switch (act) {
    case DFN_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case DFN_ACT_SILU: return x * dfn__sigmoid_ref(x, &sm);
    case DFN_ACT_GELU:
        return 0.5f * x * (1.0f + DFN_TANHF(DFN__GELU_C * (x + DFN__GELU_A * x * x * x)));
    default: return x;
    }
}

/* f'(x); GELU' is 1 above x = 10 and 0 below -10 (to float precision), which
   also keeps 0 * inf out of the formula. */
static float dfn__act_grad_ref(int act, float x)
{
    float s, sm, t;
    switch (act) {
    case DFN_ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
    case DFN_ACT_SILU:
        s = dfn__sigmoid_ref(x, &sm);
        return s * (1.0f + x * sm);
    case DFN_ACT_GELU:
        if (x > DFN__GELU_CLAMP) return 1.0f;
        if (x < -DFN__GELU_CLAMP) return 0.0f;
        t = DFN_TANHF(DFN__GELU_C * (x + DFN__GELU_A * x * x * x));
        return 0.5f * (1.0f + t)
             + 0.5f * x * (1.0f - t * t) * DFN__GELU_C * (1.0f + 3.0f * DFN__GELU_A * x * x);
    default: return 1.0f;
    }
}

static void dfn__vec_exp_ref(size_t n, const float *x, float *y)
{
    size_t i;
    for (i = 0; i < n; i++) y[i] = DFN_EXPF(x[i]);
}

static void dfn__vec_sincos_ref(size_t n, const float *x, float *s, float *c)
{
    size_t i;
    for (i = 0; i < n; i++) {
        s[i] = DFN_SINF(x[i]);
        c[i] = DFN_COSF(x[i]);
    }
}

static void dfn__act_forward_ref(dfn_activation act, size_t n, const float *x, float *y)
{
    size_t i;
    for (i = 0; i < n; i++) y[i] = dfn__act_ref((int)act, x[i]);
}

/* dx = dy f'(x); for ReLU a selection (dy or +0, as the SIMD versions do,
   rather than dy * 0 = -0 for negative dy). */
static void dfn__act_backward_ref(dfn_activation act, size_t n, const float *x,
                                  const float *dy, float *dx)
{
    size_t i;
    for (i = 0; i < n; i++)
        dx[i] = act == DFN_ACT_RELU ? (x[i] > 0.0f ? dy[i] : 0.0f)
                                    : dy[i] * dfn__act_grad_ref((int)act, x[i]);
}

/* Adam + EMA as the formula reads, in double; each stored value is rounded
   to float once (the EMA uses the stored p). */
static void dfn__adam_update_ref(size_t n, float *p, float *m, float *v, const float *g,
                                 float *ema, const dfn_adam_coefs *c)
{
    size_t i;
    for (i = 0; i < n; i++) {
        double gi = (double)g[i] * c->grad_scale;
        double mi = (double)c->beta1 * m[i] + (1.0 - c->beta1) * gi;
        double vi = (double)c->beta2 * v[i] + (1.0 - c->beta2) * gi * gi;
        double pi = (double)p[i] - ((double)c->step_size * mi / (DFN_SQRT(vi * c->v_scale) + c->eps)
                                    + (double)c->decay * p[i]);
        m[i] = (float)mi;
        v[i] = (float)vi;
        p[i] = (float)pi;
        if (ema) ema[i] = (float)((double)c->ema_decay * ema[i] + (1.0 - c->ema_decay) * (double)p[i]);
    }
}

/* ------------------------------------------------------------------------- */
/*  The elementwise kernels, written once for every vector width             */
/* ------------------------------------------------------------------------- */

/* DFN__ELEMENTWISE_KERNELS(S, V, W) defines the elementwise, reduction and
   activation kernels of variant S on vectors of type V holding W floats,
   from these primitives (static inline functions named dfn__S_op):
     ld(p), st(p, v)   unaligned load / store of W floats
     set1(f)           every lane f
     add sub mul div   lane-wise, IEEE (div exact, or within 2 ulp on ARMv7)
     fma(a, b, c)      a b + c (fused where the target has FMA)
     max min           lane-wise (finite inputs)
     gtsel(x, y, a, b) lane-wise x > y ? a : b
     round(v)          v rounded to an integer, ties to even (|v| < 2^22)
     ldexp(p, n)       p 2^n for integer-valued n in [-126, 127] (p times
                       the target's pow2i(n), or vscalefps)
   The tail of an array (n % W elements) is copied to a zero-padded buffer
   and goes through the same vector code. It is six macros of at most 70
   lines (a compiler error inside one names a line of it), expanded in this
   order; the first holds e^x on one vector. */
#define DFN__EW_EXP_LANES(S, V, W)                                                 \
                                                                                   \
/* e^r for |r| <= ln2 / 2: 1 + r + r^2 P(r) */                                   \
static DFN__INLINE V dfn__##S##_exp_r(V r)                                         \
{                                                                                  \
    V p = dfn__##S##_fma(dfn__##S##_set1(DFN__EXP_P5), r, dfn__##S##_set1(DFN__EXP_P4)); \
    p = dfn__##S##_fma(p, r, dfn__##S##_set1(DFN__EXP_P3));                        \
    p = dfn__##S##_fma(p, r, dfn__##S##_set1(DFN__EXP_P2));                        \
    p = dfn__##S##_fma(p, r, dfn__##S##_set1(DFN__EXP_P1));                        \
    p = dfn__##S##_fma(p, r, dfn__##S##_set1(DFN__EXP_P0));                        \
    p = dfn__##S##_fma(dfn__##S##_mul(r, r), p, r);                                \
    return dfn__##S##_add(p, dfn__##S##_set1(1.0f));                               \
}                                                                                  \
                                                                                   \
/* e^x for x in [-87.33654, 88]: see "Activations" */                              \
static DFN__INLINE V dfn__##S##_exp_core(V x)                                      \
{                                                                                  \
    V n = dfn__##S##_round(dfn__##S##_mul(x, dfn__##S##_set1(DFN__LOG2E)));        \
    V r = dfn__##S##_fma(n, dfn__##S##_set1(-DFN__LN2_HI), x);     /* exact */     \
    r = dfn__##S##_fma(n, dfn__##S##_set1(-DFN__LN2_LO), r);                       \
    return dfn__##S##_ldexp(dfn__##S##_exp_r(r), n);               /* e^r 2^n */   \
}                                                                                  \
                                                                                   \
/* 2^t for t in [-126, 126]: n = round(t), r = (t - n) ln2 (t - n exact) */        \
static DFN__INLINE V dfn__##S##_exp2_core(V t)                                     \
{                                                                                  \
    V n = dfn__##S##_round(t);                                                     \
    V r = dfn__##S##_mul(dfn__##S##_sub(t, n), dfn__##S##_set1(DFN__LN2));         \
    return dfn__##S##_ldexp(dfn__##S##_exp_r(r), n);                               \
}                                                                                  \
                                                                                   \
/* exp(x) for any x: 0 below -87.33654, e^88 above 88 */                           \
static DFN__INLINE V dfn__##S##_exp(V x)                                           \
{                                                                                  \
    V lo = dfn__##S##_set1(DFN__EXP_LO);                                           \
    V xc = dfn__##S##_min(dfn__##S##_max(x, lo), dfn__##S##_set1(DFN__EXP_HI));      \
    return dfn__##S##_gtsel(lo, x, dfn__##S##_set1(0.0f), dfn__##S##_exp_core(xc)); \
}                                                                                  \
                                                                                   \
/* 1 / (1 + e) with e = e^v; 1 - that = e / (1 + e) = e times it */                \
static DFN__INLINE V dfn__##S##_recip1p(V e)                                       \
{                                                                                  \
    V one = dfn__##S##_set1(1.0f);                                                 \
    return dfn__##S##_div(one, dfn__##S##_add(one, e));                            \
}                                                                                  \
                                                                                   \
/* -2u = -2 sqrt(2/pi) (x + 0.044715 x^3) = x (-2c) (1 + a x^2), given x^2 */      \
static DFN__INLINE V dfn__##S##_gelu_m2u(V x, V x2)                                \
{                                                                                  \
    return dfn__##S##_mul(dfn__##S##_mul(dfn__##S##_set1(-DFN__GELU_2C), x),        \
               dfn__##S##_fma(dfn__##S##_set1(DFN__GELU_A), x2, dfn__##S##_set1(1.0f))); \
}                                                                                  \


/* Of DFN__ELEMENTWISE_KERNELS: the activations and their derivatives on one
   vector, and the fixed-order horizontal sum. */
#define DFN__EW_ACT_LANES(S, V, W)                                                 \
                                                                                   \
/* f(x) for a non-identity activation: x / (1 + e^-v), v = x or 2u, at x        \
   clamped so that e^-v stays normal; 0 below the clamp */                         \
static DFN__INLINE V dfn__##S##_act_f(int act, V x)                                \
{                                                                                  \
    V zero = dfn__##S##_set1(0.0f), one = dfn__##S##_set1(1.0f), xc, lim, e;        \
    switch (act) {                                                                 \
    case DFN_ACT_RELU: return dfn__##S##_gtsel(x, zero, x, zero);                   \
    case DFN_ACT_SILU:                                 /* x sigmoid(x) */          \
        lim = dfn__##S##_set1(DFN__SILU_CLAMP);                                    \
        xc = dfn__##S##_min(dfn__##S##_max(x, dfn__##S##_sub(zero, lim)), lim);     \
        e = dfn__##S##_exp_core(dfn__##S##_sub(zero, xc));                         \
        return dfn__##S##_gtsel(dfn__##S##_sub(zero, lim), x, zero,                \
                                dfn__##S##_div(x, dfn__##S##_add(one, e)));        \
    case DFN_ACT_GELU:                                 /* x sigmoid(2u) */         \
        lim = dfn__##S##_set1(DFN__GELU_CLAMP);                                    \
        xc = dfn__##S##_min(dfn__##S##_max(x, dfn__##S##_sub(zero, lim)), lim);     \
        /* e^-2u = 2^t, t = -2u log2 e: the constant takes log2 e */             \
        e = dfn__##S##_exp2_core(dfn__##S##_mul(                                   \
                dfn__##S##_mul(dfn__##S##_set1(-DFN__GELU_2C_LOG2E), xc),          \
                dfn__##S##_fma(dfn__##S##_set1(DFN__GELU_A), dfn__##S##_mul(xc, xc), one))); \
        return dfn__##S##_gtsel(dfn__##S##_sub(zero, lim), x, zero,                \
                                dfn__##S##_div(x, dfn__##S##_add(one, e)));        \
    default: return x;                                                             \
    }                                                                              \
}                                                                                  \
                                                                                   \
/* dy f'(x) for a non-identity activation, at x clamped as in act_f (beyond      \
   the clamp f' is 1 or within 3e-36 of 0 already) */                              \
static DFN__INLINE V dfn__##S##_act_b(int act, V x, V dy)                          \
{                                                                                  \
    V zero = dfn__##S##_set1(0.0f), one = dfn__##S##_set1(1.0f), lim, xc, x2, m2u, e, s, sm; \
    switch (act) {                                                                 \
    case DFN_ACT_RELU: return dfn__##S##_gtsel(x, zero, dy, zero);                  \
    case DFN_ACT_SILU:                                 /* s (1 + x (1 - s)) */     \
        lim = dfn__##S##_set1(DFN__SILU_CLAMP);                                    \
        xc = dfn__##S##_min(dfn__##S##_max(x, dfn__##S##_sub(zero, lim)), lim);     \
        e = dfn__##S##_exp_core(dfn__##S##_sub(zero, xc));                         \
        s = dfn__##S##_recip1p(e);                                                 \
        sm = dfn__##S##_mul(e, s);                                                 \
        return dfn__##S##_mul(dy, dfn__##S##_mul(s, dfn__##S##_fma(xc, sm, one)));  \
    case DFN_ACT_GELU:                 /* s + 2c x s (1 - s) (1 + 3a x^2) */       \
        lim = dfn__##S##_set1(DFN__GELU_CLAMP);                                    \
        xc = dfn__##S##_min(dfn__##S##_max(x, dfn__##S##_sub(zero, lim)), lim);     \
        x2 = dfn__##S##_mul(xc, xc);                                               \
        m2u = dfn__##S##_gelu_m2u(xc, x2);                                         \
        e = dfn__##S##_exp_core(m2u);                                              \
        s = dfn__##S##_recip1p(e);                                                 \
        sm = dfn__##S##_mul(e, s);                                                 \
        /* 2c x (1 + 3a x^2) as (-2c x) (-(1 + 3a x^2)) */                        \
        return dfn__##S##_mul(dy, dfn__##S##_fma(                                  \
            dfn__##S##_mul(dfn__##S##_mul(dfn__##S##_set1(-DFN__GELU_2C), xc), dfn__##S##_mul(s, sm)), \
            dfn__##S##_fma(dfn__##S##_set1(-DFN__GELU_3A), x2, dfn__##S##_set1(-1.0f)), s)); \
    default: return dy;                                                            \
    }                                                                              \
}                                                                                  \
                                                                                   \
static DFN__INLINE float dfn__##S##_hsum(V v)   /* fixed pairwise tree */          \
{                                                                                  \
    float t[W];                                                                    \
    int w, j;                                                                      \
    dfn__##S##_st(t, v);                                                           \
    for (w = (W) / 2; w > 0; w /= 2)                                               \
        for (j = 0; j < w; j++) t[j] += t[j + w];                                  \
    return t[0];                                                                   \
}                                                                                  \

/* Of DFN__ELEMENTWISE_KERNELS: dfn_act_forward and dfn_act_backward over arrays. */
#define DFN__EW_ACT_ARRAYS(S, V, W)                                                \
                                                                                   \
static void dfn__act_forward_##S(dfn_activation act, size_t n, const float *x, float *y) \
{                                                                                  \
    size_t i = 0, j;                                                               \
    int a = (int)act;                                                              \
    if (a == DFN_ACT_IDENTITY) { dfn__kernel_copy(n, x, y); return; }              \
    for (; i + (W) <= n; i += (W))                                                 \
        dfn__##S##_st(y + i, dfn__##S##_act_f(a, dfn__##S##_ld(x + i)));           \
    if (i < n) {                                                                   \
        float xb[W], yb[W];                                                        \
        for (j = 0; j < (W); j++) xb[j] = i + j < n ? x[i + j] : 0.0f;             \
        dfn__##S##_st(yb, dfn__##S##_act_f(a, dfn__##S##_ld(xb)));                 \
        for (j = 0; j < (W) && i + j < n; j++) y[i + j] = yb[j];                   \
    }                                                                              \
}                                                                                  \
                                                                                   \
static void dfn__act_backward_##S(dfn_activation act, size_t n, const float *x,    \
                                  const float *dy, float *dx)                      \
{                                                                                  \
    size_t i = 0, j;                                                               \
    int a = (int)act;                                                              \
    if (a == DFN_ACT_IDENTITY) { dfn__kernel_copy(n, dy, dx); return; }            \
    for (; i + (W) <= n; i += (W))                                                 \
        dfn__##S##_st(dx + i, dfn__##S##_act_b(a, dfn__##S##_ld(x + i),            \
                                               dfn__##S##_ld(dy + i)));            \
    if (i < n) {                                                                   \
        float xb[W], db[W];                                                        \
        for (j = 0; j < (W); j++) {                                                \
            xb[j] = i + j < n ? x[i + j] : 0.0f;                                   \
            db[j] = i + j < n ? dy[i + j] : 0.0f;                                  \
        }                                                                          \
        dfn__##S##_st(db, dfn__##S##_act_b(a, dfn__##S##_ld(xb), dfn__##S##_ld(db))); \
        for (j = 0; j < (W) && i + j < n; j++) dx[i + j] = db[j];                  \
    }                                                                              \
}                                                                                  \

/* Of DFN__ELEMENTWISE_KERNELS: sine, cosine and exp over arrays. */
#define DFN__EW_SINCOS_EXP(S, V, W)                                                \
                                                                                   \
/* sin x and cos x, |x| <= DFN__SINCOS_MAX: see "Sine and cosine" */              \
static DFN__INLINE void dfn__##S##_sincos(V x, V *sn, V *cs)                       \
{                                                                                  \
    V zero = dfn__##S##_set1(0.0f), half = dfn__##S##_set1(0.5f);                   \
    V magic = dfn__##S##_set1(DFN__ROUND_MAGIC), r2, s, c, q, j, odd, s0, c0;       \
    V n = dfn__##S##_sub(dfn__##S##_add(dfn__##S##_mul(x,                          \
              dfn__##S##_set1(DFN__2_OVER_PI)), magic), magic);  /* round(2x/pi) */ \
    V r = dfn__##S##_fma(n, dfn__##S##_set1(-DFN__PIO2_1), x);   /* exact */       \
    r = dfn__##S##_fma(n, dfn__##S##_set1(-DFN__PIO2_2), r);                       \
    r = dfn__##S##_fma(n, dfn__##S##_set1(-DFN__PIO2_3), r);     /* |r| <= pi/4 */ \
    r2 = dfn__##S##_mul(r, r);                                                     \
    s = dfn__##S##_fma(dfn__##S##_set1(DFN__SIN_P2), r2, dfn__##S##_set1(DFN__SIN_P1)); \
    s = dfn__##S##_fma(s, r2, dfn__##S##_set1(DFN__SIN_P0));                       \
    s = dfn__##S##_fma(s, dfn__##S##_mul(r2, r), r);                               \
    c = dfn__##S##_fma(dfn__##S##_set1(DFN__COS_P2), r2, dfn__##S##_set1(DFN__COS_P1)); \
    c = dfn__##S##_fma(c, r2, dfn__##S##_set1(DFN__COS_P0));                       \
    c = dfn__##S##_fma(c, dfn__##S##_mul(r2, r2),                                  \
            dfn__##S##_fma(dfn__##S##_set1(-0.5f), r2, dfn__##S##_set1(1.0f)));     \
    /* quadrant j = n mod 4 and whether it is odd, in exact float arithmetic */    \
    q = dfn__##S##_fma(n, dfn__##S##_set1(0.25f), dfn__##S##_set1(-0.375f));        \
    q = dfn__##S##_sub(dfn__##S##_add(q, magic), magic);          /* floor(n/4) */ \
    j = dfn__##S##_fma(q, dfn__##S##_set1(-4.0f), n);                              \
    q = dfn__##S##_fma(j, half, dfn__##S##_set1(-0.25f));                          \
    q = dfn__##S##_sub(dfn__##S##_add(q, magic), magic);          /* floor(j/2) */ \
    odd = dfn__##S##_fma(q, dfn__##S##_set1(-2.0f), j);                            \
    /* sin x = s, c, -s, -c and cos x = c, -s, -c, s for j = 0, 1, 2, 3 */         \
    s0 = dfn__##S##_gtsel(odd, half, c, s);                                        \
    c0 = dfn__##S##_gtsel(odd, half, s, c);                                        \
    *sn = dfn__##S##_gtsel(j, dfn__##S##_set1(1.5f), dfn__##S##_sub(zero, s0), s0); \
    *cs = dfn__##S##_gtsel(j, half, dfn__##S##_gtsel(j, dfn__##S##_set1(2.5f), c0,   \
                                        dfn__##S##_sub(zero, c0)), c0);            \
}                                                                                  \
                                                                                   \
static void dfn__vec_sincos_##S(size_t n, const float *x, float *s, float *c)      \
{                                                                                  \
    size_t i = 0, j;                                                               \
    V vs, vc;                                                                      \
    for (; i + (W) <= n; i += (W)) {                                               \
        dfn__##S##_sincos(dfn__##S##_ld(x + i), &vs, &vc);                         \
        dfn__##S##_st(s + i, vs);                                                  \
        dfn__##S##_st(c + i, vc);                                                  \
    }                                                                              \
    if (i < n) {                                                                   \
        float xb[W], sb[W], cb[W];                                                 \
        for (j = 0; j < (W); j++) xb[j] = i + j < n ? x[i + j] : 0.0f;             \
        dfn__##S##_sincos(dfn__##S##_ld(xb), &vs, &vc);                            \
        dfn__##S##_st(sb, vs);                                                     \
        dfn__##S##_st(cb, vc);                                                     \
        for (j = 0; j < (W) && i + j < n; j++) { s[i + j] = sb[j]; c[i + j] = cb[j]; } \
    }                                                                              \
}                                                                                  \
                                                                                   \
static void dfn__vec_exp_##S(size_t n, const float *x, float *y)                  \
{                                                                                  \
    size_t i = 0, j;                                                               \
    for (; i + (W) <= n; i += (W))                                                 \
        dfn__##S##_st(y + i, dfn__##S##_exp(dfn__##S##_ld(x + i)));                \
    if (i < n) {                                                                   \
        float xb[W], yb[W];                                                        \
        for (j = 0; j < (W); j++) xb[j] = i + j < n ? x[i + j] : 0.0f;             \
        dfn__##S##_st(yb, dfn__##S##_exp(dfn__##S##_ld(xb)));                     \
        for (j = 0; j < (W) && i + j < n; j++) y[i + j] = yb[j];                   \
    }                                                                              \
}                                                                                  \

/* Of DFN__ELEMENTWISE_KERNELS: axpy, scale, dot and the sum of squares. */
#define DFN__EW_VECTOR(S, V, W)                                                    \
                                                                                   \
static void dfn__vec_axpy_##S(size_t n, float a, const float *x, float *y)         \
{                                                                                  \
    V va = dfn__##S##_set1(a);                                                     \
    size_t i = 0, j;                                                               \
    for (; i + (W) <= n; i += (W))                                                 \
        dfn__##S##_st(y + i, dfn__##S##_fma(va, dfn__##S##_ld(x + i), dfn__##S##_ld(y + i))); \
    if (i < n) {                                                                   \
        float xb[W], yb[W];                                                        \
        for (j = 0; j < (W); j++) {                                                \
            xb[j] = i + j < n ? x[i + j] : 0.0f;                                   \
            yb[j] = i + j < n ? y[i + j] : 0.0f;                                   \
        }                                                                          \
        dfn__##S##_st(yb, dfn__##S##_fma(va, dfn__##S##_ld(xb), dfn__##S##_ld(yb))); \
        for (j = 0; j < (W) && i + j < n; j++) y[i + j] = yb[j];                   \
    }                                                                              \
}                                                                                  \
                                                                                   \
static void dfn__vec_scale_##S(size_t n, float a, float *x)                        \
{                                                                                  \
    V va = dfn__##S##_set1(a);                                                     \
    size_t i = 0;                                                                  \
    for (; i + (W) <= n; i += (W))                                                 \
        dfn__##S##_st(x + i, dfn__##S##_mul(dfn__##S##_ld(x + i), va));             \
    for (; i < n; i++) x[i] *= a;              /* the same single multiply */     \
}                                                                                  \
                                                                                   \
/* Four vector partial sums, each over every 4th block of W, the tail into    */   \
/* the second; then (s0 + s1) + (s2 + s3) and a pairwise tree over lanes.    */   \
static float dfn__vec_dot_##S(size_t n, const float *x, const float *y)            \
{                                                                                  \
    V s0 = dfn__##S##_set1(0.0f), s1 = s0, s2 = s0, s3 = s0;                       \
    size_t i = 0, j;                                                               \
    for (; i + 4 * (W) <= n; i += 4 * (W)) {                                       \
        s0 = dfn__##S##_fma(dfn__##S##_ld(x + i), dfn__##S##_ld(y + i), s0);        \
        s1 = dfn__##S##_fma(dfn__##S##_ld(x + i + (W)), dfn__##S##_ld(y + i + (W)), s1); \
        s2 = dfn__##S##_fma(dfn__##S##_ld(x + i + 2 * (W)), dfn__##S##_ld(y + i + 2 * (W)), s2); \
        s3 = dfn__##S##_fma(dfn__##S##_ld(x + i + 3 * (W)), dfn__##S##_ld(y + i + 3 * (W)), s3); \
    }                                                                              \
    for (; i + (W) <= n; i += (W))                                                 \
        s0 = dfn__##S##_fma(dfn__##S##_ld(x + i), dfn__##S##_ld(y + i), s0);        \
    if (i < n) {                                                                   \
        float xb[W], yb[W];                                                        \
        for (j = 0; j < (W); j++) {                                                \
            xb[j] = i + j < n ? x[i + j] : 0.0f;                                   \
            yb[j] = i + j < n ? y[i + j] : 0.0f;                                   \
        }                                                                          \
        s1 = dfn__##S##_fma(dfn__##S##_ld(xb), dfn__##S##_ld(yb), s1);              \
    }                                                                              \
    return dfn__##S##_hsum(dfn__##S##_add(dfn__##S##_add(s0, s1), dfn__##S##_add(s2, s3))); \
}                                                                                  \
                                                                                   \
static float dfn__vec_sum_sq_##S(size_t n, const float *x)                         \
{                                                                                  \
    return dfn__vec_dot_##S(n, x, x);                                              \
}                                                                                  \

/* Of DFN__ELEMENTWISE_KERNELS: the bias and its gradient. */
#define DFN__EW_BIAS(S, V, W)                                                 \
                                                                                   \
static void dfn__bias_add_##S(int rows, int cols, float *y, const float *bias)     \
{                                                                                  \
    int r, c;                                                                      \
    for (r = 0; r < rows; r++) {                                                   \
        float *yr = y + (size_t)r * (size_t)cols;                                  \
        for (c = 0; c + (W) <= cols; c += (W))                                     \
            dfn__##S##_st(yr + c, dfn__##S##_add(dfn__##S##_ld(yr + c), dfn__##S##_ld(bias + c))); \
        for (; c < cols; c++) yr[c] += bias[c];                                    \
    }                                                                              \
}                                                                                  \
                                                                                   \
/* Column blocks of 4W, then W, then single columns; rows added in order. */       \
static void dfn__bias_grad_##S(int rows, int cols, const float *dy, float *dbias)  \
{                                                                                  \
    int r, c = 0;                                                                  \
    for (; c + 4 * (W) <= cols; c += 4 * (W)) {                                    \
        V a0 = dfn__##S##_ld(dbias + c), a1 = dfn__##S##_ld(dbias + c + (W));       \
        V a2 = dfn__##S##_ld(dbias + c + 2 * (W)), a3 = dfn__##S##_ld(dbias + c + 3 * (W)); \
        for (r = 0; r < rows; r++) {                                               \
            const float *d = dy + (size_t)r * (size_t)cols + c;                    \
            a0 = dfn__##S##_add(a0, dfn__##S##_ld(d));                             \
            a1 = dfn__##S##_add(a1, dfn__##S##_ld(d + (W)));                       \
            a2 = dfn__##S##_add(a2, dfn__##S##_ld(d + 2 * (W)));                   \
            a3 = dfn__##S##_add(a3, dfn__##S##_ld(d + 3 * (W)));                   \
        }                                                                          \
        dfn__##S##_st(dbias + c, a0);                                              \
        dfn__##S##_st(dbias + c + (W), a1);                                        \
        dfn__##S##_st(dbias + c + 2 * (W), a2);                                    \
        dfn__##S##_st(dbias + c + 3 * (W), a3);                                    \
    }                                                                              \
    for (; c + (W) <= cols; c += (W)) {                                            \
        V a0 = dfn__##S##_ld(dbias + c);                                           \
        for (r = 0; r < rows; r++)                                                 \
            a0 = dfn__##S##_add(a0, dfn__##S##_ld(dy + (size_t)r * (size_t)cols + c)); \
        dfn__##S##_st(dbias + c, a0);                                              \
    }                                                                              \
    for (; c < cols; c++) {                                                        \
        float a0 = dbias[c];                                                       \
        for (r = 0; r < rows; r++) a0 += dy[(size_t)r * (size_t)cols + c];         \
        dbias[c] = a0;                                                             \
    }                                                                              \
}

/* Every elementwise kernel of variant S. */
#define DFN__ELEMENTWISE_KERNELS(S, V, W) \
    DFN__EW_EXP_LANES(S, V, W) DFN__EW_ACT_LANES(S, V, W) DFN__EW_ACT_ARRAYS(S, V, W) \
    DFN__EW_SINCOS_EXP(S, V, W) DFN__EW_VECTOR(S, V, W) DFN__EW_BIAS(S, V, W)

/* DFN__ADAM_KERNEL(S, V, W) defines dfn__adam_update_S: dfn_adam_update on W
   lanes with the primitives ld, st, set1, add, sub, mul, div and sqrt (each
   correctly rounded: IEEE, no FMA), in the order of dfn__adam_update_scalar,
   so every lane computes that loop's bits. The tail (n % W elements) runs
   the scalar loop itself. */
#define DFN__ADAM_KERNEL(S, V, W)                                                  \
static void dfn__adam_update_##S(size_t n, float *p, float *m, float *v,           \
                                 const float *g, float *ema, const dfn_adam_coefs *c) \
{                                                                                  \
    size_t i = 0;                                                                  \
    if (n >= (W)) {                                                                \
        V b1 = dfn__##S##_set1(c->beta1), ob1 = dfn__##S##_set1(1.0f - c->beta1);   \
        V b2 = dfn__##S##_set1(c->beta2), ob2 = dfn__##S##_set1(1.0f - c->beta2);   \
        V step = dfn__##S##_set1(c->step_size), vs = dfn__##S##_set1(c->v_scale);  \
        V eps = dfn__##S##_set1(c->eps), dec = dfn__##S##_set1(c->decay);          \
        V gs = dfn__##S##_set1(c->grad_scale);                                     \
        V d = dfn__##S##_set1(c->ema_decay), od = dfn__##S##_set1(1.0f - c->ema_decay); \
        for (; i + (W) <= n; i += (W)) {                                           \
            V gi = dfn__##S##_mul(dfn__##S##_ld(g + i), gs), pi = dfn__##S##_ld(p + i), mi, vi, u; \
            mi = dfn__##S##_add(dfn__##S##_mul(b1, dfn__##S##_ld(m + i)), dfn__##S##_mul(ob1, gi)); \
            vi = dfn__##S##_add(dfn__##S##_mul(b2, dfn__##S##_ld(v + i)),          \
                                dfn__##S##_mul(dfn__##S##_mul(ob2, gi), gi));      \
            u = dfn__##S##_div(dfn__##S##_mul(step, mi),                           \
                               dfn__##S##_add(dfn__##S##_sqrt(dfn__##S##_mul(vi, vs)), eps)); \
            pi = dfn__##S##_sub(pi, dfn__##S##_add(u, dfn__##S##_mul(dec, pi)));    \
            dfn__##S##_st(m + i, mi);                                              \
            dfn__##S##_st(v + i, vi);                                              \
            dfn__##S##_st(p + i, pi);                                              \
            if (ema)                                                               \
                dfn__##S##_st(ema + i, dfn__##S##_add(dfn__##S##_mul(d, dfn__##S##_ld(ema + i)), \
                                                      dfn__##S##_mul(od, pi)));    \
        }                                                                          \
    }                                                                              \
    if (i < n)                                                                     \
        dfn__adam_update_scalar(n - i, p + i, m + i, v + i, g + i, ema ? ema + i : NULL, c); \
}

/* ------------------------------------------------------------------------- */
/*  Scalar: portable C, one lane                                             */
/* ------------------------------------------------------------------------- */

static DFN__INLINE float dfn__scalar_ld(const float *p) { return *p; }
static DFN__INLINE void  dfn__scalar_st(float *p, float v) { *p = v; }
static DFN__INLINE float dfn__scalar_set1(float a) { return a; }
static DFN__INLINE float dfn__scalar_add(float a, float b) { return a + b; }
static DFN__INLINE float dfn__scalar_sub(float a, float b) { return a - b; }
static DFN__INLINE float dfn__scalar_mul(float a, float b) { return a * b; }
static DFN__INLINE float dfn__scalar_div(float a, float b) { return a / b; }
static DFN__INLINE float dfn__scalar_fma(float a, float b, float c) { return a * b + c; }
static DFN__INLINE float dfn__scalar_max(float a, float b) { return a > b ? a : b; }
static DFN__INLINE float dfn__scalar_min(float a, float b) { return a < b ? a : b; }
static DFN__INLINE float dfn__scalar_gtsel(float x, float y, float a, float b) { return x > y ? a : b; }
static DFN__INLINE float dfn__scalar_pow2i(float n)
{
    uint32_t u = (uint32_t)((int32_t)n + 127) << 23;
    float f;
    DFN_MEMCPY(&f, &u, sizeof f);
    return f;
}
static DFN__INLINE float dfn__scalar_round(float v)
{
    return dfn__scalar_sub(dfn__scalar_add(v, dfn__scalar_set1(DFN__ROUND_MAGIC)), dfn__scalar_set1(DFN__ROUND_MAGIC));
}
static DFN__INLINE float dfn__scalar_ldexp(float p, float n)
{
    return dfn__scalar_mul(p, dfn__scalar_pow2i(n));
}

DFN__ELEMENTWISE_KERNELS(scalar, float, 1)

/* The optimizer loop of dfn_train_step (the same expressions, the same
   bits), fused with the EMA. Every SIMD variant reproduces it lane by lane,
   so clang must not contract it into FMAs (gcc's ISO modes do not). */
static void dfn__adam_update_scalar(size_t n, float *p, float *m, float *v, const float *g,
                                    float *ema, const dfn_adam_coefs *c)
{
#if defined(__clang__)
#  pragma STDC FP_CONTRACT OFF
#endif
    float a1, a2, step, vscale, eps, decay, gs, d;
    size_t i;
    if (n == 0) return;
    a1 = c->beta1; a2 = c->beta2; step = c->step_size; vscale = c->v_scale;
    eps = c->eps; decay = c->decay; gs = c->grad_scale; d = c->ema_decay;
    for (i = 0; i < n; i++) {
        float gi = g[i] * gs;
        m[i] = a1 * m[i] + (1.0f - a1) * gi;
        v[i] = a2 * v[i] + (1.0f - a2) * gi * gi;
        p[i] -= step * m[i] / (DFN_SQRTF(v[i] * vscale) + eps) + decay * p[i];
        if (ema) ema[i] = d * ema[i] + (1.0f - d) * p[i];
    }
}

static void dfn__ukr_scalar(int kc, const float *a, const float *b, float *c,
                            size_t ldc, float alpha, float beta)
{
    float c00 = 0.0f, c01 = 0.0f, c02 = 0.0f, c03 = 0.0f;
    float c10 = 0.0f, c11 = 0.0f, c12 = 0.0f, c13 = 0.0f;
    float c20 = 0.0f, c21 = 0.0f, c22 = 0.0f, c23 = 0.0f;
    float c30 = 0.0f, c31 = 0.0f, c32 = 0.0f, c33 = 0.0f;
    int k;
    for (k = 0; k < kc; k++, a += 4, b += 4) {
        float a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
        float b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
        c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
        c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
        c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
        c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
    }
#define DFN__SCALAR_OUT(i, j, acc)                                             \
    do {                                                                       \
        float *p_ = c + (size_t)(i) * ldc + (j);                               \
        *p_ = beta == 0.0f ? alpha * (acc) : beta * *p_ + alpha * (acc);        \
    } while (0)
    DFN__SCALAR_OUT(0, 0, c00); DFN__SCALAR_OUT(0, 1, c01); DFN__SCALAR_OUT(0, 2, c02); DFN__SCALAR_OUT(0, 3, c03);
    DFN__SCALAR_OUT(1, 0, c10); DFN__SCALAR_OUT(1, 1, c11); DFN__SCALAR_OUT(1, 2, c12); DFN__SCALAR_OUT(1, 3, c13);
    DFN__SCALAR_OUT(2, 0, c20); DFN__SCALAR_OUT(2, 1, c21); DFN__SCALAR_OUT(2, 2, c22); DFN__SCALAR_OUT(2, 3, c23);
    DFN__SCALAR_OUT(3, 0, c30); DFN__SCALAR_OUT(3, 1, c31); DFN__SCALAR_OUT(3, 2, c32); DFN__SCALAR_OUT(3, 3, c33);
#undef DFN__SCALAR_OUT
}

static void dfn__gemm_scalar(int trans_a, int trans_b, int M, int N, int K, float alpha,
                             const float *A, int lda, const float *B, int ldb, float beta,
                             float *C, int ldc, float *work)
{
    dfn__gemm_blocked(DFN__MR_scalar, DFN__NR_scalar, dfn__ukr_scalar, NULL, dfn__tr4_scalar,
                      trans_a, trans_b,
                      M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, work);
}

#if defined(DFN__HAVE_SSE2) || defined(DFN__HAVE_AVX2) || defined(DFN__HAVE_AVX512)
/* The 4 x 4 transpose of the GEMM packing, shared by the x86 variants. */
static DFN__INLINE void dfn__tr4_x86(const float *src, size_t lds, float *dst, size_t ldd)
{
    __m128 r0 = _mm_loadu_ps(src), r1 = _mm_loadu_ps(src + lds);
    __m128 r2 = _mm_loadu_ps(src + 2 * lds), r3 = _mm_loadu_ps(src + 3 * lds);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    _mm_storeu_ps(dst, r0);
    _mm_storeu_ps(dst + ldd, r1);
    _mm_storeu_ps(dst + 2 * ldd, r2);
    _mm_storeu_ps(dst + 3 * ldd, r3);
}
#endif

/* ------------------------------------------------------------------------- */
/*  SSE2: 4 lanes, no FMA                                                    */
/* ------------------------------------------------------------------------- */
#if defined(DFN__HAVE_SSE2)

static DFN__INLINE __m128 dfn__sse2_ld(const float *p) { return _mm_loadu_ps(p); }
static DFN__INLINE void   dfn__sse2_st(float *p, __m128 v) { _mm_storeu_ps(p, v); }
static DFN__INLINE __m128 dfn__sse2_set1(float a) { return _mm_set1_ps(a); }
static DFN__INLINE __m128 dfn__sse2_add(__m128 a, __m128 b) { return _mm_add_ps(a, b); }
static DFN__INLINE __m128 dfn__sse2_sub(__m128 a, __m128 b) { return _mm_sub_ps(a, b); }
static DFN__INLINE __m128 dfn__sse2_mul(__m128 a, __m128 b) { return _mm_mul_ps(a, b); }
static DFN__INLINE __m128 dfn__sse2_div(__m128 a, __m128 b) { return _mm_div_ps(a, b); }
static DFN__INLINE __m128 dfn__sse2_fma(__m128 a, __m128 b, __m128 c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
static DFN__INLINE __m128 dfn__sse2_max(__m128 a, __m128 b) { return _mm_max_ps(a, b); }
static DFN__INLINE __m128 dfn__sse2_min(__m128 a, __m128 b) { return _mm_min_ps(a, b); }
static DFN__INLINE __m128 dfn__sse2_gtsel(__m128 x, __m128 y, __m128 a, __m128 b)
{
    __m128 m = _mm_cmpgt_ps(x, y);
    return _mm_or_ps(_mm_and_ps(m, a), _mm_andnot_ps(m, b));
}
static DFN__INLINE __m128 dfn__sse2_pow2i(__m128 n)
{
    __m128i e = _mm_add_epi32(_mm_cvttps_epi32(n), _mm_set1_epi32(127));
    return _mm_castsi128_ps(_mm_slli_epi32(e, 23));
}
static DFN__INLINE __m128 dfn__sse2_round(__m128 v)
{
    return dfn__sse2_sub(dfn__sse2_add(v, dfn__sse2_set1(DFN__ROUND_MAGIC)), dfn__sse2_set1(DFN__ROUND_MAGIC));
}
static DFN__INLINE __m128 dfn__sse2_ldexp(__m128 p, __m128 n)
{
    return dfn__sse2_mul(p, dfn__sse2_pow2i(n));
}

static DFN__INLINE __m128 dfn__sse2_sqrt(__m128 a) { return _mm_sqrt_ps(a); }

DFN__ELEMENTWISE_KERNELS(sse2, __m128, 4)
DFN__ADAM_KERNEL(sse2, __m128, 4)

/* 4 x 8 tile: 8 accumulators, B row in two registers, A broadcast. */
static void dfn__ukr_sse2(int kc, const float *a, const float *b, float *c,
                          size_t ldc, float alpha, float beta)
{
    __m128 c0a = _mm_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a;
    __m128 c2a = c0a, c2b = c0a, c3a = c0a, c3b = c0a;
    __m128 va = _mm_set1_ps(alpha), vb = _mm_set1_ps(beta);
    int k;
    for (k = 0; k < kc; k++, a += 4, b += 8) {
        __m128 b0 = _mm_loadu_ps(b), b1 = _mm_loadu_ps(b + 4), ai;
        ai = _mm_set1_ps(a[0]); c0a = _mm_add_ps(c0a, _mm_mul_ps(ai, b0)); c0b = _mm_add_ps(c0b, _mm_mul_ps(ai, b1));
        ai = _mm_set1_ps(a[1]); c1a = _mm_add_ps(c1a, _mm_mul_ps(ai, b0)); c1b = _mm_add_ps(c1b, _mm_mul_ps(ai, b1));
        ai = _mm_set1_ps(a[2]); c2a = _mm_add_ps(c2a, _mm_mul_ps(ai, b0)); c2b = _mm_add_ps(c2b, _mm_mul_ps(ai, b1));
        ai = _mm_set1_ps(a[3]); c3a = _mm_add_ps(c3a, _mm_mul_ps(ai, b0)); c3b = _mm_add_ps(c3b, _mm_mul_ps(ai, b1));
    }
#define DFN__SSE2_OUT(i, ca, cb)                                               \
    do {                                                                       \
        float *p_ = c + (size_t)(i) * ldc;                                     \
        __m128 ta_ = _mm_mul_ps(ca, va), tb_ = _mm_mul_ps(cb, va);             \
        if (beta != 0.0f) {                                                    \
            ta_ = _mm_add_ps(_mm_mul_ps(vb, _mm_loadu_ps(p_)), ta_);           \
            tb_ = _mm_add_ps(_mm_mul_ps(vb, _mm_loadu_ps(p_ + 4)), tb_);       \
        }                                                                      \
        _mm_storeu_ps(p_, ta_); _mm_storeu_ps(p_ + 4, tb_);                    \
    } while (0)
    DFN__SSE2_OUT(0, c0a, c0b); DFN__SSE2_OUT(1, c1a, c1b);
    DFN__SSE2_OUT(2, c2a, c2b); DFN__SSE2_OUT(3, c3a, c3b);
#undef DFN__SSE2_OUT
}

static void dfn__gemm_sse2(int trans_a, int trans_b, int M, int N, int K, float alpha,
                           const float *A, int lda, const float *B, int ldb, float beta,
                           float *C, int ldc, float *work)
{
    dfn__gemm_blocked(DFN__MR_sse2, DFN__NR_sse2, dfn__ukr_sse2, NULL, dfn__tr4_x86,
                      trans_a, trans_b,
                      M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, work);
}

#endif /* DFN__HAVE_SSE2 */

/* ------------------------------------------------------------------------- */
/*  AVX2 + FMA: 8 lanes                                                      */
/* ------------------------------------------------------------------------- */
#if defined(DFN__HAVE_AVX2)

static DFN__INLINE __m256 dfn__avx2_ld(const float *p) { return _mm256_loadu_ps(p); }
static DFN__INLINE void   dfn__avx2_st(float *p, __m256 v) { _mm256_storeu_ps(p, v); }
static DFN__INLINE __m256 dfn__avx2_set1(float a) { return _mm256_set1_ps(a); }
static DFN__INLINE __m256 dfn__avx2_add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
static DFN__INLINE __m256 dfn__avx2_sub(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }
static DFN__INLINE __m256 dfn__avx2_mul(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
static DFN__INLINE __m256 dfn__avx2_div(__m256 a, __m256 b) { return _mm256_div_ps(a, b); }
static DFN__INLINE __m256 dfn__avx2_fma(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
static DFN__INLINE __m256 dfn__avx2_max(__m256 a, __m256 b) { return _mm256_max_ps(a, b); }
static DFN__INLINE __m256 dfn__avx2_min(__m256 a, __m256 b) { return _mm256_min_ps(a, b); }
static DFN__INLINE __m256 dfn__avx2_gtsel(__m256 x, __m256 y, __m256 a, __m256 b)
{
    return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, y, _CMP_GT_OQ));
}
static DFN__INLINE __m256 dfn__avx2_pow2i(__m256 n)
{
    __m256i e = _mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
static DFN__INLINE __m256 dfn__avx2_round(__m256 v)
{
    return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static DFN__INLINE __m256 dfn__avx2_ldexp(__m256 p, __m256 n)
{
    return dfn__avx2_mul(p, dfn__avx2_pow2i(n));
}

static DFN__INLINE __m256 dfn__avx2_sqrt(__m256 a) { return _mm256_sqrt_ps(a); }

DFN__ELEMENTWISE_KERNELS(avx2, __m256, 8)
DFN__ADAM_KERNEL(avx2, __m256, 8)

/* 6 x 16 tile: 12 accumulators + 2 B registers + 1 broadcast = 15 of 16 ymm. */
static void dfn__ukr_avx2(int kc, const float *a, const float *b, float *c,
                          size_t ldc, float alpha, float beta)
{
    __m256 c0a = _mm256_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a;
    __m256 c3a = c0a, c3b = c0a, c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a;
    __m256 va, vb;
    int k;
    for (k = 0; k < kc; k++, a += 6, b += 16) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), ai;
#define DFN__AVX2_ROW(i)                                                       \
        ai = _mm256_broadcast_ss(a + i);                                       \
        c##i##a = _mm256_fmadd_ps(ai, b0, c##i##a);                            \
        c##i##b = _mm256_fmadd_ps(ai, b1, c##i##b);
        DFN__AVX2_ROW(0) DFN__AVX2_ROW(1) DFN__AVX2_ROW(2)
        DFN__AVX2_ROW(3) DFN__AVX2_ROW(4) DFN__AVX2_ROW(5)
#undef DFN__AVX2_ROW
    }
    va = _mm256_set1_ps(alpha);
    vb = _mm256_set1_ps(beta);
#define DFN__AVX2_OUT(i)                                                       \
    do {                                                                       \
        float *p_ = c + (size_t)(i) * ldc;                                     \
        __m256 ta_ = _mm256_mul_ps(c##i##a, va), tb_ = _mm256_mul_ps(c##i##b, va); \
        if (beta != 0.0f) {                                                    \
            ta_ = _mm256_fmadd_ps(vb, _mm256_loadu_ps(p_), ta_);               \
            tb_ = _mm256_fmadd_ps(vb, _mm256_loadu_ps(p_ + 8), tb_);           \
        }                                                                      \
        _mm256_storeu_ps(p_, ta_); _mm256_storeu_ps(p_ + 8, tb_);              \
    } while (0)
    DFN__AVX2_OUT(0); DFN__AVX2_OUT(1); DFN__AVX2_OUT(2);
    DFN__AVX2_OUT(3); DFN__AVX2_OUT(4); DFN__AVX2_OUT(5);
#undef DFN__AVX2_OUT
}

static void dfn__gemm_avx2(int trans_a, int trans_b, int M, int N, int K, float alpha,
                           const float *A, int lda, const float *B, int ldb, float beta,
                           float *C, int ldc, float *work)
{
    dfn__gemm_blocked(DFN__MR_avx2, DFN__NR_avx2, dfn__ukr_avx2, NULL, dfn__tr4_x86,
                      trans_a, trans_b,
                      M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, work);
}

#endif /* DFN__HAVE_AVX2 */

/* ------------------------------------------------------------------------- */
/*  AVX-512F: 16 lanes (only AVX512F instructions)                           */
/* ------------------------------------------------------------------------- */
#if defined(DFN__HAVE_AVX512)

static DFN__INLINE __m512 dfn__avx512_ld(const float *p) { return _mm512_loadu_ps(p); }
static DFN__INLINE void   dfn__avx512_st(float *p, __m512 v) { _mm512_storeu_ps(p, v); }
static DFN__INLINE __m512 dfn__avx512_set1(float a) { return _mm512_set1_ps(a); }
static DFN__INLINE __m512 dfn__avx512_add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
static DFN__INLINE __m512 dfn__avx512_sub(__m512 a, __m512 b) { return _mm512_sub_ps(a, b); }
static DFN__INLINE __m512 dfn__avx512_mul(__m512 a, __m512 b) { return _mm512_mul_ps(a, b); }
static DFN__INLINE __m512 dfn__avx512_div(__m512 a, __m512 b) { return _mm512_div_ps(a, b); }
static DFN__INLINE __m512 dfn__avx512_fma(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
/* The zero-masked forms with a full mask: GCC 12's unmasked _mm512_max_ps,
   _min_ps, _cvttps_epi32 and _slli_epi32 trip -Wmaybe-uninitialized in C++
   (GCC bug 105593, in _mm512_undefined_ps). Same instructions. */
#define DFN__M16 ((__mmask16)0xffff)
static DFN__INLINE __m512 dfn__avx512_max(__m512 a, __m512 b) { return _mm512_maskz_max_ps(DFN__M16, a, b); }
static DFN__INLINE __m512 dfn__avx512_min(__m512 a, __m512 b) { return _mm512_maskz_min_ps(DFN__M16, a, b); }
static DFN__INLINE __m512 dfn__avx512_gtsel(__m512 x, __m512 y, __m512 a, __m512 b)
{
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, y, _CMP_GT_OQ), b, a);
}
static DFN__INLINE __m512 dfn__avx512_round(__m512 v)
{
    return _mm512_maskz_roundscale_ps(DFN__M16, v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static DFN__INLINE __m512 dfn__avx512_ldexp(__m512 p, __m512 n)
{
    return _mm512_maskz_scalef_ps(DFN__M16, p, n);
}

static DFN__INLINE __m512 dfn__avx512_sqrt(__m512 a) { return _mm512_maskz_sqrt_ps(DFN__M16, a); }

DFN__ELEMENTWISE_KERNELS(avx512, __m512, 16)
DFN__ADAM_KERNEL(avx512, __m512, 16)

/* 12 x 32 tile: 24 accumulators + 2 B registers + 1 broadcast of 32 zmm.
   Element (r, k) of the A sliver is a[r rs + k ks]: packed (rs 1, ks 12) or
   a row-major A read in place (rs lda, ks 1); inlined with either pair, the
   same arithmetic. */
static DFN__FORCE_INLINE void dfn__ukr_avx512_strided(int kc, const float *a, size_t rs, size_t ks,
                                                      const float *b, float *c, size_t ldc,
                                                      float alpha, float beta)
{
    __m512 c0a = _mm512_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a;
    __m512 c3a = c0a, c3b = c0a, c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a;
    __m512 c6a = c0a, c6b = c0a, c7a = c0a, c7b = c0a, c8a = c0a, c8b = c0a;
    __m512 c9a = c0a, c9b = c0a, c10a = c0a, c10b = c0a, c11a = c0a, c11b = c0a;
    __m512 va, vb;
    const float *a4 = a + 4 * rs, *a8 = a + 8 * rs;
    int k;
    for (k = 0; k < kc; k++, a += ks, a4 += ks, a8 += ks, b += 32) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), ai;
#define DFN__AVX512_ROW(i, base, r)                                            \
        ai = _mm512_set1_ps(base[(r) * rs]);                                   \
        c##i##a = _mm512_fmadd_ps(ai, b0, c##i##a);                            \
        c##i##b = _mm512_fmadd_ps(ai, b1, c##i##b);
        DFN__AVX512_ROW(0, a, 0) DFN__AVX512_ROW(1, a, 1) DFN__AVX512_ROW(2, a, 2) DFN__AVX512_ROW(3, a, 3)
        DFN__AVX512_ROW(4, a4, 0) DFN__AVX512_ROW(5, a4, 1) DFN__AVX512_ROW(6, a4, 2) DFN__AVX512_ROW(7, a4, 3)
        DFN__AVX512_ROW(8, a8, 0) DFN__AVX512_ROW(9, a8, 1) DFN__AVX512_ROW(10, a8, 2) DFN__AVX512_ROW(11, a8, 3)
#undef DFN__AVX512_ROW
    }
    va = _mm512_set1_ps(alpha);
    vb = _mm512_set1_ps(beta);
#define DFN__AVX512_OUT(i)                                                     \
    do {                                                                       \
        float *p_ = c + (size_t)(i) * ldc;                                     \
        __m512 ta_ = _mm512_mul_ps(c##i##a, va), tb_ = _mm512_mul_ps(c##i##b, va); \
        if (beta != 0.0f) {                                                    \
            ta_ = _mm512_fmadd_ps(vb, _mm512_loadu_ps(p_), ta_);               \
            tb_ = _mm512_fmadd_ps(vb, _mm512_loadu_ps(p_ + 16), tb_);          \
        }                                                                      \
        _mm512_storeu_ps(p_, ta_); _mm512_storeu_ps(p_ + 16, tb_);             \
    } while (0)
    DFN__AVX512_OUT(0); DFN__AVX512_OUT(1); DFN__AVX512_OUT(2); DFN__AVX512_OUT(3);
    DFN__AVX512_OUT(4); DFN__AVX512_OUT(5); DFN__AVX512_OUT(6); DFN__AVX512_OUT(7);
    DFN__AVX512_OUT(8); DFN__AVX512_OUT(9); DFN__AVX512_OUT(10); DFN__AVX512_OUT(11);
#undef DFN__AVX512_OUT
}

/* The packed sliver: a[k 12 + r]. */
static void dfn__ukr_avx512(int kc, const float *a, const float *b, float *c,
                            size_t ldc, float alpha, float beta)
{
    dfn__ukr_avx512_strided(kc, a, 1, 12, b, c, ldc, alpha, beta);
}

/* 24 x 16 tile for narrow products (N <= 16), where the 12 x 32 tile would
   compute half zeros: 24 accumulators + 1 B register + 1 broadcast. Each
   element of C gets the same arithmetic as in the wide tile (the same FMA
   chain over k, then alpha and beta), so the two give the same bits. */
static DFN__FORCE_INLINE void dfn__ukr_avx512n_strided(int kc, const float *a, size_t rs, size_t ks,
                                                       const float *b, float *c, size_t ldc,
                                                       float alpha, float beta)
{
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    __m512 c8 = c0, c9 = c0, c10 = c0, c11 = c0, c12 = c0, c13 = c0, c14 = c0, c15 = c0;
    __m512 c16 = c0, c17 = c0, c18 = c0, c19 = c0, c20 = c0, c21 = c0, c22 = c0, c23 = c0;
    __m512 va, vb;
    const float *a4 = a + 4 * rs, *a8 = a + 8 * rs, *a12 = a + 12 * rs, *a16 = a + 16 * rs, *a20 = a + 20 * rs;
    int k;
    for (k = 0; k < kc; k++, a += ks, a4 += ks, a8 += ks, a12 += ks, a16 += ks, a20 += ks, b += 16) {
        __m512 b0 = _mm512_loadu_ps(b);
#define DFN__AVX512N_ROW(i, base, r) c##i = _mm512_fmadd_ps(_mm512_set1_ps(base[(r) * rs]), b0, c##i);
        DFN__AVX512N_ROW(0, a, 0) DFN__AVX512N_ROW(1, a, 1) DFN__AVX512N_ROW(2, a, 2) DFN__AVX512N_ROW(3, a, 3)
        DFN__AVX512N_ROW(4, a4, 0) DFN__AVX512N_ROW(5, a4, 1) DFN__AVX512N_ROW(6, a4, 2) DFN__AVX512N_ROW(7, a4, 3)
        DFN__AVX512N_ROW(8, a8, 0) DFN__AVX512N_ROW(9, a8, 1) DFN__AVX512N_ROW(10, a8, 2) DFN__AVX512N_ROW(11, a8, 3)
        DFN__AVX512N_ROW(12, a12, 0) DFN__AVX512N_ROW(13, a12, 1) DFN__AVX512N_ROW(14, a12, 2)
        DFN__AVX512N_ROW(15, a12, 3) DFN__AVX512N_ROW(16, a16, 0) DFN__AVX512N_ROW(17, a16, 1)
        DFN__AVX512N_ROW(18, a16, 2) DFN__AVX512N_ROW(19, a16, 3) DFN__AVX512N_ROW(20, a20, 0)
        DFN__AVX512N_ROW(21, a20, 1) DFN__AVX512N_ROW(22, a20, 2) DFN__AVX512N_ROW(23, a20, 3)
#undef DFN__AVX512N_ROW
    }
    va = _mm512_set1_ps(alpha);
    vb = _mm512_set1_ps(beta);
#define DFN__AVX512N_OUT(i)                                                    \
    do {                                                                       \
        float *p_ = c + (size_t)(i) * ldc;                                     \
        __m512 t_ = _mm512_mul_ps(c##i, va);                                   \
        if (beta != 0.0f) t_ = _mm512_fmadd_ps(vb, _mm512_loadu_ps(p_), t_);   \
        _mm512_storeu_ps(p_, t_);                                              \
    } while (0)
    DFN__AVX512N_OUT(0); DFN__AVX512N_OUT(1); DFN__AVX512N_OUT(2); DFN__AVX512N_OUT(3);
    DFN__AVX512N_OUT(4); DFN__AVX512N_OUT(5); DFN__AVX512N_OUT(6); DFN__AVX512N_OUT(7);
    DFN__AVX512N_OUT(8); DFN__AVX512N_OUT(9); DFN__AVX512N_OUT(10); DFN__AVX512N_OUT(11);
    DFN__AVX512N_OUT(12); DFN__AVX512N_OUT(13); DFN__AVX512N_OUT(14); DFN__AVX512N_OUT(15);
    DFN__AVX512N_OUT(16); DFN__AVX512N_OUT(17); DFN__AVX512N_OUT(18); DFN__AVX512N_OUT(19);
    DFN__AVX512N_OUT(20); DFN__AVX512N_OUT(21); DFN__AVX512N_OUT(22); DFN__AVX512N_OUT(23);
#undef DFN__AVX512N_OUT
}

/* The packed sliver: a[k 24 + r]. */
static void dfn__ukr_avx512n(int kc, const float *a, const float *b, float *c,
                             size_t ldc, float alpha, float beta)
{
    dfn__ukr_avx512n_strided(kc, a, 1, 24, b, c, ldc, alpha, beta);
}

/* A read in place (dfn__ukr_a_fn). */
static void dfn__ukr_avx512n_a(int kc, const float *a, size_t rs, size_t ks, const float *b, float *c,
                               size_t ldc, float alpha, float beta)
{
    dfn__ukr_avx512n_strided(kc, a, rs, ks, b, c, ldc, alpha, beta);
}

/* A read in place (dfn__ukr_a_fn): products skip packing their A. */
static void dfn__ukr_avx512_a(int kc, const float *a, size_t rs, size_t ks, const float *b, float *c,
                              size_t ldc, float alpha, float beta)
{
    dfn__ukr_avx512_strided(kc, a, rs, ks, b, c, ldc, alpha, beta);
}

/* The 16 lanes' sum, halves added (16 -> 8 -> 4 -> 2 -> 1): the same tree as
   dfn__avx512_hsum, in registers. */
static DFN__INLINE float dfn__avx512_sum16(__m512 v)
{
    __m512d d = _mm512_castps_pd(v);
    __m256 h8 = _mm256_add_ps(_mm256_castpd_ps(_mm512_maskz_extractf64x4_pd((__mmask8)0xff, d, 0)),
                              _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd((__mmask8)0xff, d, 1)));
    __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
    __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
    return _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
}

/* C = alpha A B^T + beta C for N <= 4 (an output layer of 2 or 3 values per
   row): per row, N dot products of length K, 32 lanes at a time, each
   reduced by a fixed tree. A 16-column tile would leave 12 to 14 of its
   columns unused. */
static void dfn__gemm_avx512_dots(int M, int N, int K, float alpha, const float *A, int lda,
                                  const float *B, int ldb, float beta, float *C, int ldc)
{
    int i, j, k;
    __mmask16 tail = (__mmask16)((1u << (K % 16)) - 1u);
    for (i = 0; i < M; i++) {
        const float *a = A + (size_t)i * lda;
        float *c = C + (size_t)i * ldc;
        __m512 s0[4], s1[4];
        for (j = 0; j < N; j++) s0[j] = s1[j] = _mm512_setzero_ps();
        for (k = 0; k + 32 <= K; k += 32) {
            __m512 a0 = _mm512_loadu_ps(a + k), a1 = _mm512_loadu_ps(a + k + 16);
            for (j = 0; j < N; j++) {
                const float *b = B + (size_t)j * ldb + k;
                s0[j] = _mm512_fmadd_ps(a0, _mm512_loadu_ps(b), s0[j]);
                s1[j] = _mm512_fmadd_ps(a1, _mm512_loadu_ps(b + 16), s1[j]);
            }
        }
        if (k + 16 <= K) {
            __m512 a0 = _mm512_loadu_ps(a + k);
            for (j = 0; j < N; j++) s0[j] = _mm512_fmadd_ps(a0, _mm512_loadu_ps(B + (size_t)j * ldb + k), s0[j]);
            k += 16;
        }
        if (k < K) {
            __m512 a1 = _mm512_maskz_loadu_ps(tail, a + k);
            for (j = 0; j < N; j++)
                s1[j] = _mm512_fmadd_ps(a1, _mm512_maskz_loadu_ps(tail, B + (size_t)j * ldb + k), s1[j]);
        }
        for (j = 0; j < N; j++) {
            float d = alpha * dfn__avx512_sum16(_mm512_add_ps(s0[j], s1[j]));
            c[j] = beta == 0.0f ? d : d + beta * c[j];
        }
    }
}

static void dfn__gemm_avx512(int trans_a, int trans_b, int M, int N, int K, float alpha,
                             const float *A, int lda, const float *B, int ldb, float beta,
                             float *C, int ldc, float *work)
{
    if (N <= 4 && !trans_a && trans_b && K >= 16 && M > 0 && N > 0 && alpha != 0.0f)
        dfn__gemm_avx512_dots(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else if (N <= DFN__NR_avx512n)
        dfn__gemm_blocked(DFN__MR_avx512n, DFN__NR_avx512n, dfn__ukr_avx512n, dfn__ukr_avx512n_a, dfn__tr4_x86,
                          trans_a, trans_b,
                          M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, work);
    else
        dfn__gemm_blocked(DFN__MR_avx512, DFN__NR_avx512, dfn__ukr_avx512, dfn__ukr_avx512_a, dfn__tr4_x86,
                          trans_a, trans_b,
                          M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, work);
}

#endif /* DFN__HAVE_AVX512 */

/* ------------------------------------------------------------------------- */
/*  NEON: 4 lanes (AArch64, or ARMv7 with -mfpu=neon)                        */
/* ------------------------------------------------------------------------- */
#if defined(DFN__HAVE_NEON)

static DFN__INLINE float32x4_t dfn__neon_ld(const float *p) { return vld1q_f32(p); }
static DFN__INLINE void dfn__neon_st(float *p, float32x4_t v) { vst1q_f32(p, v); }
static DFN__INLINE float32x4_t dfn__neon_set1(float a) { return vdupq_n_f32(a); }
static DFN__INLINE float32x4_t dfn__neon_add(float32x4_t a, float32x4_t b) { return vaddq_f32(a, b); }
static DFN__INLINE float32x4_t dfn__neon_sub(float32x4_t a, float32x4_t b) { return vsubq_f32(a, b); }
static DFN__INLINE float32x4_t dfn__neon_mul(float32x4_t a, float32x4_t b) { return vmulq_f32(a, b); }
static DFN__INLINE float32x4_t dfn__neon_div(float32x4_t a, float32x4_t b)
{
#if defined(__aarch64__) || defined(_M_ARM64)
    return vdivq_f32(a, b);
#else   /* ARMv7 has no vector divide: reciprocal estimate + 2 Newton steps */
    float32x4_t r = vrecpeq_f32(b);
    r = vmulq_f32(vrecpsq_f32(b, r), r);
    r = vmulq_f32(vrecpsq_f32(b, r), r);
    return vmulq_f32(a, r);
#endif
}
static DFN__INLINE float32x4_t dfn__neon_fma(float32x4_t a, float32x4_t b, float32x4_t c)
{
#if defined(__aarch64__) || defined(_M_ARM64) || defined(__ARM_FEATURE_FMA)
    return vfmaq_f32(c, a, b);
#else
    return vmlaq_f32(c, a, b);
#endif
}
static DFN__INLINE float32x4_t dfn__neon_max(float32x4_t a, float32x4_t b) { return vmaxq_f32(a, b); }
static DFN__INLINE float32x4_t dfn__neon_min(float32x4_t a, float32x4_t b) { return vminq_f32(a, b); }
static DFN__INLINE float32x4_t dfn__neon_gtsel(float32x4_t x, float32x4_t y, float32x4_t a, float32x4_t b)
{
    return vbslq_f32(vcgtq_f32(x, y), a, b);
}
static DFN__INLINE float32x4_t dfn__neon_pow2i(float32x4_t n)
{
    int32x4_t e = vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127));
    return vreinterpretq_f32_s32(vshlq_n_s32(e, 23));
}
static DFN__INLINE float32x4_t dfn__neon_round(float32x4_t v)
{
    return dfn__neon_sub(dfn__neon_add(v, dfn__neon_set1(DFN__ROUND_MAGIC)), dfn__neon_set1(DFN__ROUND_MAGIC));
}
static DFN__INLINE float32x4_t dfn__neon_ldexp(float32x4_t p, float32x4_t n)
{
    return dfn__neon_mul(p, dfn__neon_pow2i(n));
}

DFN__ELEMENTWISE_KERNELS(neon, float32x4_t, 4)

#if defined(__aarch64__) || defined(_M_ARM64)
static DFN__INLINE float32x4_t dfn__neon_sqrt(float32x4_t a) { return vsqrtq_f32(a); }
DFN__ADAM_KERNEL(neon, float32x4_t, 4)
#else
/* ARMv7 NEON has no vector square root and no vector divide, only
   estimates (vrsqrteq, vrecpeq) that do not round correctly, and it flushes
   denormals to zero: Adam runs the scalar loop (VFP, IEEE) to keep the
   scalar bits. */
static void dfn__adam_update_neon(size_t n, float *p, float *m, float *v, const float *g,
                                  float *ema, const dfn_adam_coefs *c)
{
    dfn__adam_update_scalar(n, p, m, v, g, ema, c);
}
#endif

static DFN__INLINE void dfn__tr4_neon(const float *src, size_t lds, float *dst, size_t ldd)
{
    float32x4x2_t t01 = vtrnq_f32(vld1q_f32(src), vld1q_f32(src + lds));
    float32x4x2_t t23 = vtrnq_f32(vld1q_f32(src + 2 * lds), vld1q_f32(src + 3 * lds));
    vst1q_f32(dst, vcombine_f32(vget_low_f32(t01.val[0]), vget_low_f32(t23.val[0])));
    vst1q_f32(dst + ldd, vcombine_f32(vget_low_f32(t01.val[1]), vget_low_f32(t23.val[1])));
    vst1q_f32(dst + 2 * ldd, vcombine_f32(vget_high_f32(t01.val[0]), vget_high_f32(t23.val[0])));
    vst1q_f32(dst + 3 * ldd, vcombine_f32(vget_high_f32(t01.val[1]), vget_high_f32(t23.val[1])));
}

#if DFN__MR_neon == 8
/* AArch64, 8 x 8 tile: 16 accumulators; A as two registers used by lane. */
static void dfn__ukr_neon(int kc, const float *a, const float *b, float *c,
                          size_t ldc, float alpha, float beta)
{
    float32x4_t z = vdupq_n_f32(0.0f);
    float32x4_t c0a = z, c0b = z, c1a = z, c1b = z, c2a = z, c2b = z, c3a = z, c3b = z;
    float32x4_t c4a = z, c4b = z, c5a = z, c5b = z, c6a = z, c6b = z, c7a = z, c7b = z;
    float32x4_t va, vb;
    int k;
    for (k = 0; k < kc; k++, a += 8, b += 8) {
        float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4);
        float32x4_t a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
        c0a = vfmaq_laneq_f32(c0a, b0, a0, 0); c0b = vfmaq_laneq_f32(c0b, b1, a0, 0);
        c1a = vfmaq_laneq_f32(c1a, b0, a0, 1); c1b = vfmaq_laneq_f32(c1b, b1, a0, 1);
        c2a = vfmaq_laneq_f32(c2a, b0, a0, 2); c2b = vfmaq_laneq_f32(c2b, b1, a0, 2);
        c3a = vfmaq_laneq_f32(c3a, b0, a0, 3); c3b = vfmaq_laneq_f32(c3b, b1, a0, 3);
        c4a = vfmaq_laneq_f32(c4a, b0, a1, 0); c4b = vfmaq_laneq_f32(c4b, b1, a1, 0);
        c5a = vfmaq_laneq_f32(c5a, b0, a1, 1); c5b = vfmaq_laneq_f32(c5b, b1, a1, 1);
        c6a = vfmaq_laneq_f32(c6a, b0, a1, 2); c6b = vfmaq_laneq_f32(c6b, b1, a1, 2);
        c7a = vfmaq_laneq_f32(c7a, b0, a1, 3); c7b = vfmaq_laneq_f32(c7b, b1, a1, 3);
    }
#else
/* ARMv7, 4 x 8 tile: 8 accumulators, A broadcast. */
static void dfn__ukr_neon(int kc, const float *a, const float *b, float *c,
                          size_t ldc, float alpha, float beta)
{
    float32x4_t z = vdupq_n_f32(0.0f);
    float32x4_t c0a = z, c0b = z, c1a = z, c1b = z, c2a = z, c2b = z, c3a = z, c3b = z;
    float32x4_t va, vb;
    int k;
    for (k = 0; k < kc; k++, a += 4, b += 8) {
        float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), ai;
        ai = vdupq_n_f32(a[0]); c0a = dfn__neon_fma(ai, b0, c0a); c0b = dfn__neon_fma(ai, b1, c0b);
        ai = vdupq_n_f32(a[1]); c1a = dfn__neon_fma(ai, b0, c1a); c1b = dfn__neon_fma(ai, b1, c1b);
        ai = vdupq_n_f32(a[2]); c2a = dfn__neon_fma(ai, b0, c2a); c2b = dfn__neon_fma(ai, b1, c2b);
        ai = vdupq_n_f32(a[3]); c3a = dfn__neon_fma(ai, b0, c3a); c3b = dfn__neon_fma(ai, b1, c3b);
    }
#endif
    va = vdupq_n_f32(alpha);
    vb = vdupq_n_f32(beta);
#define DFN__NEON_OUT(i)                                                       \
    do {                                                                       \
        float *p_ = c + (size_t)(i) * ldc;                                     \
        float32x4_t ta_ = vmulq_f32(c##i##a, va), tb_ = vmulq_f32(c##i##b, va); \
        if (beta != 0.0f) {                                                    \
            ta_ = dfn__neon_fma(vb, vld1q_f32(p_), ta_);                       \
            tb_ = dfn__neon_fma(vb, vld1q_f32(p_ + 4), tb_);                   \
        }                                                                      \
        vst1q_f32(p_, ta_); vst1q_f32(p_ + 4, tb_);                            \
    } while (0)
    DFN__NEON_OUT(0); DFN__NEON_OUT(1); DFN__NEON_OUT(2); DFN__NEON_OUT(3);
#if DFN__MR_neon == 8
    DFN__NEON_OUT(4); DFN__NEON_OUT(5); DFN__NEON_OUT(6); DFN__NEON_OUT(7);
#endif
#undef DFN__NEON_OUT
}

static void dfn__gemm_neon(int trans_a, int trans_b, int M, int N, int K, float alpha,
                           const float *A, int lda, const float *B, int ldb, float beta,
                           float *C, int ldc, float *work)
{
    dfn__gemm_blocked(DFN__MR_neon, DFN__NR_neon, dfn__ukr_neon, NULL, dfn__tr4_neon,
                      trans_a, trans_b,
                      M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, work);
}

#endif /* DFN__HAVE_NEON */

/* ------------------------------------------------------------------------- */
/*  Helium (MVE): 4 lanes with FMA (Cortex-M55 / M85)                        */
/* ------------------------------------------------------------------------- */
#if defined(DFN__HAVE_HELIUM)

static DFN__INLINE float32x4_t dfn__helium_ld(const float *p) { return vld1q_f32(p); }
static DFN__INLINE void dfn__helium_st(float *p, float32x4_t v) { vst1q_f32(p, v); }
static DFN__INLINE float32x4_t dfn__helium_set1(float a) { return vdupq_n_f32(a); }
static DFN__INLINE float32x4_t dfn__helium_add(float32x4_t a, float32x4_t b) { return vaddq_f32(a, b); }
static DFN__INLINE float32x4_t dfn__helium_sub(float32x4_t a, float32x4_t b) { return vsubq_f32(a, b); }
static DFN__INLINE float32x4_t dfn__helium_mul(float32x4_t a, float32x4_t b) { return vmulq_f32(a, b); }
/* MVE has no vector divide: four IEEE scalar divides (exact, as in _scalar). */
static DFN__INLINE float32x4_t dfn__helium_div(float32x4_t a, float32x4_t b)
{
    float x[4], y[4];
    int i;
    vst1q_f32(x, a);
    vst1q_f32(y, b);
    for (i = 0; i < 4; i++) x[i] /= y[i];
    return vld1q_f32(x);
}
static DFN__INLINE float32x4_t dfn__helium_fma(float32x4_t a, float32x4_t b, float32x4_t c)
{
    return vfmaq_f32(c, a, b);
}
static DFN__INLINE float32x4_t dfn__helium_max(float32x4_t a, float32x4_t b) { return vmaxnmq_f32(a, b); }
static DFN__INLINE float32x4_t dfn__helium_min(float32x4_t a, float32x4_t b) { return vminnmq_f32(a, b); }
/* MVE float arithmetic flushes denormals to zero, comparisons included, so
   x > y compares the bit patterns mapped to ordered integers (exact for
   denormals; +0 > -0 would differ, but y is never -0 here): ReLU keeps a
   denormal x as the other variants do. */
static DFN__INLINE int32x4_t dfn__helium_ord(float32x4_t v)
{
    int32x4_t i = vreinterpretq_s32_f32(v);
    return veorq_s32(i, vandq_s32(vshrq_n_s32(i, 31), vdupq_n_s32(0x7fffffff)));
}
static DFN__INLINE float32x4_t dfn__helium_gtsel(float32x4_t x, float32x4_t y, float32x4_t a, float32x4_t b)
{
    return vpselq_f32(a, b, vcmpgtq_s32(dfn__helium_ord(x), dfn__helium_ord(y)));
}
static DFN__INLINE float32x4_t dfn__helium_pow2i(float32x4_t n)
{
    int32x4_t e = vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127));
    return vreinterpretq_f32_s32(vshlq_n_s32(e, 23));
}
static DFN__INLINE float32x4_t dfn__helium_round(float32x4_t v)
{
    return dfn__helium_sub(dfn__helium_add(v, dfn__helium_set1(DFN__ROUND_MAGIC)), dfn__helium_set1(DFN__ROUND_MAGIC));
}
static DFN__INLINE float32x4_t dfn__helium_ldexp(float32x4_t p, float32x4_t n)
{
    return dfn__helium_mul(p, dfn__helium_pow2i(n));
}

DFN__ELEMENTWISE_KERNELS(helium, float32x4_t, 4)

/* MVE has no vector square root or divide and flushes denormals to zero:
   Adam runs the scalar loop (the FPU, IEEE) to keep the scalar bits. */
static void dfn__adam_update_helium(size_t n, float *p, float *m, float *v, const float *g,
                                    float *ema, const dfn_adam_coefs *c)
{
    dfn__adam_update_scalar(n, p, m, v, g, ema, c);
}

/* 4 x 8 tile: 8 accumulators, A as a scalar operand of the FMA. */
static void dfn__ukr_helium(int kc, const float *a, const float *b, float *c,
                            size_t ldc, float alpha, float beta)
{
    float32x4_t z = vdupq_n_f32(0.0f);
    float32x4_t c0a = z, c0b = z, c1a = z, c1b = z, c2a = z, c2b = z, c3a = z, c3b = z;
    float32x4_t va, vb;
    int k;
    for (k = 0; k < kc; k++, a += 4, b += 8) {
        float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4);
        c0a = vfmaq_n_f32(c0a, b0, a[0]); c0b = vfmaq_n_f32(c0b, b1, a[0]);
        c1a = vfmaq_n_f32(c1a, b0, a[1]); c1b = vfmaq_n_f32(c1b, b1, a[1]);
        c2a = vfmaq_n_f32(c2a, b0, a[2]); c2b = vfmaq_n_f32(c2b, b1, a[2]);
        c3a = vfmaq_n_f32(c3a, b0, a[3]); c3b = vfmaq_n_f32(c3b, b1, a[3]);
    }
    va = vdupq_n_f32(alpha);
    vb = vdupq_n_f32(beta);
#define DFN__HELIUM_OUT(i)                                                     \
    do {                                                                       \
        float *p_ = c + (size_t)(i) * ldc;                                     \
        float32x4_t ta_ = vmulq_f32(c##i##a, va), tb_ = vmulq_f32(c##i##b, va); \
        if (beta != 0.0f) {                                                    \
            ta_ = vfmaq_f32(ta_, vb, vld1q_f32(p_));                           \
            tb_ = vfmaq_f32(tb_, vb, vld1q_f32(p_ + 4));                       \
        }                                                                      \
        vst1q_f32(p_, ta_); vst1q_f32(p_ + 4, tb_);                            \
    } while (0)
    DFN__HELIUM_OUT(0); DFN__HELIUM_OUT(1); DFN__HELIUM_OUT(2); DFN__HELIUM_OUT(3);
#undef DFN__HELIUM_OUT
}

static void dfn__gemm_helium(int trans_a, int trans_b, int M, int N, int K, float alpha,
                             const float *A, int lda, const float *B, int ldb, float beta,
                             float *C, int ldc, float *work)
{
    dfn__gemm_blocked(DFN__MR_helium, DFN__NR_helium, dfn__ukr_helium, NULL, dfn__tr4_scalar,
                      trans_a, trans_b,
                      M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, work);
}

#endif /* DFN__HAVE_HELIUM */

/* ------------------------------------------------------------------------- */
/*  WebAssembly SIMD128: 4 lanes, no FMA                                     */
/* ------------------------------------------------------------------------- */
#if defined(DFN__HAVE_WASM)

static DFN__INLINE v128_t dfn__wasm_ld(const float *p) { return wasm_v128_load(p); }
static DFN__INLINE void   dfn__wasm_st(float *p, v128_t v) { wasm_v128_store(p, v); }
static DFN__INLINE v128_t dfn__wasm_set1(float a) { return wasm_f32x4_splat(a); }
static DFN__INLINE v128_t dfn__wasm_add(v128_t a, v128_t b) { return wasm_f32x4_add(a, b); }
static DFN__INLINE v128_t dfn__wasm_sub(v128_t a, v128_t b) { return wasm_f32x4_sub(a, b); }
static DFN__INLINE v128_t dfn__wasm_mul(v128_t a, v128_t b) { return wasm_f32x4_mul(a, b); }
static DFN__INLINE v128_t dfn__wasm_div(v128_t a, v128_t b) { return wasm_f32x4_div(a, b); }
static DFN__INLINE v128_t dfn__wasm_fma(v128_t a, v128_t b, v128_t c) { return wasm_f32x4_add(wasm_f32x4_mul(a, b), c); }
static DFN__INLINE v128_t dfn__wasm_max(v128_t a, v128_t b) { return wasm_f32x4_pmax(a, b); }
static DFN__INLINE v128_t dfn__wasm_min(v128_t a, v128_t b) { return wasm_f32x4_pmin(a, b); }
static DFN__INLINE v128_t dfn__wasm_gtsel(v128_t x, v128_t y, v128_t a, v128_t b)
{
    return wasm_v128_bitselect(a, b, wasm_f32x4_gt(x, y));
}
static DFN__INLINE v128_t dfn__wasm_pow2i(v128_t n)
{
    v128_t e = wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(n), wasm_i32x4_splat(127));
    return wasm_i32x4_shl(e, 23);
}
static DFN__INLINE v128_t dfn__wasm_round(v128_t v)
{
    return wasm_f32x4_nearest(v);
}
static DFN__INLINE v128_t dfn__wasm_ldexp(v128_t p, v128_t n)
{
    return dfn__wasm_mul(p, dfn__wasm_pow2i(n));
}

static DFN__INLINE v128_t dfn__wasm_sqrt(v128_t a) { return wasm_f32x4_sqrt(a); }

DFN__ELEMENTWISE_KERNELS(wasm, v128_t, 4)
DFN__ADAM_KERNEL(wasm, v128_t, 4)

static DFN__INLINE void dfn__tr4_wasm(const float *src, size_t lds, float *dst, size_t ldd)
{
    v128_t r0 = wasm_v128_load(src), r1 = wasm_v128_load(src + lds);
    v128_t r2 = wasm_v128_load(src + 2 * lds), r3 = wasm_v128_load(src + 3 * lds);
    v128_t t0 = wasm_i32x4_shuffle(r0, r1, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(r0, r1, 2, 6, 3, 7);
    v128_t t2 = wasm_i32x4_shuffle(r2, r3, 0, 4, 1, 5), t3 = wasm_i32x4_shuffle(r2, r3, 2, 6, 3, 7);
    wasm_v128_store(dst, wasm_i32x4_shuffle(t0, t2, 0, 1, 4, 5));
    wasm_v128_store(dst + ldd, wasm_i32x4_shuffle(t0, t2, 2, 3, 6, 7));
    wasm_v128_store(dst + 2 * ldd, wasm_i32x4_shuffle(t1, t3, 0, 1, 4, 5));
    wasm_v128_store(dst + 3 * ldd, wasm_i32x4_shuffle(t1, t3, 2, 3, 6, 7));
}

/* 4 x 8 tile: 8 accumulators, A broadcast. */
static void dfn__ukr_wasm(int kc, const float *a, const float *b, float *c,
                          size_t ldc, float alpha, float beta)
{
    v128_t c0a = wasm_f32x4_splat(0.0f), c0b = c0a, c1a = c0a, c1b = c0a;
    v128_t c2a = c0a, c2b = c0a, c3a = c0a, c3b = c0a;
    v128_t va = wasm_f32x4_splat(alpha), vb = wasm_f32x4_splat(beta);
    int k;
    for (k = 0; k < kc; k++, a += 4, b += 8) {
        v128_t b0 = wasm_v128_load(b), b1 = wasm_v128_load(b + 4), ai;
        ai = wasm_f32x4_splat(a[0]); c0a = dfn__wasm_fma(ai, b0, c0a); c0b = dfn__wasm_fma(ai, b1, c0b);
        ai = wasm_f32x4_splat(a[1]); c1a = dfn__wasm_fma(ai, b0, c1a); c1b = dfn__wasm_fma(ai, b1, c1b);
        ai = wasm_f32x4_splat(a[2]); c2a = dfn__wasm_fma(ai, b0, c2a); c2b = dfn__wasm_fma(ai, b1, c2b);
        ai = wasm_f32x4_splat(a[3]); c3a = dfn__wasm_fma(ai, b0, c3a); c3b = dfn__wasm_fma(ai, b1, c3b);
    }
#define DFN__WASM_OUT(i)                                                       \
    do {                                                                       \
        float *p_ = c + (size_t)(i) * ldc;                                     \
        v128_t ta_ = wasm_f32x4_mul(c##i##a, va), tb_ = wasm_f32x4_mul(c##i##b, va); \
        if (beta != 0.0f) {                                                    \
            ta_ = dfn__wasm_fma(vb, wasm_v128_load(p_), ta_);                  \
            tb_ = dfn__wasm_fma(vb, wasm_v128_load(p_ + 4), tb_);              \
        }                                                                      \
        wasm_v128_store(p_, ta_); wasm_v128_store(p_ + 4, tb_);                \
    } while (0)
    DFN__WASM_OUT(0); DFN__WASM_OUT(1); DFN__WASM_OUT(2); DFN__WASM_OUT(3);
#undef DFN__WASM_OUT
}

static void dfn__gemm_wasm(int trans_a, int trans_b, int M, int N, int K, float alpha,
                           const float *A, int lda, const float *B, int ldb, float beta,
                           float *C, int ldc, float *work)
{
    dfn__gemm_blocked(DFN__MR_wasm, DFN__NR_wasm, dfn__ukr_wasm, NULL, dfn__tr4_wasm,
                      trans_a, trans_b,
                      M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, work);
}

#endif /* DFN__HAVE_WASM */

/* ------------------------------------------------------------------------- */
/*  The variant table and the public functions                               */
/* ------------------------------------------------------------------------- */

#define DFN__KERNEL_VARIANT(S, name, mr, nr)                                   \
    { name, mr, nr, dfn__gemm_##S, dfn__vec_axpy_##S, dfn__vec_scale_##S,     \
      dfn__vec_dot_##S, dfn__vec_sum_sq_##S, dfn__bias_add_##S,               \
      dfn__bias_grad_##S, dfn__act_forward_##S, dfn__act_backward_##S,       \
      dfn__vec_exp_##S, dfn__vec_sincos_##S, dfn__adam_update_##S }

static const dfn_kernel_variant dfn__kernel_variant_table[] = {
    DFN__KERNEL_VARIANT(ref, "ref", 1, 1),
    DFN__KERNEL_VARIANT(scalar, "scalar", DFN__MR_scalar, DFN__NR_scalar)
#if defined(DFN__HAVE_SSE2)
  , DFN__KERNEL_VARIANT(sse2, "sse2", DFN__MR_sse2, DFN__NR_sse2)
#endif
#if defined(DFN__HAVE_AVX2)
  , DFN__KERNEL_VARIANT(avx2, "avx2", DFN__MR_avx2, DFN__NR_avx2)
#endif
#if defined(DFN__HAVE_AVX512)
  , DFN__KERNEL_VARIANT(avx512, "avx512", DFN__MR_avx512, DFN__NR_avx512)
#endif
#if defined(DFN__HAVE_NEON)
  , DFN__KERNEL_VARIANT(neon, "neon", DFN__MR_neon, DFN__NR_neon)
#endif
#if defined(DFN__HAVE_WASM)
  , DFN__KERNEL_VARIANT(wasm, "wasm_simd128", DFN__MR_wasm, DFN__NR_wasm)
#endif
#if defined(DFN__HAVE_HELIUM)
  , DFN__KERNEL_VARIANT(helium, "helium", DFN__MR_helium, DFN__NR_helium)
#endif
};

DFNDEF int dfn_kernel_variants(const dfn_kernel_variant **out)
{
    if (out) *out = dfn__kernel_variant_table;
    return (int)(sizeof dfn__kernel_variant_table / sizeof dfn__kernel_variant_table[0]);
}

DFNDEF const char *dfn_simd_name(void)
{
    return DFN__SIMD_NAME;
}

DFNDEF size_t dfn_gemm_work_size(void)
{
    return (DFN__GEMM_PACK_A + DFN__GEMM_PACK_B) * sizeof(float) + DFN__GEMM_WORK_ALIGN;
}

/* ---- Threads: the parallel-for hook and the split GEMM ---------------- */

static struct {
    dfn_parallel_fn run;
    void *user;
    int threads;
    unsigned char *scratch;       /* threads - 1 GEMM work areas */
    int busy;                     /* a parallel-for is running (dfn__par_claim) */
} dfn__par = { NULL, NULL, 1, NULL, 0 };

/* The hook runs one parallel-for at a time. A caller claims it by turning
   busy from 0 to 1 atomically; one that cannot (a task of the running job,
   or another thread's call meanwhile) runs its tasks itself, in order: the
   same bits, since no result depends on the split. With compilers that
   have no lock-free atomic int here (and on targets without threads) the
   claim is a plain test and set, and the manual's one calling thread at a
   time is the rule. */
#if defined(__GNUC__) && defined(__ATOMIC_ACQUIRE) && defined(__GCC_ATOMIC_INT_LOCK_FREE) && \
    __GCC_ATOMIC_INT_LOCK_FREE == 2
static int dfn__par_claim(void)
{
    int expected = 0;
    return __atomic_compare_exchange_n(&dfn__par.busy, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}
static void dfn__par_release(void) { __atomic_store_n(&dfn__par.busy, 0, __ATOMIC_RELEASE); }
static int dfn__par_busy(void) { return __atomic_load_n(&dfn__par.busy, __ATOMIC_RELAXED); }
#else
static int dfn__par_claim(void)
{
    if (dfn__par.busy) return 0;
    dfn__par.busy = 1;
    return 1;
}
static void dfn__par_release(void) { dfn__par.busy = 0; }
static int dfn__par_busy(void) { return dfn__par.busy; }
#endif

DFNDEF size_t dfn_parallel_scratch_size(int threads)
{
    if (threads < 1 || threads > DFN_MAX_THREADS) return 0;
    return (size_t)(threads - 1) * dfn_gemm_work_size();
}

DFNDEF dfn_result dfn_set_parallel(dfn_parallel_fn run, void *user, int threads, void *scratch,
                                   size_t scratch_bytes)
{
    if (threads < 1 || threads > DFN_MAX_THREADS || (threads > 1 && !run)) return DFN_ERR_INVALID_ARG;
    if (threads > 1 && (!scratch || scratch_bytes < dfn_parallel_scratch_size(threads)))
        return DFN_ERR_BUFFER_TOO_SMALL;
    dfn__par.run = threads > 1 ? run : NULL;
    dfn__par.user = threads > 1 ? user : NULL;
    dfn__par.threads = threads;
    dfn__par.scratch = threads > 1 ? (unsigned char *)scratch : NULL;
    return DFN_OK;
}

DFNDEF int dfn_parallel_threads(void)
{
    return dfn__par.threads;
}

/* Threads the library may use now: one inside a task (tasks do not split
   again) or without a hook. */
static int dfn__parallel_workers(void)
{
    return dfn__par_busy() ? 1 : dfn__par.threads;
}

/* GEMM scratch of worker w: the caller's for worker 0 (the calling thread). */
static float *dfn__worker_work(int w, float *work0)
{
    return w == 0 ? work0 : (float *)(dfn__par.scratch + (size_t)(w - 1) * dfn_gemm_work_size());
}

/* task(ctx, i, w) for i = 0..ntasks-1: on the installed workers when there
   are several, else here, in order, as worker 0. */
static void dfn__parallel_for(int ntasks, dfn_task_fn task, void *ctx)
{
    int i;
    if (ntasks > 1 && dfn__par.threads > 1 && dfn__par_claim()) {
        dfn__par.run(dfn__par.user, ntasks, task, ctx);
        dfn__par_release();
        return;
    }
    for (i = 0; i < ntasks; i++) task(ctx, i, 0);
}

/* Work worth splitting over T threads: about 4 MFLOP (2e6 multiply-adds)
   or more per thread. */
static int dfn__worth_split(double madds, int T)
{
    return T > 1 && madds >= 2e6 * T;
}

/* The block of n items each of T tasks takes, in whole units (micro-tiles):
   the last block may be shorter, and fewer than T blocks may cover n. */
static int dfn__block_step(int n, int T, int unit)
{
    return ((n + T - 1) / T + unit - 1) / unit * unit;
}

typedef struct dfn__gemm_task {
    int trans_a, trans_b, M, N, K, lda, ldb, ldc, by_cols, step, tasks;
    float alpha, beta;
    const float *A, *B;
    float *C, *work;
} dfn__gemm_task;

/* Task i: columns (or rows) [i step, (i + 1) step) of C. */
static void dfn__gemm_run_task(void *ctx, int i, int w)
{
    const dfn__gemm_task *g = (const dfn__gemm_task *)ctx;
    float *work = dfn__worker_work(w, g->work);
    int lo = i * g->step, n = g->by_cols ? g->N : g->M, hi = lo + g->step < n ? lo + g->step : n;
    if (lo >= hi) return;
    if (g->by_cols) {
        /* op(B)'s columns lo..hi: B stored (K, N) -> column offset; (N, K) -> row offset */
        const float *B = g->trans_b ? g->B + (size_t)lo * g->ldb : g->B + lo;
        DFN__BEST(dfn__gemm)(g->trans_a, g->trans_b, g->M, hi - lo, g->K, g->alpha, g->A, g->lda, B, g->ldb,
                             g->beta, g->C + lo, g->ldc, work);
    } else {
        const float *A = g->trans_a ? g->A + lo : g->A + (size_t)lo * g->lda;
        DFN__BEST(dfn__gemm)(g->trans_a, g->trans_b, hi - lo, g->N, g->K, g->alpha, A, g->lda, g->B, g->ldb,
                             g->beta, g->C + (size_t)lo * g->ldc, g->ldc, work);
    }
}

DFNDEF void dfn_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta,
                     float *C, int ldc, float *work)
{
    int T = dfn__parallel_workers();
    /* Split only products worth it (about 4 MFLOP per extra thread), by
       columns when C is wide enough, else by rows; blocks are multiples of
       32 columns or 24 rows (whole micro-tiles of every variant). */
    if (M > 0 && N > 0 && K > 0 && alpha != 0.0f && dfn__worth_split((double)M * N * K, T)) {
        dfn__gemm_task g;
        int unit, n;
        g.trans_a = trans_a; g.trans_b = trans_b; g.M = M; g.N = N; g.K = K;
        g.lda = lda; g.ldb = ldb; g.ldc = ldc; g.alpha = alpha; g.beta = beta;
        g.A = A; g.B = B; g.C = C; g.work = work;
        g.by_cols = N >= 64 * T || N >= M;
        unit = g.by_cols ? 32 : 24;
        n = g.by_cols ? N : M;
        g.step = dfn__block_step(n, T, unit);
        g.tasks = (n + g.step - 1) / g.step;
        if (g.tasks > 1) {
            dfn__parallel_for(g.tasks, dfn__gemm_run_task, &g);
            return;
        }
    }
    DFN__BEST(dfn__gemm)(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, work);
}

#if defined(DFN_PTHREADS) && !defined(DFN_NO_MALLOC)
#include <pthread.h>

/* A fixed pool: the caller is worker 0, threads 1..n-1 wait for jobs. One
   job at a time; tasks are handed out by a counter under the mutex. */
static struct dfn__pool {
    pthread_t th[DFN_MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t job, done;
    int n, started, quit;
    long gen;                      /* job number, so workers see each job once */
    int ntasks, next, finished;
    dfn_task_fn task;
    void *ctx;
    void *scratch;
} dfn__pool;

typedef struct dfn__pool_arg { int w; } dfn__pool_arg;
static dfn__pool_arg dfn__pool_args[DFN_MAX_THREADS];

/* Waking a sleeping thread takes 10-30 us, as long as a small task: where
   the compiler has atomics (gcc, clang), a thread that waits (a worker for
   the next job, the caller for the last task) first polls for up to
   DFN_POOL_SPIN pauses, then sleeps. 4096 x86 pauses took 100 us on a Zen
   4 (a pause lasts 10-140 cycles depending on the CPU; ARM's yield is
   shorter). 0: always sleep. */
#ifndef DFN_POOL_SPIN
#define DFN_POOL_SPIN 4096
#endif
#if defined(__ATOMIC_ACQUIRE) && DFN_POOL_SPIN > 0
#  define DFN__POOL_LOAD(v) __atomic_load_n(&(v), __ATOMIC_ACQUIRE)
#  define DFN__POOL_SET(v, x) __atomic_store_n(&(v), (x), __ATOMIC_RELEASE)
#  if defined(__x86_64__) || defined(__i386__)
#    define DFN__POOL_PAUSE() __builtin_ia32_pause()
#  elif defined(__aarch64__)
#    define DFN__POOL_PAUSE() __asm__ __volatile__("yield" ::: "memory")
#  else
#    define DFN__POOL_PAUSE() ((void)0)
#  endif
/* Polls (without the mutex, which the caller holds on entry and exit)
   while cond holds, for at most DFN_POOL_SPIN pauses. */
#  define DFN__POOL_POLL(cond)                                                    \
    do {                                                                          \
        int dfn__s_;                                                              \
        pthread_mutex_unlock(&dfn__pool.mu);                                      \
        for (dfn__s_ = 0; dfn__s_ < DFN_POOL_SPIN && (cond) && !DFN__POOL_LOAD(dfn__pool.quit); \
             dfn__s_++)                                                           \
            DFN__POOL_PAUSE();                                                    \
        pthread_mutex_lock(&dfn__pool.mu);                                        \
    } while (0)
#else
#  define DFN__POOL_SET(v, x) ((v) = (x))
#  define DFN__POOL_POLL(cond) ((void)0)
#endif

/* Runs tasks of the current job as worker w until none are left. Called
   with the mutex held; returns with it held. */
static void dfn__pool_work(int w)
{
    while (dfn__pool.next < dfn__pool.ntasks) {
        int i = dfn__pool.next++;
        pthread_mutex_unlock(&dfn__pool.mu);
        dfn__pool.task(dfn__pool.ctx, i, w);
        pthread_mutex_lock(&dfn__pool.mu);
        DFN__POOL_SET(dfn__pool.finished, dfn__pool.finished + 1);
        if (dfn__pool.finished == dfn__pool.ntasks) pthread_cond_broadcast(&dfn__pool.done);
    }
}

static void *dfn__pool_main(void *arg)
{
    int w = ((dfn__pool_arg *)arg)->w;
    long seen = 0;
    pthread_mutex_lock(&dfn__pool.mu);
    for (;;) {
        if (!dfn__pool.quit && dfn__pool.gen == seen) DFN__POOL_POLL(DFN__POOL_LOAD(dfn__pool.gen) == seen);
        while (!dfn__pool.quit && dfn__pool.gen == seen) pthread_cond_wait(&dfn__pool.job, &dfn__pool.mu);
        if (dfn__pool.quit) break;
        seen = dfn__pool.gen;
        dfn__pool_work(w);
    }
    pthread_mutex_unlock(&dfn__pool.mu);
    return NULL;
}

static void dfn__pool_run(void *user, int ntasks, dfn_task_fn task, void *ctx)
{
    (void)user;
    pthread_mutex_lock(&dfn__pool.mu);
    dfn__pool.task = task;
    dfn__pool.ctx = ctx;
    dfn__pool.ntasks = ntasks;
    dfn__pool.next = 0;
    DFN__POOL_SET(dfn__pool.finished, 0);
    DFN__POOL_SET(dfn__pool.gen, dfn__pool.gen + 1);
    pthread_cond_broadcast(&dfn__pool.job);
    dfn__pool_work(0);
    if (dfn__pool.finished < ntasks) DFN__POOL_POLL(DFN__POOL_LOAD(dfn__pool.finished) < ntasks);
    while (dfn__pool.finished < dfn__pool.ntasks) pthread_cond_wait(&dfn__pool.done, &dfn__pool.mu);
    pthread_mutex_unlock(&dfn__pool.mu);
}

DFNDEF void dfn_pthreads_stop(void)
{
    int i;
    if (!dfn__pool.started) return;
    dfn_set_parallel(NULL, NULL, 1, NULL, 0);
    pthread_mutex_lock(&dfn__pool.mu);
    DFN__POOL_SET(dfn__pool.quit, 1);
    pthread_cond_broadcast(&dfn__pool.job);
    pthread_mutex_unlock(&dfn__pool.mu);
    for (i = 1; i < dfn__pool.n; i++) pthread_join(dfn__pool.th[i], NULL);
    pthread_mutex_destroy(&dfn__pool.mu);
    pthread_cond_destroy(&dfn__pool.job);
    pthread_cond_destroy(&dfn__pool.done);
    DFN_FREE(dfn__pool.scratch, NULL);
    DFN_MEMSET(&dfn__pool, 0, sizeof dfn__pool);
}

DFNDEF dfn_result dfn_pthreads_start(int threads)
{
    size_t bytes;
    int i;
    if (threads < 1 || threads > DFN_MAX_THREADS) return DFN_ERR_INVALID_ARG;
    dfn_pthreads_stop();
    if (threads == 1) return DFN_OK;
    bytes = dfn_parallel_scratch_size(threads);
    dfn__pool.scratch = DFN_MALLOC(bytes, NULL);
    if (!dfn__pool.scratch) return DFN_ERR_OUT_OF_MEMORY;
    pthread_mutex_init(&dfn__pool.mu, NULL);
    pthread_cond_init(&dfn__pool.job, NULL);
    pthread_cond_init(&dfn__pool.done, NULL);
    dfn__pool.started = 1;
    dfn__pool.n = 1;
    for (i = 1; i < threads; i++) {
        dfn__pool_args[i].w = i;
        if (pthread_create(&dfn__pool.th[i], NULL, dfn__pool_main, &dfn__pool_args[i]) != 0) {
            dfn_pthreads_stop();
            return DFN_ERR_CALLBACK;
        }
        dfn__pool.n = i + 1;
    }
    return dfn_set_parallel(dfn__pool_run, NULL, threads, dfn__pool.scratch, bytes);
}
#endif

enum { DFN__EW_ACT_F, DFN__EW_ACT_B, DFN__EW_AXPY };

typedef struct dfn__ew_task {
    int op;
    dfn_activation act;
    size_t n, step;
    float a;
    const float *x, *dy;
    float *y;
} dfn__ew_task;

static void dfn__ew_piece(const dfn__ew_task *e, size_t lo, size_t n)
{
    switch (e->op) {
    case DFN__EW_ACT_F: DFN__BEST(dfn__act_forward)(e->act, n, e->x + lo, e->y + lo); break;
    case DFN__EW_ACT_B: DFN__BEST(dfn__act_backward)(e->act, n, e->x + lo, e->dy + lo, e->y + lo); break;
    default:            DFN__BEST(dfn__vec_axpy)(n, e->a, e->x + lo, e->y + lo); break;
    }
}

static void dfn__ew_run_task(void *ctx, int i, int w)
{
    const dfn__ew_task *e = (const dfn__ew_task *)ctx;
    size_t lo = (size_t)i * e->step, hi = lo + e->step < e->n ? lo + e->step : e->n;
    (void)w;
    if (lo < hi) dfn__ew_piece(e, lo, hi - lo);
}

static void dfn__ew(int op, dfn_activation act, size_t n, float a, const float *x, const float *dy, float *y)
{
    dfn__ew_task e;
    int T = dfn__parallel_workers();
    e.op = op; e.act = act; e.n = n; e.a = a; e.x = x; e.dy = dy; e.y = y;
    if (T > 1 && n >= DFN__EW_SPLIT) {
        e.step = ((n + (size_t)T - 1) / (size_t)T + 63) / 64 * 64;
        dfn__parallel_for((int)((n + e.step - 1) / e.step), dfn__ew_run_task, &e);
        return;
    }
    dfn__ew_piece(&e, 0, n);
}

DFNDEF void dfn_vec_axpy(size_t n, float a, const float *x, float *y)
{
    dfn__ew(DFN__EW_AXPY, DFN_ACT_IDENTITY, n, a, x, NULL, y);
}

DFNDEF void dfn_vec_scale(size_t n, float a, float *x)
{
    DFN__BEST(dfn__vec_scale)(n, a, x);
}

DFNDEF float dfn_vec_dot(size_t n, const float *x, const float *y)
{
    return DFN__BEST(dfn__vec_dot)(n, x, y);
}

DFNDEF float dfn_vec_sum_sq(size_t n, const float *x)
{
    return DFN__BEST(dfn__vec_sum_sq)(n, x);
}

DFNDEF void dfn_bias_add(int rows, int cols, float *y, const float *bias)
{
    DFN__BEST(dfn__bias_add)(rows, cols, y, bias);
}

DFNDEF void dfn_bias_grad(int rows, int cols, const float *dy, float *dbias)
{
    DFN__BEST(dfn__bias_grad)(rows, cols, dy, dbias);
}

DFNDEF void dfn_act_forward(dfn_activation act, size_t n, const float *x, float *y)
{
    dfn__ew(DFN__EW_ACT_F, act, n, 0.0f, x, NULL, y);
}

DFNDEF void dfn_act_backward(dfn_activation act, size_t n, const float *x,
                             const float *dy, float *dx)
{
    dfn__ew(DFN__EW_ACT_B, act, n, 0.0f, x, dy, dx);
}

DFNDEF void dfn_bias_act_forward(int rows, int cols, const float *bias,
                                 dfn_activation act, float *pre, float *y)
{
    int r;
    for (r = 0; r < rows; r++) {
        float *p = pre + (size_t)r * (size_t)cols, *q = y + (size_t)r * (size_t)cols;
        if (bias) DFN__BEST(dfn__bias_add)(1, cols, p, bias);
        DFN__BEST(dfn__act_forward)(act, (size_t)(cols > 0 ? cols : 0), p, q);
    }
}

DFNDEF void dfn_adam_update(size_t n, float *p, float *m, float *v, const float *g,
                            float *ema, const dfn_adam_coefs *c)
{
    if (n == 0) return;
    DFN_ASSERT(p && m && v && g && c);
    DFN__BEST(dfn__adam_update)(n, p, m, v, g, ema, c);
}

#ifdef __cplusplus
}
#endif

#endif /* DIFFUSION_IMPLEMENTATION */

/*
   REVISION HISTORY
   ================
   0.15.1 (2026-12-07) two loops gcc -O2 left scalar vectorized, with the
          same bits: the MLP's bias-gradient sums (its training step 1.06x
          faster on one thread) and GroupNorm's per-pixel passes (the
          U-Net's 1.03x).
   0.15.0 (2026-12-07) Winograd F(2x2, 3x3) convolutions (MATH.md section
          14): dfn_conv2d_winograd_forward / _backward / _size, forward,
          input and weight gradients as 16 products over the GEMM, taken
          by dfn_conv2d_forward / _backward where they measured faster
          than im2col (8 x 8 images or more, from 16 channels forward and
          32 backward; not with DFN_PORTABLE_MATH): the MNIST U-Net
          trains 1.1x and samples 1.2x faster on one thread.
   0.14.0 (2026-12-06) colour images: IDX files of 4 dimensions (n, H, W, C)
          read by dfn_idx_images_mem_c and dfn_idx_load (c set); make
          emoji-data (tools/emoji2idx.js: 1,906 32x32 Noto emoji of
          emoji-datasource-google 16.0.0 in 9 categories), make emoji (the
          image example on any labelled IDX set: --set emoji, a
          class-conditional RGB U-Net), make bench-emoji (the classifier of
          bench/digits.h with C channels and K classes); cleaner digits:
          the image example trains with logit-normal t and samples with
          guidance 1.5 (2,400 steps), unconditional models with
          DPM-Solver++(2M) SDE; image_quality measures grain (stray
          pixels).
   0.13.0 (2026-12-06) small devices: the MLP's weights as int8 with a scale
          per row or as fp16 (MATH.md section 13; dfn_qmlp_*, read
          directly by its forward pass; dfn_f32_to_f16, dfn_f16_to_f32,
          dfn_quantize_rows_i8), safetensors with I8 (+ "_scale") and F16
          weights written and read for any model
          (dfn_model_save_safetensors_as; build/convert --int8, --fp16),
          respacing (dfn_schedule_respace, dfn_respaced_predict: S + 1
          schedule rows on a device), DFN_SAMPLER_KINDS; tools/model2c
          --int8, --fp16, --respace; a Cortex-M0 (QEMU's microbit) in
          make test-cortexm, with the firmware's stack and instruction
          counts; make bench-quant. The diffusers reader range-checks
          integers before converting them (a fuzzer's find).
   0.12.0 (2026-12-06) models from elsewhere: safetensors read (F32, F16,
          BF16, exactly) and written, without allocation, every promise of
          the format checked (dfn_st_*; limits gain max_tensors); the MLP's
          and the U-Net's weights by the names of their PyTorch twins
          (dfn_net_tensors; dfn_net_ops gains an optional tensor
          operation, after config_file_bytes); models saved and loaded as
          safetensors with their config and schedule as JSON metadata
          (dfn_model_save/load_safetensors, errors naming the tensor or
          field in a dfn_error_detail); diffusers' scheduler_config.json
          read and written (dfn_diffusers_*), its linear, scaled_linear
          and sigmoid beta schedules as kinds 5-7 (model files of version
          2), numpy's timestep spacings, DDIM's final_alphabar_1
          (set_alpha_to_one = false); dfn_schedule_kind_name;
          tools/convert; tools/torch (PyTorch twins, safetensors in plain
          Python, DDP training); make test-interop; fuzz_st.
   0.11.0 (2026-12-06) flow matching (MATH.md section 12): the flow schedule
          kind (a = 1 - u, s = u, SD3 shift) with the tables of its
          Gaussian chain, dfn_process; velocity prediction; Euler, Heun and
          the new midpoint rule step in u on flow; the shifted spacing;
          DDIM with eta > 0, DDPM and RePaint's jump in (a, s);
          v-prediction converted with a^2 + s^2 on flow;
          dfn_gmm_predict_as (the exact predictor of every kind);
          logit-normal training times and dfn_train_time; model file
          version 2 for flow schedules only (VP files keep their bytes);
          make flow.
   0.10.0 (2026-12-02) hardening: dfn_limits (largest T, parameters, image
          side, bytes held) checked by every allocating loader before it
          allocates, DFN_ERR_LIMIT, the _ex loaders and
          dfn_model_check_limits; model files with non-finite floats refused;
          a sampler step whose new state overflows returns
          DFN_ERR_NOT_FINITE; guidance's 2n rows checked to fit an int; the
          points parser takes the file reader's line limit; a concurrent
          caller of the parallel-for runs its tasks itself (an atomic
          claim); a trainer steps on its own copy of the network's config;
          no member address taken before a NULL check; no custom-beta space
          for other schedules; make fuzz-long.
   0.9.0  (2026-12-02) few-step sampling (MATH.md section 11): sampler kinds
          Euler and Heun in sigma, DPM-Solver++(2M), (3M) with the x0''
          term weighted as its Taylor expansion needs, and the 2M SDE, their
          history kept in the sampler; logSNR, Karras and custom spacings
          (dfn_timesteps); dfn_sampler_nfe, kind and spacing names; the
          guidance hook's stage; dfn_mmd_rbf_unbiased, and dfn_mmd_rbf
          about 14x faster (far pairs and the mirror half skipped); the
          demo samples with DPM-Solver++(2M), logSNR, 20 NFE; make samplers.
   0.8.0  (2026-12-02) one shape for every network: dfn_net_ops, a table
          of a network's operations (describe, weights, forward, the
          training pass laid out once, its config in model files), with
          the MLP, the U-Net and the guidance classifier as instances; the
          trainer, the model files and the sampler adapter take any
          dfn_net (new *_net functions; the MLP and U-Net ones are thin
          wrappers, source-compatible). A program's own network trains,
          saves (ids DFN_NET_USER and up), loads and samples; the
          classifier can be saved (DFN_NET_CLASSIFIER). The U-Net's
          weights are named views laid out once by its plan; a trainer
          lays out its memory once, at init; the classifier's trainer
          updates through dfn_adam_update; the header in four parts in
          reading order (manual section 9), the elementwise kernels in six
          macros. Files of 0.7.0 load byte for byte; the same bits.
   0.7.0  (2026-11-26) threads: a 3 x 3 convolution splits by blocks of
          pixels, each task unrolling (im2col) and multiplying its own
          (forward and din; the unrolling for dW too); the pthreads pool's
          waiting threads poll before they sleep (DFN_POOL_SPIN). Same bits
          as 0.6.0, for any number of threads.
   0.6.0  (2026-11-26) faster activations and convolution gradients:
          SiLU and GELU as x / (1 + e^-v) at a clamped argument (no
          overflow to guard against, so no branches; GELU forward 1.5x
          with log2 e folded into its constant, backward 1.6x; GELU 1.9
          ulp for x >= 0, was 2.8; SiLU 2.4, was 3.6), AVX-512
          exp rounding and scaling by vrndscaleps / vscalefps (the same
          bits); dfn_conv2d_backward accumulates dW transposed and computes
          din as the convolution of dout with the turned kernel when its
          scratch has room (the U-Net trainer's has), no col2im; AVX-512
          products with N <= 4 as dot products; the sinusoidal embedding
          batches short rows into one sine-cosine call (same bits).
          Results differ from 0.5.0 in the last bits (activations, din).
   0.5.0  (2026-11-26) threads for the U-Net: its convolutions unroll
          about 3072 GEMM rows at a time (3 images of 28 x 28), so their
          products split; GroupNorm splits by blocks of groups and
          dfn_act_forward / dfn_act_backward / dfn_vec_axpy of 65536 values
          or more by ranges (bit-identical for any thread count); GroupNorm's
          sums keep their accumulators in registers (same bits, 1.3-1.8x
          faster); the AVX-512 direct tiles (12 x 32 and 24 x 16) read A
          stored either way in place.
   0.4.0  (2026-11-26) speed: the MLP's inference forward computes its
          first layer's t part once per run of equal (t, label) and splits
          large batches into blocks of rows across threads; MLP training
          splits its forward, backward and weight gradients, the Adam update
          and long normal fills across threads (all bit-identical for any
          thread count); a fused SIMD Adam + EMA kernel (dfn_adam_update,
          the same bits as the scalar loop); the embeddings' own SIMD sine
          and cosine; AVX-512 GEMM reads a row-major A in place and has a
          24 x 16 tile for narrow products; im2col in whole kernel rows;
          branch-free fixed-point normals, four pairs at a time (same
          values).
   0.3.0  (2026-11-26) images and control: NHWC image layers (3x3 / 1x1
          convolution through im2col and the GEMM, GroupNorm, average
          pooling, nearest upsampling, single-head self-attention) with
          hand-written backward passes; the conv U-Net noise network with
          class and conditioning-channel inputs, trained by the same
          trainer and stored in the same model files (net kind 2); IDX
          reader, procedural shapes, PNG / PGM writers, image grids;
          classifier-free guidance, a guidance hook (noise-aware
          classifier, half-space constraint), inpainting with RePaint
          resampling; an optional parallel-for hook that splits GEMMs
          (bit-identical for any thread count) and a pthreads pool.
   0.2.0  (2026-11-26) training: packed and blocked GEMM and elementwise
          kernels (reference, scalar, SSE2, AVX2, AVX-512, NEON, WASM
          SIMD128); linear layer and sinusoidal embedding; the MLP noise
          network with hand-written backward pass; dfn_check_grad; trainer
          (eps / v / x0 targets, Min-SNR weighting, Adam(W), clipping,
          warmup and cosine decay, EMA); 2D data sets, CSV points, RBF MMD^2,
          unbiased energy distance; versioned, checksummed model files.
   0.1.0  (2026-11-26) first release: PCG32 and a portable normal generator;
          linear, cosine, sigmoid, custom and zero-terminal-SNR schedules;
          forward process and posterior; eps / v / x0 parameterizations;
          DDPM and DDIM samplers with callbacks; exact Gaussian-mixture
          noise predictor; energy distance.
*/

/*
------------------------------------------------------------------------------
This software is available under 2 licenses -- choose whichever you prefer.
------------------------------------------------------------------------------
ALTERNATIVE A - MIT License
Copyright (c) 2026 the diffusion.h authors
Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
ALTERNATIVE B - Public Domain (www.unlicense.org)
This is free and unencumbered software released into the public domain.
Anyone is free to copy, modify, publish, use, compile, sell, or distribute this
software, either in source code form or as a compiled binary, for any purpose,
commercial or non-commercial, and by any means.
In jurisdictions that recognize copyright laws, the author or authors of this
software dedicate any and all copyright interest in the software to the public
domain. We make this dedication for the benefit of the public at large and to
the detriment of all present and future heirs and successors. We intend this
dedication to be an overt act of relinquishment in perpetuity of all present
and future rights to this software under copyright law.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN
ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------
*/
