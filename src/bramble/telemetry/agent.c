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
 * in one buffer, HMAC-SHA256 from precomputed pads, one sendto per destination.
 */
#define _GNU_SOURCE
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
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_DATAGRAM 1400
#define MAX_CORES 128
#define MAX_IFACES 8
#define MAX_NAME 63
#define MAX_KEY_ID 32
#define MAX_TARGETS 16
#define MAX_CPU_LINES 1025
#define MAX_NET 1024
#define DISK_EVERY 10
#define SIG_SCHEME "hmac-sha256"

static const char *CPUFREQ_PATH = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq";
static const char *THERMAL_PATH = "/sys/class/thermal/thermal_zone0/temp";
static const char *MEMINFO_KEYS[] = {"MemTotal", "MemFree",   "MemAvailable", "Buffers",
                                     "Cached",   "SwapTotal", "SwapFree"};
static const char *MEMINFO_NAMES[] = {"MemTotal:", "MemFree:",   "MemAvailable:", "Buffers:",
                                      "Cached:",   "SwapTotal:", "SwapFree:"};
#define N_MEMINFO 7

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

static void fail(const char *format, const char *detail) {
    char message[1200];
    snprintf(message, sizeof message, format, detail);
    say("bramble agent: error: %s", message);
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
static const char ESCAPED[] = "\"\\\n\r\t\b\f", ESCAPES[] = "\"\\nrtbf";

/* A JSON string of UTF-8 bytes with everything outside printable ASCII escaped, as Python's
   json.dumps(ensure_ascii=True) does; 0 if the bytes are not UTF-8. */
static int put_quoted(out_t *o, const unsigned char *s, size_t n) {
    char esc[16];
    size_t plain = 0;
    while (plain < n && s[plain] >= 0x20 && s[plain] < 0x7f && s[plain] != '"' && s[plain] != '\\')
        plain++;
    if (plain == n) { /* nothing to escape: the common case */
        put(o, "\"", 1);
        put(o, (const char *)s, n);
        put(o, "\"", 1);
        return 1;
    }
    put(o, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        uint32_t code;
        size_t len;
        if (c < 0x80) {
            code = c;
            len = 1;
        } else if ((c & 0xe0) == 0xc0) {
            code = c & 0x1f;
            len = 2;
        } else if ((c & 0xf0) == 0xe0) {
            code = c & 0x0f;
            len = 3;
        } else if ((c & 0xf8) == 0xf0) {
            code = c & 0x07;
            len = 4;
        } else {
            return 0;
        }
        if (i + len > n) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            code = code << 6 | (s[i + k] & 0x3f);
        }
        if ((len == 2 && code < 0x80) || (len == 3 && code < 0x800) ||
            (len == 4 && (code < 0x10000 || code > 0x10ffff)) || (code >= 0xd800 && code < 0xe000))
            return 0;
        i += len;
        const char *short_escape = code && code < 0x80 ? strchr(ESCAPED, (int)code) : NULL;
        if (short_escape) {
            char pair[2] = {'\\', ESCAPES[short_escape - ESCAPED]};
            put(o, pair, 2);
        } else if (code < 0x20 || (code >= 0x7f && code < 0x10000)) {
            put(o, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", code));
        } else if (code >= 0x10000) {
            code -= 0x10000;
            put(o, esc,
                (size_t)snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 | (code >> 10),
                                 0xdc00 | (code & 0x3ff)));
        } else {
            char ch = (char)code;
            put(o, &ch, 1);
        }
    }
    put(o, "\"", 1);
    return 1;
}

/* ---- sampling ---- */

typedef struct {
    char name[16];
    unsigned long long rx, tx;
} iface_t;

typedef struct {
    long long cpufreq;
    double cputemp, cpuusage, load[3], uptime;
    int n_meminfo;
    const char *meminfo_key[N_MEMINFO];
    long long meminfo[N_MEMINFO];
    int n_cores;
    double cores[MAX_CPU_LINES];
    int has_disk;
    unsigned long long disk[3];
    int n_net;
    iface_t net[MAX_NET];
} sample_t;

static struct {
    int stat, meminfo, loadavg, netdev, uptime, freq, temp;
    const char *disk_path;
    size_t meminfo_size;
    long long samples;
    int n_last;
    long long last[2 * MAX_CPU_LINES];
} sampler;

static char filebuf[1 << 18];

static int open_or(const char *path, int missing) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd != -1) return fd;
    return missing == -2 ? open("/dev/null", O_RDONLY | O_CLOEXEC) : missing;
}

