/* A coevo plugin written in C against include/coevo_plugin.h only: it checks that the README's
 * ABI is enough to write a plugin without the Rust SDK. Model `c_gauss` (dim 1): text i is
 * N(mu_i, v_i), initially N(i, 1); fit is the per-text MLE (n_i >= 2); data policy replace only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coevo_plugin.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

typedef struct {
    size_t k;
    double *mu, *v, *mu0;
} Model;

static void *log_ctx;
static CoevoLogFn log_fn;

static void set_logger(void *ctx, CoevoLogFn log) {
    log_ctx = ctx;
    log_fn = log;
}

static void say(const char *msg) {
    if (log_fn) log_fn(log_ctx, COEVO_LOG_INFO, (const uint8_t *)msg, strlen(msg));
}

static coevo_status fail(CoevoErrorBuf *err, coevo_status st, const char *msg) {
    if (err && err->ptr) {
        size_t n = strlen(msg);
        if (n > err->capacity) n = err->capacity; /* ASCII only, so any cut is a char boundary */
        memcpy(err->ptr, msg, n);
        err->written = n;
    }
    return st;
}

static coevo_status ok(CoevoErrorBuf *err) {
    if (err) err->written = 0;
    return COEVO_OK;
}

static int grow(Model *m, size_t k) {
    double *a = realloc(m->mu, k * sizeof(double));
    if (a) m->mu = a;
    double *b = realloc(m->v, k * sizeof(double));
    if (b) m->v = b;
    double *c = realloc(m->mu0, k * sizeof(double));
    if (c) m->mu0 = c;
    return a && b && c;
}

static coevo_status create(size_t model_index, const uint8_t *params, size_t params_len, size_t num_texts,
                           CoevoDataPolicy policy, void **out_handle, CoevoErrorBuf *err) {
    if (!out_handle) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "out_handle is null");
    *out_handle = NULL;
    if (model_index != 0) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "model_index out of range");
    if (num_texts == 0) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "num_texts must be at least 1");
    if (!(params_len == 0 || (params_len == 2 && memcmp(params, "{}", 2) == 0)))
        return fail(err, COEVO_ERR_MODEL, "c_gauss takes no params");
    if (policy.kind != COEVO_POLICY_REPLACE) return fail(err, COEVO_ERR_MODEL, "c_gauss supports only the replace policy");
    Model *m = calloc(1, sizeof(Model));
    if (!m || !grow(m, num_texts)) return fail(err, COEVO_ERR_MODEL, "out of memory");
    m->k = num_texts;
    for (size_t i = 0; i < num_texts; i++) {
        m->mu[i] = m->mu0[i] = (double)i;
        m->v[i] = 1.0;
    }
    say("c_gauss created");
    *out_handle = m;
    return ok(err);
}

static void destroy(void *h) {
    Model *m = h;
    if (!m) return;
    free(m->mu);
    free(m->v);
    free(m->mu0);
    free(m);
}

static size_t dim(void *h) { return h ? 1 : 0; }
static size_t num_texts(void *h) { return h ? ((Model *)h)->k : 0; }

static double uniform(CoevoRng *rng) { /* in (0, 1) */
    return ((double)(rng->next_u64(rng->ctx) >> 11) + 0.5) / 9007199254740992.0;
}

static coevo_status sample(void *h, const uint64_t *counts, size_t k, double temperature, CoevoRng *rng, double *out,
                           size_t out_len, CoevoErrorBuf *err) {
    Model *m = h;
    if (!m || !counts || !rng || !rng->next_u64) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "null argument");
    if (k != m->k) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "num_texts mismatch");
    if (!(temperature > 0.0) || !isfinite(temperature)) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "bad temperature");
    size_t n = 0;
    for (size_t i = 0; i < k; i++) n += counts[i];
    if (out_len != n || (n > 0 && !out)) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "out_len != sum(counts)");
    size_t j = 0;
    for (size_t i = 0; i < k; i++)
        for (uint64_t c = 0; c < counts[i]; c++) {
            double z = sqrt(-2.0 * log(uniform(rng))) * cos(2.0 * M_PI * uniform(rng));
            out[j++] = m->mu[i] + sqrt(m->v[i] * temperature) * z;
        }
    return ok(err);
}

static coevo_status log_likelihood(void *h, const double *samples, size_t n, double *out, size_t out_len,
                                   CoevoErrorBuf *err) {
    Model *m = h;
    if (!m || (n > 0 && (!samples || !out))) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "null argument");
    if (out_len != n * m->k) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "out_len != n * K");
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < m->k; i++) {
            double d = samples[j] - m->mu[i];
            out[j * m->k + i] = -0.5 * (log(2.0 * M_PI * m->v[i]) + d * d / m->v[i]);
        }
    return ok(err);
}

