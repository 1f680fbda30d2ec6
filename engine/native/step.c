/* The batch-B sampling step of a HandwritingModel with int8 weights, for x86-64 CPUs with
 * AVX-512 VNNI: the same computation as engine.fast.FastStepper._core, in one call.
 *
 * Why native: at batch 1 the torch step is ~45 small ops (~1.5 us of dispatch each) around three
 * int8 matrix products that torch's kernel runs at ~18 G multiply-adds/s, well below what the
 * weight bytes allow. Here each product streams its packed int8 weights once through
 * vpdpbusd (64 multiply-adds per instruction) and the elementwise work runs in registers. The
 * output layer (Eq. 3) stays fp32, as in the torch step.
 *
 * Activations are quantised per row to 16 bits, asymmetric: x ~= lo + s * u, u in [0, 65535],
 * split into a high and a low byte that each meet the same weight register (two vpdpbusd per
 * weight load; the step is bound by weight bytes, so the second costs little). The activation
 * error (<= (max - min) / 131070) is far below the weights' own int8 rounding, and every row is
 * computed alone in integer arithmetic, so a row's result does not depend on the batch.
 *
 * Packed weight layout (pack_int8 in engine/native/__init__.py): outputs in blocks of 16, inputs
 * in groups of 4: q[block][group][16][4], zero-padded; rowsum[j] = sum_k q[j][k]; scale[j] fp32.
 *
 * Build: cc -O3 -shared -fPIC (no -march: the hot functions carry their own target attribute,
 * and hw_cpu_ok tells the loader whether this CPU can run them). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HW_ABI 2
#define MAX_LAYERS 16

typedef struct {
    const int8_t *q;        /* packed [NB][KG][16][4] */
    const float *scale;     /* [NB * 16] */
    const int32_t *rowsum;  /* [NB * 16] */
    int32_t K, N;           /* inputs (a multiple of 4), outputs */
} QMat;

typedef struct {
    int32_t B, H, L, K, Up, synthesis, ny, V;
    float *x;               /* B x 3 */
    const float *Wx;        /* 3 x L*4H */
    const float *b;         /* L*4H */
    float *G;               /* B x L*4H: x projections + biases (+ window contributions) */
    float *gates;           /* B x 4H scratch */
    float *hbuf;            /* B x L*H: [h^1 | ... | h^L] */
    float *c[MAX_LAYERS];   /* each B x H */
    const float *peep_if[MAX_LAYERS];  /* (2, H): w_ci, w_cf; NULL for a cell without */
    const float *peep_o[MAX_LAYERS];   /* (H): w_co */
    QMat Wrec[MAX_LAYERS];  /* layer 1: h^1_{t-1}; layer n: [h^{n-1}_t, h^n_{t-1}] */
    const float *Wy;        /* L*H x ny, fp32 (the output layer stays fp32: engine/fast.py) */
    const float *by;        /* ny */
    float *y;               /* B x ny */
    /* the window (synthesis): Eqs. 46-51 */
    const float *Wp, *bp;   /* H x 3K, 3K (bp holds beta's factor log2 e) */
    float *abk;             /* B x 3K */
    float *kappa;           /* B x K */
    float *phi;             /* B x Up */
    float *gw;              /* B x L*4H: phi's contribution to every layer */
    const float *P;         /* Up x L*4H (onehot @ W_w) or NULL */
    const float *onehot;    /* Up x V, used when P is NULL */
    const float *Wwd;       /* V x L*4H, used when P is NULL */
    float *wbuf;            /* B x V */
    /* scratch */
    uint32_t *uh, *ul;      /* B x (max K / 4): the activations' high and low bytes */
    int32_t *acch, *accl;   /* B x max padded N */
    float *qlo, *qs;        /* B: each row's offset and step */
} Ctx;

int hw_abi(void) { return HW_ABI; }

