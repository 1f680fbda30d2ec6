/* The batch-B sampling step of a HandwritingModel with int8 weights, for x86-64 CPUs: the same
 * computation as engine.fast.FastStepper._core, in one call. Two instruction sets, chosen at
 * run time (hw_cpu_level; Ctx.level): AVX-512 with VNNI, and AVX2 with FMA (x86-64 CPUs since
 * about 2015).
 *
 * Why native: at batch 1 the torch step is ~45 small ops (~1.5 us of dispatch each) around three
 * int8 matrix products that torch's kernel runs at ~18 G multiply-adds/s, well below what the
 * weight bytes allow. Here each product streams its packed int8 weights once and the
 * elementwise work runs in registers. The output layer (Eq. 3) stays fp32, as in the torch step.
 *
 * Activations are quantised per row, asymmetric: x ~= lo + s * u. AVX-512 VNNI: u in
 * [0, 65535], split into a high and a low byte that each meet the same weight register through
 * vpdpbusd (two per weight load; the step is bound by weight bytes, so the second costs
 * little). AVX2: u in [0, 32767] as int16, against the weights widened to int16 (vpmaddwd),
 * summed in int32 over at most 512 inputs at a time and then in fp32 (no int32 overflow for
 * any size). The activation error (1 part in 65535 or 32767 of each row's range) is far below
 * the weights' own int8 rounding, and every row is computed alone, so a row's result does not
 * depend on the batch.
 *
 * Packed weight layout (engine.native.Packed): AVX-512, outputs in blocks of 16 and inputs in
 * groups of 4, q[block][group][16][4]; AVX2, blocks of 8 and groups of 2, q[block][group][8][2];
 * zero-padded. rowsum[j] = sum_k q[j][k]; scale[j] fp32.
 *
 * Build: cc -O3 -shared -fPIC (no -march: each instruction set's functions carry their own
 * target; the loader asks hw_cpu_level which of them this CPU runs, and each Ctx says which
 * one its weights are packed for). The shared part of the
 * step is written once and compiled for each set by including this file again (HW_BODY). */
#ifndef HW_BODY
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HW_ABI 3
#define MAX_LAYERS 16

typedef struct {
    const int8_t *q;        /* packed, see above */
    const float *scale;     /* [padded N] */
    const int32_t *rowsum;  /* [padded N] */
    int32_t K, N;           /* inputs, outputs */
} QMat;

typedef struct {
    int32_t level;          /* the instruction set the weights are packed for: 2 or 1 */
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
    /* scratch: B x (max K / 2 + 2) each; B x max padded N each; B each */
    uint32_t *uh, *ul;      /* the quantised activations (VNNI: high / low bytes; AVX2: uh) */
    int32_t *acch, *accl;   /* the products' sums (AVX2: fp32 in acch) */
    float *qlo, *qs;        /* each row's offset and step */
} Ctx;

int hw_abi(void) { return HW_ABI; }

size_t hw_ctx_size(void) { return sizeof(Ctx); }

