/*
 * bramble agent, compiled: the send loop of agent.py, sample.py and wire.py in one small C
 * program, for boards where the agent should cost as little as the kernel allows.
 *
 * `bramble agent` validates the spec, then execs this program (built once per machine by
 * native.py) with the resolved settings; the telemetry key arrives through an inherited
 * pipe, never on the command line. Every datagram is byte for byte what the Python agent
 * sends for the same readings (the tests compare them), so the master cannot tell the two
 * apart. Where this program cannot be built, the Python agent runs instead.
 *
 * Per interval: one sigwait, a pread of each kept-open /proc and /sys file, the JSON built
 * in one buffer, HMAC-SHA256 from precomputed pads, one sendto per destination. Every
 * --procs-every intervals, a pread of every process's stat (kept open too) and a second,
 * small datagram of the top processes (read_procs, encode_procs).
 *
 * Numbers are kept in 64 bits on every board, 32-bit ARM included, and what does not fit
 * is refused on purpose, as the Python agent refuses it (see the parsers). Every text is
 * written by bounded writers that check their room. `--selftest` checks SHA-256 and
 * HMAC-SHA256 against the published vectors.
 */
#define _GNU_SOURCE
/* 64-bit file sizes and clocks where long is 32 bits (armhf): statvfs of a large disk, and
   the wall clock past 2038 (with glibc 2.34 and later; older ones keep a 32-bit time_t). */
#define _FILE_OFFSET_BITS 64
#ifndef _TIME_BITS
#define _TIME_BITS 64
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Limits. wire.py and spec.py hold the same numbers (a test compares them): the spec
   refuses what this program cannot take. */
#define MAX_DATAGRAM 1400
#define MAX_CORES 128   /* per-core figures sent; more cores are counted, not kept */
#define MAX_IFACES 8    /* interfaces sent: the busiest, when there are more */
#define MAX_FS 4        /* filesystems sent: the first real ones of the mount table */
#define MAX_MOUNT 48    /* characters of a mount point sent */
#define MAX_MODEL 64    /* characters of the board model sent */
#define MAX_SEEN 64     /* real mounts looked at in the mount table */
#define MAX_BUSES 256   /* entries of devices/platform looked at for the firmware */
#define MAX_NAME 63     /* characters of the node name */
#define MAX_KEY_ID 32   /* characters of the key id */
#define MAX_KEY 1024    /* bytes of the telemetry key */
#define MAX_TARGETS 16  /* --unicast targets */
#define MAX_HOST 255    /* bytes of a target's host name */
#define MAX_INTERVAL 3600 /* seconds */
#define MAX_COUNT (1LL << 62) /* --count and --seq: seq + count cannot overflow */
#define FILE_LIMIT (16u << 20) /* bytes read of one /proc file: a /proc/net/dev of 100,000 interfaces */
#define EXACT ((uint64_t)1 << 53) /* jiffies of a cpu line: beyond, busy fractions are inexact */
#define TOP ((uint64_t)INT64_MAX) /* the largest count kept where the Python agent keeps any int */
#define PATH_ROOM 4096
#define DISK_EVERY 10
#define SIG_SCHEME "hmac-sha256"
/* The process datagram (wire.py has the same numbers): the TOP_PROCS busiest processes and
   the TOP_PROCS largest, names cut to MAX_PROC_NAME bytes, at most MAX_PROCS_READ read. */
#define TOP_PROCS 5
#define MAX_PROCS (2 * TOP_PROCS)
#define MAX_PROC_NAME 15
#define MAX_PROCS_READ 4096
#define MAX_PID 4194304
#define MAX_PROC_CPU 1000000.0
#define PROCS_EVERY 30
#define MAX_PROCS_EVERY 1000000

static const char *CPUFREQ_PATH = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq";
static const char *THERMAL_PATH = "/sys/class/thermal/thermal_zone0/temp";
/* The Raspberry Pi firmware driver's flags ("%x\n"), where Raspberry Pi OS has them, else
   under the first devices/platform/<bus>/<bus>:firmware/ that has them. */
static const char *THROTTLED_PATH = "devices/platform/soc/soc:firmware/get_throttled";
/* Filesystems on a block device: no network, virtual or memory ones (statvfs of a dead NFS
   server would hang the agent). */
static const char *REAL_FS[] = {"ext2", "ext3", "ext4", "vfat", "exfat", "btrfs", "xfs", "f2fs"};
#define N_REAL_FS 8
/* In the kernel's order; every key the original dashboard reads, and MemAvailable. */
static const char *MEMINFO_KEYS[] = {"MemTotal",   "MemFree", "MemAvailable", "Buffers",
                                     "Cached",     "SwapCached", "Active",    "Inactive",
                                     "SwapTotal",  "SwapFree"};
static const char *MEMINFO_NAMES[] = {"MemTotal:",   "MemFree:", "MemAvailable:", "Buffers:",
                                      "Cached:",     "SwapCached:", "Active:",    "Inactive:",
                                      "SwapTotal:",  "SwapFree:"};
#define N_MEMINFO 10
#define SWAP_TOTAL 8 /* SwapTotal's place in MEMINFO_KEYS */

static void say(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *format, ...) {
    char line[1400];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(line, sizeof line - 1, format, args);
    va_end(args);
    if (n < 0) return;
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t ignored = write(2, line, (size_t)n);
    (void)ignored;
}

static void fail(const char *format, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *format, ...) {
    char message[1200];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(message, sizeof message, format, args);
    va_end(args);
    say("bramble agent: error: %s", n < 0 ? format : message);
    exit(2);
}

/* ---- SHA-256 (FIPS 180-4) and HMAC ---- */

typedef struct {
    uint32_t h[8];
    uint64_t length;
    uint8_t block[64];
    size_t fill;
} sha256_t;

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(sha256_t *s, const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
    uint32_t e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
    s->h[5] += f;
    s->h[6] += g;
    s->h[7] += h;
}

static void sha256_init(sha256_t *s) {
    static const uint32_t start[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, start, sizeof start);
    s->length = 0;
    s->fill = 0;
}

static void sha256_update(sha256_t *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->length += n;
    if (s->fill) {
        size_t take = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->block + s->fill, p, take);
        s->fill += take;
        p += take;
        n -= take;
        if (s->fill < 64) return;
        sha256_block(s, s->block);
        s->fill = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha256_block(s, p);
    memcpy(s->block, p, n);
    s->fill = n;
}

