/*
 * A small SVG chart writer for the commands that compare models: labelled
 * points on linear or logarithmic axes with ticks, and one highlighted
 * polyline through chosen points (a Pareto frontier, say). The file is
 * standalone XML: no scripts, no external styles or fonts.
 */
#ifndef PLM_TOOLS_SVG_CHART_H
#define PLM_TOOLS_SVG_CHART_H

#include <stdbool.h>

struct chart_point {
    double x, y;
    const char *label; /* written beside the point, or NULL */
    bool highlighted;  /* drawn larger, in the accent colour */
};

struct chart_axis {
    const char *title;
    bool log_scale; /* a point with a value <= 0 cannot be placed on it and is left out */
};

struct svg_chart {
    const char *title;
    const char *caption;  /* a note under the plot, or NULL */
    struct chart_axis x, y;
    const struct chart_point *points;
    int n_points;
    const int *line;        /* indices into points, joined in this order by the highlighted line */
    int n_line;
    const char *line_label; /* legend for that line, or NULL */
};

/* Writes the chart to path; false (errno set) when the file cannot be written. */
bool svg_chart_write(const struct svg_chart *chart, const char *path);

#endif