/* 2: AVX-512 F/BW/VL + VNNI; 1: AVX2 + FMA; 0: neither (the loader keeps the torch step) */
int hw_cpu_level(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* ======================= AVX-512 with VNNI ======================= */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")
#endif

static inline __mmask16 tail16(int n, int j) {
    int left = n - j;
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}

/* Quantise B rows of x (row stride xs, K values) to 16 bits, as high and low bytes */
static void quantise_avx512(const float *x, int xs, int B, int K, Ctx *cx) {
    int KG = (K + 3) / 4;
    for (int r = 0; r < B; r++) {
        const float *xr = x + (size_t)r * xs;
        __m512 lo = _mm512_set1_ps(xr[0]), hi = lo;
        for (int j = 0; j < K; j += 16) {
            __mmask16 m = tail16(K, j);
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
            __mmask16 m = tail16(K, j);
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
#define TILE512(R, BL)                                                                           \
    static void tile512_##R##_##BL(const uint32_t *uh, const uint32_t *ul, int KG,             \
                                   const int8_t *q, int nb, int32_t *acch, int32_t *accl,      \
                                   int as) {                                                     \
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
TILE512(1, 4)
TILE512(2, 4)
TILE512(3, 4)
TILE512(1, 1)
TILE512(2, 1)
TILE512(3, 1)

/* out[r][j] = base[r][j] + x[r] . W[:, j] for B rows of x (row stride xs) */
static void qmm_avx512(const float *x, int xs, const QMat *W, const float *base, int bs,
                       float *out, int os, Ctx *cx) {
    int B = cx->B, KG = (W->K + 3) / 4, NB = (W->N + 15) / 16, as = NB * 16;
    quantise_avx512(x, xs, B, W->K, cx);
    for (int r0 = 0; r0 < B; r0 += 3) {
        int R = B - r0 < 3 ? B - r0 : 3;
        const uint32_t *h = cx->uh + (size_t)r0 * KG, *l = cx->ul + (size_t)r0 * KG;
        int32_t *ah = cx->acch + (size_t)r0 * as, *al = cx->accl + (size_t)r0 * as;
        int nb = 0;
        for (; nb + 4 <= NB; nb += 4) {
            if (R == 1) tile512_1_4(h, l, KG, W->q, nb, ah, al, as);
            else if (R == 2) tile512_2_4(h, l, KG, W->q, nb, ah, al, as);
            else tile512_3_4(h, l, KG, W->q, nb, ah, al, as);
        }
        for (; nb < NB; nb++) {
            if (R == 1) tile512_1_1(h, l, KG, W->q, nb, ah, al, as);
            else if (R == 2) tile512_2_1(h, l, KG, W->q, nb, ah, al, as);
            else tile512_3_1(h, l, KG, W->q, nb, ah, al, as);
        }
    }
    /* x . q_j ~= lo * rowsum_j + s * (256 acch_j + accl_j); times scale_j */
    for (int r = 0; r < B; r++) {
        __m512 lo = _mm512_set1_ps(cx->qlo[r]), s = _mm512_set1_ps(cx->qs[r]);
        const int32_t *ah = cx->acch + (size_t)r * as, *al = cx->accl + (size_t)r * as;
        for (int j = 0; j < W->N; j += 16) {
            __mmask16 m = tail16(W->N, j);
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

/* the vector vocabulary of the shared body, AVX-512 */
#define SFX(name) name##_avx512
#define VL 16
#define vf __m512
#define vm __mmask16
#define VMASK(n, j) tail16((n), (j))
#define LDM(p, m) _mm512_maskz_loadu_ps((m), (p))
#define STM(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
#define SET1(a) _mm512_set1_ps(a)
#define ZERO() _mm512_setzero_ps()
#define ADD(a, b) _mm512_add_ps(a, b)
#define SUB(a, b) _mm512_sub_ps(a, b)
#define MUL(a, b) _mm512_mul_ps(a, b)
#define DIV(a, b) _mm512_div_ps(a, b)
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define FNMA(a, b, c) _mm512_fnmadd_ps(a, b, c)
#define MIN(a, b) _mm512_min_ps(a, b)
#define MAX(a, b) _mm512_max_ps(a, b)
#define RNDN(a) _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define TWO_POW(n) /* 2^n for whole n (floats), 0 for n <= -127 */                              \
    _mm512_castsi512_ps(_mm512_slli_epi32(                                                       \
        _mm512_max_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)),       \
                         _mm512_setzero_si512()), 23))
#define IOTA(start) /* start, start + 1, ... as floats */                                      \
    _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_set1_epi32(start),                              \
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)))
#define HW_BODY 1
#include "step.c" /* this file again, for the shared body */
#undef HW_BODY
#undef vf
#undef vm
#undef SFX
#undef VL
#undef VMASK
#undef LDM
#undef STM
#undef SET1
#undef ZERO
#undef ADD
#undef SUB
#undef MUL
#undef DIV
#undef FMA
#undef FNMA
#undef MIN
#undef MAX
#undef RNDN
#undef TWO_POW
#undef IOTA

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

/* ======================= AVX2 with FMA ======================= */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

static inline __m256i tail8(int n, int j) { /* all-ones lanes for the n - j values left */
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n - j), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline float hmin8(__m256 v) {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_min_ss(m, _mm_shuffle_ps(m, m, 1)));
}

static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}

