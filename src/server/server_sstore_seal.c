/* server_sstore_seal.c - session store entries sealed with AES-256-GCM (src/server/sstore_int.h).
 *
 *   entry = "TS" 0x01 | key name (16) | nonce (12) | AES-256-GCM(der) | tag (16)
 *   key   = HKDF-SHA256(ticket key, info "tlsloop session store v1")   (tl_ticket_ring_derive)
 *   AAD   = the entry's first 19 bytes (magic, version, key name) | the session ID
 *
 * The nonce is random: 96 bits per entry, far from the collision bound for one key's lifetime
 * (a key encrypts for one rotation interval). */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "server/sstore_int.h"

static const char LABEL[] = "tlsloop session store v1";

#define HDR 19        /* magic, version, name */
#define NONCE 12
#define TAG 16
#define CACHED_KEYS 4

struct tli_sealer {
    EVP_CIPHER *aes;
    EVP_CIPHER_CTX *cctx;
    struct {
        bool used;
        uint8_t name[16];
        uint8_t key[32];
    } keys[CACHED_KEYS];
    unsigned next;    /* the slot the next derived key takes */
};

tli_sealer *tli_sealer_new(void)
{
    tli_sealer *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->aes = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    s->cctx = EVP_CIPHER_CTX_new();
    if (!s->aes || !s->cctx) {
        tli_sealer_free(s);
        return NULL;
    }
    return s;
}

void tli_sealer_free(tli_sealer *s)
{
    if (!s)
        return;
    EVP_CIPHER_CTX_free(s->cctx);
    EVP_CIPHER_free(s->aes);
    OPENSSL_cleanse(s->keys, sizeof s->keys);
    free(s);
}

/* The key for the ring key called name (NULL: the current one, whose name goes to name_out).
 * A key that left the ring is not served from the cache: the ring is asked whether it still
 * has the name, cheaply, before a cached key is used. */
static const uint8_t *key_for(tli_sealer *s, tl_ticket_ring *ring, const uint8_t *name,
                              uint8_t name_out[16])
{
    uint8_t cur[16];
    if (!name) {
        tl_ticket_ring_current_name(ring, cur);
        name = cur;
    }
    memcpy(name_out, name, 16);
    for (unsigned i = 0; i < CACHED_KEYS; i++)
        if (s->keys[i].used && memcmp(s->keys[i].name, name, 16) == 0) {
            /* Still in the ring? A key taken out of the file opens nothing any more. */
            if (name != cur && !tl_ticket_ring_has(ring, name))
                return NULL;
            return s->keys[i].key;
        }
    unsigned slot = s->next++ % CACHED_KEYS;
    if (tl_ticket_ring_derive(ring, name, LABEL, NULL, s->keys[slot].key) != 0) {
        s->keys[slot].used = false;
        return NULL;
    }
    s->keys[slot].used = true;
    memcpy(s->keys[slot].name, name, 16);
    return s->keys[slot].key;
}

int tli_seal(tli_sealer *s, tl_ticket_ring *ring, const uint8_t *id, size_t id_len,
             const uint8_t *der, size_t der_len, uint8_t **out, size_t *out_len)
{
    if (der_len > TLI_SSTORE_VALUE_MAX - TLI_SEAL_OVERHEAD)
        return -1;
    uint8_t *e = malloc(der_len + TLI_SEAL_OVERHEAD);
    if (!e)
        return -1;
    e[0] = 'T';
    e[1] = 'S';
    e[2] = 1;
    const uint8_t *key = key_for(s, ring, NULL, e + 3);
    int n1 = 0, n2 = 0;
    bool ok = key && RAND_bytes(e + HDR, NONCE) == 1 &&
              EVP_EncryptInit_ex2(s->cctx, s->aes, key, e + HDR, NULL) == 1 &&
              EVP_EncryptUpdate(s->cctx, NULL, &n1, e, HDR) == 1 &&
              EVP_EncryptUpdate(s->cctx, NULL, &n1, id, (int)id_len) == 1 &&
              EVP_EncryptUpdate(s->cctx, e + HDR + NONCE, &n1, der, (int)der_len) == 1 &&
              EVP_EncryptFinal_ex(s->cctx, e + HDR + NONCE + n1, &n2) == 1 &&
              (size_t)(n1 + n2) == der_len &&
              EVP_CIPHER_CTX_ctrl(s->cctx, EVP_CTRL_AEAD_GET_TAG, TAG, e + HDR + NONCE + der_len) == 1;
    if (!ok) {
        free(e);
        return -1;
    }
    *out = e;
    *out_len = der_len + TLI_SEAL_OVERHEAD;
    return 0;
}

int tli_open(tli_sealer *s, tl_ticket_ring *ring, const uint8_t *id, size_t id_len,
             const uint8_t *entry, size_t len, uint8_t **der, size_t *der_len)
{
    if (len <= TLI_SEAL_OVERHEAD || entry[0] != 'T' || entry[1] != 'S' || entry[2] != 1)
        return -1;
    uint8_t name[16];
    const uint8_t *key = key_for(s, ring, entry + 3, name);
    if (!key)
        return -1;   /* its key is no longer in the file */
    size_t n = len - TLI_SEAL_OVERHEAD;
    uint8_t *out = malloc(n);
    if (!out)
        return -1;
    int n1 = 0, n2 = 0;
    bool ok = EVP_DecryptInit_ex2(s->cctx, s->aes, key, entry + HDR, NULL) == 1 &&
              EVP_DecryptUpdate(s->cctx, NULL, &n1, entry, HDR) == 1 &&
              EVP_DecryptUpdate(s->cctx, NULL, &n1, id, (int)id_len) == 1 &&
              EVP_DecryptUpdate(s->cctx, out, &n1, entry + HDR + NONCE, (int)n) == 1 &&
              EVP_CIPHER_CTX_ctrl(s->cctx, EVP_CTRL_AEAD_SET_TAG, TAG,
                                  (void *)(entry + HDR + NONCE + n)) == 1 &&
              EVP_DecryptFinal_ex(s->cctx, out + n1, &n2) == 1 && (size_t)(n1 + n2) == n;
    if (!ok) {
        OPENSSL_cleanse(out, n);
        free(out);
        return -1;
    }
    *der = out;
    *der_len = n;
    return 0;
}
