/* startup.h -- every check `run` makes before it touches the network, in
 * one function that `check-config` calls too: what one refuses, the other
 * refuses with the same message. */
#ifndef SP_STARTUP_H
#define SP_STARTUP_H

#include <stddef.h>

#include "core/config.h"

/* Check a loaded config: the time zone exists, the schema directory holds
 * the reader schemas, every writer schema of schemas.ids exists and parses
 * (and the alert schema, for Avro alerts), the alert rules load, every
 * kafka.* property is accepted by librdkafka for each client run builds
 * (consumer, idempotent producer), and the TLS/SASL files they name are
 * readable. No network; nothing is kept but the alert module's cache of
 * alert.avsc (the file run would read). Returns
 * SP_OK, or an error with "FILE:LINE: key 'K': reason" (or "environment
 * STOREPULSE_X: key 'K': reason") in errstr; secrets are never written. */
int sp_startup_check(const sp_config_t *cfg, char *errstr, size_t errstr_size);

#endif
