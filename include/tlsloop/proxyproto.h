/*
 * tlsloop/proxyproto.h - the PROXY protocol, versions 1 (text) and 2 (binary): parse the header a
 * load balancer (HAProxy, a cloud L4 balancer) puts in front of a connection to say who the
 * client really is, and write such headers for a backend.
 *
 * Parsing follows picohttpparser's contract: stateless, no allocation, results point into the
 * caller's buffer. tl_proxy_parse looks at the start of the bytes received so far and answers
 *   > 0                  a complete header of that many bytes (what follows is the stream),
 *   TL_PROXY_INCOMPLETE  a valid beginning: call again with more bytes,
 *   TL_PROXY_INVALID     not a PROXY header, or a malformed one: close the connection.
 * It is strict where ambiguity would be dangerous: v1 must be exactly "PROXY" SP proto SP src SP
 * dst SP sport SP dport CRLF within 107 bytes, addresses valid for their family, ports in range
 * without leading zeros; v2 lengths must fit, every TLV must fit its area, and a CRC32C TLV, when
 * present, must match.
 *
 * The header says the peer's real address; trust it only from a balancer you run (the server
 * enables it per listener).
 *
 * Thread-safety: all functions are pure and safe from any thread.
 */
#ifndef TLSLOOP_PROXYPROTO_H
#define TLSLOOP_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <tlsloop/api.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TL_PROXY_INCOMPLETE (-2)
#define TL_PROXY_INVALID (-1)

#define TL_PROXY_V1_MAX 107            /* the longest v1 header, CRLF included */
#define TL_PROXY_V2_HEADER 16          /* the fixed part of a v2 header */

/* v2 TLV types (the spec's PP2_TYPE_*). */
enum {
    TL_PP2_ALPN = 0x01,
    TL_PP2_AUTHORITY = 0x02,           /* the host name the client asked for (SNI) */
    TL_PP2_CRC32C = 0x03,
    TL_PP2_NOOP = 0x04,
    TL_PP2_UNIQUE_ID = 0x05,
    TL_PP2_SSL = 0x20,                 /* client flags, verify result, then sub-TLVs: */
    TL_PP2_SSL_VERSION = 0x21,
    TL_PP2_SSL_CN = 0x22,
    TL_PP2_SSL_CIPHER = 0x23,
    TL_PP2_SSL_SIG_ALG = 0x24,
    TL_PP2_SSL_KEY_ALG = 0x25,
    TL_PP2_NETNS = 0x30,
};

typedef struct tl_proxy_info {
    int version;                       /* 1 or 2 */
    bool local;                        /* no addresses: v2 LOCAL, or v1/v2 UNKNOWN/UNSPEC
                                          (health checks): use the socket's own addresses */
    int family;                        /* AF_INET or AF_INET6 when addresses are given */
    struct sockaddr_storage src, dst;  /* the client, and the address it connected to */
    const uint8_t *tlvs;               /* v2: the TLV area (points into the input) */
    size_t tlvs_len;
} tl_proxy_info;

/* Parse a header at the start of buf (see above). out is filled on success only. */
TL_API ssize_t tl_proxy_parse(const void *buf, size_t len, tl_proxy_info *out);

/* Find a v2 TLV of this type (for TL_PP2_SSL_* sub-TLVs, inside the TL_PP2_SSL one). Returns
 * true and points value into the input. */
TL_API bool tl_proxy_tlv(const tl_proxy_info *info, uint8_t type, const uint8_t **value,
                         size_t *len);

/* Write a v1 header for a TCP connection from src to dst (both AF_INET or both AF_INET6; NULL
 * src writes "PROXY UNKNOWN"). Returns the length, or -1 if cap is too small or the families
 * differ. Not NUL-terminated. */
TL_API ssize_t tl_proxy_write_v1(char *buf, size_t cap, const struct sockaddr *src,
                                 const struct sockaddr *dst);

typedef struct tl_proxy_tlv_out {
    uint8_t type;
    const void *value;
    size_t len;                        /* at most 65535 */
} tl_proxy_tlv_out;

/* Write a v2 header (command PROXY; LOCAL when src is NULL) with these TLVs, and a CRC32C TLV
 * when crc is true. Returns the length, or -1 if cap is too small or the input is invalid. */
TL_API ssize_t tl_proxy_write_v2(uint8_t *buf, size_t cap, const struct sockaddr *src,
                                 const struct sockaddr *dst, const tl_proxy_tlv_out *tlvs,
                                 size_t ntlvs, bool crc);

#ifdef __cplusplus
}
#endif

#endif /* TLSLOOP_PROXYPROTO_H */
