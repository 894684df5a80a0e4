/*
 * summary_svg.c: the three panels of summary.svg (summary_svg.h), written with
 * open_memstream. Axis ranges are the data's own, widened to whole decades and to
 * include the selection box; dead latents (and, for the value axes, mean values <= 0,
 * which have no logarithm) are counted in the titles, not plotted.
 */
#include "summary_svg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define BINS 40

typedef struct {
    double x0, y0, w, h;    // plot area (SVG y grows downwards)
    double lo_x, hi_x;      // data range on x
    double lo_y, hi_y;      // data range on y
} Panel;

static double px(const Panel *p, double v) { return p->x0 + (v - p->lo_x) / (p->hi_x - p->lo_x) * p->w; }
static double py(const Panel *p, double v) { return p->y0 + p->h - (v - p->lo_y) / (p->hi_y - p->lo_y) * p->h; }

static void escaped(FILE *o, const char *s) {
    for (; *s; s++) {
        if (*s == '&') fputs("&amp;", o);
        else if (*s == '<') fputs("&lt;", o);
        else if (*s == '>') fputs("&gt;", o);
        else if ((unsigned char)*s < 0x20) fputc(' ', o);
        else fputc(*s, o);
    }
}

static void axes(FILE *o, const Panel *p, const char *xlabel, const char *ylabel, int y_ticks) {
    fprintf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n", p->x0, p->y0, p->w, p->h);
    for (int k = 0; k <= 4; k++) {
        double v = p->lo_x + (p->hi_x - p->lo_x) * k / 4, x = px(p, v);
        fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x, p->y0 + p->h, x, p->y0 + p->h + 5);
        fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%.3g</text>\n", x, p->y0 + p->h + 18, v);
        if (!y_ticks) continue;
        double w = p->lo_y + (p->hi_y - p->lo_y) * k / 4, y = py(p, w);
        fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", p->x0 - 5, y, p->x0, y);
        fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%.3g</text>\n", p->x0 - 7, y + 4, w);
    }
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">%s</text>\n", p->x0 + p->w / 2, p->y0 + p->h + 36, xlabel);
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 %.1f %.1f)\">%s</text>\n",
            p->x0 - 42, p->y0 + p->h / 2, p->x0 - 42, p->y0 + p->h / 2, ylabel);
}

static void histogram(FILE *o, Panel *p, const double *v, int n, const char *title, const char *xlabel) {
    int64_t counts[BINS] = {0}, max = 0;
    for (int i = 0; i < n; i++) {
        int b = (int)floor((v[i] - p->lo_x) / (p->hi_x - p->lo_x) * BINS);
        counts[b < 0 ? 0 : b >= BINS ? BINS - 1 : b]++;
    }
    for (int b = 0; b < BINS; b++) if (counts[b] > max) max = counts[b];
    p->lo_y = 0, p->hi_y = max > 0 ? 4.0 * ceil((double)max / 4) : 4; /* whole-number ticks at quarters */
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">%s</text>\n", p->x0 + p->w / 2, p->y0 - 10, title);
    for (int b = 0; b < BINS; b++) {
        if (!counts[b]) continue;
        double x = p->x0 + p->w * b / BINS, bh = p->h * (double)counts[b] / p->hi_y;
        fprintf(o, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#4878a8\" stroke=\"#2b4f73\" stroke-width=\"0.5\"/>\n",
                x, p->y0 + p->h - bh, p->w / BINS, bh);
    }
    axes(o, p, xlabel, "latents", 1);
}

/* [lo, hi] of v[0..n) and the box edges, out to whole decades (at least one wide). */
static void decade_range(const double *v, int n, const double *box, double *lo, double *hi) {
    *lo = box[0], *hi = box[1];
    for (int i = 0; i < n; i++) { if (v[i] < *lo) *lo = v[i]; if (v[i] > *hi) *hi = v[i]; }
    *lo = floor(*lo), *hi = ceil(*hi);
    if (*hi <= *lo) *hi = *lo + 1;
}

char *summary_svg(const float *freq, const float *mean_value, int S, const double *freq_range, const double *value_range, const char *title) {
    double *lf = mallocCheck((size_t)(S > 0 ? S : 1) * sizeof(double)), *lv = mallocCheck((size_t)(S > 0 ? S : 1) * sizeof(double));
    double *pf = mallocCheck((size_t)(S > 0 ? S : 1) * sizeof(double)); /* log10 freq of the latents in lv */
    int n_f = 0, n_v = 0, n_dead = 0, n_nonpos = 0;
    for (int s = 0; s < S; s++) {
        if (!(freq[s] > 0)) { n_dead++; continue; }
        lf[n_f++] = log10(freq[s]);
        if (!(mean_value[s] > 0)) { n_nonpos++; continue; }
        pf[n_v] = log10(freq[s]);
        lv[n_v++] = log10(mean_value[s]);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&buf, &len);
    libcCheckPtr(o, "summary.svg (memory stream)");
    const double W = 1320, H = 430;
    fprintf(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n", W, H, W, H);
    fprintf(o, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", W, H);
    fprintf(o, "<text x=\"%.0f\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">", W / 2);
    escaped(o, title);
    fprintf(o, "</text>\n<text x=\"%.0f\" y=\"42\" text-anchor=\"middle\" font-size=\"12\">%d latents: %d fire, %d never fire, %d with mean value &lt;= 0 (not on the value axes)</text>\n",
            W / 2, S, n_f, n_dead, n_nonpos);

    Panel a = {80, 90, 340, 250, 0, 0, 0, 0}, b = {520, 90, 340, 250, 0, 0, 0, 0}, c = {960, 90, 340, 250, 0, 0, 0, 0};
    decade_range(lf, n_f, freq_range, &a.lo_x, &a.hi_x);
    decade_range(lv, n_v, value_range, &b.lo_x, &b.hi_x);
    char t[128];
    snprintf(t, sizeof t, "log10 frequency (%d latents)", n_f);
    histogram(o, &a, lf, n_f, t, "log10(frequency)");
    snprintf(t, sizeof t, "log10 mean value (%d latents)", n_v);
    histogram(o, &b, lv, n_v, t, "log10(mean value when firing)");

    c.lo_x = a.lo_x, c.hi_x = a.hi_x, c.lo_y = b.lo_x, c.hi_y = b.hi_x;
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">mean value against frequency</text>\n", c.x0 + c.w / 2, c.y0 - 10);
    /* The selection box of the sampled latents. */
    fprintf(o, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#fff3d6\" stroke=\"#d08a00\" stroke-dasharray=\"4 3\"/>\n",
            px(&c, freq_range[0]), py(&c, value_range[1]), px(&c, freq_range[1]) - px(&c, freq_range[0]), py(&c, value_range[0]) - py(&c, value_range[1]));
    for (int i = 0; i < n_v; i++)
        fprintf(o, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"1.6\" fill=\"#4878a8\" fill-opacity=\"0.6\"/>\n", px(&c, pf[i]), py(&c, lv[i]));
    axes(o, &c, "log10(frequency)", "log10(mean value)", 1);
    fprintf(o, "</svg>\n");
    if (fclose(o) != 0) saev_fail("visuals: cannot format summary.svg");
    free(lf); free(lv); free(pf);
    return buf;
}
