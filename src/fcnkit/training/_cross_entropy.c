/* The summed per-pixel cross-entropy of class-last logits, forward and backward, in one
 * pass over the logits each (fcnkit.training.cross_entropy).
 *
 * Logits are (pixels, C) row-major, float32 or bfloat16 (the upper half of a float32);
 * targets (pixels) int64, `ignore` for a pixel without a label; weight (C) float32 or NULL.
 * Every caller passes a pixel range [begin, end), so that several threads can share one
 * tensor.
 *
 *   forward:  lse[p] = m_p + log Σ_c exp(z_pc − m_p), m_p = max_c z_pc;
 *             *loss = Σ_{p labelled} w[t_p] · (lse[p] − z_{p,t_p})    (accumulated in double)
 *   backward: ∂/∂z_pc = g · w[t_p] · (exp(z_pc − lse[p]) − [c = t_p]), 0 for ignored pixels,
 *             written in the logits' dtype (bf16 rounded to nearest even, as torch does).
 *
 * exp and log are Cephes's single-precision polynomials (S. L. Moshier, Cephes Math Library,
 * expf.c and logf.c; about 1 ulp) written branch-free, so that the compiler vectorises the
 * loops over a block of pixels' scores; built with -march=native, those run 8 or 16 lanes
 * wide. A pixel's row of C scores is too short to vectorise by itself (21 classes), so each
 * loop runs over a whole block of BLOCK pixels. NaN propagates as in torch: a labelled
 * pixel with a NaN score gives a NaN loss; an ignored pixel is never read into the sum and
 * its gradient is 0.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 64

/* Status codes (fcnkit.training.cross_entropy). */
#define FK_OK 0
#define FK_BAD_TARGET 1
#define FK_NOMEM 3

int fk_ce_abi(void) { return 1; }

static inline float bf16_to_float(uint16_t half) {
    uint32_t bits = (uint32_t)half << 16;
    float value;
    memcpy(&value, &bits, 4);
    return value;
}