/* Quantise B rows of x to [0, 32767] as int16, in pairs (one uint32 per two inputs) */
static void quantise_avx2(const float *x, int xs, int B, int K, Ctx *cx) {
    int KG = (K + 1) / 2;
    for (int r = 0; r < B; r++) {
        const float *xr = x + (size_t)r * xs;
        __m256 first = _mm256_set1_ps(xr[0]), lo = first, hi = first;
        for (int j = 0; j < K; j += 8) {
            __m256 m = _mm256_castsi256_ps(tail8(K, j));
            __m256 v = _mm256_blendv_ps(first, _mm256_maskload_ps(xr + j, _mm256_castps_si256(m)), m);
            lo = _mm256_min_ps(lo, v);
            hi = _mm256_max_ps(hi, v);
        }
        float l = hmin8(lo), h = hmax8(hi);
        float s = (h - l) / 32767.0f;
        float inv = s > 0 ? 1.0f / s : 0.0f;
        cx->qlo[r] = l;
        cx->qs[r] = s;
        int16_t *u16 = (int16_t *)(cx->uh + (size_t)r * KG);
        for (int j = 0; j < K; j += 8) {
            __m256i mi = tail8(K, j);
            __m256 v = _mm256_maskload_ps(xr + j, mi);
            __m256 t = _mm256_mul_ps(_mm256_sub_ps(v, _mm256_set1_ps(l)), _mm256_set1_ps(inv));
            __m256i u = _mm256_cvtps_epi32(t);
            u = _mm256_min_epi32(_mm256_max_epi32(u, _mm256_setzero_si256()), _mm256_set1_epi32(32767));
            int32_t tmp[8];
            _mm256_storeu_si256((__m256i *)tmp, u);
            int n = K - j < 8 ? K - j : 8;
            for (int i = 0; i < n; i++) u16[j + i] = (int16_t)tmp[i];
        }
        if (K % 2) u16[K] = 0;
    }
}

/* R rows x BL blocks of 8 outputs from block nb: int32 sums over at most 256 input pairs at a
 * time (|sum| < 2^31 for any weights), added up in fp32 */
#define TILE256(R, BL)                                                                           \
    static void tile256_##R##_##BL(const uint32_t *u, int KG, const int8_t *q, int nb,          \
                                   float *acc, int as) {                                         \
        __m256 fa[R][BL];                                                                        \
        for (int r = 0; r < R; r++)                                                              \
            for (int b = 0; b < BL; b++) fa[r][b] = _mm256_setzero_ps();                         \
        const int8_t *w0 = q + (size_t)nb * KG * 16;                                             \
        for (int g0 = 0; g0 < KG; g0 += 256) {                                                   \
            int g1 = KG - g0 < 256 ? KG : g0 + 256;                                              \
            __m256i ia[R][BL];                                                                   \
            for (int r = 0; r < R; r++)                                                          \
                for (int b = 0; b < BL; b++) ia[r][b] = _mm256_setzero_si256();                  \
            for (int g = g0; g < g1; g++) {                                                      \
                __m256i w[BL];                                                                   \
                for (int b = 0; b < BL; b++)                                                     \
                    w[b] = _mm256_cvtepi8_epi16(                                                 \
                        _mm_loadu_si128((const __m128i *)(w0 + ((size_t)b * KG + g) * 16)));     \
                for (int r = 0; r < R; r++) {                                                    \
                    __m256i xv = _mm256_set1_epi32((int)u[r * KG + g]);                          \
                    for (int b = 0; b < BL; b++)                                                 \
                        ia[r][b] = _mm256_add_epi32(ia[r][b], _mm256_madd_epi16(xv, w[b]));      \
                }                                                                                \
            }                                                                                    \
            for (int r = 0; r < R; r++)                                                          \
                for (int b = 0; b < BL; b++)                                                     \
                    fa[r][b] = _mm256_add_ps(fa[r][b], _mm256_cvtepi32_ps(ia[r][b]));            \
        }                                                                                        \
        for (int r = 0; r < R; r++)                                                              \
            for (int b = 0; b < BL; b++)                                                         \
                _mm256_storeu_ps(acc + (size_t)r * as + (nb + b) * 8, fa[r][b]);                 \
    }
TILE256(1, 4)
TILE256(2, 2)
TILE256(1, 1)
TILE256(2, 1)