static void sha256_final(sha256_t *s, uint8_t out[32]) {
    uint64_t bits = s->length * 8;
    uint8_t pad[72] = {0x80};
    size_t padding = (s->fill < 56 ? 56 : 120) - s->fill;
    for (int i = 0; i < 8; i++) pad[padding + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(s, pad, padding + 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

static sha256_t hmac_inner, hmac_outer; /* the key's padded states, computed once */

static void hmac_key(const uint8_t *key, size_t n) {
    uint8_t block[64] = {0}, pad[64];
    if (n > 64) {
        sha256_t s;
        sha256_init(&s);
        sha256_update(&s, key, n);
        sha256_final(&s, block);
    } else {
        memcpy(block, key, n);
    }
    for (int i = 0; i < 64; i++) pad[i] = block[i] ^ 0x36;
    sha256_init(&hmac_inner);
    sha256_update(&hmac_inner, pad, 64);
    for (int i = 0; i < 64; i++) pad[i] = block[i] ^ 0x5c;
    sha256_init(&hmac_outer);
    sha256_update(&hmac_outer, pad, 64);
}

static void hmac_hex(const void *data, size_t n, char hex[65]) {
    uint8_t digest[32];
    sha256_t s = hmac_inner;
    sha256_update(&s, data, n);
    sha256_final(&s, digest);
    s = hmac_outer;
    sha256_update(&s, digest, 32);
    sha256_final(&s, digest);
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = "0123456789abcdef"[digest[i] >> 4];
        hex[2 * i + 1] = "0123456789abcdef"[digest[i] & 15];
    }
    hex[64] = 0;
}

/* ---- JSON text, as wire.py writes it ---- */

typedef struct {
    char *at;
    char *end;
    int full;
} out_t;

static void put(out_t *o, const char *s, size_t n) {
    if (o->full || (size_t)(o->end - o->at) < n) {
        o->full = 1;
        return;
    }
    memcpy(o->at, s, n);
    o->at += n;
}

static void puts_(out_t *o, const char *s) { put(o, s, strlen(s)); }

static void put_uint(out_t *o, unsigned long long x) {
    char text[24], *at = text + sizeof text;
    do *--at = (char)('0' + x % 10);
    while (x /= 10);
    put(o, at, (size_t)(text + sizeof text - at));
}

static void put_int(out_t *o, long long x) {
    if (x < 0) put(o, "-", 1);
    put_uint(o, x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x);
}

static const double POWERS[] = {1, 10, 100, 1000, 10000};

/* repr(round(x, places)) for the values an agent sends: the correctly rounded fixed form,
   trailing zeros dropped down to one decimal. */
static void put_num(out_t *o, double x, int places) {
    char text[400];
    if (!isfinite(x)) x = 0.0;
    double y = fabs(x) * POWERS[places], whole = floor(y), fraction = y - whole;
    /* Below 2^42 the product is within 2^-11 of the exact one, so away from a tie it rounds
       as the exact value does; ties and large values go to printf, which rounds exactly. */
    if (y < 4e12 && fabs(fraction - 0.5) > 0.01) {
        unsigned long long scaled = (unsigned long long)whole + (fraction > 0.5);
        unsigned long long unit = (unsigned long long)POWERS[places];
        if (signbit(x)) put(o, "-", 1);
        put_uint(o, scaled / unit);
        unsigned long long rest = scaled % unit;
        char digits[8] = {'.', '0', '0', '0', '0'};
        int n = 1;
        for (int i = places; i > 0; i--, rest %= unit) {
            unit /= 10;
            digits[n++] = (char)('0' + rest / unit);
        }
        while (n > 2 && digits[n - 1] == '0') n--;
        put(o, digits, (size_t)n);
        return;
    }
    int n = snprintf(text, sizeof text, "%.*f", places, x);
    if (n <= 0 || n >= (int)sizeof text) {
        put(o, "0.0", 3);
        return;
    }
    while (n > 2 && text[n - 1] == '0' && text[n - 2] != '.') n--;
    put(o, text, (size_t)n);
}

/* The characters JSON writes as a backslash and one letter, and those letters. */
/* ---- UTF-8 and JSON strings ---- */

/* The length of the UTF-8 character at S (N bytes left) and its code point in *CODE; 0 when
   the bytes there are not UTF-8 (overlong forms and surrogates included, as Python's
   decoder refuses them). */
static size_t utf8(const unsigned char *s, size_t n, uint32_t *code) {
    unsigned c = s[0];
    size_t len;
    if (c < 0x80) {
        *code = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        *code = c & 0x1f;
        len = 2;
    } else if ((c & 0xf0) == 0xe0) {
        *code = c & 0x0f;
        len = 3;
    } else if ((c & 0xf8) == 0xf0) {
        *code = c & 0x07;
        len = 4;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;
        *code = *code << 6 | (s[k] & 0x3fu);
    }
    uint32_t x = *code;
    if ((len == 2 && x < 0x80) || (len == 3 && x < 0x800) ||
        (len == 4 && (x < 0x10000 || x > 0x10ffff)) || (x >= 0xd800 && x < 0xe000))
        return 0;
    return len;
}

/* The number of characters of S (N bytes), or -1 when it is not UTF-8 or holds a control
   character. (Python's isprintable refuses more; the Python agent checks names first.) */
static long characters(const unsigned char *s, size_t n) {
    long count = 0;
    for (size_t i = 0, len; i < n; i += len, count++) {
        uint32_t code;
        len = utf8(s + i, n - i, &code);
        if (!len || code < 0x20 || (code >= 0x7f && code < 0xa0)) return -1;
    }
    return count;
}

static int is_utf8(const unsigned char *s, size_t n) {
    uint32_t code;
    size_t i = 0;
    while (i < n && s[i] < 0x80) i++; /* ASCII: the common case */
    for (size_t len; i < n; i += len)
        if (!(len = utf8(s + i, n - i, &code))) return 0;
    return 1;
}

/* The characters JSON writes as a backslash and one letter, and those letters. */
static const char ESCAPED[] = "\"\\\n\r\t\b\f", ESCAPES[] = "\"\\nrtbf";

static void put_hex4(out_t *o, uint32_t code) {
    char text[6] = {'\\', 'u', "0123456789abcdef"[code >> 12 & 15],
                    "0123456789abcdef"[code >> 8 & 15], "0123456789abcdef"[code >> 4 & 15],
                    "0123456789abcdef"[code & 15]};
    put(o, text, sizeof text);
}

/* A JSON string of UTF-8 bytes with everything outside printable ASCII escaped, as Python's
   json.dumps(ensure_ascii=True) does; 0 if the bytes are not UTF-8. */
static int put_quoted(out_t *o, const unsigned char *s, size_t n) {
    size_t plain = 0;
    while (plain < n && s[plain] >= 0x20 && s[plain] < 0x7f && s[plain] != '"' && s[plain] != '\\')
        plain++;
    if (plain == n) { /* nothing to escape: the common case */
        put(o, "\"", 1);
        put(o, (const char *)s, n);
        put(o, "\"", 1);
        return 1;
    }
    if (!is_utf8(s, n)) return 0;
    put(o, "\"", 1);
    for (size_t i = 0, len; i < n; i += len) {
        uint32_t code;
        len = utf8(s + i, n - i, &code);
        const char *short_escape = code && code < 0x80 ? strchr(ESCAPED, (int)code) : NULL;
        if (short_escape) {
            char pair[2] = {'\\', ESCAPES[short_escape - ESCAPED]};
            put(o, pair, 2);
        } else if (code < 0x20 || (code >= 0x7f && code < 0x10000)) {
            put_hex4(o, code);
        } else if (code >= 0x10000) {
            put_hex4(o, 0xd800 | (code - 0x10000) >> 10);
            put_hex4(o, 0xdc00 | (code & 0x3ff));
        } else {
            char ch = (char)code;
            put(o, &ch, 1);
        }
    }
    put(o, "\"", 1);
    return 1;
}

/* ---- numbers in text, as Python's int() and float() read them ---- */

/* Python's whitespace for bytes: space, and \t \n \v \f \r (9 to 13). */
static int space(char c) { return c == ' ' || (unsigned char)(c - '\t') < 5; }

/* VALUE * 10 + DIGIT into *VALUE; 0 (and *VALUE unchanged) when it would pass 2^64 - 1. */
static int push_digit(uint64_t *value, unsigned digit) {
    /* UINT64_MAX is 1844674407370955161 * 10 + 5; no division, which 32-bit ARM does slowly */
    if (*value > 1844674407370955161u || (*value == 1844674407370955161u && digit > 5)) return 0;
    *value = *value * 10 + digit;
    return 1;
}

/* The decimal digits at *P, moving *P past them. Past 2^64 - 1 the value stays there and
   *OVER is set: every reader refuses such a number rather than let it wrap. */
static uint64_t digits(const char **p, int *over) {
    uint64_t value = 0;
    for (; **p >= '0' && **p <= '9'; (*p)++) {
        if (!push_digit(&value, (unsigned)(**p - '0'))) {
            value = UINT64_MAX;
            *over = 1;
        }
    }
    return value;
}

/* The integer Python's int() reads in S..END: whitespace around it, a sign, digits with
   single underscores between them. Its magnitude, its sign in *NEGATIVE; 0 in *OK when the
   text is anything else or the magnitude passes 2^64 - 1. */
static uint64_t parse_integer(const char *s, const char *end, int *negative, int *ok) {
    while (s < end && space(*s)) s++;
    while (end > s && space(end[-1])) end--;
    *negative = s < end && *s == '-';
    if (s < end && (*s == '-' || *s == '+')) s++;
    uint64_t value = 0;
    int n = 0, over = 0;
    for (; s < end; s++) {
        if (*s >= '0' && *s <= '9') {
            over |= !push_digit(&value, (unsigned)(*s - '0'));
            n++;
        } else if (!(*s == '_' && n && s + 1 < end && s[1] >= '0' && s[1] <= '9')) {
            break;
        }
    }
    *ok = n > 0 && s == end && !over;
    return *ok ? value : 0;
}

/* A signed integer in S..END (as parse_integer); 0 in *OK beyond +-(2^63 - 1). */
static int64_t parse_int(const char *s, const char *end, int *ok) {
    int negative;
    uint64_t value = parse_integer(s, end, &negative, ok);
    if (!*ok || value > TOP) return *ok = 0;
    return negative ? -(int64_t)value : (int64_t)value;
}

/* A count 0 .. 2^64 - 1 in S..END (as parse_integer); 0 in *OK for anything else. */
static uint64_t parse_count(const char *s, const char *end, int *ok) {
    int negative;
    uint64_t value = parse_integer(s, end, &negative, ok);
    if (negative && value) *ok = 0;
    return *ok ? value : 0;
}

/* Digits with single underscores between them, from *P into TEXT at *N; how many digits. */
static int copy_digits(const char **p, const char *end, char *text, size_t *n) {
    int count = 0;
    for (; *p < end; (*p)++) {
        if (**p >= '0' && **p <= '9') {
            text[(*n)++] = **p;
            count++;
        } else if (!(**p == '_' && count && *p + 1 < end && (*p)[1] >= '0' && (*p)[1] <= '9')) {
            break;
        }
    }
    return count;
}

/* The finite number Python's float() reads in S..END, in decimal: whitespace around it, a
   sign, digits and a point, an exponent, underscores between digits. 0 in *OK for anything
   else, and for what is not a finite double (nan, inf, 1e400): both agents take such a
   reading as unreadable. */
static double parse_float(const char *s, const char *end, int *ok) {
    static const double EXACT_POWERS[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                          1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    char text[160];
    size_t n = 0;
    while (s < end && space(*s)) s++;
    while (end > s && space(end[-1])) end--;
    /* The kernel's form, digits and a point, 15 digits at most: the digits as a whole number
       and a power of ten are exact doubles, so their quotient is the correctly rounded value
       strtod (and Python) would give, without strtod's cost (Clinger's fast path). */
    uint64_t whole_number = 0;
    int count = 0, places = -1;
    const char *q = s;
    for (; q < end && count <= 15; q++) {
        if (*q >= '0' && *q <= '9') {
            whole_number = whole_number * 10 + (unsigned)(*q - '0');
            count++;
            places += places >= 0;
        } else if (*q == '.' && places < 0) {
            places = 0;
        } else {
            break;
        }
    }
    if (q == end && count && count <= 15) {
        *ok = 1;
        return (double)whole_number / EXACT_POWERS[places < 0 ? 0 : places];
    }
    *ok = 0;
    /* Only a word's own characters are copied: one that fits leaves room for the NUL. (The
       agent reads 128 bytes of the files it reads decimals from.) */
    if ((size_t)(end - s) >= sizeof text) return 0.0;
    if (s < end && (*s == '-' || *s == '+')) text[n++] = *s++;
    int whole = copy_digits(&s, end, text, &n), fraction = 0;
    if (s < end && *s == '.') {
        text[n++] = *s++;
        fraction = copy_digits(&s, end, text, &n);
    }
    if (whole + fraction == 0) return 0.0;
    if (s < end && (*s == 'e' || *s == 'E')) {
        text[n++] = *s++;
        if (s < end && (*s == '-' || *s == '+')) text[n++] = *s++;
        if (!copy_digits(&s, end, text, &n)) return 0.0;
    }
    if (s != end) return 0.0;
    text[n] = 0;
    char *stop;
    double value = strtod(text, &stop);
    *ok = stop == text + n && isfinite(value);
    return *ok ? value : 0.0;
}

/* ---- reading files ---- */

typedef struct {
    char *text; /* the file's bytes, NUL-terminated */
    size_t room; /* what text can hold, the NUL included */
    int heap;
} buffer_t;

static char text_space[1 << 16], net_space[1 << 16];
static buffer_t file_text = {text_space, sizeof text_space, 0};
static buffer_t net_text = {net_space, sizeof net_space, 0};

static int grow(buffer_t *b) {
    if (b->room >= FILE_LIMIT) return 0;
    char *bigger = b->heap ? realloc(b->text, 2 * b->room) : malloc(2 * b->room);
    if (!bigger) return 0;
    if (!b->heap) memcpy(bigger, b->text, b->room);
    b->text = bigger;
    b->room *= 2;
    b->heap = 1;
    return 1;
}

/* FD's bytes from the start, at most LIMIT of them, NUL-terminated in B (which grows as
   needed, up to FILE_LIMIT); how many. An unreadable file reads as empty. A short read is the
   end, as for the Python agent: /proc files fill what is asked while they have more. */
static size_t read_file(buffer_t *b, int fd, size_t limit) {
    size_t n = 0;
    while (fd != -1) {
        size_t want = b->room - 1 - n;
        if (want > limit - n) want = limit - n;
        ssize_t got = pread(fd, b->text + n, want, (off_t)n);
        if (got <= 0) break;
        n += (size_t)got;
        if ((size_t)got < want || n == limit || (n == b->room - 1 && !grow(b))) break;
    }
    b->text[n] = 0;
    return n;
}

static int open_or(const char *path, int missing) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd != -1) return fd;
    return missing == -2 ? open("/dev/null", O_RDONLY | O_CLOEXEC) : missing;
}

/* ---- sampling ---- */

typedef struct {
    const char *name; /* in net_text, until the next sample */
    size_t len;
    uint64_t rx, tx;
} iface_t;

typedef struct {
    int64_t cpufreq;
    double cputemp, cpuusage, load[3], uptime;
    int n_meminfo;
    const char *meminfo_key[N_MEMINFO];
    int64_t meminfo[N_MEMINFO];
    int n_cores;
    double cores[MAX_CORES];
    int has_disk;
    uint64_t disk[3];
    int n_net;
    iface_t net[MAX_IFACES]; /* in the file's order, or the busiest first when there are more */
    /* What a board may lack: each sent only where it has it. */
    int has_throttled, has_swap, has_diskio;
    uint64_t throttled, swap[2], diskio[2];
} sample_t;

static struct {
    int stat, meminfo, loadavg, netdev, uptime, freq, temp;
    int throttled, vmstat, diskstats, mountinfo; /* -1 where the board has none */
    int block_stat; /* the root device's /sys/dev/block/M:m/stat; -1: none, read diskstats */
    int block_tried; /* whether block_stat was looked for, for the device block_major:minor */
    unsigned block_major, block_minor;
    const char *disk_path, *fs_root, *proc, *sys;
    uint64_t jiffies; /* all cores' jiffies at the last sample, and how many cores */
    int cores;
    int has_model;
    char model[MAX_MODEL + 1];
    int has_root; /* the root filesystem's device, for its disk I/O */
    unsigned root_major, root_minor;
    int n_fs; /* the filesystems measured last, kept between their readings */
    char fs_name[MAX_FS][MAX_MOUNT + 1];
    uint64_t fs[MAX_FS][3];
    size_t meminfo_size;
    long long samples;
    int n_last;
    uint64_t last[2 * (MAX_CORES + 1)];
} sampler;

/* How many cpu lines /proc/stat has (the machine's, then one per core); the total and idle
   jiffies of the first MAX_CORES + 1 into OUT. 0 when they are not what we know: a line of
   fewer than 4 numbers, or of 2^53 jiffies or more (beyond, the busy fraction of two totals
   is no longer exact; the Python agent refuses the same). */
static int parse_stat(const char *text, uint64_t *out) {
    int lines = 0;
    for (const char *line = text; strncmp(line, "cpu", 3) == 0; lines++) {
        const char *p = line + 3;
        while (*p && *p != ' ') p++;
        uint64_t field[8], total = 0;
        int n = 0, over = 0;
        while (n < 8) {
            while (*p == ' ') p++;
            if (*p < '0' || *p > '9') break;
            field[n] = digits(&p, &over);
            total = field[n] > UINT64_MAX - total ? UINT64_MAX : total + field[n];
            n++;
        }
        if (n < 4 || over || total >= EXACT) return 0;
        if (lines <= MAX_CORES) {
            out[2 * lines] = total;
            out[2 * lines + 1] = n > 4 ? field[3] + field[4] : field[3];
        }
        const char *next = strchr(p, '\n');
        if (!next) {
            lines++;
            break;
        }
        line = next + 1;
    }
    return lines;
}

/* The busy fraction between two (total, idle) readings; exact, as every total is below 2^53. */
static double busy(const uint64_t *before, const uint64_t *now) {
    int64_t span = (int64_t)now[0] - (int64_t)before[0];
    int64_t work = ((int64_t)now[0] - (int64_t)now[1]) - ((int64_t)before[0] - (int64_t)before[1]);
    if (0 <= work && work <= span && span) return (double)work / (double)span;
    return work > span && span > 0 ? 1.0 : 0.0;
}

/* The word after S's first "\nbtime ": the boot epoch; 0 when absent, or not a number
   within +-(2^63 - 1). */
static int64_t parse_btime(const char *text) {
    const char *at = strstr(text, "\nbtime "), *end;
    if (!at) return 0;
    for (at += 7; space(*at); at++) continue;
    for (end = at; *end && !space(*end); end++) continue;
    int ok;
    int64_t value = parse_int(at, end, &ok);
    return ok ? value : 0;
}

/* The wanted /proc/meminfo fields, in kB, in MEMINFO_KEYS order. A field is left out when
   its value is not a number, or passes 2^63 - 1 (the Python agent does the same); the
   estimate of a missing MemAvailable stops at 2^63 - 1. */
static void parse_meminfo(sample_t *s, const char *text) {
    uint64_t value[N_MEMINFO];
    int found[N_MEMINFO];
    for (int k = 0; k < N_MEMINFO; k++) {
        const char *name = MEMINFO_NAMES[k];
        size_t len = strlen(name);
        const char *at = text;
        found[k] = 0;
        while ((at = strstr(at, name)) != NULL) {
            if (at == text || at[-1] == '\n') break;
            at += len;
        }
        if (!at) continue;
        for (at += len; space(*at); at++) continue;
        if (*at < '0' || *at > '9') continue;
        int over = 0;
        value[k] = digits(&at, &over);
        found[k] = !over && value[k] <= TOP && (!*at || space(*at));
    }
    s->n_meminfo = 0;
    int estimate = !found[2] && found[1];
    for (int k = 0; k < N_MEMINFO; k++) {
        if (k == 2 && estimate) { /* kernels before 3.14 */
            uint64_t sum = value[1] + (found[3] ? value[3] : 0); /* below 2^64: each <= TOP */
            if (sum > TOP) sum = TOP;
            sum += found[4] ? value[4] : 0;
            value[2] = sum > TOP ? TOP : sum;
        } else if (!found[k]) {
            continue;
        }
        s->meminfo_key[s->n_meminfo] = MEMINFO_KEYS[k];
        s->meminfo[s->n_meminfo++] = (int64_t)value[k];
    }
}

/* 1, 5 and 15 minute load; zeros when one of them cannot be read. */
static void parse_loadavg(double load[3], const char *p) {
    for (int i = 0; i < 3; i++) {
        while (space(*p)) p++;
        const char *end = p;
        while (*end && !space(*end)) end++;
        int ok;
        load[i] = parse_float(p, end, &ok);
        if (!ok) {
            load[0] = load[1] = load[2] = 0.0;
            return;
        }
        p = end;
    }
}

static double parse_uptime(const char *p) {
    while (space(*p)) p++;
    const char *end = p;
    while (*end && !space(*end)) end++;
    int ok;
    return parse_float(p, end, &ok);
}

/* Whether A carries more traffic (rx + tx, 65 bits) than B. */
static int busier(const iface_t *a, const iface_t *b) {
    uint64_t sum_a = a->rx + a->tx, sum_b = b->rx + b->tx;
    int carry_a = sum_a < a->rx, carry_b = sum_b < b->rx;
    return carry_a != carry_b ? carry_a > carry_b : sum_a > sum_b;
}

/* ITEM into TOP (N of them, at most MAX_IFACES), the busiest first, ties in file order:
   what a stable sort of every interface by traffic would put first. */
static void keep_busiest(iface_t *top, int *n, const iface_t *item) {
    int at = *n;
    if (at == MAX_IFACES) {
        if (!busier(item, &top[MAX_IFACES - 1])) return;
        at--;
    } else {
        (*n)++;
    }
    for (; at > 0 && busier(item, &top[at - 1]); at--) top[at] = top[at - 1];
    top[at] = *item;
}

/* Bytes received and sent per interface (loopback left out) from /proc/net/dev, read as the
   Python agent reads it: the name before the colon, then at least 9 numbers, the 1st and
   the 9th kept. A line that is not that, a name that is not UTF-8, or a counter past
   2^64 - 1 leaves its interface out. Every interface is read; MAX_IFACES are kept. */
static void parse_net_dev(sample_t *s, const char *text) {
    iface_t top[MAX_IFACES];
    int n_top = 0, seen = 0;
    const char *line = strchr(text, '\n');
    if (line) line = strchr(line + 1, '\n'); /* past two headings */
    for (const char *eol; line; line = eol) {
        line++;
        eol = strchr(line, '\n');
        const char *stop = eol ? eol : line + strlen(line);
        const char *colon = memchr(line, ':', (size_t)(stop - line));
        if (!colon) continue;
        const char *name = line, *name_end = colon, *p = colon + 1;
        while (name < name_end && space(*name)) name++;
        while (name_end > name && space(name_end[-1])) name_end--;
        const char *word[9], *word_end[9];
        int words = 0;
        while (words < 9) {
            while (p < stop && space(*p)) p++;
            if (p == stop) break;
            word[words] = p;
            while (p < stop && !space(*p)) p++;
            word_end[words++] = p;
        }
        size_t len = (size_t)(name_end - name);
        if (words < 9 || !len || (len == 2 && !memcmp(name, "lo", 2)) ||
            !is_utf8((const unsigned char *)name, len))
            continue;
        int rx_ok, tx_ok;
        iface_t item = {name, len, parse_count(word[0], word_end[0], &rx_ok),
                        parse_count(word[8], word_end[8], &tx_ok)};
        if (!rx_ok || !tx_ok) continue;
        if (seen < MAX_IFACES) s->net[seen] = item; /* in file order while there are few */
        seen++;
        keep_busiest(top, &n_top, &item);
    }
    s->n_net = seen < MAX_IFACES ? seen : MAX_IFACES;
    if (seen > MAX_IFACES) memcpy(s->net, top, sizeof top);
}

/* Whether S (N bytes) is 1..LIMIT printable ASCII characters without a quote or a backslash
   (nor a space unless SPACE): what both agents send as it is. */
static int clean(const char *s, size_t n, size_t limit, int allow_space) {
    if (n == 0 || n > limit) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\' || (c == ' ' && !allow_space)) return 0;
    }
    return 1;
}

