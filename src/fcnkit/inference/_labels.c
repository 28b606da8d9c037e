/* Exact labels from low-resolution scores, 2x2 windows: the whole labels stage of
 * fcnkit.inference.lowres.labels_from_scores in one pass, for fcnkit.inference.native.
 *
 * The tests and their proofs are those of lowres.py (module docstring, _prune_by_corners,
 * _blend_doubtful); this file repeats them in one loop instead of ~60 small torch
 * operations, whose fixed cost right after a backbone was most of the head's time
 * (docs/benchmarks.md). Every decision keeps lowres.py's margins, so a label written here
 * is the argmax of the model's own float32 logits; a cell the blend cannot decide is
 * flagged, and Python sends it to the model's own upsampler (the exact path).
 *
 * Plain C99, no torch headers: built on first use by the system C compiler
 * (fcnkit/inference/native.py) and called through ctypes on raw buffers.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { FK_OK = 0, FK_NONFINITE = 1, FK_DECLINED = 2, FK_NOMEM = 3 };

/* The largest float not above x (x finite or infinite): x rounded to the nearest float,
 * then one step down when that went up (nextafterf(f, -INFINITY) without a libm call: the
 * bits of a float step by one to its neighbour, +inf down to FLT_MAX, +-0 to the
 * negative subnormal). */
