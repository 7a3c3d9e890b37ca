/* HMAC-SHA-256 of many short values at once, hex-encoded: the pseudonymisation kernel of lifecycle/protect.py.
 *
 * Why: a pseudonym is HMAC-SHA-256(K, value) of a short value (a personnummer, an account number). Computed one
 * value at a time by a general HMAC object it costs four SHA-256 compressions (key block into ipad and opad,
 * message block, outer block). The ipad/opad states depend only on the key, so they are computed once per call
 * and each value then costs two compressions - with the CPU's SHA extensions (SHA-NI) when it has them.
 *
 * Loaded with ctypes (lifecycle/fasthmac.py); built by hatch_build.py at install time. No Python headers, no
 * dependencies: if it cannot be built, datazones computes the same bytes with polars-hash.
 *
 * dz_hmac_sha256_hex(key, key_len, offsets, data, n, out, mode) -> 0 on success
 *   offsets: n + 1 int64 byte offsets into data (value i is data[offsets[i] .. offsets[i + 1]])
 *   out:     n * 64 bytes, lowercase hex of each MAC
 *   mode:    0 = best available, 1 = portable C only (tests compare both)
 * dz_has_sha_ni() -> 1 when the SHA-NI path is used by mode 0
 * dz_hex_prefix(hex, n, stride, nbytes, out) -> 0: the first nbytes bytes encoded by each of n hex strings
 * dz_xor_keystream(off, data, n, ks, stride, prefix, out) -> 0: CTR values XOR their keystream rows
 */
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define DZ_X86 1
#endif

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static const uint32_t IV256[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

typedef void (*compress_fn)(uint32_t state[8], const uint8_t block[64]);

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void compress_c(uint32_t s[8], const uint8_t p[64]) {
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 | (uint32_t)p[4 * t + 2] << 8 | p[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = ROTR(w[t - 15], 7) ^ ROTR(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = ROTR(w[t - 2], 17) ^ ROTR(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
    for (int t = 0; t < 64; t++) {
        uint32_t t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K256[t] + w[t];
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
}

#ifdef DZ_X86
/* The SHA-NI round structure of Intel's reference code: 16 groups of 4 rounds; message words are scheduled
 * 4 at a time as W[j] = msg2(msg1(W[j-4], W[j-3]) + (W[j-1]:W[j-2] >> 32), W[j-1]). */
__attribute__((target("sha,sse4.1,ssse3")))
static void compress_ni(uint32_t s[8], const uint8_t p[64]) {
    const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i tmp = _mm_loadu_si128((const __m128i *)&s[0]);
    __m128i st1 = _mm_loadu_si128((const __m128i *)&s[4]);
    tmp = _mm_shuffle_epi32(tmp, 0xB1);                 /* CDAB */
    st1 = _mm_shuffle_epi32(st1, 0x1B);                 /* EFGH */
    __m128i st0 = _mm_alignr_epi8(tmp, st1, 8);         /* ABEF */
    st1 = _mm_blend_epi16(st1, tmp, 0xF0);              /* CDGH */
    const __m128i abef = st0, cdgh = st1;
    __m128i w[4];
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) {
        __m128i x;
        if (j < 4) {
            x = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * j)), mask);
        } else {
            x = _mm_sha256msg1_epu32(w[j & 3], w[(j - 3) & 3]);
            x = _mm_add_epi32(x, _mm_alignr_epi8(w[(j - 1) & 3], w[(j - 2) & 3], 4));
            x = _mm_sha256msg2_epu32(x, w[(j - 1) & 3]);
        }
        w[j & 3] = x;
        __m128i m = _mm_add_epi32(x, _mm_loadu_si128((const __m128i *)&K256[4 * j]));
        st1 = _mm_sha256rnds2_epu32(st1, st0, m);
        m = _mm_shuffle_epi32(m, 0x0E);
        st0 = _mm_sha256rnds2_epu32(st0, st1, m);
    }
    st0 = _mm_add_epi32(st0, abef);
    st1 = _mm_add_epi32(st1, cdgh);
    tmp = _mm_shuffle_epi32(st0, 0x1B);                 /* FEBA */
    st1 = _mm_shuffle_epi32(st1, 0xB1);                 /* DCHG */
    st0 = _mm_blend_epi16(tmp, st1, 0xF0);              /* DCBA */
    st1 = _mm_alignr_epi8(st1, tmp, 8);                 /* ABEF */
    _mm_storeu_si128((__m128i *)&s[0], st0);
    _mm_storeu_si128((__m128i *)&s[4], st1);
}


/* Two independent compressions interleaved: sha256rnds2 has a long latency, so one chain leaves the unit idle. */
__attribute__((target("sha,sse4.1,ssse3")))
static void compress_ni_x2(uint32_t sa[8], const uint8_t pa[64], uint32_t sb[8], const uint8_t pb[64]) {
    const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i ta = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&sa[0]), 0xB1);
    __m128i tb = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&sb[0]), 0xB1);
    __m128i a1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&sa[4]), 0x1B);
    __m128i b1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&sb[4]), 0x1B);
    __m128i a0 = _mm_alignr_epi8(ta, a1, 8), b0 = _mm_alignr_epi8(tb, b1, 8);
    a1 = _mm_blend_epi16(a1, ta, 0xF0);
    b1 = _mm_blend_epi16(b1, tb, 0xF0);
    const __m128i a_abef = a0, a_cdgh = a1, b_abef = b0, b_cdgh = b1;
    __m128i wa[4], wb[4];
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) {
        __m128i xa, xb;
        if (j < 4) {
            xa = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 16 * j)), mask);
            xb = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 16 * j)), mask);
        } else {
            xa = _mm_sha256msg1_epu32(wa[j & 3], wa[(j - 3) & 3]);
            xb = _mm_sha256msg1_epu32(wb[j & 3], wb[(j - 3) & 3]);
            xa = _mm_add_epi32(xa, _mm_alignr_epi8(wa[(j - 1) & 3], wa[(j - 2) & 3], 4));
            xb = _mm_add_epi32(xb, _mm_alignr_epi8(wb[(j - 1) & 3], wb[(j - 2) & 3], 4));
            xa = _mm_sha256msg2_epu32(xa, wa[(j - 1) & 3]);
            xb = _mm_sha256msg2_epu32(xb, wb[(j - 1) & 3]);
        }
        wa[j & 3] = xa;
        wb[j & 3] = xb;
        const __m128i k = _mm_loadu_si128((const __m128i *)&K256[4 * j]);
        __m128i ma = _mm_add_epi32(xa, k), mb = _mm_add_epi32(xb, k);
        a1 = _mm_sha256rnds2_epu32(a1, a0, ma);
        b1 = _mm_sha256rnds2_epu32(b1, b0, mb);
        ma = _mm_shuffle_epi32(ma, 0x0E);
        mb = _mm_shuffle_epi32(mb, 0x0E);
        a0 = _mm_sha256rnds2_epu32(a0, a1, ma);
        b0 = _mm_sha256rnds2_epu32(b0, b1, mb);
    }
    a0 = _mm_add_epi32(a0, a_abef);
    a1 = _mm_add_epi32(a1, a_cdgh);
    b0 = _mm_add_epi32(b0, b_abef);
    b1 = _mm_add_epi32(b1, b_cdgh);
    ta = _mm_shuffle_epi32(a0, 0x1B);
    tb = _mm_shuffle_epi32(b0, 0x1B);
    a1 = _mm_shuffle_epi32(a1, 0xB1);
    b1 = _mm_shuffle_epi32(b1, 0xB1);
    _mm_storeu_si128((__m128i *)&sa[0], _mm_blend_epi16(ta, a1, 0xF0));
    _mm_storeu_si128((__m128i *)&sa[4], _mm_alignr_epi8(a1, ta, 8));
    _mm_storeu_si128((__m128i *)&sb[0], _mm_blend_epi16(tb, b1, 0xF0));
    _mm_storeu_si128((__m128i *)&sb[4], _mm_alignr_epi8(b1, tb, 8));
}