/* The board model from the device tree (NUL-terminated): trailing NULs, then whitespace
   around, taken off; 0 unless what is left is clean. */
static int parse_model(const char *text, size_t n, char *out) {
    while (n && text[n - 1] == 0) n--;
    while (n && space(text[n - 1])) n--;
    size_t start = 0;
    while (start < n && space(text[start])) start++;
    if (!clean(text + start, n - start, MAX_MODEL, 1)) return 0;
    memcpy(out, text + start, n - start);
    out[n - start] = 0;
    return 1;
}

/* The firmware's flags: 1 to 8 hex digits, whitespace around; 0 in *OK for anything else. */
static uint64_t parse_throttled(const char *text, size_t n, int *ok) {
    const char *s = text, *end = text + n;
    while (s < end && space(*s)) s++;
    while (end > s && space(end[-1])) end--;
    *ok = end > s && end - s <= 8;
    uint64_t value = 0;
    for (; *ok && s < end; s++) {
        const char *at = strchr("0123456789abcdef0123456789ABCDEF", *s);
        if (!*s || !at) *ok = 0;
        else value = value * 16 + (uint64_t)((at - "0123456789abcdef0123456789ABCDEF") % 16);
    }
    return *ok ? value : 0;
}

/* The count after NAME (which starts with a newline) in TEXT, as the first word after it;
   0 in *OK when absent, or not digits within 0 .. 2^64 - 1. */
