/* Per-packet ChaCha20-Poly1305 seal through OpenSSL's EVP API, the way a WireGuard data path
 * would use it: one context keyed once, then per packet a new nonce, update, final, tag.
 * Compare with ring's `aead_seal/1420` in `cargo bench --bench engines`.
 * docs/PERFORMANCE.md, "The ceiling without crypto".
 *
 *   gcc -O2 -o /tmp/openssl_seal benches/ceiling/openssl_seal.c -lcrypto && /tmp/openssl_seal
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    unsigned char key[32] = {7}, nonce[12] = {0}, buf[2048], tag[16];
    int len, sizes[] = {64, 1420};
    const long packets = 2000000;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
    if (!ctx || !cipher || !EVP_EncryptInit_ex(ctx, cipher, NULL, key, NULL)) {
        fprintf(stderr, "no ChaCha20-Poly1305 in this OpenSSL\n");
        return 1;
    }
    for (int s = 0; s < 2; s++) {
        int n = sizes[s];
        memset(buf, 1, n);
        for (int run = 0; run < 3; run++) {
            double t0 = now();
            for (long i = 0; i < packets; i++) {
                memcpy(nonce + 4, &i, 8);
                EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce);
                EVP_EncryptUpdate(ctx, buf, &len, buf, n);
                EVP_EncryptFinal_ex(ctx, buf + len, &len);
                EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag);
            }
            double t = now() - t0;
            printf("%s, seal %4d B: %4.0f ns/packet (%.2f GB/s)\n", OpenSSL_version(OPENSSL_VERSION),
                   n, t / packets * 1e9, n * packets / t / 1e9);
        }
    }
    EVP_CIPHER_free(cipher);
    EVP_CIPHER_CTX_free(ctx);
    return 0;
}