static void qmm_avx2(const float *x, int xs, const QMat *W, const float *base, int bs, float *out,
                     int os, Ctx *cx) {
    int B = cx->B, KG = (W->K + 1) / 2, NB = (W->N + 7) / 8, as = NB * 8;
    float *acc = (float *)cx->acch;
    quantise_avx2(x, xs, B, W->K, cx);
    for (int r0 = 0; r0 < B; r0 += 2) {
        int R = B - r0 < 2 ? B - r0 : 2;
        const uint32_t *u = cx->uh + (size_t)r0 * KG;
        float *a = acc + (size_t)r0 * as;
        int nb = 0;
        if (R == 1) {
            for (; nb + 4 <= NB; nb += 4) tile256_1_4(u, KG, W->q, nb, a, as);
            for (; nb < NB; nb++) tile256_1_1(u, KG, W->q, nb, a, as);
        } else {
            for (; nb + 2 <= NB; nb += 2) tile256_2_2(u, KG, W->q, nb, a, as);
            for (; nb < NB; nb++) tile256_2_1(u, KG, W->q, nb, a, as);
        }
    }
    /* x . q_j ~= lo * rowsum_j + s * acc_j; times scale_j */
    for (int r = 0; r < B; r++) {
        __m256 lo = _mm256_set1_ps(cx->qlo[r]), s = _mm256_set1_ps(cx->qs[r]);
        const float *ar = acc + (size_t)r * as;
        for (int j = 0; j < W->N; j += 8) {
            __m256i m = tail8(W->N, j);
            __m256 d = _mm256_fmadd_ps(lo, _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(W->rowsum + j))),
                                       _mm256_mul_ps(s, _mm256_loadu_ps(ar + j)));
            __m256 v = _mm256_fmadd_ps(d, _mm256_loadu_ps(W->scale + j),
                                       _mm256_maskload_ps(base + (size_t)r * bs + j, m));
            _mm256_maskstore_ps(out + (size_t)r * os + j, m, v);
        }
    }
}

/* the vector vocabulary of the shared body, AVX2 */
#define SFX(name) name##_avx2
#define VL 8
#define vf __m256
#define vm __m256i
#define VMASK(n, j) tail8((n), (j))
#define LDM(p, m) _mm256_maskload_ps((p), (m))
#define STM(p, m, v) _mm256_maskstore_ps((p), (m), (v))
#define SET1(a) _mm256_set1_ps(a)
#define ZERO() _mm256_setzero_ps()
#define ADD(a, b) _mm256_add_ps(a, b)
#define SUB(a, b) _mm256_sub_ps(a, b)
#define MUL(a, b) _mm256_mul_ps(a, b)
#define DIV(a, b) _mm256_div_ps(a, b)
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define FNMA(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define MIN(a, b) _mm256_min_ps(a, b)
#define MAX(a, b) _mm256_max_ps(a, b)
#define RNDN(a) _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define TWO_POW(n)                                                                               \
    _mm256_castsi256_ps(_mm256_slli_epi32(                                                       \
        _mm256_max_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),       \
                         _mm256_setzero_si256()), 23))
#define IOTA(start)                                                                              \
    _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_set1_epi32(start),                              \
                                        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)))
#define HW_BODY 2
#include "step.c" /* this file again, for the shared body */
#undef HW_BODY

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

void hw_step(Ctx *cx) {
    if (cx->level == 2) step_avx512(cx);
    else if (cx->level == 1) step_avx2(cx);
}

#else /* not x86-64 with GCC or clang: hw_cpu_level() says 0 and the loader never calls this */
void hw_step(Ctx *cx) { (void)cx; }
#endif

#else /* HW_BODY: the step, written once over the vector vocabulary defined above ========= */

/* e^r for |r| <= ln2 / 2 (Taylor to r^7: relative error < 1e-8), times 2^n built in the exponent
 * bits; n <= -127 gives 0 (as flush-to-zero would), n >= 128 is clamped away by the callers. */
static inline vf SFX(exp_reduced)(vf r, vf n) {
    vf p = SET1(1.0f / 5040);
    p = FMA(p, r, SET1(1.0f / 720));
    p = FMA(p, r, SET1(1.0f / 120));
    p = FMA(p, r, SET1(1.0f / 24));
    p = FMA(p, r, SET1(1.0f / 6));
    p = FMA(p, r, SET1(0.5f));
    p = FMA(p, r, SET1(1.0f));
    p = FMA(p, r, SET1(1.0f));
    return MUL(p, TWO_POW(n));
}

static inline vf SFX(vexp)(vf x) {
    x = MAX(MIN(x, SET1(88.0f)), SET1(-88.0f));
    vf n = RNDN(MUL(x, SET1(1.44269504088896341f)));
    vf r = FNMA(n, SET1(0.693145751953125f), x);
    r = FNMA(n, SET1(1.428606765330187e-06f), r);
    return SFX(exp_reduced)(r, n);
}

static inline vf SFX(vexp2)(vf x) {
    x = MAX(MIN(x, SET1(127.0f)), SET1(-130.0f));
    vf n = RNDN(x);
    vf f = SUB(x, n); /* exact, |f| <= 1/2 */
    return SFX(exp_reduced)(MUL(f, SET1(0.69314718055994531f)), n);
}

