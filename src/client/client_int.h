/*
 * src/client/client_int.h - the client's private structures, shared by client*.c only.
 */
#ifndef TLSLOOP_CLIENT_INT_H
#define TLSLOOP_CLIENT_INT_H

#include <tlsloop/client.h>

#include "util/tli.h"

/* The client's state of one connection (its owner data). */
typedef struct cconn {
    tl_client *cl;
    tl_client_dial *dial;          /* while it is an attempt; NULL once handed to the user */
    const tl_conn_cbs *user;       /* where the relay passes callbacks on */
    tl_session *seen;              /* the newest session taken from it (a reference) */
    char *key;                     /* "host:port" (owned) */
    bool tls13;                    /* take tickets as they arrive */
} cconn;

/* The client's state of a connection it made, or NULL for any other connection. */
cconn *tli_client_conn(const tl_conn *c);
/* Send the connection's callbacks to cbs from now on (a connection made by a tl_client). */
void tli_client_conn_set_cbs(tl_conn *c, const tl_conn_cbs *cbs);

#endif /* TLSLOOP_CLIENT_INT_H */