static uint64_t counter_after(const char *text, const char *name, int *ok) {
    size_t len = strlen(name);
    const char *at = text + len - 1;
    *ok = 0;
    if (strncmp(text, name + 1, len - 1) != 0) {
        at = strstr(text, name);
        if (!at) return 0;
        at += len;
    }
    while (space(*at)) at++;
    const char *p = at;
    int over = 0;
    uint64_t value = digits(&p, &over);
    *ok = p > at && !over && (!*p || space(*p));
    return *ok ? value : 0;
}

/* Pages swapped in and out since boot from /proc/vmstat; 0 when either cannot be read. */
static int parse_vmstat(const char *text, uint64_t swap[2]) {
    int in_ok, out_ok;
    swap[0] = counter_after(text, "\npswpin ", &in_ok);
    swap[1] = counter_after(text, "\npswpout ", &out_ok);
    return in_ok && out_ok;
}

/* Whether the word S..END is the decimal text of X, as Python's "%d" writes it. */
static int is_number_text(const char *s, const char *end, unsigned x) {
    char text[16];
    int n = snprintf(text, sizeof text, "%u", x);
    return n > 0 && end - s == n && !memcmp(s, text, (size_t)n);
}

/* Bytes read and written since boot by the device MAJOR:MINOR, from the first line of
   /proc/diskstats that names it (sectors are 512 bytes); 0 when there is none, or its
   counts are not digits whose bytes fit in 0 .. 2^64 - 1. */
/* Sectors read (WORD[0]) and written (WORD[4]) as bytes into IO; 0 when either is not
   digits whose bytes fit in 0 .. 2^64 - 1. */
static int sectors_as_bytes(const char *const *word, const char *const *word_end, uint64_t io[2]) {
    for (int k = 0; k < 2; k++) {
        const char *at = word[4 * k];
        int over = 0;
        uint64_t sectors = digits(&at, &over);
        if (over || at == word[4 * k] || at != word_end[4 * k] || sectors > UINT64_MAX / 512)
            return 0;
        io[k] = sectors * 512;
    }
    return 1;
}

static int parse_diskstats(const char *text, unsigned major, unsigned minor, uint64_t io[2]) {
    for (const char *line = text, *eol; line; line = eol ? eol + 1 : NULL) {
        eol = strchr(line, '\n');
        const char *stop = eol ? eol : line + strlen(line), *p = line;
        const char *word[10], *word_end[10];
        int words = 0;
        while (words < 10) {
            while (p < stop && space(*p)) p++;
            if (p == stop) break;
            word[words] = p;
            while (p < stop && !space(*p)) p++;
            word_end[words++] = p;
        }
        if (words < 10 || !is_number_text(word[0], word_end[0], major) ||
            !is_number_text(word[1], word_end[1], minor))
            continue;
        return sectors_as_bytes(word + 5, word_end + 5, io);
    }
    return 0;
}

/* The same counts from the device's own /sys/dev/block/MAJOR:MINOR/stat (the fields of its
   /proc/diskstats line after the name, kept by the same kernel counters): one device's line
   instead of every device's. */
static int parse_block_stat(const char *text, uint64_t io[2]) {
    const char *word[7], *word_end[7], *p = text;
    int words = 0;
    while (words < 7) {
        while (*p && *p != '\n' && space(*p)) p++;
        if (!*p || *p == '\n') break;
        word[words] = p;
        while (*p && !space(*p)) p++;
        word_end[words++] = p;
    }
    return words == 7 && sectors_as_bytes(word + 2, word_end + 2, io);
}

/* MAJOR:MINOR from a mount table's device word (1 to 9 digits each); 0 if it is not that. */
static int parse_device(const char *s, const char *end, unsigned *major, unsigned *minor) {
    const char *colon = memchr(s, ':', (size_t)(end - s));
    if (!colon || colon == s || colon - s > 9 || end - colon - 1 < 1 || end - colon - 1 > 9) return 0;
    unsigned value[2] = {0, 0};
    for (const char *p = s; p < end; p++) {
        if (p == colon) continue;
        if (*p < '0' || *p > '9') return 0;
        value[p > colon] = value[p > colon] * 10 + (unsigned)(*p - '0');
    }
    *major = value[0];
    *minor = value[1];
    return 1;
}

static int is_real_fs(const char *s, size_t n) {
    for (int k = 0; k < N_REAL_FS; k++)
        if (strlen(REAL_FS[k]) == n && !memcmp(REAL_FS[k], s, n)) return 1;
    return 0;
}

/* From /proc/self/mountinfo (its words split at single spaces): the root filesystem's
   device (the last "/" line; none when its major is 0, as an overlay's), and each real
   filesystem's use, one per device, the first MAX_FS that statvfs reads under the root
   --fs-root names. At most MAX_SEEN real mounts are looked at. */
static void read_mounts(const char *text) {
    const char *seen[MAX_SEEN], *point[MAX_SEEN];
    size_t seen_len[MAX_SEEN], point_len[MAX_SEEN];
    int n_seen = 0, n_points = 0;
    sampler.has_root = 0;
    for (const char *line = text, *eol; line; line = eol ? eol + 1 : NULL) {
        eol = strchr(line, '\n');
        const char *stop = eol ? eol : line + strlen(line);
        const char *word[5] = {0}, *word_end[5] = {0}, *kind = NULL, *kind_end = NULL;
        int n = 0, dash = -1;
        for (const char *p = line;; n++) {
            const char *end = memchr(p, ' ', (size_t)(stop - p));
            if (!end) end = stop;
            if (n < 5) {
                word[n] = p;
                word_end[n] = end;
            }
            if (dash < 0 && n >= 6 && end - p == 1 && *p == '-') dash = n;
            else if (dash >= 0 && n == dash + 1) {
                kind = p;
                kind_end = end;
            }
            if (end == stop) break;
            p = end + 1;
        }
        n++; /* words in the line */
        if (n < 10 || dash < 0 || !kind) continue;
        if (word_end[4] - word[4] == 1 && word[4][0] == '/') {
            unsigned major = 0, minor = 0;
            int ok = parse_device(word[2], word_end[2], &major, &minor);
            sampler.has_root = ok && major != 0;
            sampler.root_major = major;
            sampler.root_minor = minor;
        }
        size_t device_len = (size_t)(word_end[2] - word[2]);
        if (!is_real_fs(kind, (size_t)(kind_end - kind)) || n_seen == MAX_SEEN) continue;
        int known = 0;
        for (int i = 0; i < n_seen && !known; i++)
            known = seen_len[i] == device_len && !memcmp(seen[i], word[2], device_len);
        if (known) continue;
        seen[n_seen] = word[2];
        seen_len[n_seen++] = device_len;
        size_t len = (size_t)(word_end[4] - word[4]);
        if (clean(word[4], len, MAX_MOUNT, 0)) {
            point[n_points] = word[4];
            point_len[n_points++] = len;
        }
    }
    sampler.n_fs = 0;
    for (int i = 0; i < n_points && sampler.n_fs < MAX_FS; i++) {
        char path[PATH_ROOM];
        int n = snprintf(path, sizeof path, "%s%.*s", sampler.fs_root, (int)point_len[i], point[i]);
        struct statvfs fs;
        if (n < 0 || (size_t)n >= sizeof path || statvfs(path, &fs) != 0) continue;
        uint64_t blocks = (uint64_t)fs.f_blocks, size = (uint64_t)fs.f_frsize, total;
        if (!blocks || (uint64_t)fs.f_bfree > blocks || (uint64_t)fs.f_bavail > blocks ||
            __builtin_mul_overflow(blocks, size, &total))
            continue;
        memcpy(sampler.fs_name[sampler.n_fs], point[i], point_len[i]);
        sampler.fs_name[sampler.n_fs][point_len[i]] = 0;
        sampler.fs[sampler.n_fs][0] = total;
        sampler.fs[sampler.n_fs][1] = (blocks - (uint64_t)fs.f_bfree) * size;
        sampler.fs[sampler.n_fs][2] = (uint64_t)fs.f_bavail * size;
        sampler.n_fs++;
    }
}

static int no_dot(const struct dirent *entry) { return entry->d_name[0] != '.'; }

/* The firmware's get_throttled under SYS, opened; -1 on a board without it. */
static int open_throttled(const char *sys) {
    char path[PATH_ROOM];
    int n = snprintf(path, sizeof path, "%s/%s", sys, THROTTLED_PATH);
    int fd = n > 0 && (size_t)n < sizeof path ? open_or(path, -1) : -1;
    if (fd != -1) return fd;
    char platform[PATH_ROOM];
    n = snprintf(platform, sizeof platform, "%s/devices/platform", sys);
    if (n < 0 || (size_t)n >= sizeof platform) return -1;
    struct dirent **buses;
    int count = scandir(platform, &buses, no_dot, alphasort);
    if (count < 0) return -1;
    for (int i = 0; i < count; i++) {
        const char *bus = buses[i]->d_name;
        n = snprintf(path, sizeof path, "%s/%s/%s:firmware/get_throttled", platform, bus, bus);
        if (fd == -1 && i < MAX_BUSES && n > 0 && (size_t)n < sizeof path) fd = open_or(path, -1);
        free(buses[i]);
    }
    free(buses);
    return fd;
}

/* PROC/NAME opened, or MISSING (-2: /dev/null) where there is none. */
static int open_in(const char *proc, const char *name, int missing) {
    char path[PATH_ROOM];
    int n = snprintf(path, sizeof path, "%s/%s", proc, name);
    if (n < 0 || (size_t)n >= sizeof path) fail("--proc path is too long");
    return open_or(path, missing);
}

static int open_under(const char *proc, const char *name) { return open_in(proc, name, -2); }

