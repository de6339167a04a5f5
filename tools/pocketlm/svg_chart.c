#include "svg_chart.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Canvas and plot area, in SVG user units (pixels at 100%). */
#define WIDTH 760
#define HEIGHT 500
#define PLOT_LEFT 90
#define PLOT_RIGHT 730
#define PLOT_TOP 50
#define PLOT_BOTTOM 400

#define ACCENT "#d62728"
#define MUTED "#1f77b4"

/* The span an axis shows: [low, high] in data units, or in log10 of them on
 * a log axis, and the distance between ticks in the same units. */
struct axis_range {
    bool log_scale;
    double low, high, step;
};

static bool placeable(const struct chart_axis *axis, double v)
{
    return isfinite(v) && (!axis->log_scale || v > 0.0);
}

static double axis_value(const struct axis_range *r, double v)
{
    return r->log_scale ? log10(v) : v;
}

/* A tick step of 1, 2 or 5 times a power of ten giving about five intervals. */
static double nice_step(double span)
{
    double raw = span / 5.0, magnitude = pow(10.0, floor(log10(raw)));
    double multiples[] = {1.0, 2.0, 5.0, 10.0};
    for (int i = 0; i < 3; i++)
        if (multiples[i] * magnitude >= raw)
            return multiples[i] * magnitude;
    return multiples[3] * magnitude;
}

static bool point_placeable(const struct svg_chart *chart, const struct chart_point *p)
{
    return placeable(&chart->x, p->x) && placeable(&chart->y, p->y);
}

/* Whole decades on a log axis, round ticks on a linear one, around every
 * point that can be placed (a point left out does not stretch the axes). */
static struct axis_range fit_axis(const struct svg_chart *chart, bool is_x)
{
    const struct chart_axis *axis = is_x ? &chart->x : &chart->y;
    struct axis_range r = {axis->log_scale, INFINITY, -INFINITY, 1.0};
    for (int i = 0; i < chart->n_points; i++) {
        const struct chart_point *p = &chart->points[i];
        if (point_placeable(chart, p)) {
            double v = axis_value(&r, is_x ? p->x : p->y);
            r.low = fmin(r.low, v);
            r.high = fmax(r.high, v);
        }
    }
    if (r.low > r.high) { /* nothing to place: an empty unit span */
        r.low = 0.0;
        r.high = 1.0;
    }
    if (r.log_scale) {
        r.low = floor(r.low);
        r.high = ceil(r.high);
        if (r.high == r.low)
            r.high = r.low + 1.0;
        /* At most about six labelled decades; the top rounded up to a whole step. */
        r.step = ceil((r.high - r.low) / 6);
        r.high = r.low + ceil((r.high - r.low) / r.step) * r.step;
        return r;
    }
    if (r.high == r.low) {
        double pad = r.low == 0.0 ? 1.0 : fabs(r.low) * 0.1;
        r.low -= pad;
        r.high += pad;
    }
    r.step = nice_step(r.high - r.low);
    r.low = floor(r.low / r.step) * r.step;
    r.high = ceil(r.high / r.step) * r.step;
    return r;
}

/* Where a value falls between the ends of the axis: 0 at low, 1 at high. */
static double axis_fraction(const struct axis_range *r, double v)
{
    return (axis_value(r, v) - r->low) / (r->high - r->low);
}

static double pixel_x(const struct axis_range *r, double v)
{
    return PLOT_LEFT + axis_fraction(r, v) * (PLOT_RIGHT - PLOT_LEFT);
}

static double pixel_y(const struct axis_range *r, double v)
{
    return PLOT_BOTTOM - axis_fraction(r, v) * (PLOT_BOTTOM - PLOT_TOP);
}

/* Text content and attribute values may not hold raw markup characters. */
static void write_escaped(FILE *out, const char *text)
{
    for (const char *c = text; *c; c++) {
        switch (*c) {
        case '&': fputs("&amp;", out); break;
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '"': fputs("&quot;", out); break;
        case '\'': fputs("&apos;", out); break;
        default: fputc(*c, out); break;
        }
    }
}

static void write_text(FILE *out, double x, double y, const char *anchor, const char *extra, const char *text)
{
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s>", x, y, anchor, extra);
    write_escaped(out, text);
    fputs("</text>\n", out);
}