/* The file's bytes (at most SIZE), NUL-terminated in filebuf; empty when unreadable. */
static size_t read_fd(int fd, size_t size) {
    if (size > sizeof filebuf - 1) size = sizeof filebuf - 1;
    ssize_t n = fd == -1 ? -1 : pread(fd, filebuf, size, 0);
    if (n < 0) n = 0;
    filebuf[n] = 0;
    return (size_t)n;
}

/* An integer as Python's int(bytes) reads it: optional whitespace and sign, digits (and
   single underscores between them), optional whitespace; 0 in *ok when it is anything else. */
static long long parse_int(const char *s, int *ok) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v') s++;
    int negative = *s == '-';
    if (*s == '-' || *s == '+') s++;
    long long value = 0;
    int digits = 0;
    while ((*s >= '0' && *s <= '9') || (*s == '_' && digits && s[1] >= '0' && s[1] <= '9')) {
        if (*s != '_') {
            value = value * 10 + (*s - '0');
            digits++;
        }
        s++;
    }
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v') s++;
    *ok = digits > 0 && *s == 0;
    return negative ? -value : value;
}

/* The decimal number at *P (at least one digit there), moving *P past it. */
static unsigned long long digits(char **p) {
    unsigned long long value = 0;
    for (; **p >= '0' && **p <= '9'; (*p)++) value = value * 10 + (unsigned long long)(**p - '0');
    return value;
}

/* Total and idle jiffies of each cpu line of /proc/stat, into OUT; the number of lines. */
static int parse_stat(char *text, long long *out) {
    int lines = 0;
    for (char *line = text; strncmp(line, "cpu", 3) == 0 && lines < MAX_CPU_LINES; lines++) {
        char *p = line + 3;
        while (*p && *p != ' ') p++;
        long long field[8];
        int n = 0;
        while (n < 8) {
            while (*p == ' ') p++;
            if (*p < '0' || *p > '9') break;
            field[n++] = (long long)digits(&p);
        }
        if (n < 4) return 0; /* not the /proc/stat we know: no CPU figures */
        long long total = 0;
        for (int i = 0; i < n; i++) total += field[i];
        out[2 * lines] = total;
        out[2 * lines + 1] = n > 4 ? field[3] + field[4] : field[3];
        char *next = strchr(p, '\n');
        if (!next) {
            lines++;
            break;
        }
        line = next + 1;
    }
    return lines;
}

static long long parse_btime(const char *text) {
    const char *at = strstr(text, "\nbtime ");
    int ok;
    if (!at) return 0;
    char word[24] = {0};
    sscanf(at + 7, "%23s", word);
    long long value = parse_int(word, &ok);
    return ok ? value : 0;
}

static double busy(long long before_total, long long before_idle, long long total,
                   long long idle) {
    long long span = total - before_total;
    long long work = span - idle + before_idle;
    if (0 <= work && work <= span && span) return (double)work / (double)span;
    return work > span && span > 0 ? 1.0 : 0.0;
}

static void parse_meminfo(sample_t *s, const char *text) {
    long long value[N_MEMINFO];
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
        at += len;
        while (*at == ' ' || *at == '\t') at++;
        if (*at < '0' || *at > '9') continue;
        char *number = (char *)at;
        value[k] = (long long)digits(&number);
        found[k] = 1;
    }
    s->n_meminfo = 0;
    int estimate = !found[2] && found[1];
    for (int k = 0; k < N_MEMINFO; k++) {
        if (k == 2 && estimate) {
            value[2] = value[1] + (found[3] ? value[3] : 0) + (found[4] ? value[4] : 0);
        } else if (!found[k]) {
            continue;
        }
        s->meminfo_key[s->n_meminfo] = MEMINFO_KEYS[k];
        s->meminfo[s->n_meminfo++] = value[k];
    }
}

static void parse_loadavg(double load[3], const char *text) {
    const char *p = text;
    for (int i = 0; i < 3; i++) {
        char *end;
        while (*p == ' ' || *p == '\t' || *p == '\n') p++;
        load[i] = strtod(p, &end);
        if (end == p || (*end && *end != ' ' && *end != '\t' && *end != '\n')) {
            load[0] = load[1] = load[2] = 0.0;
            return;
        }
        p = end;
    }
}