/* Lowercase hex of the digest in state st, 16 digits per shuffle: the scalar to_hex was a third of the kernel's
 * time outside the compressions. Same bytes as to_hex (tests compare the SHA-NI path with Python's hmac). */
__attribute__((target("ssse3")))
static void to_hex_ssse3(const uint32_t st[8], uint8_t *o) {
    const __m128i bswap = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
    const __m128i digits = _mm_setr_epi8('0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e',
                                         'f');
    const __m128i low = _mm_set1_epi8(0x0f);
    for (int h = 0; h < 2; h++) {
        __m128i v = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)&st[4 * h]), bswap); /* big-endian bytes */
        __m128i hi = _mm_shuffle_epi8(digits, _mm_and_si128(_mm_srli_epi16(v, 4), low));
        __m128i lo = _mm_shuffle_epi8(digits, _mm_and_si128(v, low));
        _mm_storeu_si128((__m128i *)(o + 32 * h), _mm_unpacklo_epi8(hi, lo));
        _mm_storeu_si128((__m128i *)(o + 32 * h + 16), _mm_unpackhi_epi8(hi, lo));
    }
}

static int has_sha_ni(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    if (!(b & (1u << 29))) return 0; /* SHA */
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & (1u << 19)) && (c & (1u << 9)); /* SSE4.1, SSSE3 */
}
#else
static int has_sha_ni(void) { return 0; }
#endif

