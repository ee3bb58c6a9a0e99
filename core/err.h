/* err.h -- the one error enum of StorePulse and the dead-letter reasons.
 *
 * Every failure is one of three classes: retriable (back off and retry),
 * fatal (stop cleanly) or poison (bad input: dead-letter it and go on).
 * Error text travels in a caller buffer (errstr, errstr_size); deep helpers
 * return codes and never print. */
#ifndef SP_ERR_H
#define SP_ERR_H

typedef enum sp_err {
    SP_OK = 0,
    SP_ERR_NOMEM,     /* fatal */
    SP_ERR_CONFIG,    /* fatal: bad configuration */
    SP_ERR_IO,        /* retriable: network, Redis, broker */
    SP_ERR_FENCED,    /* another owner committed: drop state, reload */
    SP_ERR_POISON,    /* bad input: see sp_dlq_reason_t */
    SP_ERR_LATE,      /* event for a closed window */
    SP_ERR_DUPLICATE, /* event seen before */
    SP_ERR_INVALID,   /* bad argument (a bug or bad CLI use) */
    SP_ERR_TIMEOUT,   /* retriable */
    SP_ERR__COUNT
} sp_err_t;

const char *sp_err_str(sp_err_t err);

/* Why a message went to the dead-letter topic. The name is the `reason`
 * header and the health counter suffix. */
typedef enum sp_dlq_reason {
    SP_DLQ_NONE = 0,
    SP_DLQ_UNDECODABLE,     /* bytes are not a valid Avro/JSON body */
    SP_DLQ_UNKNOWN_SCHEMA,  /* Confluent schema id not configured */
    SP_DLQ_MISSING_FIELD,   /* a required field is absent or null */
    SP_DLQ_BAD_ENUM,        /* unknown event type symbol */
    SP_DLQ_BAD_TIMESTAMP,   /* before 2000 or > 1 day in the future */
    SP_DLQ_NEGATIVE_AMOUNT, /* amount_cents < 0 */
    SP_DLQ_STRING_TOO_LONG, /* id/dimension over 256 bytes */
    SP_DLQ_BAD_VALUE,       /* out of range (csat 1-5, nps 0-10, ces 1-7) */
    SP_DLQ_LATE,            /* its window is already closed */
    SP_DLQ__COUNT
} sp_dlq_reason_t;

const char *sp_dlq_reason_str(sp_dlq_reason_t r);

#endif