int hw_cpu_ok(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

size_t hw_ctx_size(void) { return sizeof(Ctx); }

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")
#endif

/* -- elementwise ---------------------------------------------------------------------------- */
/* e^r for |r| <= ln2 / 2 (Taylor to r^7: relative error < 1e-8), times 2^n built in the exponent
 * bits; n <= -127 gives 0 (as flush-to-zero would), n >= 128 is clamped away by the callers. */
static inline __m512 exp_reduced(__m512 r, __m512 n) {
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    e = _mm512_max_epi32(e, _mm512_setzero_si512());
    __m512 two_n = _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
    return _mm512_mul_ps(p, two_n);
}

static inline __m512 vexp(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    return exp_reduced(r, n);
}

static inline __m512 vexp2(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(127.0f)), _mm512_set1_ps(-130.0f));
    __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(x, n); /* exact, |f| <= 1/2 */
    return exp_reduced(_mm512_mul_ps(f, _mm512_set1_ps(0.69314718055994531f)), n);
}

static inline __m512 vsigmoid(__m512 x) {
    __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, vexp(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

static inline __m512 vtanh(__m512 x) { /* 1 - 2 / (e^{2x} + 1) */
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 e = vexp(_mm512_add_ps(x, x));
    return _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
}

static inline __mmask16 tail(int n, int j) {
    int left = n - j;
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}

/* -- int8 matrix products ------------------------------------------------------------------ */
/* Quantise B rows of x (row stride xs, K values) to 16 bits; pad each row to a multiple of 4 */
static void quantise_rows(const float *x, int xs, int B, int K, Ctx *cx) {
    int KG = (K + 3) / 4;
    for (int r = 0; r < B; r++) {
        const float *xr = x + (size_t)r * xs;
        __m512 lo = _mm512_set1_ps(xr[0]), hi = lo;
        for (int j = 0; j < K; j += 16) {
            __mmask16 m = tail(K, j);
            __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(xr[0]), m, xr + j);
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
        }
        float l = _mm512_reduce_min_ps(lo), h = _mm512_reduce_max_ps(hi);
        float s = (h - l) / 65535.0f;
        float inv = s > 0 ? 1.0f / s : 0.0f;
        cx->qlo[r] = l;
        cx->qs[r] = s;
        uint8_t *ub = (uint8_t *)(cx->uh + (size_t)r * KG), *lb = (uint8_t *)(cx->ul + (size_t)r * KG);
        for (int j = 0; j < K; j += 16) {
            __mmask16 m = tail(K, j);
            __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(l), m, xr + j);
            __m512 t = _mm512_mul_ps(_mm512_sub_ps(v, _mm512_set1_ps(l)), _mm512_set1_ps(inv));
            __m512i u = _mm512_cvtps_epi32(t); /* round to nearest */
            u = _mm512_min_epi32(_mm512_max_epi32(u, _mm512_setzero_si512()), _mm512_set1_epi32(65535));
            _mm_mask_storeu_epi8(ub + j, m, _mm512_cvtepi32_epi8(_mm512_srli_epi32(u, 8)));
            _mm_mask_storeu_epi8(lb + j, m, _mm512_cvtepi32_epi8(_mm512_and_si512(u, _mm512_set1_epi32(255))));
        }
        for (int j = K; j < 4 * KG; j++) ub[j] = lb[j] = 0;
    }
}