static inline vf SFX(vsigmoid)(vf x) {
    return DIV(SET1(1.0f), ADD(SET1(1.0f), SFX(vexp)(SUB(ZERO(), x))));
}

static inline vf SFX(vtanh)(vf x) { /* 1 - 2 / (e^{2x} + 1) */
    vf e = SFX(vexp)(ADD(x, x));
    return SUB(SET1(1.0f), DIV(SET1(2.0f), ADD(e, SET1(1.0f))));
}

/* out[r] (+)= sum_i coef[r][i] * M[i]  (M: n x cols), skipping exact zeros (characters the
 * window has left far behind contribute exactly 0 under flush-to-zero) */
static void SFX(rows_combine)(const float *coef, int cs, int n, const float *M, int cols,
                              float *out, int os, int B) {
    for (int r = 0; r < B; r++) {
        float *o = out + (size_t)r * os;
        memset(o, 0, sizeof(float) * cols);
        for (int i = 0; i < n; i++) {
            float a = coef[(size_t)r * cs + i];
            if (a == 0.0f) continue;
            vf av = SET1(a);
            const float *m = M + (size_t)i * cols;
            for (int j = 0; j < cols; j += VL) {
                vm k = VMASK(cols, j);
                STM(o + j, k, FMA(av, LDM(m + j, k), LDM(o + j, k)));
            }
        }
    }
}

/* out[r] = base + x[r] @ W for B rows (W: K x N fp32, row-major), 8 vectors of outputs per pass
 * held in registers */
static void SFX(gemv_f32)(const float *x, int xs, int K, const float *W, int N, const float *base,
                          float *out, int os, int B) {
    for (int r = 0; r < B; r++) {
        const float *xr = x + (size_t)r * xs;
        for (int j0 = 0; j0 < N; j0 += 8 * VL) {
            vf acc[8];
            vm m[8];
            int nv = (N - j0 + VL - 1) / VL < 8 ? (N - j0 + VL - 1) / VL : 8;
            for (int v = 0; v < nv; v++) {
                m[v] = VMASK(N, j0 + VL * v);
                acc[v] = LDM(base + j0 + VL * v, m[v]);
            }
            for (int k = 0; k < K; k++) {
                vf xv = SET1(xr[k]);
                const float *w = W + (size_t)k * N + j0;
                for (int v = 0; v < nv; v++) acc[v] = FMA(xv, LDM(w + VL * v, m[v]), acc[v]);
            }
            for (int v = 0; v < nv; v++) STM(out + (size_t)r * os + j0 + VL * v, m[v], acc[v]);
        }
    }
}

static void SFX(lstm)(Ctx *cx, int n) {
    int B = cx->B, H = cx->H, H4 = 4 * H, LH = cx->L * H, L4 = cx->L * H4;
    const float *in = n == 0 ? cx->hbuf : cx->hbuf + (size_t)(n - 1) * H;
    SFX(qmm)(in, LH, &cx->Wrec[n], cx->G + (size_t)n * H4, L4, cx->gates, H4, cx);
    const float *pif = cx->peep_if[n], *po = cx->peep_o[n];
    for (int r = 0; r < B; r++) {
        float *g = cx->gates + (size_t)r * H4, *c = cx->c[n] + (size_t)r * H;
        float *h = cx->hbuf + (size_t)r * LH + (size_t)n * H;
        for (int j = 0; j < H; j += VL) {
            vm m = VMASK(H, j);
            vf cp = LDM(c + j, m);
            vf ai = LDM(g + j, m), af = LDM(g + H + j, m);
            vf ac = LDM(g + 2 * H + j, m), ao = LDM(g + 3 * H + j, m);
            if (pif) { /* Eqs. 7-8: w_ci c_{t-1}, w_cf c_{t-1} */
                ai = FMA(LDM(pif + j, m), cp, ai);
                af = FMA(LDM(pif + H + j, m), cp, af);
            }
            vf i = SFX(vsigmoid)(ai), f = SFX(vsigmoid)(af);
            vf cn = FMA(i, SFX(vtanh)(ac), MUL(f, cp)); /* Eq. 9 */
            if (po) ao = FMA(LDM(po + j, m), cn, ao); /* Eq. 10 */
            STM(c + j, m, cn);
            STM(h + j, m, MUL(SFX(vsigmoid)(ao), SFX(vtanh)(cn))); /* Eq. 11 */
        }
    }
}