static void parse_net_dev(sample_t *s, char *text) {
    s->n_net = 0;
    char *line = strchr(text, '\n');
    if (line) line = strchr(line + 1, '\n'); /* past two headings */
    while (line && s->n_net < MAX_NET) {
        line++;
        char *colon = strchr(line, ':'), *eol = strchr(line, '\n');
        if (!colon || (eol && colon > eol)) break;
        char *name = line;
        while (*name == ' ') name++;
        size_t len = (size_t)(colon - name);
        char *p = colon + 1;
        unsigned long long field[9];
        int n = 0;
        while (n < 9) {
            while (*p == ' ') p++;
            if (*p < '0' || *p > '9') break;
            field[n++] = digits(&p);
        }
        line = eol;
        if (n < 9 || len == 0 || len >= sizeof s->net[0].name || (len == 2 && !memcmp(name, "lo", 2)))
            continue;
        if (!put_quoted(&(out_t){NULL, NULL, 1}, (unsigned char *)name, len)) continue; /* not UTF-8 */
        iface_t *iface = &s->net[s->n_net++];
        memcpy(iface->name, name, len);
        iface->name[len] = 0;
        iface->rx = field[0];
        iface->tx = field[8];
    }
}

static void sampler_open(const char *proc, const char *freq, const char *temp, const char *disk) {
    char path[4096];
    snprintf(path, sizeof path, "%s/stat", proc);
    sampler.stat = open_or(path, -2);
    snprintf(path, sizeof path, "%s/meminfo", proc);
    sampler.meminfo = open_or(path, -2);
    snprintf(path, sizeof path, "%s/loadavg", proc);
    sampler.loadavg = open_or(path, -2);
    snprintf(path, sizeof path, "%s/net/dev", proc);
    sampler.netdev = open_or(path, -2);
    /* This machine's uptime is a clock read, no file; another /proc tree has its own file. */
    snprintf(path, sizeof path, "%s/uptime", proc);
    sampler.uptime = strcmp(proc, "/proc") ? open_or(path, -2) : -1;
    /* A sensor missing at start stays missing: no read at all, every interval. */
    sampler.freq = open_or(freq, -1);
    sampler.temp = open_or(temp, -1);
    sampler.disk_path = disk;
    /* Read /proc/meminfo only as far as the wanted lines, and a margin for longer numbers. */
    size_t n = read_fd(sampler.meminfo, sizeof filebuf);
    sampler.meminfo_size = sizeof filebuf;
    size_t far = 0;
    int all = n > 0;
    for (int k = 0; k < N_MEMINFO && all; k++) {
        char *at = strstr(filebuf, MEMINFO_NAMES[k]);
        char *eol = at ? strchr(at, '\n') : NULL;
        if (!eol) all = 0;
        else if ((size_t)(eol - filebuf) > far) far = (size_t)(eol - filebuf);
    }
    if (all) sampler.meminfo_size = far + 256;
}

static void sample(sample_t *s) {
    static long long now[2 * MAX_CPU_LINES];
    int ok;
    read_fd(sampler.stat, sizeof filebuf);
    int lines = parse_stat(filebuf, now);
    if (lines != sampler.n_last) { /* a core went on- or offline: figures since boot */
        memset(sampler.last, 0, sizeof sampler.last);
        sampler.n_last = lines;
    }
    for (int i = 0; i < lines; i++) {
        double fraction = busy(sampler.last[2 * i], sampler.last[2 * i + 1], now[2 * i],
                               now[2 * i + 1]);
        if (i == 0) s->cpuusage = fraction;
        else s->cores[i - 1] = fraction;
    }
    if (!lines) s->cpuusage = 0.0;
    s->n_cores = lines ? lines - 1 : 0;
    memcpy(sampler.last, now, sizeof(long long) * 2 * (size_t)lines);

    read_fd(sampler.meminfo, sampler.meminfo_size);
    parse_meminfo(s, filebuf);

    if (sampler.samples++ % DISK_EVERY == 0) { /* disk use moves slowly; spare the call */
        struct statvfs fs;
        s->has_disk = statvfs(sampler.disk_path, &fs) == 0;
        if (s->has_disk) {
            s->disk[0] = (unsigned long long)fs.f_blocks * fs.f_frsize;
            s->disk[1] = (unsigned long long)(fs.f_blocks - fs.f_bfree) * fs.f_frsize;
            s->disk[2] = (unsigned long long)fs.f_bavail * fs.f_frsize;
        }
    }
    s->cpufreq = 0;
    if (sampler.freq != -1) {
        read_fd(sampler.freq, 32);
        long long khz = parse_int(filebuf, &ok);
        s->cpufreq = !ok ? 0 : khz >= 0 ? khz / 1000 : -((-khz + 999) / 1000);
    }
    s->cputemp = 0.0;
    if (sampler.temp != -1) {
        read_fd(sampler.temp, 32);
        long long milli = parse_int(filebuf, &ok);
        s->cputemp = ok ? (double)milli / 1000.0 : 0.0;
    }
    read_fd(sampler.loadavg, 128);
    parse_loadavg(s->load, filebuf);
    read_fd(sampler.netdev, sizeof filebuf);
    parse_net_dev(s, filebuf);
    if (sampler.uptime == -1) {
        struct timespec t;
        clock_gettime(CLOCK_BOOTTIME, &t);
        s->uptime = (double)t.tv_sec + (double)t.tv_nsec / 1e9;
    } else {
        read_fd(sampler.uptime, 128);
        char *end;
        s->uptime = strtod(filebuf, &end);
        if (end == filebuf || (*end && *end != ' ' && *end != '\n')) s->uptime = 0.0;
    }
}

