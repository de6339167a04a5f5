/*
 * Calibrating the cascade (plm_cascade_sweep in pocketlm.h): which threshold
 * on an uncertainty statistic to escalate at, given, for a set of prompts,
 * the statistic of the device's answer and the quality of both answers.
 *
 * Sorting the prompts from the most to the least unsure, every threshold
 * escalates a prefix of that order, and only the distinct values of the
 * statistic change the set: with values v1 < ... < vm and "below", v1 itself
 * escalates none (the test is strict), the midpoint of v(j-1) and vj
 * escalates the prompts up to v(j-1), and the next double above vm all of
 * them. Midpoints rather than the values themselves, because a new prompt
 * falling between two calibration prompts is then judged by the nearer one,
 * and a threshold printed to a few digits still splits the same way. "Above"
 * mirrors it. Each point is compared with two baselines at the same number of
 * escalated prompts k out of n: random escalation, whose expected quality is
 * mean(device) + k/n mean(gain) exactly (every prompt is escalated with
 * probability k/n), and the oracle, which escalates the k prompts with the
 * largest gain (upstream - device quality) and so bounds every signal.
 */
#include "core/error.h"
#include "pocketlm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct ranked_item {
    double statistic;
    double gain;
};

/* Most unsure first: ascending statistic for "below", descending for "above". */
static int more_unsure_below(const void *a, const void *b)
{
    double x = ((const struct ranked_item *)a)->statistic, y = ((const struct ranked_item *)b)->statistic;
    return (x > y) - (x < y);
}

static int more_unsure_above(const void *a, const void *b)
{
    return more_unsure_below(b, a);
}

static int larger_gain_first(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

static int check_items(const struct plm_cascade_item *items, int n)
{
    if (!items || n < 1)
        return plm_fail(PLM_ERR_ARG, "cascade sweep: no prompts");
    for (int i = 0; i < n; i++)
        if (!isfinite(items[i].statistic) || !isfinite(items[i].quality_device) ||
            !isfinite(items[i].quality_upstream))
            return plm_fail(PLM_ERR_ARG, "cascade sweep: prompt %d has a value that is not a finite number", i);
    return PLM_OK;
}

/* The oracle's total gain escalating the k largest gains, for every k. */
static void oracle_gains(const struct ranked_item *ranked, int n, double *gains, double *best_total)
{
    for (int i = 0; i < n; i++)
        gains[i] = ranked[i].gain;
    qsort(gains, (size_t)n, sizeof *gains, larger_gain_first);
    best_total[0] = 0.0;
    for (int k = 0; k < n; k++)
        best_total[k + 1] = best_total[k] + gains[k];
}

static void add_point(struct plm_cascade_curve *c, double threshold, int k, double gain_total,
                      const double *oracle_total, double mean_gain)
{
    int n = c->n_items;
    struct plm_cascade_point *p = &c->points[c->n_points++];
    p->threshold = threshold;
    p->n_escalated = k;
    p->rate = (double)k / n;
    p->quality = c->quality_device + gain_total / n;
    p->random = c->quality_device + p->rate * mean_gain;
    p->oracle = c->quality_device + oracle_total[k] / n;
}

static void measure_area(struct plm_cascade_curve *c)
{
    c->area_over_random = 0.0;
    for (int i = 1; i < c->n_points; i++) {
        const struct plm_cascade_point *a = &c->points[i - 1], *b = &c->points[i];
        c->area_over_random += (b->rate - a->rate) * ((a->quality - a->random) + (b->quality - b->random)) / 2;
    }
}

int plm_cascade_sweep(const struct plm_cascade_item *items, int n, bool below, struct plm_cascade_curve *curve)
{
    if (!curve)
        return plm_fail(PLM_ERR_ARG, "cascade sweep: no curve");
    memset(curve, 0, sizeof *curve);
    int rc = check_items(items, n);
    if (rc)
        return rc;
    struct ranked_item *ranked = malloc((size_t)n * sizeof *ranked);
    double *gains = malloc((size_t)n * sizeof *gains);
    double *oracle_total = malloc(((size_t)n + 1) * sizeof *oracle_total);
    curve->points = malloc(((size_t)n + 1) * sizeof *curve->points);
    if (!ranked || !gains || !oracle_total || !curve->points) {
        free(ranked), free(gains), free(oracle_total);
        plm_cascade_curve_free(curve);
        return plm_fail(PLM_ERR_NOMEM, "cascade sweep: out of memory for %d prompts", n);
    }
    double device_total = 0.0, upstream_total = 0.0;
    for (int i = 0; i < n; i++) {
        ranked[i] = (struct ranked_item){items[i].statistic, items[i].quality_upstream - items[i].quality_device};
        device_total += items[i].quality_device;
        upstream_total += items[i].quality_upstream;
    }
    curve->n_items = n;
    curve->below = below;
    curve->quality_device = device_total / n;
    curve->quality_upstream = upstream_total / n;
    double mean_gain = (upstream_total - device_total) / n;
    qsort(ranked, (size_t)n, sizeof *ranked, below ? more_unsure_below : more_unsure_above);
    oracle_gains(ranked, n, gains, oracle_total);

    /* Walk the order; a threshold at a new value escalates everything before it. */
    double gain_total = 0.0;
    for (int k = 0; k < n; k++) {
        if (k == 0)
            add_point(curve, ranked[0].statistic, 0, 0.0, oracle_total, mean_gain);
        else if (ranked[k].statistic != ranked[k - 1].statistic)
            add_point(curve, ranked[k - 1].statistic + (ranked[k].statistic - ranked[k - 1].statistic) / 2, k,
                      gain_total, oracle_total, mean_gain);
        gain_total += ranked[k].gain;
    }
    double last = ranked[n - 1].statistic;
    add_point(curve, nextafter(last, below ? INFINITY : -INFINITY), n, gain_total, oracle_total, mean_gain);
    /* The end points are exact: no rounding left from the running sums. */
    curve->points[curve->n_points - 1].quality = curve->quality_upstream;
    measure_area(curve);
    free(ranked);
    free(gains);
    free(oracle_total);
    return PLM_OK;
}

void plm_cascade_curve_free(struct plm_cascade_curve *curve)
{
    if (!curve)
        return;
    free(curve->points);
    curve->points = NULL;
    curve->n_points = 0;
}

const struct plm_cascade_point *plm_cascade_at_rate(const struct plm_cascade_curve *curve, double rate)
{
    if (!curve || curve->n_points < 1)
        return NULL;
    const struct plm_cascade_point *best = &curve->points[0];
    for (int i = 1; i < curve->n_points; i++)
        if (curve->points[i].rate <= rate + 1e-12)
            best = &curve->points[i];
    return best;
}