static void SFX(window)(Ctx *cx) {
    int B = cx->B, H = cx->H, K = cx->K, K3 = 3 * K, Up = cx->Up, LH = cx->L * H;
    int L4 = cx->L * 4 * H;
    for (int r = 0; r < B; r++) { /* Eq. 48, then exp (Eqs. 49-51) */
        float *abk = cx->abk + (size_t)r * K3;
        const float *h1 = cx->hbuf + (size_t)r * LH;
        memcpy(abk, cx->bp, sizeof(float) * K3);
        for (int i = 0; i < H; i++) {
            vf hv = SET1(h1[i]);
            const float *w = cx->Wp + (size_t)i * K3;
            for (int j = 0; j < K3; j += VL) {
                vm m = VMASK(K3, j);
                STM(abk + j, m, FMA(hv, LDM(w + j, m), LDM(abk + j, m)));
            }
        }
        for (int j = 0; j < K3; j += VL) {
            vm m = VMASK(K3, j);
            STM(abk + j, m, SFX(vexp)(LDM(abk + j, m)));
        }
        float *kappa = cx->kappa + (size_t)r * K, *phi = cx->phi + (size_t)r * Up;
        for (int k = 0; k < K; k++) kappa[k] += abk[2 * K + k]; /* Eq. 51 */
        for (int u = 0; u < Up; u += VL) { /* Eq. 46: sum_k alpha exp2(-beta' (kappa - u)^2) */
            vm m = VMASK(Up, u);
            vf pos = IOTA(u + 1);
            vf acc = ZERO();
            for (int k = 0; k < K; k++) {
                vf d = SUB(SET1(kappa[k]), pos);
                vf e = MUL(MUL(d, d), SET1(abk[K + k]));
                acc = FMA(SET1(abk[k]), SFX(vexp2)(SUB(ZERO(), e)), acc);
            }
            STM(phi + u, m, acc);
        }
    }
    if (cx->P) { /* phi @ (onehot @ W_w): every layer's window contribution */
        SFX(rows_combine)(cx->phi, Up, Up, cx->P, L4, cx->gw, L4, B);
    } else { /* w_t = phi @ onehot (Eq. 47), then w_t @ W_w */
        SFX(rows_combine)(cx->phi, Up, Up, cx->onehot, cx->V, cx->wbuf, cx->V, B);
        SFX(rows_combine)(cx->wbuf, cx->V, cx->V, cx->Wwd, L4, cx->gw, L4, B);
    }
}

static void SFX(add_rows)(float *dst, const float *src, int cols, int stride, int B) {
    for (int r = 0; r < B; r++)
        for (int j = 0; j < cols; j += VL) {
            vm m = VMASK(cols, j);
            float *d = dst + (size_t)r * stride + j;
            const float *s = src + (size_t)r * stride + j;
            STM(d, m, ADD(LDM(d, m), LDM(s, m)));
        }
}

static void SFX(step)(Ctx *cx) {
    int B = cx->B, H4 = 4 * cx->H, L4 = cx->L * H4;
    for (int r = 0; r < B; r++) { /* every layer's projection of x_t, plus the biases */
        const float *x = cx->x + (size_t)r * 3;
        vf x0 = SET1(x[0]), x1 = SET1(x[1]), x2 = SET1(x[2]);
        float *G = cx->G + (size_t)r * L4;
        for (int j = 0; j < L4; j += VL) {
            vm m = VMASK(L4, j);
            vf v = LDM(cx->b + j, m);
            v = FMA(x0, LDM(cx->Wx + j, m), v);
            v = FMA(x1, LDM(cx->Wx + L4 + j, m), v);
            v = FMA(x2, LDM(cx->Wx + 2 * (size_t)L4 + j, m), v);
            STM(G + j, m, v);
        }
    }
    if (cx->synthesis) SFX(add_rows)(cx->G, cx->gw, H4, L4, B); /* layer 1 sees w_{t-1} (Eq. 52) */
    SFX(lstm)(cx, 0);
    if (cx->synthesis) {
        SFX(window)(cx);
        SFX(add_rows)(cx->G + H4, cx->gw + H4, L4 - H4, L4, B); /* layers 2..L see w_t (Eq. 53) */
    }
    for (int n = 1; n < cx->L; n++) SFX(lstm)(cx, n);
    SFX(gemv_f32)(cx->hbuf, cx->L * cx->H, cx->L * cx->H, cx->Wy, cx->ny, cx->by, cx->y, cx->ny, B); /* Eq. 3 */
}
#endif /* HW_BODY */
