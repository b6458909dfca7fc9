/* SPDX-License-Identifier: Apache-2.0 */
/* Transports: plain TCP, and TLS with OpenSSL 3 over memory BIOs (ALPN h2 / http/1.1,
 * optional client-certificate verification). HTTP code never sees OpenSSL. */
#include "net_int.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- plain */

static int plain_recv(fl_conn_t *c, const uint8_t *data, size_t len)
{
    fl__conn_deliver(c, data, len);
    return 0;
}

static int plain_send(fl_conn_t *c, const void *data, size_t len)
{
    fl__conn_raw_queue(c, data, len);
    return 0;
}

const fl__transport_ops_t fl__transport_plain = {
    .name = "tcp", .recv = plain_recv, .send = plain_send};

/* ---------------------------------------------------------------- TLS server context */

static void ssl_errstr(char *out, size_t outlen)
{
    unsigned long e = ERR_get_error();
    if (!e) {
        snprintf(out, outlen, "unknown error");
        return;
    }
    ERR_error_string_n(e, out, outlen);
    ERR_clear_error();
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    /* Our preference wins: h2 when the client offers it, else http/1.1. */
    static const char *prefs[] = {"h2", "http/1.1"};
    for (size_t k = 0; k < 2; k++) {
        size_t pl = strlen(prefs[k]);
        for (unsigned i = 0; i < inlen;) {
            unsigned l = in[i];
            if (i + 1 + l > inlen)
                break;
            if (l == pl && memcmp(in + i + 1, prefs[k], pl) == 0) {
                *out = in + i + 1;
                *outlen = (unsigned char)l;
                return SSL_TLSEXT_ERR_OK;
            }
            i += 1 + l;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

void *fl__tls_server_ctx(const fl_net_tls_opts_t *o, char *err, size_t errlen)
{
    char es[256];
    SSL_CTX *ctx = NULL;
    if (!o->cert_file || !o->key_file) {
        snprintf(err, errlen, "TLS needs both a certificate and a key file");
        goto fail;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_errstr(es, sizeof(es));
        snprintf(err, errlen, "TLS context: %s", es);
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
        ssl_errstr(es, sizeof(es));
        snprintf(err, errlen, "TLS certificate %s: %s", o->cert_file, es);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM) != 1) {
        ssl_errstr(es, sizeof(es));
        snprintf(err, errlen, "TLS key %s: %s", o->key_file, es);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "TLS key %s does not match certificate %s", o->key_file,
                 o->cert_file);
        goto fail;
    }
    if (o->client_ca_file) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->client_ca_file);
        if (!names || SSL_CTX_load_verify_locations(ctx, o->client_ca_file, NULL) != 1) {
            if (names)
                sk_X509_NAME_pop_free(names, X509_NAME_free);
            ssl_errstr(es, sizeof(es));
            snprintf(err, errlen, "TLS client CA %s: %s", o->client_ca_file, es);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void fl__tls_ctx_free(void *ctx)
{
    SSL_CTX_free(ctx);
}

/* ---------------------------------------------------------------- TLS transport */

typedef struct tls_state {
    SSL *ssl;
    BIO *rbio, *wbio;
    int handshake_done;
} tls_state_t;

static void flush_wbio(fl_conn_t *c, tls_state_t *t)
{
    uint8_t tmp[16384];
    while (BIO_ctrl_pending(t->wbio) > 0) {
        int n = BIO_read(t->wbio, tmp, sizeof(tmp));
        if (n <= 0)
            break;
        fl__conn_raw_queue(c, tmp, (size_t)n);
    }
}

static int tls_recv(fl_conn_t *c, const uint8_t *data, size_t len)
{
    tls_state_t *t = c->tr_state;
    if (BIO_write(t->rbio, data, (int)len) != (int)len)
        return -1;
    if (!t->handshake_done) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            flush_wbio(c, t);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                fl__conn_flush(c);
                return 0;
            }
            char es[256];
            ssl_errstr(es, sizeof(es));
            fl__peer_log(c, "TLS handshake failed", es);
            /* Send the alert, then close. */
            fl__conn_close_after_flush(c, 0);
            return 0;
        }
        t->handshake_done = 1;
        const unsigned char *alpn = NULL;
        unsigned alen = 0;
        SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
        if (alpn && alen < sizeof(c->alpn)) {
            memcpy(c->alpn, alpn, alen);
            c->alpn[alen] = 0;
        }
        fl__conn_set_timer(c, c->ls->o.header_timeout_ms);
    }
    uint8_t buf[16384];
    for (;;) {
        int n = SSL_read(t->ssl, buf, sizeof(buf));
        if (n > 0) {
            fl__conn_deliver(c, buf, (size_t)n);
            if (c->closing)
                return 0;
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            flush_wbio(c, t);
            if (c->proto->on_data(c, NULL, 0) < 0)
                return -1;
            break;
        }
        char es[256];
        ssl_errstr(es, sizeof(es));
        fl__peer_log(c, "TLS error", es);
        return -1;
    }
    flush_wbio(c, t);
    fl__conn_flush(c);
    return 0;
}

static int tls_send(fl_conn_t *c, const void *data, size_t len)
{
    tls_state_t *t = c->tr_state;
    const uint8_t *p = data;
    while (len) {
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        int n = SSL_write(t->ssl, p, chunk);
        if (n <= 0) {
            ERR_clear_error();
            return FL_ERR_IO;
        }
        p += n;
        len -= (size_t)n;
    }
    flush_wbio(c, t);
    return 0;
}

static void tls_dispose(fl_conn_t *c)
{
    tls_state_t *t = c->tr_state;
    if (!t)
        return;
    SSL_free(t->ssl); /* frees both BIOs */
    free(t);
    c->tr_state = NULL;
}

static const fl__transport_ops_t transport_tls = {
    .name = "tls", .recv = tls_recv, .send = tls_send, .dispose = tls_dispose};

int fl__tls_attach(fl_conn_t *c)
{
    tls_state_t *t = calloc(1, sizeof(*t));
    if (!t)
        return FL_ERR_NOMEM;
    t->ssl = SSL_new(c->ls->ssl_ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        return FL_ERR_NOMEM;
    }
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_accept_state(t->ssl);
    c->tr_state = t;
    c->tr = &transport_tls;
    c->is_tls = 1;
    return FL_OK;
}