static float down(double x) {
    float f = (float)x;
    if (!((double)f > x)) return f;
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    bits = f > 0.0f ? bits - 1u : f < 0.0f ? bits + 1u : 0x80000001u;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* The ABI version Python checks (native.py: _ABI): bump with any signature change. */
int fk_abi(void) { return 10; }

/* 1 when the n bytes at a and b are equal: the check that a cached fact about an
 * upsampler's weight still holds (native.same_bytes). */
int fk_same(const void *a, const void *b, int64_t n) { return memcmp(a, b, (size_t)n) == 0; }

/* What depends only on the geometry and the upsampler, built once by native.plan:
 *
 * h, w: the coarse map; bh, bw: cells per column and row; H, W: the labels' size.
 * corner: (4, bh*bw) flat pixel indices in one h*w image of each cell's window corners,
 *     top-left, top-right, bottom-left, bottom-right (fcnkit.arith.tiling).
 * row_bands, col_bands: (bh, 4), (bw, 4) int64: output start, output stop, first input
 *     row, last input row (exclusive) of each band (fcnkit.arith.tiling.output_bands).
 * row_w, col_w: (H, 2), (W, 2) float64 weights of each output row (column) on the
 *     input rows first, first + 1 of its band's window (band_weights; a one-tap table is
 *     padded with zeros by native.py).
 * margin: lowres.MARGIN; blend_rel: the blend's relative tolerance (lowres._tap_tables);
 * tiny: lowres._TINY.
 */
typedef struct {
    int64_t h, w, bh, bw, H, W;
    const int64_t *corner, *row_bands, *col_bands;
    const double *row_w, *col_w;
    double margin, blend_rel, tiny;
} fk_plan;

/* The rounding of a transposed convolution, emulated (see emulate() below), built by
 * native.Emulation: geometry {K_h, K_w, stride_h, stride_w, pad_h, pad_w, top, left} (the
 * crop of its output the labels cover starts at top, left), the per-class kernel
 * (K_h, K_w) float32, and the variant (the order and fusing of its sums). */
typedef struct {
    int64_t geometry[8];
    const float *kernel;
    int64_t variant;
} fk_emulation;

static int emulate_cell(const fk_plan *plan, const float *scores, int64_t C,
                        const fk_emulation *e, int64_t i, int64_t j, int64_t *labels,
                        double *blend);

static int labels_2x2(const fk_plan *plan, const fk_emulation *emu, const float *scores,
                      int64_t n, int64_t C, double max_work, int64_t *labels, int64_t *stats,
                      int64_t *undecided, int64_t room);

/* One cell's place: the coarse map's size, the labels' width, its row and column band
 * (4 int64 each, as in fk_plan) and the weight tables. */
typedef struct {
    int64_t h, w, W;
    const int64_t *row_band, *col_band;
    const double *row_w, *col_w;
} blend_geometry;

/* Scratch of blend_cell, sized for the widest band of columns (nx pixels). */
typedef struct {
    double *corner_values, *left_col, *right_col; /* 4K, K, K */
    double *wx0, *wx1, *top, *second, *winner;    /* nx each (winner: a class index) */
} blend_scratch;

/* Doubtful cells (lowres._blend_doubtful): each pixel of the cell from its K candidates
 * only, in float64 (within the model's float32 rounding of the same sum), written to the
 * image's labels; returns 0 when a pixel is undecided — another candidate within
 * threshold of the best — and the whole cell is left to the exact path. The loops over a
 * row's pixels are innermost, without branches: the compiler vectorises them. */
static int blend_cell(const blend_geometry *g, const float *scores, int64_t C,
                      const int64_t *cand, int64_t K, double threshold, int64_t *labels,
                      const blend_scratch *t) {
    /* The 2x2 window's scores of each candidate (rows, columns clamped as in
     * lowres._band_axis), then per pixel a row blend and a column blend. */
    const int64_t r0 = g->row_band[2], c0 = g->col_band[2], h = g->h, w = g->w;
    const int64_t rr[2] = {r0 < h ? r0 : h - 1, r0 + 1 < h ? r0 + 1 : h - 1};
    const int64_t cc[2] = {c0 < w ? c0 : w - 1, c0 + 1 < w ? c0 + 1 : w - 1};
    double *corner_values = t->corner_values, *left_col = t->left_col;
    double *right_col = t->right_col, *restrict wx0 = t->wx0, *restrict wx1 = t->wx1;
    double *restrict top = t->top;
    double *restrict second = t->second, *restrict winner = t->winner;
    for (int q = 0; q < 4; ++q) {
        const float *s = scores + (rr[q >> 1] * w + cc[q & 1]) * C;
        for (int64_t a = 0; a < K; ++a) corner_values[q * K + a] = s[cand[a]];
    }
    const int64_t x0 = g->col_band[0], nx = g->col_band[1] - x0;
    for (int64_t x = 0; x < nx; ++x) {
        wx0[x] = g->col_w[2 * (x0 + x)];
        wx1[x] = g->col_w[2 * (x0 + x) + 1];
    }
    if (K == 2) {
        /* Two candidates a < b (most doubtful cells): the sign of the blend of their
         * differences, one blend per pixel instead of two and the ranking. The same
         * decision: |blend(a) - blend(b)| > threshold, in float64 (the differences of
         * float32 scores are exact in it). */
        double diff[4];
        for (int q = 0; q < 4; ++q) diff[q] = corner_values[2 * q] - corner_values[2 * q + 1];
        for (int64_t y = g->row_band[0]; y < g->row_band[1]; ++y) {
            const double wy0 = g->row_w[2 * y], wy1 = g->row_w[2 * y + 1];
            const double left = wy0 * diff[0] + wy1 * diff[2];
            const double right = wy0 * diff[1] + wy1 * diff[3];
            int bad = 0;
            int64_t *out = labels + y * g->W + x0;
            const int64_t first = cand[1], step = cand[0] - cand[1];
            for (int64_t x = 0; x < nx; ++x) { /* (no branch: the signs are noise) */
                const double d = wx0[x] * left + wx1[x] * right;
                bad |= !(fabs(d) > threshold);
                out[x] = first + step * (int64_t)(d > 0);
            }
            if (bad) return 0;
        }
        return 1;
    }
    for (int64_t y = g->row_band[0]; y < g->row_band[1]; ++y) {
        const double wy0 = g->row_w[2 * y], wy1 = g->row_w[2 * y + 1];
        for (int64_t a = 0; a < K; ++a) { /* row blend, left and right column */
            left_col[a] = wy0 * corner_values[a] + wy1 * corner_values[2 * K + a];
            right_col[a] = wy0 * corner_values[K + a] + wy1 * corner_values[3 * K + a];
        }
        /* Per pixel, the best and second best candidate; decided when exactly one
         * candidate is within threshold of the best: when the best leads by more. */
        for (int64_t x = 0; x < nx; ++x) {
            top[x] = -INFINITY;
            second[x] = -INFINITY;
            winner[x] = (double)cand[0];
        }
        for (int64_t a = 0; a < K; ++a) {
            const double l = left_col[a], r = right_col[a];
            const double c = (double)cand[a]; /* exact: a class index */
            for (int64_t x = 0; x < nx; ++x) {
                const double v = wx0[x] * l + wx1[x] * r, t0 = top[x], s0 = second[x];
                const double w0 = winner[x], low = v < t0 ? v : t0; /* min(v, t0) */
                second[x] = low > s0 ? low : s0; /* the runner-up: max(min(v, t0), s0) */
                winner[x] = v > t0 ? c : w0;     /* ties keep the earlier class */
                top[x] = v > t0 ? v : t0;
            }
        }
        int bad = 0;
        int64_t *out = labels + y * g->W + x0;
        for (int64_t x = 0; x < nx; ++x) {
            bad |= !(top[x] - second[x] > threshold);
            out[x] = (int64_t)winner[x];
        }
        if (bad) return 0;
    }
    return 1;
}

/* Labels of every pixel from (n, h, w, C) channels-last float32 scores:
 *
 *     labels      (n, H, W) int64, written;
 *     info[0 : 5] cells, doubtful cells, (cell, class) pairs in doubt, undecided cells,
 *                 cells labelled by the emulated rounding;
 *     info[5 : 5 + room]  the flat indices of the first undecided cells (all of them when
 *                 info[3] <= room), which the caller labels by the exact path.
 *
 * A cell the blend cannot decide is labelled from the model's rounding when emu is not
 * NULL (emulate_cell), else it is undecided. max_work: the fraction of C*H*W per-pixel
 * work above which the caller prefers the whole map (FK_DECLINED: only the first three
 * counts are meaningful).
 */
int fk_labels_2x2(const fk_plan *plan, const float *scores, int64_t n, int64_t C,
                  double max_work, int64_t *labels, int64_t *info, int64_t room,
                  const fk_emulation *emu) {
    return labels_2x2(plan, emu, scores, n, C, max_work, labels, info, info + 5, room);
}

static int labels_2x2(const fk_plan *plan, const fk_emulation *emu, const float *scores,
                      int64_t n, int64_t C, double max_work, int64_t *labels, int64_t *stats,
                      int64_t *undecided, int64_t room) {
    const int64_t h = plan->h, w = plan->w, bh = plan->bh, bw = plan->bw, H = plan->H;
    const int64_t W = plan->W, *corner = plan->corner, *row_bands = plan->row_bands;
    const int64_t *col_bands = plan->col_bands;
    const double *row_w = plan->row_w, *col_w = plan->col_w, margin = plan->margin;
    const double blend_rel = plan->blend_rel, tiny = plan->tiny;
    const int64_t pixels = n * h * w, cells_per_image = bh * bw, cells = n * cells_per_image;
    int64_t *best = malloc(sizeof(int64_t) * (size_t)pixels);
    double *gap = malloc(sizeof(double) * (size_t)pixels);
    float *pixel_max = malloc(sizeof(float) * (size_t)pixels); /* largest |score| per pixel */
    int64_t *cell_label = malloc(sizeof(int64_t) * (size_t)cells);
    uint8_t *survives = malloc((size_t)(cells * C));
    double *scale = malloc(sizeof(double) * (size_t)cells);
    float *high = malloc(sizeof(float) * 2 * (size_t)C); /* and the window minima */
    int64_t widest = 1;
    for (int64_t j = 0; j < bw; ++j)
        if (col_bands[4 * j + 1] - col_bands[4 * j] > widest)
            widest = col_bands[4 * j + 1] - col_bands[4 * j];
    double *blend_doubles = malloc(sizeof(double) * (size_t)(6 * C + 5 * widest));
    int64_t *doubtful_cells = malloc(sizeof(int64_t) * (size_t)cells);
    int64_t *cand = malloc(sizeof(int64_t) * (size_t)C);
    int status = FK_OK;
    if (!best || !gap || !pixel_max || !cell_label || !survives || !scale || !high ||
        !blend_doubles || !doubtful_cells || !cand) {
        status = FK_NOMEM;
        goto done;
    }

    /* One pass over the scores: the map's largest |score|, which sets one margin for the
     * whole map (lowres.py), and per pixel its best class (the first of equal maxima) and
     * the gap to the best of the others. Stage 1 (lowres.corners_agree) counts a pixel's
     * classes within tol of its best; one (the best itself) is the same as gap > tol. */
    /* (Written without data-dependent branches: on noisy maps they mispredicted.) */
    float largest = 0.0f;
    int bad = 0;
    for (int64_t p = 0; p < pixels; ++p) {
        const float *s = scores + p * C;
        float top = s[0], other = -INFINITY, a0 = fabsf(s[0]), most = a0;
        int64_t b = 0;
        bad |= !(a0 <= FLT_MAX); /* NaN or inf */
        for (int64_t c = 1; c < C; ++c) {
            const float v = s[c], a = fabsf(v);
            bad |= !(a <= FLT_MAX);
            most = a > most ? a : most;
            const int above = v > top;
            other = above ? top : (v > other ? v : other);
            b = above ? c : b;
            top = above ? v : top;
        }
        best[p] = b;
        gap[p] = (double)top - (double)other;
        pixel_max[p] = most;
        largest = most > largest ? most : largest;
    }
    if (bad) {
        status = FK_NONFINITE; /* NaN or inf: the model's own tail */
        goto done;
    }
    const double tol = margin * (1.0 + largest);

    int64_t doubtful = 0, pairs = 0;
    for (int64_t cell = 0; cell < cells; ++cell) {
        const int64_t image = cell / cells_per_image, k = cell % cells_per_image;
        int64_t px[4];
        for (int q = 0; q < 4; ++q) px[q] = image * h * w + corner[q * cells_per_image + k];
        uint8_t *alive = survives + cell * C;
        memset(alive, 0, (size_t)C);
        const int64_t b0 = best[px[0]];
        if (best[px[1]] == b0 && best[px[2]] == b0 && best[px[3]] == b0 && gap[px[0]] > tol &&
            gap[px[1]] > tol && gap[px[2]] > tol && gap[px[3]] > tol) {
            cell_label[cell] = b0; /* four corners agree, no rival within tol */
            continue;
        }
        /* Stage 2 (lowres._prune_by_corners): the floor test and the corner test. */
        const float *s[4];
        for (int q = 0; q < 4; ++q) s[q] = scores + px[q] * C;
        float floor_ = -INFINITY, top = -INFINITY;
        int64_t first = 0;
        float *restrict low = high + C;
        for (int64_t c = 0; c < C; ++c) { /* (vectorised) */
            const float a = s[0][c], b = s[1][c], d = s[2][c], e = s[3][c];
            const float hi_ab = a > b ? a : b, hi_de = d > e ? d : e;
            const float lo_ab = a < b ? a : b, lo_de = d < e ? d : e;
            high[c] = hi_ab > hi_de ? hi_ab : hi_de;
            low[c] = lo_ab < lo_de ? lo_ab : lo_de;
        }
        for (int64_t c = 0; c < C; ++c) {
            const float hi = high[c], lo = low[c];
            floor_ = lo > floor_ ? lo : floor_;
            const int above = hi > top; /* the first of equal maxima, as torch's argmax */
            first = above ? c : first;
            top = above ? hi : top;
        }
        int64_t second = first == 0 ? 1 : 0; /* used when C > 2 */
        if (C > 2)
            for (int64_t c = 0; c < C; ++c)
                second = c != first && high[c] > high[second] ? c : second;
        /* The corner test: c cannot win if s_first + s_second - 2 s_c > 4 tol at all four
         * corners, i.e. it survives if s_c >= (s_first + s_second - 4 tol) / 2 at one. */
        /* (Bounds rounded down to float: a class is kept at least as often as in double,
         * and the loop over classes is all float, which the compiler vectorises.) */
        const float floor_tol = down((double)floor_ - tol);
        float bar[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
        if (C > 2)
            for (int q = 0; q < 4; ++q)
                bar[q] = down(((double)s[q][first] + (double)s[q][second] - 4.0 * tol) / 2.0);
        const float *restrict s0 = s[0], *restrict s1 = s[1], *restrict s2 = s[2];
        const float *restrict s3 = s[3];
        int64_t alive_count = 0;
        for (int64_t c = 0; c < C; ++c) {
            const int keep = (high[c] >= floor_tol) &
                             ((s0[c] >= bar[0]) | (s1[c] >= bar[1]) | (s2[c] >= bar[2]) |
                              (s3[c] >= bar[3]));
            alive[c] = (uint8_t)keep;
            alive_count += keep;
        }
        cell_label[cell] = first; /* the class of highest window maximum always survives */
        if (alive_count > 1) {
            doubtful_cells[doubtful++] = cell;
            pairs += alive_count;
            /* the window's largest |score|: its corners' */
            const float m01 = pixel_max[px[0]] > pixel_max[px[1]] ? pixel_max[px[0]]
                                                                  : pixel_max[px[1]];
            const float m23 = pixel_max[px[2]] > pixel_max[px[3]] ? pixel_max[px[2]]
                                                                  : pixel_max[px[3]];
            scale[cell] = m01 > m23 ? m01 : m23;
        } else {
            alive[first] = 0; /* marks the cell sure (no survivor recorded) */
        }
    }
    stats[0] = cells;
    stats[1] = doubtful;
    stats[2] = pairs;
    stats[3] = 0;
    stats[4] = 0;
    /* The per-pixel work left, as lowres.labels_from_scores counts it. */
    if ((double)pairs * (double)(H * W) / (double)cells > max_work * (double)(C * n * H * W)) {
        status = FK_DECLINED;
        goto done;
    }

    /* Cells to pixels, one band of rows at a time: its first row column by column, copied
     * down, then the band's doubtful cells blended while those rows are in cache (a
     * second pass over the whole map found them evicted). doubtful_cells is in cell
     * order, so each band's cells are the next ones in it. */
    const blend_scratch scratch = {
        blend_doubles, blend_doubles + 4 * C, blend_doubles + 5 * C,
        blend_doubles + 6 * C, blend_doubles + 6 * C + widest,
        blend_doubles + 6 * C + 2 * widest, blend_doubles + 6 * C + 3 * widest,
        blend_doubles + 6 * C + 4 * widest};
    int64_t left = 0, d = 0, emulated = 0;
    for (int64_t image = 0; image < n; ++image)
        for (int64_t i = 0; i < bh; ++i) {
            const int64_t y0 = row_bands[4 * i], y1 = row_bands[4 * i + 1];
            if (y1 > y0) {
                int64_t *row = labels + (image * H + y0) * W;
                for (int64_t j = 0; j < bw; ++j) {
                    const int64_t v = cell_label[image * cells_per_image + i * bw + j];
                    for (int64_t x = col_bands[4 * j]; x < col_bands[4 * j + 1]; ++x)
                        row[x] = v;
                }
                for (int64_t y = y0 + 1; y < y1; ++y)
                    memcpy(labels + (image * H + y) * W, row, sizeof(int64_t) * (size_t)W);
            }
            const int64_t band_end = image * cells_per_image + (i + 1) * bw;
            for (; d < doubtful && doubtful_cells[d] < band_end; ++d) {
                const int64_t cell = doubtful_cells[d];
                const uint8_t *alive = survives + cell * C;
                int64_t K = 0;
                for (int64_t c = 0; c < C; ++c) { /* (no branch) */
                    cand[K] = c;
                    K += alive[c];
                }
                const blend_geometry g = {h, w, W, row_bands + 4 * i, col_bands + 4 * (cell % bw),
                                          row_w, col_w};
                if (blend_cell(&g, scores + image * h * w * C, C, cand, K,
                               blend_rel * (scale[cell] + tiny), labels + image * H * W,
                               &scratch))
                    continue;
                if (emu && emulate_cell(plan, scores + image * h * w * C, C, emu, i, cell % bw,
                                        labels + image * H * W, blend_doubles) == 0)
                    ++emulated;
                else if (left++ < room)
                    undecided[left - 1] = cell;
            }
        }
    stats[3] = left;
    stats[4] = emulated;

done:
    free(best);
    free(gap);
    free(pixel_max);
    free(cell_label);
    free(survives);
    free(scale);
    free(high);
    free(blend_doubles);
    free(doubtful_cells);
    free(cand);
    return status;
}

/* The model's own float32 rounding, emulated: labels for the cells the blend cannot
 * decide (near-ties and exact ties), without running the model's upsampler on them.
 *
 * A transposed convolution whose window is 2x2 computes each output score of class c as
 * a float32 sum of at most 4 products kernel[ky][kx] * s_c(iy, ix). Its value depends on
 * the order of the sum and on whether the products are fused (fma), nothing else; an
 * order is one of the 4! orders of the window's slots (top-left, top-right, bottom-left,
 * bottom-right: slot 2t + u, t and u the row and column tap in ascending kernel index).
 * lowres._emulation finds the one the model's upsampler uses on this machine, for one
 * geometry and memory layout, by comparing every score of a random probe map with
 * fk_emulation_matches; the labels below are then the argmax of exactly the values the
 * model computes. Variant v: order v / 2 of ORDERS, fused when v is odd.
 */
static const int8_t ORDERS[24][4] = {
    {0, 1, 2, 3}, {0, 1, 3, 2}, {0, 2, 1, 3}, {0, 2, 3, 1}, {0, 3, 1, 2}, {0, 3, 2, 1},
    {1, 0, 2, 3}, {1, 0, 3, 2}, {1, 2, 0, 3}, {1, 2, 3, 0}, {1, 3, 0, 2}, {1, 3, 2, 0},
    {2, 0, 1, 3}, {2, 0, 3, 1}, {2, 1, 0, 3}, {2, 1, 3, 0}, {2, 3, 0, 1}, {2, 3, 1, 0},
    {3, 0, 1, 2}, {3, 0, 2, 1}, {3, 1, 0, 2}, {3, 1, 2, 0}, {3, 2, 0, 1}, {3, 2, 1, 0}};

/* The taps of output coordinate o (of the upsampler's whole, uncropped output) on one
 * axis of a transposed convolution: the inputs i (0 <= i < n) with kernel index
 * k = o + pad - i * stride in [0, K), in ascending k; their count, or -1 above 2. */
static int axis_taps(int64_t o, int64_t K, int64_t stride, int64_t pad, int64_t n,
                     int64_t *in, int64_t *k) {
    int count = 0;
    for (int64_t i = n - 1; i >= 0; --i) { /* ascending k is descending i */
        const int64_t kk = o + pad - i * stride;
        if (kk < 0) continue;
        if (kk >= K) break;
        if (count == 2) return -1;
        in[count] = i;
        k[count++] = kk;
    }
    return count;
}

/* One score as the model rounds it under variant v (see above): the sum in the order's
 * slots, each product rounded then added, or fused (fmaf: one rounding per slot). The
 * build turns off contraction (-ffp-contract=off), so "acc + product" rounds twice. */
static float emulate(const float *image, int64_t w, int64_t C, int64_t c, const int64_t *ri,
                     const int64_t *rk, int nr, const int64_t *ci, const int64_t *ck, int nc,
                     const float *kernel, int64_t kw, int64_t v) {
    const int8_t *order = ORDERS[v >> 1];
    const int fused = (int)(v & 1);
    float acc = 0.0f;
    for (int q = 0; q < 4; ++q) {
        const int t = order[q] >> 1, u = order[q] & 1;
        if (t >= nr || u >= nc) continue;
        const float weight = kernel[rk[t] * kw + ck[u]];
        const float x = image[(ri[t] * w + ci[u]) * C + c];
        if (fused) {
            acc = fmaf(weight, x, acc);
        } else {
            const float product = weight * x;
            acc = acc + product;
        }
    }
    return acc;
}

/* 1 when emulation e reproduces every score of `out` (the upsampler's output for
 * `scores`, (n, C, Ho, Wo) at element strides out_strides[4], read at rows top .. top + H
 * and columns left .. left + W) from scores ((n, h, w, C) channels-last), else 0 (at the
 * first score that differs); -1 when a window has more than 2 taps on an axis. */
int fk_emulation_matches(const float *scores, int64_t n, int64_t h, int64_t w, int64_t C,
                         const float *out, const int64_t *out_strides, int64_t H, int64_t W,
                         const fk_emulation *e) {
    const int64_t *g = e->geometry;
    int64_t ri[2], rk[2], ci[2], ck[2];
    /* Columns vary fastest: their taps once per map, the rows' once per row. */
    int64_t *col_taps = malloc(sizeof(int64_t) * 5 * (size_t)W);
    if (!col_taps) return -1;
    int result = 1;
    for (int64_t x = 0; x < W && result == 1; ++x) {
        int64_t *t = col_taps + 5 * x;
        const int nc = axis_taps(x + g[7], g[1], g[3], g[5], w, t + 1, t + 3);
        if (nc < 0) result = -1;
        t[0] = nc;
    }
    for (int64_t image = 0; image < n && result == 1; ++image) {
        const float *s = scores + image * h * w * C;
        for (int64_t y = 0; y < H && result == 1; ++y) {
            const int nr = axis_taps(y + g[6], g[0], g[2], g[4], h, ri, rk);
            if (nr < 0) {
                result = -1;
                break;
            }
            for (int64_t x = 0; x < W && result == 1; ++x) {
                const int64_t *t = col_taps + 5 * x;
                ci[0] = t[1], ci[1] = t[2], ck[0] = t[3], ck[1] = t[4];
                const float *o = out + image * out_strides[0] + (y + g[6]) * out_strides[2] +
                                 (x + g[7]) * out_strides[3];
                for (int64_t c = 0; c < C; ++c)
                    if (emulate(s, w, C, c, ri, rk, nr, ci, ck, (int)t[0], e->kernel, g[1],
                                e->variant) != o[c * out_strides[1]]) {
                        result = 0;
                        break;
                    }
            }
        }
    }
    free(col_taps);
    return result;
}

/* The labels of cell (i, j) of one image (scores (h, w, C), labels (H, W)) from the
 * model's rounding under emulation e: per pixel the first class of the largest emulated
 * score (torch's argmax). Only the classes the float64 blend (blend_cell) puts within the
 * blend's tolerance of its best are emulated: the others score below the best class in
 * the model's rounding too. blend: scratch of C doubles. Returns 0, or 1 without writing
 * anything when the window holds a score whose products or sums could leave the normal
 * range (|s| below 2^-60 but not 0, or above 2^100), where flushing subnormals (a CPU
 * mode) would change the model's rounding and not this one's, or a window has more than
 * 2 taps on an axis. */
static int emulate_cell(const fk_plan *plan, const float *s, int64_t C, const fk_emulation *e,
                        int64_t i, int64_t j, int64_t *labels, double *blend) {
    const int64_t h = plan->h, w = plan->w, *g = e->geometry;
    const int64_t *rb = plan->row_bands + 4 * i, *cb = plan->col_bands + 4 * j;
    /* The window's rows and columns, clamped as in blend_cell. */
    const int64_t rr[2] = {rb[2] < h ? rb[2] : h - 1, rb[2] + 1 < h ? rb[2] + 1 : h - 1};
    const int64_t cc[2] = {cb[2] < w ? cb[2] : w - 1, cb[2] + 1 < w ? cb[2] + 1 : w - 1};
    const float *corner[4];
    double biggest = 0.0;
    for (int q = 0; q < 4; ++q) {
        corner[q] = s + (rr[q >> 1] * w + cc[q & 1]) * C;
        for (int64_t c = 0; c < C; ++c) {
            const float a = fabsf(corner[q][c]);
            if ((a != 0.0f && a < 0x1p-60f) || a > 0x1p100f) return 1;
            biggest = a > biggest ? a : biggest;
        }
    }
    int64_t ri[2], rk[2], ci[2], ck[2];
    for (int64_t y = rb[0]; y < rb[1]; ++y)
        if (axis_taps(y + g[6], g[0], g[2], g[4], h, ri, rk) < 0) return 1;
    for (int64_t x = cb[0]; x < cb[1]; ++x)
        if (axis_taps(x + g[7], g[1], g[3], g[5], w, ci, ck) < 0) return 1;
    const double threshold = plan->blend_rel * (biggest + plan->tiny);
    for (int64_t y = rb[0]; y < rb[1]; ++y) {
        const int nr = axis_taps(y + g[6], g[0], g[2], g[4], h, ri, rk);
        const double wy0 = plan->row_w[2 * y], wy1 = plan->row_w[2 * y + 1];
        for (int64_t x = cb[0]; x < cb[1]; ++x) {
            const int nc = axis_taps(x + g[7], g[1], g[3], g[5], w, ci, ck);
            const double wx0 = plan->col_w[2 * x], wx1 = plan->col_w[2 * x + 1];
            double high = -INFINITY;
            for (int64_t c = 0; c < C; ++c) {
                blend[c] = wy0 * (wx0 * corner[0][c] + wx1 * corner[1][c]) +
                           wy1 * (wx0 * corner[2][c] + wx1 * corner[3][c]);
                high = blend[c] > high ? blend[c] : high;
            }
            float top = -INFINITY;
            int64_t best = 0;
            for (int64_t c = 0; c < C; ++c) {
                if (!(blend[c] >= high - threshold)) continue;
                const float value =
                    emulate(s, w, C, c, ri, rk, nr, ci, ck, nc, e->kernel, g[1], e->variant);
                if (value > top) top = value, best = c;
            }
            labels[y * plan->W + x] = best;
        }
    }
    return 0;
}

/* emulate_cell for each of the given cells (flat indices into (n, bh, bw), as
 * fk_labels_2x2 names them), with scores (n, h, w, C) and labels (n, H, W); returns how
 * many it left unwritten (see emulate_cell), or -1 out of memory. */
int fk_emulate_cells(const fk_plan *plan, const float *scores, int64_t C,
                     const fk_emulation *e, const int64_t *cells, int64_t count,
                     int64_t *labels) {
    const int64_t per_image = plan->bh * plan->bw;
    double *blend = malloc(sizeof(double) * (size_t)C);
    if (!blend) return -1;
    int64_t refused = 0;
    for (int64_t k = 0; k < count; ++k) {
        const int64_t image = cells[k] / per_image, rest = cells[k] % per_image;
        refused += emulate_cell(plan, scores + image * plan->h * plan->w * C, C, e,
                                rest / plan->bw, rest % plan->bw,
                                labels + image * plan->H * plan->W, blend);
    }
    free(blend);
    return (int)refused;
}
