/* err.c -- names of errors and dead-letter reasons. */
#include "core/err.h"

const char *sp_err_str(sp_err_t err) {
    switch (err) {
    case SP_OK: return "success";
    case SP_ERR_NOMEM: return "out of memory";
    case SP_ERR_CONFIG: return "configuration error";
    case SP_ERR_IO: return "I/O error";
    case SP_ERR_FENCED: return "fenced: another owner committed";
    case SP_ERR_POISON: return "bad input";
    case SP_ERR_LATE: return "late event";
    case SP_ERR_DUPLICATE: return "duplicate event";
    case SP_ERR_INVALID: return "invalid argument";
    case SP_ERR_TIMEOUT: return "timed out";
    case SP_ERR__COUNT: break;
    }
    return "unknown error";
}

const char *sp_dlq_reason_str(sp_dlq_reason_t r) {
    static const char *names[SP_DLQ__COUNT] = {
        [SP_DLQ_NONE] = "none",
        [SP_DLQ_UNDECODABLE] = "undecodable",
        [SP_DLQ_UNKNOWN_SCHEMA] = "unknown_schema",
        [SP_DLQ_MISSING_FIELD] = "missing_field",
        [SP_DLQ_BAD_ENUM] = "bad_enum",
        [SP_DLQ_BAD_TIMESTAMP] = "bad_timestamp",
        [SP_DLQ_NEGATIVE_AMOUNT] = "negative_amount",
        [SP_DLQ_STRING_TOO_LONG] = "string_too_long",
        [SP_DLQ_BAD_VALUE] = "bad_value",
        [SP_DLQ_LATE] = "late",
    };
    if ((int)r < 0 || r >= SP_DLQ__COUNT) return "unknown";
    return names[r];
}