/* R rows x BL blocks of 16 outputs, from output block nb */
#define TILE(R, BL)                                                                              \
    static void tile_##R##_##BL(const uint32_t *uh, const uint32_t *ul, int KG, const int8_t *q, \
                                int nb, int32_t *acch, int32_t *accl, int as) {                 \
        __m512i ah[R][BL], al[R][BL];                                                            \
        for (int r = 0; r < R; r++)                                                              \
            for (int b = 0; b < BL; b++) ah[r][b] = al[r][b] = _mm512_setzero_si512();          \
        const int8_t *w0 = q + (size_t)nb * KG * 64;                                             \
        for (int g = 0; g < KG; g++) {                                                           \
            __m512i w[BL];                                                                       \
            for (int b = 0; b < BL; b++)                                                         \
                w[b] = _mm512_loadu_si512(w0 + ((size_t)b * KG + g) * 64);                       \
            for (int r = 0; r < R; r++) {                                                        \
                __m512i xh = _mm512_set1_epi32((int)uh[r * KG + g]);                             \
                __m512i xl = _mm512_set1_epi32((int)ul[r * KG + g]);                             \
                for (int b = 0; b < BL; b++) {                                                   \
                    ah[r][b] = _mm512_dpbusd_epi32(ah[r][b], xh, w[b]);                          \
                    al[r][b] = _mm512_dpbusd_epi32(al[r][b], xl, w[b]);                          \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        for (int r = 0; r < R; r++)                                                              \
            for (int b = 0; b < BL; b++) {                                                       \
                _mm512_storeu_si512(acch + (size_t)r * as + (nb + b) * 16, ah[r][b]);            \
                _mm512_storeu_si512(accl + (size_t)r * as + (nb + b) * 16, al[r][b]);            \
            }                                                                                    \
    }
TILE(1, 4)
TILE(2, 4)
TILE(3, 4)
TILE(1, 1)
TILE(2, 1)
TILE(3, 1)

/* out[r][j] = base[r][j] + x[r] . W[:, j] for B rows of x (row stride xs) */
static void qmm(const float *x, int xs, const QMat *W, const float *base, int bs, float *out,
                int os, Ctx *cx) {
    int B = cx->B, KG = (W->K + 3) / 4, NB = (W->N + 15) / 16, as = NB * 16;
    quantise_rows(x, xs, B, W->K, cx);
    for (int r0 = 0; r0 < B; r0 += 3) {
        int R = B - r0 < 3 ? B - r0 : 3;
        const uint32_t *h = cx->uh + (size_t)r0 * KG, *l = cx->ul + (size_t)r0 * KG;
        int32_t *ah = cx->acch + (size_t)r0 * as, *al = cx->accl + (size_t)r0 * as;
        int nb = 0;
        for (; nb + 4 <= NB; nb += 4) {
            if (R == 1) tile_1_4(h, l, KG, W->q, nb, ah, al, as);
            else if (R == 2) tile_2_4(h, l, KG, W->q, nb, ah, al, as);
            else tile_3_4(h, l, KG, W->q, nb, ah, al, as);
        }
        for (; nb < NB; nb++) {
            if (R == 1) tile_1_1(h, l, KG, W->q, nb, ah, al, as);
            else if (R == 2) tile_2_1(h, l, KG, W->q, nb, ah, al, as);
            else tile_3_1(h, l, KG, W->q, nb, ah, al, as);
        }
    }
    /* x . q_j ~= lo * rowsum_j + s * (256 acch_j + accl_j); times scale_j */
    for (int r = 0; r < B; r++) {
        __m512 lo = _mm512_set1_ps(cx->qlo[r]), s = _mm512_set1_ps(cx->qs[r]);
        const int32_t *ah = cx->acch + (size_t)r * as, *al = cx->accl + (size_t)r * as;
        for (int j = 0; j < W->N; j += 16) {
            __mmask16 m = tail(W->N, j);
            __m512 a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(ah + j)),
                                       _mm512_set1_ps(256.0f),
                                       _mm512_cvtepi32_ps(_mm512_loadu_si512(al + j)));
            __m512 d = _mm512_fmadd_ps(lo, _mm512_cvtepi32_ps(_mm512_loadu_si512(W->rowsum + j)),
                                       _mm512_mul_ps(s, a));
            __m512 v = _mm512_fmadd_ps(d, _mm512_loadu_ps(W->scale + j),
                                       _mm512_maskz_loadu_ps(m, base + (size_t)r * bs + j));
            _mm512_mask_storeu_ps(out + (size_t)r * os + j, m, v);
        }
    }
}

/* out[r] += sum_i coef[r][i] * M[i]  (M: n x cols), skipping exact zeros (characters the
 * window has left far behind contribute exactly 0 under flush-to-zero) */
static void rows_combine(const float *coef, int cs, int n, const float *M, int cols, float *out,
                         int os, int B, int accumulate) {
    for (int r = 0; r < B; r++) {
        float *o = out + (size_t)r * os;
        if (!accumulate) memset(o, 0, sizeof(float) * cols);
        for (int i = 0; i < n; i++) {
            float a = coef[(size_t)r * cs + i];
            if (a == 0.0f) continue;
            __m512 av = _mm512_set1_ps(a);
            const float *m = M + (size_t)i * cols;
            for (int j = 0; j < cols; j += 16) {
                __mmask16 k = tail(cols, j);
                _mm512_mask_storeu_ps(o + j, k, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(k, m + j),
                                                                _mm512_maskz_loadu_ps(k, o + j)));
            }
        }
    }
}

/* out[r] = base + x[r] @ W for B rows (W: K x N fp32, row-major), 128 outputs per pass held in
 * registers */
