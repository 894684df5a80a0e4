/*
 * summary_svg.h: summary.svg of a visuals run (visuals.h): histograms of log10 frequency
 * and log10 mean value over the latents that fire, and one point per latent of log10
 * mean value against log10 frequency with the rendered-latent selection box.
 */
#ifndef SAEV_VISUALS_SUMMARY_SVG_H
#define SAEV_VISUALS_SUMMARY_SVG_H

/* freq, mean_value [S]; freq_range, value_range [2] (log10). The SVG text, malloc'd. */
char *summary_svg(const float *freq, const float *mean_value, int S, const double *freq_range, const double *value_range, const char *title);

#endif