/* ---- encoding ---- */

static struct {
    const char *node, *key_id;
    long long boot;
    double interval;
} fixed;

static void put_counts(out_t *o, const char *const *keys, const unsigned long long *values,
                       int n, int limit) {
    for (int i = 0; i < n && i < limit; i++) {
        if (i) put(o, ",", 1);
        put_quoted(o, (const unsigned char *)keys[i], strlen(keys[i]));
        put(o, ":", 1);
        put_uint(o, values[i]);
    }
}

static size_t body(char *buf, size_t size, const sample_t *s, long long seq, double ts,
                   int core_places, const iface_t *const *net, int n_net, int meminfo_limit,
                   int keep_cores) {
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
    put_quoted(&o, (const unsigned char *)fixed.node, strlen(fixed.node));
    puts_(&o, ",\"boot\":");
    put_int(&o, fixed.boot);
    puts_(&o, ",\"seq\":");
    put_int(&o, seq);
    puts_(&o, ",\"ts\":");
    put_num(&o, ts, 3);
    puts_(&o, ",\"interval\":");
    put_num(&o, fixed.interval, 3);
    puts_(&o, ",\"cores\":[");
    for (int i = 0; keep_cores && i < s->n_cores && i < MAX_CORES; i++) {
        if (i) put(&o, ",", 1);
        put_num(&o, s->cores[i], core_places);
    }
    puts_(&o, "],\"disk\":{");
    static const char *const disk_keys[3] = {"total", "used", "free"};
    if (s->has_disk) put_counts(&o, disk_keys, s->disk, 3, 8);
    puts_(&o, "},\"net\":{");
    for (int i = 0; i < n_net; i++) {
        if (i) put(&o, ",", 1);
        put_quoted(&o, (const unsigned char *)net[i]->name, strlen(net[i]->name));
        put(&o, ":[", 2);
        put_uint(&o, net[i]->rx);
        put(&o, ",", 1);
        put_uint(&o, net[i]->tx);
        put(&o, "]", 1);
    }
    puts_(&o, "},\"uptime\":");
    put_num(&o, s->uptime, 1);
    put(&o, "}", 1);
    return o.full ? size + 1 : (size_t)(o.at - buf);
}

/* One signed datagram for S into OUT (at least MAX_DATAGRAM + 1 bytes); its length, or 0
   when it cannot fit. As wire.encode: shrink step by step until it fits. */
static size_t encode(char *out, const sample_t *s, long long seq, double ts) {
    static const int steps[5][4] = {
        {3, MAX_IFACES, 16, 1}, {2, MAX_IFACES, 16, 1}, {2, 2, 16, 1}, {2, 2, 16, 0}, {2, 0, 8, 0}};
    const iface_t *net[MAX_NET];
    int n_net = 0;
    for (int i = 0; i < s->n_net; i++) net[n_net++] = &s->net[i];
    if (n_net > MAX_IFACES) { /* many (virtual) interfaces: keep the ones that carry traffic */
        for (int i = 1; i < n_net; i++) { /* stable insertion sort, busiest first */
            const iface_t *item = net[i];
            unsigned long long traffic = item->rx + item->tx;
            int j = i;
            while (j > 0 && net[j - 1]->rx + net[j - 1]->tx < traffic) {
                net[j] = net[j - 1];
                j--;
            }
            net[j] = item;
        }
        n_net = MAX_IFACES;
    }
    size_t room = MAX_DATAGRAM - (strlen(SIG_SCHEME) + strlen(fixed.key_id) + 77);
    for (int step = 0; step < 5; step++) {
        int limit = steps[step][1] < n_net ? steps[step][1] : n_net;
        size_t n = body(out, room, s, seq, ts, steps[step][0], net, limit, steps[step][2],
                        steps[step][3]);
        if (n > room) continue;
        char hex[65];
        hmac_hex(out, n, hex);
        n--; /* the closing brace goes after the signature */
        n += (size_t)sprintf(out + n, ",\"sig\":\"%s:%s:%s\"}", SIG_SCHEME, fixed.key_id, hex);
        return n;
    }
    return 0;
}