static void gemv_f32(const float *x, int xs, int K, const float *W, int N, const float *base,
                     float *out, int os, int B) {
    for (int r = 0; r < B; r++) {
        const float *xr = x + (size_t)r * xs;
        for (int j0 = 0; j0 < N; j0 += 128) {
            __m512 acc[8];
            __mmask16 m[8];
            int nv = (N - j0 + 15) / 16 < 8 ? (N - j0 + 15) / 16 : 8;
            for (int v = 0; v < 8; v++) {
                m[v] = v < nv ? tail(N, j0 + 16 * v) : 0;
                acc[v] = _mm512_maskz_loadu_ps(m[v], base + j0 + 16 * v);
            }
            for (int k = 0; k < K; k++) {
                __m512 xv = _mm512_set1_ps(xr[k]);
                const float *w = W + (size_t)k * N + j0;
                for (int v = 0; v < nv; v++)
                    acc[v] = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m[v], w + 16 * v), acc[v]);
            }
            for (int v = 0; v < nv; v++) _mm512_mask_storeu_ps(out + (size_t)r * os + j0 + 16 * v, m[v], acc[v]);
        }
    }
}

/* -- the step ------------------------------------------------------------------------------ */
static void lstm(Ctx *cx, int n) {
    int B = cx->B, H = cx->H, H4 = 4 * H, LH = cx->L * H, L4 = cx->L * H4;
    const float *in = n == 0 ? cx->hbuf : cx->hbuf + (size_t)(n - 1) * H;
    qmm(in, LH, &cx->Wrec[n], cx->G + (size_t)n * H4, L4, cx->gates, H4, cx);
    const float *pif = cx->peep_if[n], *po = cx->peep_o[n];
    for (int r = 0; r < B; r++) {
        float *g = cx->gates + (size_t)r * H4, *c = cx->c[n] + (size_t)r * H;
        float *h = cx->hbuf + (size_t)r * LH + (size_t)n * H;
        for (int j = 0; j < H; j += 16) {
            __mmask16 m = tail(H, j);
            __m512 cp = _mm512_maskz_loadu_ps(m, c + j);
            __m512 ai = _mm512_maskz_loadu_ps(m, g + j), af = _mm512_maskz_loadu_ps(m, g + H + j);
            __m512 ac = _mm512_maskz_loadu_ps(m, g + 2 * H + j), ao = _mm512_maskz_loadu_ps(m, g + 3 * H + j);
            if (pif) { /* Eqs. 7-8: w_ci c_{t-1}, w_cf c_{t-1} */
                ai = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, pif + j), cp, ai);
                af = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, pif + H + j), cp, af);
            }
            __m512 i = vsigmoid(ai), f = vsigmoid(af);
            __m512 cn = _mm512_fmadd_ps(i, vtanh(ac), _mm512_mul_ps(f, cp)); /* Eq. 9 */
            if (po) ao = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, po + j), cn, ao); /* Eq. 10 */
            _mm512_mask_storeu_ps(c + j, m, cn);
            _mm512_mask_storeu_ps(h + j, m, _mm512_mul_ps(vsigmoid(ao), vtanh(cn))); /* Eq. 11 */
        }
    }
}