int dz_has_sha_ni(void) { return has_sha_ni(); }

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* state already holds `prefix` bytes (whole blocks); hash msg[0..len) and finish into digest[32]. */
static void finish(compress_fn f, uint32_t st[8], uint64_t prefix, const uint8_t *msg, uint64_t len,
                   uint8_t digest[32]) {
    uint8_t block[128];
    uint64_t full = len & ~(uint64_t)63;
    for (uint64_t i = 0; i < full; i += 64) f(st, msg + i);
    uint64_t rest = len - full;
    memset(block, 0, sizeof block);
    memcpy(block, msg + full, rest);
    block[rest] = 0x80;
    uint64_t blocks = rest + 9 > 64 ? 2 : 1;
    uint64_t bits = (prefix + len) * 8;
    for (int i = 0; i < 8; i++) block[64 * blocks - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (uint64_t i = 0; i < blocks; i++) f(st, block + 64 * i);
    for (int i = 0; i < 8; i++) put_be32(digest + 4 * i, st[i]);
}

static void to_hex(const uint32_t st[8], uint8_t *o) {
    static const char hex[] = "0123456789abcdef";
    for (int j = 0; j < 8; j++)
        for (int b = 0; b < 4; b++) {
            uint8_t v = (uint8_t)(st[j] >> (24 - 8 * b));
            o[8 * j + 2 * b] = (uint8_t)hex[v >> 4];
            o[8 * j + 2 * b + 1] = (uint8_t)hex[v & 15];
        }
}

/* The last (only) block of a message of len <= 55 bytes after `prefix` hashed bytes; msg may alias block. */
static void one_block(uint8_t block[64], const uint8_t *msg, uint64_t len, uint64_t prefix) {
    memmove(block, msg, len);
    block[len] = 0x80;
    memset(block + len + 1, 0, 63 - len);
    uint64_t bits = (prefix + len) * 8;
    for (int i = 0; i < 8; i++) block[63 - i] = (uint8_t)(bits >> (8 * i));
}

static void hmac_one(compress_fn f, const uint32_t istate[8], const uint32_t ostate[8], const uint8_t *msg,
                     int64_t len, uint8_t *out) {
    uint8_t digest[32];
    uint32_t st[8];
    memcpy(st, istate, sizeof st);
    finish(f, st, 64, msg, (uint64_t)len, digest);
    memcpy(st, ostate, sizeof st);
    finish(f, st, 64, digest, 32, digest);
    to_hex(st, out);
}

/* Zero key material on the stack before returning (a volatile store the compiler may not drop). */
static void wipe(void *p, size_t n) {
    volatile uint8_t *v = (volatile uint8_t *)p;
    while (n--) *v++ = 0;
}

static int hmac_all(compress_fn f, const uint32_t istate[8], const uint32_t ostate[8], const int64_t *offsets,
                    const uint8_t *data, int64_t n, uint8_t *out);

int dz_hmac_sha256_hex(const uint8_t *key, int64_t key_len, const int64_t *offsets, const uint8_t *data,
                       int64_t n, uint8_t *out, int mode) {
    compress_fn f = compress_c;
#ifdef DZ_X86
    if (mode == 0 && has_sha_ni()) f = compress_ni;
#endif
    if (key_len < 0 || n < 0) return 1;
    uint8_t k[64], pad[64];
    memset(k, 0, sizeof k);
    if (key_len > 64) {
        uint32_t st[8];
        memcpy(st, IV256, sizeof st);
        finish(f, st, 0, key, (uint64_t)key_len, k);
        wipe(st, sizeof st);
    } else {
        memcpy(k, key, (size_t)key_len);
    }
    uint32_t istate[8], ostate[8]; /* key-equivalent: they are wiped with k and pad */
    memcpy(istate, IV256, sizeof istate);
    memcpy(ostate, IV256, sizeof ostate);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
    f(istate, pad);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
    f(ostate, pad);
    int rc = hmac_all(f, istate, ostate, offsets, data, n, out);
    wipe(k, sizeof k);
    wipe(pad, sizeof pad);
    wipe(istate, sizeof istate);
    wipe(ostate, sizeof ostate);
    return rc;
}

static int hmac_all(compress_fn f, const uint32_t istate[8], const uint32_t ostate[8], const int64_t *offsets,
                    const uint8_t *data, int64_t n, uint8_t *out) {
    int64_t i = 0;
#ifdef DZ_X86
    if (f == compress_ni) { /* two values at a time while both fit one block (<= 55 bytes: every identifier) */
        uint8_t ba[64], bb[64];
        for (; i + 1 < n; i += 2) {
            int64_t la = offsets[i + 1] - offsets[i], lb = offsets[i + 2] - offsets[i + 1];
            if (la < 0 || lb < 0) return 2;
            if (la > 55 || lb > 55) {
                hmac_one(f, istate, ostate, data + offsets[i], la, out + 64 * i);
                hmac_one(f, istate, ostate, data + offsets[i + 1], lb, out + 64 * (i + 1));
                continue;
            }
            uint32_t sa[8], sb[8];
            memcpy(sa, istate, sizeof sa);
            memcpy(sb, istate, sizeof sb);
            one_block(ba, data + offsets[i], (uint64_t)la, 64);
            one_block(bb, data + offsets[i + 1], (uint64_t)lb, 64);
            compress_ni_x2(sa, ba, sb, bb);
            for (int j = 0; j < 8; j++) { put_be32(ba + 4 * j, sa[j]); put_be32(bb + 4 * j, sb[j]); }
            memcpy(sa, ostate, sizeof sa);
            memcpy(sb, ostate, sizeof sb);
            one_block(ba, ba, 32, 64);
            one_block(bb, bb, 32, 64);
            compress_ni_x2(sa, ba, sb, bb);
            to_hex_ssse3(sa, out + 64 * i);
            to_hex_ssse3(sb, out + 64 * (i + 1));
        }
    }
#endif
    for (; i < n; i++) {
        int64_t lo = offsets[i], hi = offsets[i + 1];
        if (hi < lo) return 2;
        hmac_one(f, istate, ostate, data + lo, hi - lo, out + 64 * i);
    }
    return 0;
}

/* hex digit value, -1 for anything but 0-9 a-f (a table: branches on random digits mispredict) */
static const int8_t HEXVAL[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, 10, 11, 12, 13, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

/* The first nbytes bytes encoded by each of n lowercase hex strings laid out every `stride` bytes (a pseudonym
 * column: 64 hex digits per value), into out[n * nbytes]. Returns 1 at the first non-hex digit. */
int dz_hex_prefix(const uint8_t *hex, int64_t n, int64_t stride, int64_t nbytes, uint8_t *out) {
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *h = hex + i * stride;
        uint8_t *o = out + i * nbytes;
        for (int64_t j = 0; j < nbytes; j++) {
            int hi = HEXVAL[h[2 * j]], lo = HEXVAL[h[2 * j + 1]];
            if ((hi | lo) < 0) return 1;
            o[j] = (uint8_t)(hi << 4 | lo);
        }
    }
    return 0;
}

/* CTR sealing's last step (lifecycle/protect.py `_ctr_xor`, `seal_siv`): value i, data[off[i] .. off[i + 1]],
 * XORed with the first bytes of its keystream row ks[i * stride ..], written to out - after one `prefix` byte
 * per value when prefix >= 0 (the SIV format's version byte), so value i lands at out[off[i] + i]. numpy needs a
 * boolean gather over the whole (n, stride) keystream grid plus a masked scatter for this: ~25 ms per 400k
 * values against ~2 ms here. Returns 1 if a value is longer than its keystream row or offsets go backwards. */
int dz_xor_keystream(const int64_t *off, const uint8_t *data, int64_t n, const uint8_t *ks, int64_t stride,
                     int prefix, uint8_t *out) {
    const int64_t base = off[0];
    uint8_t *o = out;
    for (int64_t i = 0; i < n; i++) {
        int64_t len = off[i + 1] - off[i];
        if (len < 0 || len > stride) return 1;
        if (prefix >= 0) *o++ = (uint8_t)prefix;
        const uint8_t *d = data + (off[i] - base), *k = ks + i * stride;
        for (int64_t j = 0; j < len; j++) o[j] = d[j] ^ k[j];
        o += len;
    }
    return 0;
}