/* c10::BFloat16's round_to_nearest_even: NaN becomes the quiet NaN 0x7FC0. */
static inline uint16_t float_to_bf16(float value) {
    uint32_t bits;
    memcpy(&bits, &value, 4);
    uint16_t rounded = (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
    return value != value ? (uint16_t)0x7FC0 : rounded;
}

/* exp(x) for x <= 0 (softmax arguments); 0 below −87, where exp(x) < 1.7e-38 (float32's
 * smallest normal number is 1.2e-38). exp(x) = 2^n · exp(r), n = round(x / ln 2), r = x − n ln 2
 * in two parts (Cody–Waite), exp(r) by Cephes expf's polynomial. n is rounded by adding
 * 1.5 · 2^23 and read from the float's bits: no float-to-int conversion, so a NaN x gives a
 * NaN result, not undefined behaviour. */
static inline float fk_exp(float x) {
    float clamped = x < -87.0f ? -87.0f : x;
    float shifted = clamped * 1.44269504088896341f + 12582912.0f;
    uint32_t n_bits;
    memcpy(&n_bits, &shifted, 4);
    float n = shifted - 12582912.0f;
    float r = clamped - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    uint32_t scale_bits = (n_bits - 0x4B400000u + 127u) << 23; /* 2^n, n in [−126, 0] */
    float scale;
    memcpy(&scale, &scale_bits, 4);
    y = y * scale;
    return x < -87.0f ? 0.0f : y;
}

/* log(s) for s >= 1 (a sum of exps whose largest term is exp(0)), Cephes logf's polynomial
 * on the mantissa in [√½, √2); a NaN s stays NaN. */
static inline float fk_log(float s) {
    uint32_t bits;
    memcpy(&bits, &s, 4);
    float e = (float)((int32_t)((bits >> 23) & 0xFFu) - 126);
    uint32_t mantissa_bits = (bits & 0x807FFFFFu) | 0x3F000000u; /* in [0.5, 1) */
    float x;
    memcpy(&x, &mantissa_bits, 4);
    int low = x < 0.707106781186547524f;
    e = low ? e - 1.0f : e;
    x = low ? x + x - 1.0f : x - 1.0f;
    float z = x * x;
    float y = 7.0376836292e-2f;
    y = y * x - 1.1514610310e-1f;
    y = y * x + 1.1676998740e-1f;
    y = y * x - 1.2420140846e-1f;
    y = y * x + 1.4249322787e-1f;
    y = y * x - 1.6668057665e-1f;
    y = y * x + 2.0000714765e-1f;
    y = y * x - 2.4999993993e-1f;
    y = y * x + 3.3333331174e-1f;
    y = y * x * z;
    y = y + -2.12194440e-4f * e;
    y = y + -0.5f * z;
    float result = x + y;
    result = result + 0.693359375f * e;
    return s != s ? s : result;
}

/* count scores from src (bf16 or float32) into dst as float32. */
static void load_scores(const void *src, int bf16, int64_t count, float *dst) {
    if (bf16) {
        const uint16_t *half = (const uint16_t *)src;
        for (int64_t i = 0; i < count; i++) dst[i] = bf16_to_float(half[i]);
    } else {
        memcpy(dst, src, (size_t)count * sizeof(float));
    }
}

static const void *row_block(const void *logits, int bf16, int64_t pixel, int64_t C) {
    return (const char *)logits + pixel * C * (bf16 ? 2 : 4);
}

/* buf[p·C + c] -= shift[p] for a block of np pixels. */
static void subtract_rows(float *buf, const float *shift, int64_t np, int64_t C) {
    for (int64_t p = 0; p < np; p++)
        for (int64_t c = 0; c < C; c++) buf[p * C + c] -= shift[p];
}

static void exp_all(float *buf, int64_t count) {
    for (int64_t i = 0; i < count; i++) buf[i] = fk_exp(buf[i]);
}

/* lse[p] for the pixels [begin, end) and their part of the loss in *loss; FK_BAD_TARGET
 * (with the target in *bad) for a target outside [0, C) that is not `ignore`. */
int fk_ce_forward(const void *logits, int bf16, int64_t begin, int64_t end, int64_t C,
                  const int64_t *targets, int64_t ignore, const float *weight, float *lse,
                  double *loss, int64_t *bad) {
    float *buf = malloc(sizeof(float) * BLOCK * (size_t)C);
    if (buf == NULL) return FK_NOMEM;
    float row_max[BLOCK], picked[BLOCK], sums[BLOCK];
    double total = 0.0;
    for (int64_t p0 = begin; p0 < end; p0 += BLOCK) {
        int64_t np = end - p0 < BLOCK ? end - p0 : BLOCK;
        load_scores(row_block(logits, bf16, p0, C), bf16, np * C, buf);
        for (int64_t p = 0; p < np; p++) {
            int64_t t = targets[p0 + p];
            if (t != ignore && (t < 0 || t >= C)) {
                *bad = t;
                free(buf);
                return FK_BAD_TARGET;
            }
            float m = buf[p * C];
            for (int64_t c = 1; c < C; c++) m = buf[p * C + c] > m ? buf[p * C + c] : m;
            row_max[p] = m;
            picked[p] = t == ignore ? 0.0f : buf[p * C + t];
        }
        subtract_rows(buf, row_max, np, C);
        exp_all(buf, np * C);
        for (int64_t p = 0; p < np; p++) {
            float s = 0.0f;
            for (int64_t c = 0; c < C; c++) s += buf[p * C + c];
            sums[p] = s;
        }
        for (int64_t p = 0; p < np; p++) lse[p0 + p] = row_max[p] + fk_log(sums[p]);
        for (int64_t p = 0; p < np; p++) {
            int64_t t = targets[p0 + p];
            if (t == ignore) continue;
            float w = weight == NULL ? 1.0f : weight[t];
            total += (double)(w * (lse[p0 + p] - picked[p]));
        }
    }
    free(buf);
    *loss = total;
    return FK_OK;
}

/* The gradient of g · loss for the pixels [begin, end), in the logits' dtype, from the
 * forward's lse. */
int fk_ce_backward(const void *logits, int bf16, int64_t begin, int64_t end, int64_t C,
                   const int64_t *targets, int64_t ignore, const float *weight,
                   const float *lse, float g, void *grad) {
    float *buf = malloc(sizeof(float) * BLOCK * (size_t)C);
    if (buf == NULL) return FK_NOMEM;
    for (int64_t p0 = begin; p0 < end; p0 += BLOCK) {
        int64_t np = end - p0 < BLOCK ? end - p0 : BLOCK;
        load_scores(row_block(logits, bf16, p0, C), bf16, np * C, buf);
        subtract_rows(buf, lse + p0, np, C);
        exp_all(buf, np * C);
        for (int64_t p = 0; p < np; p++) {
            int64_t t = targets[p0 + p];
            if (t == ignore) {
                memset(buf + p * C, 0, sizeof(float) * (size_t)C);
                continue;
            }
            float scale = g * (weight == NULL ? 1.0f : weight[t]);
            for (int64_t c = 0; c < C; c++) buf[p * C + c] *= scale;
            buf[p * C + t] -= scale;
        }
        if (bf16) {
            uint16_t *out = (uint16_t *)grad + p0 * C;
            for (int64_t i = 0; i < np * C; i++) out[i] = float_to_bf16(buf[i]);
        } else {
            memcpy((float *)grad + p0 * C, buf, sizeof(float) * (size_t)(np * C));
        }
    }
    free(buf);
    return FK_OK;
}