static void sampler_open(const char *proc, const char *freq, const char *temp, const char *disk,
                         const char *sys, const char *fs_root) {
    sampler.stat = open_under(proc, "stat");
    sampler.meminfo = open_under(proc, "meminfo");
    sampler.loadavg = open_under(proc, "loadavg");
    sampler.netdev = open_under(proc, "net/dev");
    /* This machine's uptime is a clock read, no file; another /proc tree has its own file. */
    sampler.uptime = strcmp(proc, "/proc") ? open_under(proc, "uptime") : -1;
    /* A sensor missing at start stays missing: no read at all, every interval. */
    sampler.freq = open_or(freq, -1);
    sampler.temp = open_or(temp, -1);
    sampler.disk_path = disk;
    /* What a board lacks is never read and never sent, rather than sent as 0. */
    sampler.throttled = open_throttled(sys);
    sampler.vmstat = open_in(proc, "vmstat", -1);
    sampler.diskstats = open_in(proc, "diskstats", -1);
    sampler.mountinfo = open_in(proc, "self/mountinfo", -1);
    sampler.block_stat = -1;
    sampler.sys = sys;
    sampler.fs_root = fs_root;
    sampler.proc = proc;
    int model = open_in(proc, "device-tree/model", -1);
    if (model != -1) {
        size_t n = read_file(&file_text, model, FILE_LIMIT);
        sampler.has_model = parse_model(file_text.text, n, sampler.model);
        close(model);
    }
    /* Read /proc/meminfo only as far as the wanted lines, and a margin for longer numbers. */
    size_t n = read_file(&file_text, sampler.meminfo, FILE_LIMIT);
    sampler.meminfo_size = FILE_LIMIT;
    size_t far = 0;
    int all = n > 0;
    for (int k = 0; k < N_MEMINFO && all; k++) {
        char *at = strstr(file_text.text, MEMINFO_NAMES[k]);
        char *eol = at ? strchr(at, '\n') : NULL;
        if (!eol) all = 0;
        else if ((size_t)(eol - file_text.text) > far) far = (size_t)(eol - file_text.text);
    }
    if (all) sampler.meminfo_size = far + 256;
}

/* Whether this sample's /proc/meminfo says SwapTotal 0 kB: a board without swap has no swap
   traffic, so /proc/vmstat (the dearest file of the interval) is not read and swap is sent
   as absent; it is read again from the first sample after a swapon. */
static int no_swap(const sample_t *s) {
    for (int i = 0; i < s->n_meminfo; i++)
        if (s->meminfo_key[i] == MEMINFO_KEYS[SWAP_TOTAL]) return s->meminfo[i] == 0;
    return 0;
}

/* The root device's own stat file opened, once for each device the root is on. */
static void open_block_stat(void) {
    if (!sampler.has_root) return;
    if (sampler.block_tried && sampler.block_major == sampler.root_major &&
        sampler.block_minor == sampler.root_minor)
        return;
    if (sampler.block_stat != -1) close(sampler.block_stat);
    char path[PATH_ROOM];
    int n = snprintf(path, sizeof path, "%s/dev/block/%u:%u/stat", sampler.sys,
                     sampler.root_major, sampler.root_minor);
    sampler.block_stat = n > 0 && (size_t)n < sizeof path ? open_or(path, -1) : -1;
    sampler.block_tried = 1;
    sampler.block_major = sampler.root_major;
    sampler.block_minor = sampler.root_minor;
}

static void sample(sample_t *s) {
    static uint64_t now[2 * (MAX_CORES + 1)];
    int ok;
    read_file(&file_text, sampler.stat, FILE_LIMIT);
    int lines = parse_stat(file_text.text, now);
    if (lines != sampler.n_last) { /* a core went on- or offline: figures since boot */
        memset(sampler.last, 0, sizeof sampler.last);
        sampler.n_last = lines;
    }
    int kept = lines < MAX_CORES + 1 ? lines : MAX_CORES + 1;
    for (int i = 0; i < kept; i++) {
        double fraction = busy(&sampler.last[2 * i], &now[2 * i]);
        if (i == 0) s->cpuusage = fraction;
        else s->cores[i - 1] = fraction;
    }
    if (!kept) s->cpuusage = 0.0;
    s->n_cores = kept ? kept - 1 : 0;
    memcpy(sampler.last, now, sizeof(uint64_t) * 2 * (size_t)kept);
    sampler.jiffies = kept ? now[0] : 0;
    sampler.cores = kept ? lines - 1 : 0;

    read_file(&file_text, sampler.meminfo, sampler.meminfo_size);
    parse_meminfo(s, file_text.text);

    if (sampler.samples++ % DISK_EVERY == 0) { /* disk use moves slowly; spare the call */
        struct statvfs fs;
        s->has_disk = statvfs(sampler.disk_path, &fs) == 0;
        if (s->has_disk) {
            s->disk[0] = (uint64_t)fs.f_blocks * fs.f_frsize;
            s->disk[1] = (uint64_t)(fs.f_blocks - fs.f_bfree) * fs.f_frsize;
            s->disk[2] = (uint64_t)fs.f_bavail * fs.f_frsize;
        }
        if (sampler.mountinfo != -1) { /* mounts come and go (a USB disk) */
            read_file(&file_text, sampler.mountinfo, FILE_LIMIT);
            read_mounts(file_text.text);
            open_block_stat();
        }
    }
    s->has_diskio = 0;
    if (sampler.has_root && sampler.block_stat != -1) {
        read_file(&file_text, sampler.block_stat, 512);
        s->has_diskio = parse_block_stat(file_text.text, s->diskio);
    } else if (sampler.diskstats != -1 && sampler.has_root) {
        read_file(&file_text, sampler.diskstats, FILE_LIMIT);
        s->has_diskio = parse_diskstats(file_text.text, sampler.root_major, sampler.root_minor,
                                        s->diskio);
    }
    s->has_throttled = 0;
    if (sampler.throttled != -1) {
        size_t n = read_file(&file_text, sampler.throttled, 32);
        s->throttled = parse_throttled(file_text.text, n, &s->has_throttled);
    }
    s->has_swap = 0;
    if (sampler.vmstat != -1 && !no_swap(s)) {
        read_file(&file_text, sampler.vmstat, FILE_LIMIT);
        s->has_swap = parse_vmstat(file_text.text, s->swap);
    }
    s->cpufreq = 0;
    if (sampler.freq != -1) {
        size_t n = read_file(&file_text, sampler.freq, 32);
        int64_t khz = parse_int(file_text.text, file_text.text + n, &ok);
        /* floor division, as Python's // */
        s->cpufreq = !ok ? 0 : khz / 1000 - (khz % 1000 < 0);
    }
    s->cputemp = 0.0;
    if (sampler.temp != -1) {
        size_t n = read_file(&file_text, sampler.temp, 32);
        int64_t milli = parse_int(file_text.text, file_text.text + n, &ok);
        s->cputemp = ok ? (double)milli / 1000.0 : 0.0;
    }
    read_file(&file_text, sampler.loadavg, 128);
    parse_loadavg(s->load, file_text.text);
    if (sampler.uptime == -1) {
        struct timespec t;
        clock_gettime(CLOCK_BOOTTIME, &t);
        s->uptime = (double)t.tv_sec + (double)t.tv_nsec / 1e9;
    } else {
        read_file(&file_text, sampler.uptime, 128);
        s->uptime = parse_uptime(file_text.text);
    }
    read_file(&net_text, sampler.netdev, FILE_LIMIT);
    parse_net_dev(s, net_text.text);
}

/* ---- processes ---- */

typedef struct {
    int pid;
    uint64_t start, ticks; /* start time after boot, CPU time (utime + stime), in ticks */
    int fd; /* its stat kept open for the next round (-1: not kept) */
} seen_t;

typedef struct {
    char name[MAX_PROC_NAME + 1]; /* UTF-8 without control characters */
    size_t len;
    int pid;
    uint64_t used, rss; /* ticks in the round, resident bytes */
    double cpu;
} proc_t;

static struct {
    seen_t a[MAX_PROCS_READ], b[MAX_PROCS_READ];
    seen_t *last, *now;
    int n_last, rounds, max_kept;
    uint64_t last_jiffies, page;
} procs = {.last = procs.a, .now = procs.b};

/* A process name as proc_name in sample.py: the first MAX_PROC_NAME bytes; if UTF-8, each
   control character (C0, DEL, C1) made '?'; if not, each byte outside printable ASCII. */
static void proc_name(const unsigned char *raw, size_t n, proc_t *p) {
    if (n > MAX_PROC_NAME) n = MAX_PROC_NAME;
    p->len = 0;
    if (!is_utf8(raw, n)) {
        for (size_t i = 0; i < n; i++)
            p->name[p->len++] = raw[i] >= 0x20 && raw[i] < 0x7f ? (char)raw[i] : '?';
    } else {
        for (size_t i = 0, len; i < n; i += len) {
            uint32_t code;
            len = utf8(raw + i, n - i, &code);
            if (code < 0x20 || (code >= 0x7f && code < 0xa0)) {
                p->name[p->len++] = '?';
            } else {
                memcpy(p->name + p->len, raw + i, len);
                p->len += len;
            }
        }
    }
    p->name[p->len] = 0;
}

/* One /proc/PID/stat (N bytes, NULs and all) as parse_proc_stat in sample.py: the name, the
   CPU ticks, the start time and the resident pages; 0 when it is not that. */
static int parse_proc_stat(const char *text, size_t n, proc_t *p, uint64_t *ticks,
                           uint64_t *start, uint64_t *pages) {
    const char *open_at = memchr(text, '(', n), *close_at = NULL;
    for (size_t i = n; i > 0 && !close_at; i--)
        if (text[i - 1] == ')') close_at = text + i - 1;
    if (!open_at || !close_at || close_at < open_at) return 0;
    const char *p_at = close_at + 1, *stop = text + n, *word[22], *word_end[22];
    int words = 0;
    while (words < 22) {
        while (p_at < stop && space(*p_at)) p_at++;
        if (p_at == stop) break;
        word[words] = p_at;
        while (p_at < stop && !space(*p_at)) p_at++;
        word_end[words++] = p_at;
    }
    if (words < 22) return 0;
    static const int at[4] = {11, 12, 19, 21};
    uint64_t value[4];
    for (int k = 0; k < 4; k++) {
        const char *q = word[at[k]];
        int over = 0;
        value[k] = digits(&q, &over);
        if (q != word_end[at[k]] || over) return 0;
    }
    for (int k = 0; k < 4; k++)
        if (value[k] > TOP) return 0;
    *ticks = value[0] + value[1];
    *start = value[2];
    *pages = value[3];
    proc_name((const unsigned char *)open_at + 1, (size_t)(close_at - open_at - 1), p);
    return 1;
}