static void window(Ctx *cx) {
    int B = cx->B, H = cx->H, K = cx->K, K3 = 3 * K, Up = cx->Up, LH = cx->L * H;
    int L4 = cx->L * 4 * H;
    for (int r = 0; r < B; r++) { /* Eq. 48, then exp (Eqs. 49-51) */
        float *abk = cx->abk + (size_t)r * K3;
        const float *h1 = cx->hbuf + (size_t)r * LH;
        memcpy(abk, cx->bp, sizeof(float) * K3);
        for (int i = 0; i < H; i++) {
            __m512 hv = _mm512_set1_ps(h1[i]);
            const float *w = cx->Wp + (size_t)i * K3;
            for (int j = 0; j < K3; j += 16) {
                __mmask16 m = tail(K3, j);
                _mm512_mask_storeu_ps(abk + j, m, _mm512_fmadd_ps(hv, _mm512_maskz_loadu_ps(m, w + j),
                                                                  _mm512_maskz_loadu_ps(m, abk + j)));
            }
        }
        for (int j = 0; j < K3; j += 16) {
            __mmask16 m = tail(K3, j);
            _mm512_mask_storeu_ps(abk + j, m, vexp(_mm512_maskz_loadu_ps(m, abk + j)));
        }
        float *kappa = cx->kappa + (size_t)r * K, *phi = cx->phi + (size_t)r * Up;
        for (int k = 0; k < K; k++) kappa[k] += abk[2 * K + k]; /* Eq. 51 */
        for (int u = 0; u < Up; u += 16) { /* Eq. 46: phi(u) = sum_k alpha exp2(-beta' (kappa - u)^2) */
            __mmask16 m = tail(Up, u);
            __m512 pos = _mm512_cvtepi32_ps(_mm512_add_epi32(
                _mm512_set1_epi32(u + 1),
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)));
            __m512 acc = _mm512_setzero_ps();
            for (int k = 0; k < K; k++) {
                __m512 d = _mm512_sub_ps(_mm512_set1_ps(kappa[k]), pos);
                __m512 e = _mm512_mul_ps(_mm512_mul_ps(d, d), _mm512_set1_ps(abk[K + k]));
                acc = _mm512_fmadd_ps(_mm512_set1_ps(abk[k]), vexp2(_mm512_sub_ps(_mm512_setzero_ps(), e)), acc);
            }
            _mm512_mask_storeu_ps(phi + u, m, acc);
        }
    }
    if (cx->P) { /* phi @ (onehot @ W_w): every layer's window contribution */
        rows_combine(cx->phi, Up, Up, cx->P, L4, cx->gw, L4, B, 0);
    } else { /* w_t = phi @ onehot (Eq. 47), then w_t @ W_w */
        rows_combine(cx->phi, Up, Up, cx->onehot, cx->V, cx->wbuf, cx->V, B, 0);
        rows_combine(cx->wbuf, cx->V, cx->V, cx->Wwd, L4, cx->gw, L4, B, 0);
    }
}

static void add_rows(float *dst, const float *src, int cols, int stride, int B) {
    for (int r = 0; r < B; r++)
        for (int j = 0; j < cols; j += 16) {
            __mmask16 m = tail(cols, j);
            float *d = dst + (size_t)r * stride + j;
            const float *s = src + (size_t)r * stride + j;
            _mm512_mask_storeu_ps(d, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), _mm512_maskz_loadu_ps(m, s)));
        }
}

void hw_step(Ctx *cx) {
    int B = cx->B, H4 = 4 * cx->H, L4 = cx->L * H4;
    for (int r = 0; r < B; r++) { /* every layer's projection of x_t, plus the biases */
        const float *x = cx->x + (size_t)r * 3;
        __m512 x0 = _mm512_set1_ps(x[0]), x1 = _mm512_set1_ps(x[1]), x2 = _mm512_set1_ps(x[2]);
        float *G = cx->G + (size_t)r * L4;
        for (int j = 0; j < L4; j += 16) {
            __mmask16 m = tail(L4, j);
            __m512 v = _mm512_maskz_loadu_ps(m, cx->b + j);
            v = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m, cx->Wx + j), v);
            v = _mm512_fmadd_ps(x1, _mm512_maskz_loadu_ps(m, cx->Wx + L4 + j), v);
            v = _mm512_fmadd_ps(x2, _mm512_maskz_loadu_ps(m, cx->Wx + 2 * (size_t)L4 + j), v);
            _mm512_mask_storeu_ps(G + j, m, v);
        }
    }
    if (cx->synthesis) add_rows(cx->G, cx->gw, H4, L4, B); /* layer 1 sees w_{t-1} (Eq. 52) */
    lstm(cx, 0);
    if (cx->synthesis) {
        window(cx);
        add_rows(cx->G + H4, cx->gw + H4, L4 - H4, L4, B); /* layers 2..L see w_t (Eq. 53) */
    }
    for (int n = 1; n < cx->L; n++) lstm(cx, n);
    gemv_f32(cx->hbuf, cx->L * cx->H, cx->L * cx->H, cx->Wy, cx->ny, cx->by, cx->y, cx->ny, B); /* Eq. 3 */
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else /* not x86-64 with GCC or clang: hw_cpu_ok() says 0 and the loader never calls this */
void hw_step(Ctx *cx) { (void)cx; }
#endif