static coevo_status fit(void *h, const uint64_t *counts, size_t k, const double *samples, size_t samples_len,
                        CoevoRng *rng, CoevoErrorBuf *err) {
    Model *m = h;
    (void)rng;
    if (!m || !counts) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "null argument");
    if (k != m->k) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "num_texts mismatch");
    size_t n = 0;
    for (size_t i = 0; i < k; i++) n += counts[i];
    if (samples_len != n || (n > 0 && !samples)) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "samples_len != sum(counts)");
    size_t j = 0;
    for (size_t i = 0; i < k; i++) {
        size_t c = counts[i];
        if (c >= 2) {
            double s = 0.0, ss = 0.0;
            for (size_t r = 0; r < c; r++) s += samples[j + r];
            double mean = s / (double)c;
            for (size_t r = 0; r < c; r++) ss += (samples[j + r] - mean) * (samples[j + r] - mean);
            m->mu[i] = mean;
            m->v[i] = ss / (double)c;
        }
        j += c;
    }
    return ok(err);
}

static const char *const METRIC_NAMES[] = {"diversity", "fidelity"};
static size_t metric_count(void *h) { return h ? 2 : 0; }
static const char *metric_name(void *h, size_t index) { return h && index < 2 ? METRIC_NAMES[index] : NULL; }

static coevo_status metrics(void *h, double *out, size_t out_len, CoevoErrorBuf *err) {
    Model *m = h;
    if (!m || !out) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "null argument");
    if (out_len != 2 * m->k) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "out_len != K * M");
    for (size_t i = 0; i < m->k; i++) {
        out[2 * i] = m->v[i];
        out[2 * i + 1] = fabs(m->mu[i] - m->mu0[i]);
    }
    return ok(err);
}

static coevo_status add_text(void *h, CoevoErrorBuf *err) {
    Model *m = h;
    if (!m) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "null handle");
    if (!grow(m, m->k + 1)) return fail(err, COEVO_ERR_MODEL, "out of memory");
    m->mu[m->k] = m->mu0[m->k] = 0.0;
    m->v[m->k] = 1.0;
    m->k++;
    return ok(err);
}

/* Checkpoint: [K, mu[K], v[K], mu0[K]]. */
static coevo_status get_params(void *h, double *out, size_t out_len, size_t *needed, CoevoErrorBuf *err) {
    Model *m = h;
    if (!m || !needed) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "null argument");
    *needed = 1 + 3 * m->k;
    if (out_len < *needed) return fail(err, COEVO_ERR_BUFFER_TOO_SMALL, "buffer too small");
    if (!out) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "null out");
    out[0] = (double)m->k;
    memcpy(out + 1, m->mu, m->k * sizeof(double));
    memcpy(out + 1 + m->k, m->v, m->k * sizeof(double));
    memcpy(out + 1 + 2 * m->k, m->mu0, m->k * sizeof(double));
    return ok(err);
}

static coevo_status set_params(void *h, const double *p, size_t len, CoevoErrorBuf *err) {
    Model *m = h;
    if (!m || (len > 0 && !p)) return fail(err, COEVO_ERR_INVALID_ARGUMENT, "null argument");
    if (len < 1 || p[0] < 1.0 || len != 1 + 3 * (size_t)p[0]) return fail(err, COEVO_ERR_MODEL, "bad checkpoint length");
    size_t k = (size_t)p[0];
    if (!grow(m, k)) return fail(err, COEVO_ERR_MODEL, "out of memory");
    m->k = k;
    memcpy(m->mu, p + 1, k * sizeof(double));
    memcpy(m->v, p + 1 + k, k * sizeof(double));
    memcpy(m->mu0, p + 1 + 2 * k, k * sizeof(double));
    return ok(err);
}

static const CoevoModelInfo MODELS[] = {
    {"c_gauss", "test", "1", 1, "per-text 1-D Gaussian written in C"},
};

static const CoevoPluginTable TABLE = {
    sizeof(CoevoPluginTable), COEVO_ABI_VERSION, "c-plugin", "1.0.0", 1, MODELS,
    set_logger, create, destroy, dim, num_texts, sample, log_likelihood, fit,
    metric_count, metric_name, metrics, add_text, get_params, set_params,
};

const CoevoPluginTable *coevo_plugin_entry(void) { return &TABLE; }