/* ---- the send loop ---- */

typedef struct {
    char host[256];
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
    if (host_len == 0 || host_len >= sizeof t->host) fail("bad address: %s", host);
    memcpy(t->host, host, host_len);
    t->host[host_len] = 0;
    t->port = port;
    t->resolved = resolve(t);
    t->outage_since = -1;
    t->failed = 0;
    t->connected = 0;
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
    "[--proc DIR] [--cpufreq FILE] [--thermal FILE] [--disk PATH] [--stdout] [--seq N] [--ts T]";

static long long number(const char *flag, const char *text) {
    int ok;
    long long value = parse_int(text, &ok);
    if (!ok || value < 0) fail("%s must be a whole number", flag);
    return value;
}

int main(int argc, char **argv) {
    const char *node = NULL, *group = NULL, *interface = "", *proc = "/proc";
    const char *freq = CPUFREQ_PATH, *temp = THERMAL_PATH, *disk = "/";
    const char *unicast[MAX_TARGETS];
    int n_unicast = 0, port = -1, ttl = 1, key_fd = -1, to_stdout = 0, fixed_ts = 0;
    double interval = 0, ts_value = 0;
    long long count = 0, boot = 0, first_seq = -1;
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
        else if (!strcmp(flag, "--port")) port = (int)number(flag, value);
        else if (!strcmp(flag, "--interval")) interval = strtod(value, NULL);
        else if (!strcmp(flag, "--ttl")) ttl = (int)number(flag, value);
        else if (!strcmp(flag, "--interface")) interface = value;
        else if (!strcmp(flag, "--key-fd")) key_fd = (int)number(flag, value);
        else if (!strcmp(flag, "--count")) count = number(flag, value);
        else if (!strcmp(flag, "--boot")) boot = number(flag, value);
        else if (!strcmp(flag, "--proc")) proc = value;
        else if (!strcmp(flag, "--cpufreq")) freq = value;
        else if (!strcmp(flag, "--thermal")) temp = value;
        else if (!strcmp(flag, "--disk")) disk = value;
        else if (!strcmp(flag, "--seq")) first_seq = number(flag, value);
        else if (!strcmp(flag, "--ts")) {
            ts_value = strtod(value, NULL);
            fixed_ts = 1;
        } else if (!strcmp(flag, "--unicast") && n_unicast < MAX_TARGETS) unicast[n_unicast++] = value;
        else fail("bad argument: %s", flag);
    }
    if (!node || !group || port < 0 || port > 65535 || key_fd < 0) fail("%s", USAGE);
    if (!(interval > 0 && interval <= 3600)) fail("%s", "--interval must be within (0, 3600] seconds");
    if (!*node || strlen(node) > MAX_NAME || !put_quoted(&(out_t){NULL, NULL, 1}, (const unsigned char *)node, strlen(node)))
        fail("%s", "node name must be 1 to 63 printable characters");

    /* The key: "keyid:hex" through the pipe. */
    static char key_text[4097];
    ssize_t got = read(key_fd, key_text, sizeof key_text - 1);
    close(key_fd);
    if (got <= 0) fail("%s", "no telemetry key on --key-fd");
    key_text[got] = 0;
    while (got && (key_text[got - 1] == '\n' || key_text[got - 1] == ' ')) key_text[--got] = 0;
    char *colon = strchr(key_text, ':');
    if (!colon || colon == key_text || colon - key_text > MAX_KEY_ID) fail("%s", "bad telemetry key");
    *colon = 0;
    static uint8_t key[2048];
    size_t key_len = strlen(colon + 1) / 2;
    if (strlen(colon + 1) % 2 || key_len > sizeof key) fail("%s", "bad telemetry key");
    for (size_t i = 0; i < key_len; i++) {
        unsigned byte;
        if (sscanf(colon + 1 + 2 * i, "%2x", &byte) != 1) fail("%s", "bad telemetry key");
        key[i] = (uint8_t)byte;
    }
    for (const char *c = key_text; *c; c++)
        if (!(('a' <= *c && *c <= 'z') || ('A' <= *c && *c <= 'Z') || ('0' <= *c && *c <= '9') ||
              *c == '_' || *c == '.' || *c == '-'))
            fail("%s", "key id must be letters, digits, '_', '.', '-'");
    hmac_key(key, key_len);
    memset(key, 0, sizeof key);

    sampler_open(proc, freq, temp, disk);
    read_fd(sampler.stat, sizeof filebuf);
    fixed.node = node;
    fixed.key_id = key_text;
    fixed.boot = boot ? boot : parse_btime(filebuf);
    fixed.interval = interval;

    target_t targets[1 + MAX_TARGETS];
    int n_targets = 0;
    if (!to_stdout) {
        /* The group's own socket is connected once it resolves. Unicast targets share an
           unconnected one, so a target with no listener (an ICMP "port unreachable") does
           not make the next send fail. */
        target(&targets[n_targets], group, strlen(group), port);
        targets[n_targets++].fd = open_socket(ttl, interface);
        int shared = n_unicast ? open_socket(ttl, interface) : -1;
        for (int i = 0; i < n_unicast; i++) {
            const char *sep = strrchr(unicast[i], ':');
            if (!sep) fail("--unicast needs HOST:PORT, not %s", unicast[i]);
            long long to = number("--unicast port", sep + 1);
            if (to > 65535) fail("bad port in --unicast %s", unicast[i]);
            target(&targets[n_targets], unicast[i], (size_t)(sep - unicast[i]), (int)to);
            targets[n_targets++].fd = shared;
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
    long long last_seq = count ? seq + count : -1, sent = 0, failures = 0;
    double first = interval < 0.2 ? interval : 0.2;
    struct itimerval timer = {
        {(time_t)interval, (suseconds_t)((interval - (double)(time_t)interval) * 1e6)},
        {(time_t)first, (suseconds_t)((first - (double)(time_t)first) * 1e6)}};
    if (timer.it_value.tv_sec == 0 && timer.it_value.tv_usec == 0) timer.it_value.tv_usec = 1;
    setitimer(ITIMER_REAL, &timer, NULL);

    static sample_t s;
    static char datagram[MAX_DATAGRAM + 2];
    int signal_number;
    while (sigwait(&signals, &signal_number) == 0 && signal_number == SIGALRM) {
        seq++;
        sample(&s);
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        double ts = fixed_ts ? ts_value : (double)wall.tv_sec + (double)wall.tv_nsec / 1e9;
        size_t n = encode(datagram, &s, seq, ts);
        if (!n) {
            say("bramble agent: a sample did not fit in %d bytes; skipped", MAX_DATAGRAM);
        } else if (to_stdout) {
            datagram[n] = '\n';
            if (write(1, datagram, n + 1) != (ssize_t)(n + 1)) break;
        } else {
            /* Each destination's outage is told once when it starts and once when it ends. */
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
                    failures++;
                    if (t->outage_since < 0) {
                        t->outage_since = monotonic();
                        say("bramble agent: cannot send to %s:%d: %s (will keep trying)", t->host,
                            t->port, error);
                    }
                } else if (t->outage_since >= 0) {
                    say("bramble agent: sending to %s:%d again after %.1f s (%lld sends failed)",
                        t->host, t->port, monotonic() - t->outage_since, t->failed);
                    t->outage_since = -1;
                    t->failed = 0;
                }
            }
        }
        sent++;
        if (seq == last_seq) {
            /* --count: say what was done, as the Python agent does. */
            if (!to_stdout) {
                char line[400];
                int n = snprintf(line, sizeof line, "bramble agent: sent %lld datagrams as %s to %s:%d",
                                 sent, node, group, port);
                if (n_unicast && n > 0 && n < (int)sizeof line)
                    n += snprintf(line + n, sizeof line - (size_t)n, " and %d unicast target%s",
                                  n_unicast, n_unicast == 1 ? "" : "s");
                if (failures && n > 0 && n < (int)sizeof line)
                    n += snprintf(line + n, sizeof line - (size_t)n, " (%lld sends failed)", failures);
                if (n > 0 && n < (int)sizeof line - 1) {
                    line[n++] = '\n';
                    ssize_t ignored = write(1, line, (size_t)n);
                    (void)ignored;
                }
            }
            break;
        }
    }
    return 0;
}
