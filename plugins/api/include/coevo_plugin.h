/* coevo plugin ABI, version 1: the C view of coevo_plugin_api::abi.
 * See plugins/api/README.md for the contract of every function. */
#ifndef COEVO_PLUGIN_H
#define COEVO_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define COEVO_ABI_VERSION 1u

typedef int32_t coevo_status;
#define COEVO_OK                   0
#define COEVO_ERR_MODEL            1
#define COEVO_ERR_PANIC            2
#define COEVO_ERR_INVALID_ARGUMENT 3
#define COEVO_ERR_BUFFER_TOO_SMALL 4
#define COEVO_ERR_POISONED         5

/* Caller-allocated error message buffer: write at most `capacity` bytes of UTF-8 at `ptr`
 * (no NUL terminator) and set `written`. */
typedef struct {
    uint8_t *ptr;
    size_t capacity;
    size_t written;
} CoevoErrorBuf;

/* The host's random stream, lent for one call. */
typedef struct {
    void *ctx;
    uint64_t (*next_u64)(void *ctx);
} CoevoRng;

#define COEVO_POLICY_REPLACE    0u
#define COEVO_POLICY_ACCUMULATE 1u
#define COEVO_POLICY_FRESH      2u
typedef struct {
    uint32_t kind;
    uint64_t initial;
    double lambda;
} CoevoDataPolicy;

#define COEVO_LOG_ERROR 1u
#define COEVO_LOG_WARN  2u
#define COEVO_LOG_INFO  3u
#define COEVO_LOG_DEBUG 4u
#define COEVO_LOG_TRACE 5u
typedef void (*CoevoLogFn)(void *ctx, uint32_t level, const uint8_t *msg, size_t len);

typedef struct {
    const char *name;
    const char *modality;
    const char *dim_rule;
    size_t fixed_dim;
    const char *description;
} CoevoModelInfo;

typedef struct {
    size_t struct_size;
    uint32_t abi_version;
    const char *plugin_name;
    const char *plugin_version;
    size_t model_count;
    const CoevoModelInfo *models;

    void (*set_logger)(void *ctx, CoevoLogFn log);
    coevo_status (*create)(size_t model_index, const uint8_t *params, size_t params_len, size_t num_texts,
                           CoevoDataPolicy policy, void **out_handle, CoevoErrorBuf *err);
    void (*destroy)(void *handle);
    size_t (*dim)(void *handle);
    size_t (*num_texts)(void *handle);
    coevo_status (*sample)(void *handle, const uint64_t *counts, size_t num_texts, double temperature, CoevoRng *rng,
                           double *out, size_t out_len, CoevoErrorBuf *err);
    coevo_status (*log_likelihood)(void *handle, const double *samples, size_t n, double *out, size_t out_len,
                                   CoevoErrorBuf *err);
    coevo_status (*fit)(void *handle, const uint64_t *counts, size_t num_texts, const double *samples,
                        size_t samples_len, CoevoRng *rng, CoevoErrorBuf *err);
    size_t (*metric_count)(void *handle);
    const char *(*metric_name)(void *handle, size_t index);
    coevo_status (*metrics)(void *handle, double *out, size_t out_len, CoevoErrorBuf *err);
    coevo_status (*add_text)(void *handle, CoevoErrorBuf *err);
    coevo_status (*get_params)(void *handle, double *out, size_t out_len, size_t *needed, CoevoErrorBuf *err);
    coevo_status (*set_params)(void *handle, const double *params, size_t len, CoevoErrorBuf *err);
} CoevoPluginTable;

/* The one symbol a plugin exports. */
const CoevoPluginTable *coevo_plugin_entry(void);

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
_Static_assert(sizeof(CoevoPluginTable) == 160, "CoevoPluginTable layout");
_Static_assert(sizeof(CoevoModelInfo) == 40, "CoevoModelInfo layout");
_Static_assert(sizeof(CoevoErrorBuf) == 24, "CoevoErrorBuf layout");
_Static_assert(sizeof(CoevoRng) == 16, "CoevoRng layout");
_Static_assert(sizeof(CoevoDataPolicy) == 24, "CoevoDataPolicy layout");
#endif

#endif /* COEVO_PLUGIN_H */
