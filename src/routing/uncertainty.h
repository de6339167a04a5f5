/*
 * How sure the device model is of its own answer, token by token (public
 * side: plm_token_uncertainty, plm_uncertainty_quantile in pocketlm.h). The
 * router and `pocketlm route-eval` both go through these functions, so a
 * threshold calibrated offline means the same thing at run time.
 */
#ifndef PLM_ROUTING_UNCERTAINTY_H
#define PLM_ROUTING_UNCERTAINTY_H

#include "pocketlm.h"

/* Sorts values[0..n) ascending in place and returns their q-quantile by
 * linear interpolation (gap_quantile: NumPy's default, Hyndman and Fan's
 * type 7). n >= 1. */
double uncertainty_sorted_quantile(double *values, int n, double q);

#endif