/* The pid a /proc entry names: digits without a leading zero, at most MAX_PID; else 0. */
static int entry_pid(const char *name) {
    size_t n = strlen(name);
    if (!n || n > 7 || name[0] == '0') return 0;
    int pid = 0;
    for (size_t i = 0; i < n; i++) {
        if (name[i] < '0' || name[i] > '9') return 0;
        pid = pid * 10 + (name[i] - '0');
    }
    return pid <= MAX_PID ? pid : 0;
}

static int by_pid(const void *a, const void *b) {
    int x = ((const seen_t *)a)->pid, y = ((const seen_t *)b)->pid;
    return (x > y) - (x < y);
}

/* Whether A goes before B among the busiest (BY_RSS: the largest): more first, then by pid. */
static int before(const proc_t *a, const proc_t *b, int by_rss) {
    uint64_t x = by_rss ? a->rss : a->used, y = by_rss ? b->rss : b->used;
    return x != y ? x > y : a->pid < b->pid;
}

/* ITEM into TOP (N of them, at most TOP_PROCS), in order. */
static void keep_top(proc_t *top, int *n, const proc_t *item, int by_rss) {
    int at = *n;
    if (at == TOP_PROCS) {
        if (!before(item, &top[TOP_PROCS - 1], by_rss)) return;
        at--;
    } else {
        (*n)++;
    }
    for (; at > 0 && before(item, &top[at - 1], by_rss); at--) top[at] = top[at - 1];
    top[at] = *item;
}

/* One round of ProcReader.read in sample.py: every process's stat read; into OUT (room for
   MAX_PROCS) the busiest then the largest not among them, each with its CPU share of one
   core over the round. How many; -1 for the first round (nothing to compare with yet). */
static int read_procs(proc_t *out) {
    proc_t busy[TOP_PROCS], large[TOP_PROCS];
    int n_busy = 0, n_large = 0, n_now = 0, count = 0, kept = 0;
    DIR *dir = opendir(sampler.proc);
    struct dirent *entry;
    static char text[4097];
    while (dir && (entry = readdir(dir)) != NULL) {
        int pid = entry_pid(entry->d_name);
        if (!pid) continue;
        if (count == MAX_PROCS_READ) break;
        count++;
        /* A process's stat stays open from one round to the next: a pread is a third of
           the cost of an open, a read and a close. Once its process has ended, the read
           fails (a new process of the same pid is another file): open it again. */
        seen_t key = {pid, 0, 0, -1}, *last = NULL;
        if (procs.rounds) last = bsearch(&key, procs.last, (size_t)procs.n_last, sizeof key, by_pid);
        int fd = last ? last->fd : -1;
        if (last) last->fd = -1;
        ssize_t got = fd == -1 ? -1 : pread(fd, text, 4096, 0);
        if (got <= 0 && fd != -1) {
            close(fd);
            fd = -1;
        }
        if (fd == -1) {
            char path[64];
            int len = snprintf(path, sizeof path, "%s/stat", entry->d_name);
            if (len < 0 || (size_t)len >= sizeof path) continue;
            fd = openat(dirfd(dir), path, O_RDONLY | O_CLOEXEC);
            if (fd == -1) continue; /* it has ended */
            got = pread(fd, text, 4096, 0);
        }
        proc_t p;
        uint64_t ticks, start, pages, rss;
        if (got < 0 || !parse_proc_stat(text, (size_t)got, &p, &ticks, &start, &pages)) {
            close(fd);
            continue;
        }
        if (kept < procs.max_kept) kept++;
        else {
            close(fd);
            fd = -1;
        }
        key.start = start;
        key.ticks = ticks;
        key.fd = fd;
        procs.now[n_now++] = key;
        p.pid = pid;
        p.used = last && last->start == start ? (ticks >= last->ticks ? ticks - last->ticks : 0)
                                              : ticks;
        p.rss = __builtin_mul_overflow(pages, procs.page, &rss) || rss > TOP ? 0 : rss;
        if (p.used > 0) keep_top(busy, &n_busy, &p, 0);
        if (p.rss > 0) keep_top(large, &n_large, &p, 1);
    }
    if (dir) closedir(dir);
    for (int i = 0; i < procs.n_last; i++) /* processes that have ended, or were not read */
        if (procs.last[i].fd != -1) close(procs.last[i].fd);
    qsort(procs.now, (size_t)n_now, sizeof(seen_t), by_pid);
    seen_t *swap = procs.last;
    procs.last = procs.now;
    procs.now = swap;
    procs.n_last = n_now;
    int64_t span = (int64_t)sampler.jiffies - (int64_t)procs.last_jiffies;
    procs.last_jiffies = sampler.jiffies;
    if (!procs.rounds++) return -1;
    int n = 0;
    for (int i = 0; i < n_busy; i++) out[n++] = busy[i];
    for (int i = 0; i < n_large; i++) {
        int known = 0;
        for (int k = 0; k < n_busy; k++) known |= busy[k].pid == large[i].pid;
        if (!known) out[n++] = large[i];
    }
    uint64_t cores = sampler.cores > 1 ? (uint64_t)sampler.cores : 1, share;
    for (int i = 0; i < n; i++) {
        if (span <= 0) out[i].cpu = 0.0;
        else if (__builtin_mul_overflow(out[i].used, 100 * cores, &share) || share >= EXACT)
            out[i].cpu = MAX_PROC_CPU;
        else {
            double cpu = (double)share / (double)span;
            out[i].cpu = cpu < MAX_PROC_CPU ? cpu : MAX_PROC_CPU;
        }
    }
    return n;
}

/* ---- encoding ---- */

static struct {
    const char *node, *key_id;
    int64_t boot;
    double interval;
} fixed;

/* The node's name, boot, SEQ and TS, as every datagram of this agent carries them (after
   `"node":`). */
static void put_origin(out_t *o, long long seq, double ts) {
    put_quoted(o, (const unsigned char *)fixed.node, strlen(fixed.node));
    puts_(o, ",\"boot\":");
    put_int(o, fixed.boot);
    puts_(o, ",\"seq\":");
    put_int(o, seq);
    puts_(o, ",\"ts\":");
    put_num(o, ts, 3);
}

static void put_counts(out_t *o, const char *const *keys, const uint64_t *values, int n,
                       int limit) {
    for (int i = 0; i < n && i < limit; i++) {
        if (i) put(o, ",", 1);
        put_quoted(o, (const unsigned char *)keys[i], strlen(keys[i]));
        put(o, ":", 1);
        put_uint(o, values[i]);
    }
}

static size_t body(char *buf, size_t size, const sample_t *s, long long seq, double ts,
                   int core_places, int n_net, int meminfo_limit, int keep_cores, int keep_fs) {
    out_t o = {buf, buf + size, 0};
    puts_(&o, "{\"cpufreq\":");
    put_int(&o, s->cpufreq);
    puts_(&o, ",\"cputemp\":");
    put_num(&o, s->cputemp, 1);
    puts_(&o, ",\"cpuusage\":");
    put_num(&o, s->cpuusage, 4);
    puts_(&o, ",\"loadavg\":[");
    for (int i = 0; i < 3; i++) {
        if (i) put(&o, ",", 1);
        put_num(&o, s->load[i], 2);
    }
    puts_(&o, "],\"meminfo\":{");
    for (int i = 0; i < s->n_meminfo && i < meminfo_limit; i++) {
        if (i) put(&o, ",", 1);
        put_quoted(&o, (const unsigned char *)s->meminfo_key[i], strlen(s->meminfo_key[i]));
        put(&o, ":", 1);
        put_int(&o, s->meminfo[i]);
    }
    puts_(&o, "},\"v\":1,\"node\":");
    put_origin(&o, seq, ts);
    puts_(&o, ",\"interval\":");
    put_num(&o, fixed.interval, 3);
    puts_(&o, ",\"cores\":[");
    for (int i = 0; keep_cores && i < s->n_cores; i++) {
        if (i) put(&o, ",", 1);
        put_num(&o, s->cores[i], core_places);
    }
    puts_(&o, "],\"disk\":{");
    static const char *const disk_keys[3] = {"total", "used", "free"};
    if (s->has_disk) put_counts(&o, disk_keys, s->disk, 3, 8);
    puts_(&o, "},\"net\":{");
    for (int i = 0; i < n_net; i++) {
        if (i) put(&o, ",", 1);
        put_quoted(&o, (const unsigned char *)s->net[i].name, s->net[i].len);
        put(&o, ":[", 2);
        put_uint(&o, s->net[i].rx);
        put(&o, ",", 1);
        put_uint(&o, s->net[i].tx);
        put(&o, "]", 1);
    }
    puts_(&o, "},\"uptime\":");
    put_num(&o, s->uptime, 1);
    /* What the board may lack, each only where it has it; the texts are clean (see clean). */
    if (sampler.has_model) {
        puts_(&o, ",\"model\":\"");
        puts_(&o, sampler.model);
        put(&o, "\"", 1);
    }
    if (s->has_throttled) {
        puts_(&o, ",\"throttled\":");
        put_uint(&o, s->throttled);
    }
    static const char *const pair_keys[2] = {",\"swap\":[", ",\"diskio\":["};
    const uint64_t *pairs[2] = {s->has_swap ? s->swap : NULL, s->has_diskio ? s->diskio : NULL};
    for (int k = 0; k < 2; k++) {
        if (!pairs[k]) continue;
        puts_(&o, pair_keys[k]);
        put_uint(&o, pairs[k][0]);
        put(&o, ",", 1);
        put_uint(&o, pairs[k][1]);
        put(&o, "]", 1);
    }
    if (keep_fs && sampler.n_fs) {
        puts_(&o, ",\"fs\":{");
        for (int i = 0; i < sampler.n_fs; i++) {
            put(&o, i ? ",\"" : "\"", i ? 2 : 1);
            puts_(&o, sampler.fs_name[i]);
            put(&o, "\":[", 3);
            for (int k = 0; k < 3; k++) {
                if (k) put(&o, ",", 1);
                put_uint(&o, sampler.fs[i][k]);
            }
            put(&o, "]", 1);
        }
        put(&o, "}", 1);
    }
    put(&o, "}", 1);
    return o.full ? size + 1 : (size_t)(o.at - buf);
}

