#include "eval/log_sum_exp.h"

#include <math.h>

double log_sum_exp(const float *logits, int n, float *max)
{
    float top = logits[0];
    for (int i = 1; i < n; i++)
        if (logits[i] > top)
            top = logits[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += exp((double)logits[i] - top);
    *max = top;
    return log(sum);
}
