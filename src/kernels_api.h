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

/* Activation functions. The values are stored in model files: never
   renumber, only append. */
typedef enum dfn_activation {
    DFN_ACT_IDENTITY = 0,   /* f(x) = x                                        */
    DFN_ACT_RELU     = 1,   /* f(x) = max(x, 0);  f'(0) = 0                    */
    DFN_ACT_SILU     = 2,   /* f(x) = x sigmoid(x)                             */
    DFN_ACT_GELU     = 3    /* f(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
                               the tanh form, and its exact derivative         */
} dfn_activation;

/* The name of the SIMD path the public kernels use in this build: "avx512",
   "avx2", "sse2", "neon", "wasm_simd128" or "scalar" (also with DFN_NO_SIMD).
   A static string. */
DFNDEF const char *dfn_simd_name(void);

/* Bytes of scratch memory dfn_gemm needs in its `work` argument (the packed
   panels of A and B): one fixed number for the build, independent of the
   matrix sizes and of the variant, about 1.2 MB with the default blocking
   (DFN_GEMM_MC/KC/NC). Any alignment is fine. */
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

/* y += a x, for n elements. x and y must not overlap (unless x == y). */
DFNDEF void dfn_vec_axpy(size_t n, float a, const float *x, float *y);

/* x *= a, for n elements. */
DFNDEF void dfn_vec_scale(size_t n, float a, float *x);

/* sum_i x[i] y[i] over n elements (0 for n == 0), accumulated in float with
   a fixed number of partial sums per variant (a fixed order for a build). */
DFNDEF float dfn_vec_dot(size_t n, const float *x, const float *y);

/* sum_i x[i]^2 over n elements (0 for n == 0); for gradient-norm clipping.
   Same accumulation as dfn_vec_dot. */
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

/* One compiled implementation of the kernels: the plain reference ("ref"),
   the portable blocked C version ("scalar"), and each SIMD path the build's
   target supports ("sse2", "avx2", "avx512", "neon", "wasm_simd128"). Each
   function has the semantics of the public function of the same name.
   "ref" reads like the formulas: triple-loop GEMM, dot and sum_sq
   accumulated in double, activations through DFN_EXPF / DFN_TANHF; it is the
   parity reference and is slow. gemm_mr x gemm_nr is the register block of
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
} dfn_kernel_variant;

/* Sets *out to a static array of the variants compiled into this build and
   returns how many there are: "ref" first, then "scalar", then the SIMD
   paths from the oldest to the newest instruction set; the one the public
   functions use (dfn_simd_name()) is among them. */
DFNDEF int dfn_kernel_variants(const dfn_kernel_variant **out);