/* The signature spliced into BODY (N bytes, ending in a brace) in OUT; the length, or 0. */
static size_t signed_length(char *out, size_t n) {
    static const char mark[] = ",\"sig\":\"" SIG_SCHEME ":";
    char hex[65];
    hmac_hex(out, n, hex);
    out_t o = {out + n - 1, out + MAX_DATAGRAM, 0}; /* the signature replaces the brace */
    put(&o, mark, sizeof mark - 1);
    puts_(&o, fixed.key_id);
    put(&o, ":", 1);
    put(&o, hex, 64);
    put(&o, "\"}", 2);
    return o.full ? 0 : (size_t)(o.at - out);
}

/* One signed datagram for S into OUT (at least MAX_DATAGRAM bytes); its length, or 0 when
   it cannot fit. As wire.encode: shrink step by step until it fits. */
static size_t encode(char *out, const sample_t *s, long long seq, double ts) {
    static const int steps[6][5] = {{3, MAX_IFACES, 16, 1, 1}, {2, MAX_IFACES, 16, 1, 1},
                                    {2, 2, 16, 1, 1},          {2, 2, 16, 0, 1},
                                    {2, 0, 8, 0, 1},           {2, 0, 8, 0, 0}};
    size_t room = MAX_DATAGRAM - (strlen(SIG_SCHEME) + strlen(fixed.key_id) + 77);
    for (int step = 0; step < 6; step++) {
        int n_net = steps[step][1] < s->n_net ? steps[step][1] : s->n_net;
        size_t n = body(out, room, s, seq, ts, steps[step][0], n_net, steps[step][2],
                        steps[step][3], steps[step][4]);
        if (n > room) continue;
        return signed_length(out, n);
    }
    return 0;
}

/* One signed process datagram for the N processes of P into OUT (at least MAX_DATAGRAM
   bytes), as wire.encode_procs: the last rows left out until it fits; its length, or 0. */
static size_t encode_procs(char *out, const proc_t *p, int n, long long seq, double ts) {
    size_t room = MAX_DATAGRAM - (strlen(SIG_SCHEME) + strlen(fixed.key_id) + 77);
    for (int rows = n; rows >= 0; rows--) {
        out_t o = {out, out + room, 0};
        puts_(&o, "{\"v\":1,\"node\":");
        put_origin(&o, seq, ts);
        puts_(&o, ",\"procs\":[");
        for (int i = 0; i < rows; i++) {
            put(&o, i ? ",[" : "[", i ? 2 : 1);
            put_quoted(&o, (const unsigned char *)p[i].name, p[i].len);
            put(&o, ",", 1);
            put_int(&o, p[i].pid);
            put(&o, ",", 1);
            put_num(&o, p[i].cpu, 1);
            put(&o, ",", 1);
            put_uint(&o, p[i].rss);
            put(&o, "]", 1);
        }
        put(&o, "]}", 2);
        if (!o.full) return signed_length(out, (size_t)(o.at - out));
    }
    return 0;
}

/* ---- the self-test: the published vectors ---- */

static void to_hex(const uint8_t *bytes, size_t n, char *hex) {
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = "0123456789abcdef"[bytes[i] >> 4];
        hex[2 * i + 1] = "0123456789abcdef"[bytes[i] & 15];
    }
    hex[2 * n] = 0;
}

/* One line for one vector; whether GOT (hex) begins with WANT. */
static int vector(const char *name, const char *got, const char *want) {
    int ok = strncmp(got, want, strlen(want)) == 0;
    if (ok) printf("%s: ok\n", name);
    else printf("%s: FAILED (got %.*s, want %s)\n", name, (int)strlen(want), got, want);
    return ok;
}

static int sha256_vector(const char *name, const char *message, size_t repeat, const char *want) {
    sha256_t s;
    uint8_t digest[32];
    char got[65];
    size_t length = strlen(message), total = length * repeat, done = 0, piece = 1;
    sha256_init(&s);
    /* Pieces of 1 to 127 bytes: every way a message falls across the 64-byte blocks. */
    while (done < total) {
        static char pieces[2 * 128];
        size_t take = piece < total - done ? piece : total - done;
        for (size_t i = 0; i < take; i++) pieces[i] = message[(done + i) % length];
        sha256_update(&s, pieces, take);
        done += take;
        piece = piece % 127 + 1;
    }
    sha256_final(&s, digest);
    to_hex(digest, 32, got);
    return vector(name, got, want);
}

/* RFC 4231 case N: KEY, DATA (and their lengths), the HMAC wanted (case 5: its first half). */
static int hmac_vector(int number, const uint8_t *key, size_t key_len, const void *data,
                       size_t data_len, const char *want) {
    char name[64], got[65];
    snprintf(name, sizeof name, "hmac-sha256 RFC 4231 test case %d", number);
    hmac_key(key, key_len);
    hmac_hex(data, data_len, got);
    return vector(name, got, want);
}