/* Grid lines and labels at every tick of both axes, then the axis titles. */
static void write_axes(FILE *out, const struct svg_chart *chart, const struct axis_range *x,
                       const struct axis_range *y)
{
    fprintf(out, "<g stroke=\"#dddddd\" stroke-width=\"1\">\n");
    int n_x = (int)lround((x->high - x->low) / x->step), n_y = (int)lround((y->high - y->low) / y->step);
    for (int i = 0; i <= n_x; i++) {
        double px = PLOT_LEFT + (double)i / n_x * (PLOT_RIGHT - PLOT_LEFT);
        fprintf(out, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>\n", px, PLOT_TOP, px, PLOT_BOTTOM);
    }
    for (int i = 0; i <= n_y; i++) {
        double py = PLOT_BOTTOM - (double)i / n_y * (PLOT_BOTTOM - PLOT_TOP);
        fprintf(out, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", PLOT_LEFT, py, PLOT_RIGHT, py);
    }
    fprintf(out, "</g>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333333\"/>\n",
            PLOT_LEFT, PLOT_TOP, PLOT_RIGHT - PLOT_LEFT, PLOT_BOTTOM - PLOT_TOP);
    char label[32];
    for (int i = 0; i <= n_x; i++) {
        double v = x->low + i * x->step;
        snprintf(label, sizeof label, "%g", x->log_scale ? pow(10.0, v) : v);
        write_text(out, PLOT_LEFT + (double)i / n_x * (PLOT_RIGHT - PLOT_LEFT), PLOT_BOTTOM + 18, "middle", "",
                   label);
    }
    for (int i = 0; i <= n_y; i++) {
        double v = y->low + i * y->step;
        snprintf(label, sizeof label, "%g", y->log_scale ? pow(10.0, v) : v);
        write_text(out, PLOT_LEFT - 8, PLOT_BOTTOM - (double)i / n_y * (PLOT_BOTTOM - PLOT_TOP) + 4, "end", "",
                   label);
    }
    write_text(out, (PLOT_LEFT + PLOT_RIGHT) / 2.0, PLOT_BOTTOM + 42, "middle", "", chart->x.title);
    char rotate[96];
    snprintf(rotate, sizeof rotate, " transform=\"rotate(-90 %d %d)\"", 24, (PLOT_TOP + PLOT_BOTTOM) / 2);
    write_text(out, 24, (PLOT_TOP + PLOT_BOTTOM) / 2.0, "middle", rotate, chart->y.title);
}

static void write_line(FILE *out, const struct svg_chart *chart, const struct axis_range *x,
                       const struct axis_range *y)
{
    fprintf(out, "<polyline class=\"highlight\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", ACCENT);
    const char *separator = "";
    for (int i = 0; i < chart->n_line; i++) {
        const struct chart_point *p = &chart->points[chart->line[i]];
        if (point_placeable(chart, p)) {
            fprintf(out, "%s%.1f,%.1f", separator, pixel_x(x, p->x), pixel_y(y, p->y));
            separator = " ";
        }
    }
    fputs("\"/>\n", out);
    if (chart->line_label) {
        fprintf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>\n",
                PLOT_RIGHT - 180, PLOT_TOP - 14, PLOT_RIGHT - 155, PLOT_TOP - 14, ACCENT);
        write_text(out, PLOT_RIGHT - 150, PLOT_TOP - 10, "start", "", chart->line_label);
    }
}

/* A label's box in pixels, estimated from its length (about 7 px a character). */
struct label_box {
    double left, right, top, bottom;
};

static bool boxes_overlap(const struct label_box *a, const struct label_box *b)
{
    return a->left < b->right && b->left < a->right && a->top < b->bottom && b->top < a->bottom;
}

/* Writes the label beside its point, above or below it, whichever does not
 * cover a label already written; leaves it out when both would (the table
 * the chart comes with names every point). */
static void write_label(FILE *out, double px, double py, const char *label, struct label_box *placed,
                        int *n_placed)
{
    /* Labels of points near the right edge go to their left, inside the plot. */
    bool near_right = px > PLOT_RIGHT - 150;
    double width = 7.0 * (double)strlen(label);
    double left = near_right ? px - 8 - width : px + 8;
    const double baselines[] = {py - 8, py + 18};
    for (int k = 0; k < 2; k++) {
        struct label_box box = {left, left + width, baselines[k] - 12, baselines[k] + 2};
        bool free = true;
        for (int j = 0; j < *n_placed && free; j++)
            free = !boxes_overlap(&box, &placed[j]);
        if (free) {
            placed[(*n_placed)++] = box;
            write_text(out, near_right ? px - 8 : px + 8, baselines[k], near_right ? "end" : "start", "", label);
            return;
        }
    }
}

static void write_points(FILE *out, const struct svg_chart *chart, const struct axis_range *x,
                         const struct axis_range *y)
{
    struct label_box *placed = malloc((size_t)(chart->n_points > 0 ? chart->n_points : 1) * sizeof *placed);
    int n_placed = 0;
    for (int i = 0; i < chart->n_points; i++) {
        const struct chart_point *p = &chart->points[i];
        if (!point_placeable(chart, p))
            continue;
        double px = pixel_x(x, p->x), py = pixel_y(y, p->y);
        fprintf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\"/>\n", px, py, p->highlighted ? 6 : 4,
                p->highlighted ? ACCENT : MUTED);
        if (p->label && placed)
            write_label(out, px, py, p->label, placed, &n_placed);
    }
    free(placed);
}

/* The caption under the plot, one <text> per line ('\n' separates lines). */
static void write_caption(FILE *out, const char *caption)
{
    char line[512];
    double y = HEIGHT - 44;
    for (const char *at = caption; *at; y += 15) {
        size_t len = strcspn(at, "\n");
        snprintf(line, sizeof line, "%.*s", (int)len, at);
        write_text(out, PLOT_LEFT, y, "start", " font-size=\"11\" fill=\"#555555\"", line);
        at += len + (at[len] == '\n');
    }
}

bool svg_chart_write(const struct svg_chart *chart, const char *path)
{
    FILE *out = fopen(path, "w");
    if (!out)
        return false;
    struct axis_range x = fit_axis(chart, true);
    struct axis_range y = fit_axis(chart, false);
    fprintf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                 "font-family=\"sans-serif\" font-size=\"12\">\n"
                 "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            WIDTH, HEIGHT, WIDTH, HEIGHT);
    write_text(out, WIDTH / 2.0, 24, "middle", " font-size=\"16\"", chart->title);
    write_axes(out, chart, &x, &y);
    if (chart->n_line > 0)
        write_line(out, chart, &x, &y);
    write_points(out, chart, &x, &y);
    if (chart->caption)
        write_caption(out, chart->caption);
    fputs("</svg>\n", out);
    bool ok = !ferror(out);
    ok = fclose(out) == 0 && ok;
    if (!ok && errno == 0)
        errno = EIO;
    return ok;
}