static int selftest(void) {
    int ok = 1;
    ok &= sha256_vector("sha256 FIPS 180-4 'abc'", "abc", 1,
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ok &= sha256_vector("sha256 FIPS 180-4 448-bit two-block message",
                        "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
                        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    ok &= sha256_vector("sha256 FIPS 180-4 one million 'a'", "a", 1000000,
                        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    uint8_t key[131], data[50];
    memset(key, 0x0b, 20);
    ok &= hmac_vector(1, key, 20, "Hi There", 8,
                      "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    ok &= hmac_vector(2, (const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28,
                      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(key, 0xaa, 20);
    memset(data, 0xdd, 50);
    ok &= hmac_vector(3, key, 20, data, 50,
                      "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    for (int i = 0; i < 25; i++) key[i] = (uint8_t)(i + 1);
    memset(data, 0xcd, 50);
    ok &= hmac_vector(4, key, 25, data, 50,
                      "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    memset(key, 0x0c, 20);
    ok &= hmac_vector(5, key, 20, "Test With Truncation", 20, "a3b6167473100ee06e0c796c2955552b");
    memset(key, 0xaa, 131);
    static const char large[] = "Test Using Larger Than Block-Size Key - Hash Key First";
    ok &= hmac_vector(6, key, 131, large, sizeof large - 1,
                      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    static const char both[] = "This is a test using a larger than block-size key and a larger "
                               "than block-size data. The key needs to be hashed before being "
                               "used by the HMAC algorithm.";
    ok &= hmac_vector(7, key, 131, both, sizeof both - 1,
                      "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
    return fflush(stdout) == 0 && ok ? 0 : 1;
}

/* ---- the send loop ---- */

typedef struct {
    char host[MAX_HOST + 1];
    int port;
    struct sockaddr_in address;
    int resolved;
    double outage_since; /* -1 while sends succeed */
    long long failed;
    int fd, connected; /* the group's socket is connected: no route lookup per datagram */
} target_t;

/* Resolve T's host (an address, or a name looked up again each interval until it resolves). */
static int resolve(target_t *t) {
    memset(&t->address, 0, sizeof t->address);
    t->address.sin_family = AF_INET;
    t->address.sin_port = htons((uint16_t)t->port);
    if (inet_pton(AF_INET, t->host, &t->address.sin_addr) == 1) return 1;
    struct addrinfo hints = {0}, *found = NULL;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(t->host, NULL, &hints, &found) != 0 || !found) return 0;
    t->address.sin_addr = ((struct sockaddr_in *)found->ai_addr)->sin_addr;
    freeaddrinfo(found);
    return 1;
}

static void target(target_t *t, const char *host, size_t host_len, int port) {
    if (host_len == 0 || host_len > MAX_HOST) fail("a host must be 1 to %d bytes: %s", MAX_HOST, host);
    memcpy(t->host, host, host_len);
    t->host[host_len] = 0;
    t->port = port;
    t->resolved = 0;
    t->outage_since = -1;
    t->failed = 0;
    t->connected = 0;
    t->fd = -1;
}

static int open_socket(int ttl, const char *interface) {
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (sock < 0) fail("cannot open a UDP socket: %s", strerror(errno));
    int loop = 1;
    /* Loop on: the master runs an agent too, and the loopback setup needs it. */
    if (setsockopt(sock, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl) ||
        setsockopt(sock, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop))
        fail("cannot set up the socket: %s", strerror(errno));
    if (*interface) {
        struct in_addr address;
        if (inet_pton(AF_INET, interface, &address) != 1)
            fail("--interface must be an IPv4 address, not %s", interface);
        if (setsockopt(sock, IPPROTO_IP, IP_MULTICAST_IF, &address, sizeof address))
            fail("cannot send from the interface: %s", strerror(errno));
    }
    return sock;
}

static double monotonic(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static const char USAGE[] =
    "usage: bramble-agent --node NAME --group ADDR --port N --interval S --key-fd FD "
    "[--ttl N] [--interface ADDR] [--unicast HOST:PORT]... [--count N] [--boot N] "
    "[--procs-every N] "
    "[--proc DIR] [--sys DIR] [--fs-root DIR] [--cpufreq FILE] [--thermal FILE] [--disk PATH] "
    "[--page-size N] "
    "[--stdout] [--seq N] [--ts T]"
    "; or bramble-agent --selftest";

/* A whole number 0 .. MOST from an argument; exit 2 for anything else. */
static long long number(const char *flag, const char *text, long long most) {
    int ok;
    int64_t value = parse_int(text, text + strlen(text), &ok);
    if (!ok || value < 0 || value > most)
        fail("%s must be a whole number from 0 to %lld, not %.40s", flag, most, text);
    return value;
}

/* A finite decimal from an argument; NAN for anything else. */
static double decimal(const char *text) {
    char *end;
    double value = strtod(text, &end);
    return end != text && !*end && isfinite(value) ? value : NAN;
}

/* The telemetry key: "keyid:hex" through the pipe FD, hashed into the HMAC pads. */
static const char *read_key(int fd) {
    static char key_text[MAX_KEY_ID + 1 + 2 * MAX_KEY + 2];
    static uint8_t key[MAX_KEY];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, key_text + got, sizeof key_text - 1 - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
        if (got == sizeof key_text - 1) break;
    }
    close(fd);
    while (got && (key_text[got - 1] == '\n' || key_text[got - 1] == ' ')) got--;
    key_text[got] = 0;
    if (!got) fail("no telemetry key on --key-fd");
    char *colon = memchr(key_text, ':', got);
    if (!colon || colon == key_text || colon - key_text > MAX_KEY_ID) fail("bad telemetry key");
    *colon = 0;
    for (const char *c = key_text; *c; c++)
        if (!(('a' <= *c && *c <= 'z') || ('A' <= *c && *c <= 'Z') || ('0' <= *c && *c <= '9') ||
              *c == '_' || *c == '.' || *c == '-'))
            fail("key id must be letters, digits, '_', '.', '-'");
    const char *hex = colon + 1;
    size_t digits_n = strlen(hex);
    if (digits_n > 2 * MAX_KEY) fail("the telemetry key is longer than %d bytes", MAX_KEY);
    if (digits_n % 2) fail("bad telemetry key");
    for (size_t i = 0; i < digits_n; i++) {
        const char *at = strchr("0123456789abcdef0123456789ABCDEF", hex[i]);
        if (!hex[i] || !at) fail("bad telemetry key");
        unsigned nibble = (unsigned)(at - "0123456789abcdef0123456789ABCDEF") % 16;
        key[i / 2] = (uint8_t)(i % 2 ? key[i / 2] | nibble : nibble << 4);
    }
    hmac_key(key, digits_n / 2);
    memset(key, 0, sizeof key);
    memset(colon + 1, 0, digits_n);
    return key_text;
}

/* DATAGRAM (N bytes) to every target, or as a line on stdout (TO_STDOUT); 0 when stdout
   fails. Each destination's outage is told once when it starts and once when it ends. */
static int deliver(target_t *targets, int n_targets, char *datagram, size_t n, int to_stdout,
                   long long *failures) {
    if (to_stdout) {
        datagram[n] = '\n';
        return write(1, datagram, n + 1) == (ssize_t)(n + 1);
    }
    for (int i = 0; i < n_targets; i++) {
        target_t *t = &targets[i];
        const char *error = NULL;
        if (!t->resolved) t->resolved = resolve(t);
        if (t->resolved && i == 0 && !t->connected)
            t->connected = !connect(t->fd, (struct sockaddr *)&t->address, sizeof t->address);
        if (!t->resolved) error = "cannot resolve the address";
        else if ((t->connected ? send(t->fd, datagram, n, 0)
                               : sendto(t->fd, datagram, n, 0, (struct sockaddr *)&t->address,
                                        sizeof t->address)) < 0)
            error = strerror(errno);
        if (error) {
            t->failed++;
            (*failures)++;
            if (t->outage_since < 0) {
                t->outage_since = monotonic();
                say("bramble agent: cannot send to %s:%d: %s (will keep trying)", t->host, t->port,
                    error);
            }
        } else if (t->outage_since >= 0) {
            say("bramble agent: sending to %s:%d again after %.1f s (%lld sends failed)", t->host,
                t->port, monotonic() - t->outage_since, t->failed);
            t->outage_since = -1;
            t->failed = 0;
        }
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "--selftest")) return selftest();
    const char *node = NULL, *group = NULL, *interface = "", *proc = "/proc";
    const char *freq = CPUFREQ_PATH, *temp = THERMAL_PATH, *disk = "/", *sys = "/sys", *fs_root = "";
    const char *unicast[MAX_TARGETS];
    int n_unicast = 0, port = -1, ttl = 1, key_fd = -1, to_stdout = 0, fixed_ts = 0;
    double interval = 0, ts_value = 0;
    long long count = 0, boot = 0, first_seq = -1, procs_every = PROCS_EVERY, page_size = 0;
    for (int i = 1; i < argc; i += 2) {
        const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(flag, "--stdout")) {
            to_stdout = 1;
            i--;
            continue;
        }
        if (!value) fail("%s", USAGE);
        if (!strcmp(flag, "--node")) node = value;
        else if (!strcmp(flag, "--group")) group = value;
        else if (!strcmp(flag, "--port")) port = (int)number(flag, value, 65535);
        else if (!strcmp(flag, "--interval")) interval = decimal(value);
        else if (!strcmp(flag, "--ttl")) ttl = (int)number(flag, value, 255);
        else if (!strcmp(flag, "--interface")) interface = value;
        else if (!strcmp(flag, "--key-fd")) key_fd = (int)number(flag, value, 1 << 30);
        else if (!strcmp(flag, "--count")) count = number(flag, value, MAX_COUNT);
        else if (!strcmp(flag, "--procs-every")) procs_every = number(flag, value, MAX_PROCS_EVERY);
        else if (!strcmp(flag, "--boot")) boot = number(flag, value, INT64_MAX);
        else if (!strcmp(flag, "--proc")) proc = value;
        else if (!strcmp(flag, "--sys")) sys = value;
        else if (!strcmp(flag, "--fs-root")) fs_root = value;
        else if (!strcmp(flag, "--cpufreq")) freq = value;
        else if (!strcmp(flag, "--thermal")) temp = value;
        else if (!strcmp(flag, "--disk")) disk = value;
        else if (!strcmp(flag, "--page-size")) page_size = number(flag, value, 1 << 30);
        else if (!strcmp(flag, "--seq")) first_seq = number(flag, value, MAX_COUNT);
        else if (!strcmp(flag, "--ts")) {
            ts_value = decimal(value);
            fixed_ts = 1;
            if (isnan(ts_value)) fail("--ts must be a finite number, not %.40s", value);
        } else if (!strcmp(flag, "--unicast")) {
            if (n_unicast == MAX_TARGETS) fail("at most %d --unicast targets", MAX_TARGETS);
            unicast[n_unicast++] = value;
        } else fail("bad argument: %.100s; %s", flag, USAGE);
    }
    if (!node || !group || port < 0 || key_fd < 0) fail("%s", USAGE);
    if (!(interval > 0 && interval <= MAX_INTERVAL))
        fail("--interval must be within (0, %d] seconds", MAX_INTERVAL);
    long name_length = characters((const unsigned char *)node, strlen(node));
    if (name_length < 1 || name_length > MAX_NAME)
        fail("node name must be 1 to %d printable characters", MAX_NAME);
    target_t targets[1 + MAX_TARGETS];
    int n_targets = 0;
    target(&targets[n_targets++], group, strlen(group), port);
    for (int i = 0; i < n_unicast; i++) {
        const char *sep = strrchr(unicast[i], ':');
        if (!sep) fail("--unicast needs HOST:PORT, not %.300s", unicast[i]);
        int to = (int)number("--unicast port", sep + 1, 65535);
        target(&targets[n_targets++], unicast[i], (size_t)(sep - unicast[i]), to);
    }

    fixed.key_id = read_key(key_fd);
    sampler_open(proc, freq, temp, disk, sys, fs_root);
    long page = sysconf(_SC_PAGESIZE);
    procs.page = page_size ? (uint64_t)page_size : page > 0 ? (uint64_t)page : 4096;
    /* Stat files kept open between rounds: at most 512, and within the open file limit
       while a round holds the last round's and its own (all new after a storm of forks). */
    struct rlimit files;
    procs.max_kept = 512;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY &&
        files.rlim_cur < 2 * 512 + 64)
        procs.max_kept = files.rlim_cur > 64 ? (int)(files.rlim_cur - 64) / 2 : 0;
    read_file(&file_text, sampler.stat, FILE_LIMIT);
    fixed.node = node;
    fixed.boot = boot ? boot : parse_btime(file_text.text);
    fixed.interval = interval;

    if (!to_stdout) {
        /* The group's own socket is connected once it resolves. Unicast targets share an
           unconnected one, so a target with no listener (an ICMP "port unreachable") does
           not make the next send fail. */
        targets[0].fd = open_socket(ttl, interface);
        int shared = n_unicast ? open_socket(ttl, interface) : -1;
        for (int i = 0; i < n_targets; i++) {
            if (i) targets[i].fd = shared;
            targets[i].resolved = resolve(&targets[i]);
        }
    }

    /* The interval timer paces the loop and the stop signals end it, all blocked and taken
       by sigwait: one system call per interval. The kernel merges timer signals that were
       not taken in time, so a loop that fell behind skips the missed slots, never bursts. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGALRM);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigprocmask(SIG_BLOCK, &signals, NULL);
    /* seq starts at the milliseconds since boot, so an agent restarted within the same boot
       carries on above every number it sent before. */
    long long seq = first_seq;
    if (seq < 0) {
        struct timespec t;
        clock_gettime(CLOCK_BOOTTIME, &t);
        seq = (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
    }
    long long sent = 0, failures = 0;
    double first = interval < 0.2 ? interval : 0.2;
    struct itimerval timer = {
        {(time_t)interval, (suseconds_t)((interval - (double)(time_t)interval) * 1e6)},
        {(time_t)first, (suseconds_t)((first - (double)(time_t)first) * 1e6)}};
    /* An interval shorter than the timer holds is its shortest, not a timer that fires once. */
    if (timer.it_interval.tv_sec == 0 && timer.it_interval.tv_usec == 0) timer.it_interval.tv_usec = 1;
    if (timer.it_value.tv_sec == 0 && timer.it_value.tv_usec == 0) timer.it_value.tv_usec = 1;
    setitimer(ITIMER_REAL, &timer, NULL);

    static sample_t s;
    static char datagram[MAX_DATAGRAM + 1];
    static proc_t top[MAX_PROCS];
    long long intervals = 0;
    int signal_number;
    while (sigwait(&signals, &signal_number) == 0 && signal_number == SIGALRM) {
        seq++;
        sample(&s);
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        double ts = fixed_ts ? ts_value : (double)wall.tv_sec + (double)wall.tv_nsec / 1e9;
        /* Every procs_every intervals the top processes, from the second reading on; read
           with the sample, before anything is sent. */
        int rows = procs_every && intervals % procs_every == 0 ? read_procs(top) : -1;
        intervals++;
        size_t n = encode(datagram, &s, seq, ts);
        if (!n) say("bramble agent: a sample did not fit in %d bytes; skipped", MAX_DATAGRAM);
        else if (!deliver(targets, n_targets, datagram, n, to_stdout, &failures)) break;
        sent++;
        if (rows >= 0) {
            n = encode_procs(datagram, top, rows, ++seq, ts);
            if (n && !deliver(targets, n_targets, datagram, n, to_stdout, &failures)) break;
            if (n) sent++;
        }
        if (intervals == count) {
            /* --count: say what was done, as the Python agent does. */
            if (!to_stdout) {
                char line[400];
                int len = snprintf(line, sizeof line, "bramble agent: sent %lld datagrams as %s to %s:%d",
                                   sent, node, group, port);
                if (n_unicast && len > 0 && len < (int)sizeof line)
                    len += snprintf(line + len, sizeof line - (size_t)len, " and %d unicast target%s",
                                    n_unicast, n_unicast == 1 ? "" : "s");
                if (failures && len > 0 && len < (int)sizeof line)
                    len += snprintf(line + len, sizeof line - (size_t)len, " (%lld sends failed)",
                                    failures);
                if (len > 0 && len < (int)sizeof line - 1) {
                    line[len++] = '\n';
                    ssize_t ignored = write(1, line, (size_t)len);
                    (void)ignored;
                }
            }
            break;
        }
    }
    return 0;
}
