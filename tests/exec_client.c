/* A ggspec exec-protocol client in C: answers the codec suite with libggml's to_float and
 * ggml_quantize_chunk, and the gguf suite with ggml's gguf_init_from_file.
 *
 *   cc -O1 -o exec_client exec_client.c -ldl
 *   ggspec conform --exec "./exec_client /path/to/libggml-base.so" --suite codec,gguf
 *
 * Requests come one per line on stdin; their fields are flat and written by ggspec, so a few
 * string searches read them (a real client would use a JSON library). */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef void (*to_float_t)(const void *, float *, int64_t);
typedef void (*from_float_t)(const float *, void *, int64_t);
struct traits { const char *name; int64_t blck, blck_interleave; size_t size; bool quantized;
                to_float_t to_float; from_float_t from_float_ref; };      /* struct ggml_type_traits */
struct gguf_params { bool no_alloc; void **ctx; };                       /* struct gguf_init_params */
struct tensor_head { int type; void *buffer; int64_t ne[4]; };           /* start of struct ggml_tensor */

static const struct traits *(*get_traits)(int);
static size_t (*quantize_chunk)(int, const float *, void *, int64_t, int64_t, int64_t, const float *);
static to_float_t deq_q8_K; static from_float_t q_q8_K;
static void *(*g_init)(const char *, struct gguf_params);
static void (*g_free)(void *), (*ggml_free)(void *);
static void *(*get_tensor)(void *, const char *);
static int64_t (*g_n_kv)(void *), (*g_n_tensors)(void *);
static const char *(*g_key)(void *, int64_t), *(*g_val_str)(void *, int64_t);
static const char *(*g_arr_str)(void *, int64_t, size_t), *(*g_tensor_name)(void *, int64_t);
static int (*g_kv_type)(void *, int64_t), (*g_arr_type)(void *, int64_t), (*g_tensor_type)(void *, int64_t);
static size_t (*g_arr_n)(void *, int64_t), (*g_tensor_offset)(void *, int64_t);
static size_t (*g_alignment)(void *), (*g_data_offset)(void *);
static uint32_t (*g_version)(void *);
static const void *(*g_arr_data)(void *, int64_t), *(*g_val_data)(void *, int64_t);

enum { Q8_1 = 9, Q8_K = 15, NTYPES = 43 };
static const char *VT[] = {"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL",
                           "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};
static const int VSIZE[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* the string value of "key" (a fresh copy), or NULL */
static char *jstr(const char *line, const char *key) {
    char pat[64]; snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = strstr(line, pat);
    if (!p) return NULL;
    p += strlen(pat);
    const char *e = strchr(p, '"');
    char *s = malloc(e - p + 1); memcpy(s, p, e - p); s[e - p] = 0;
    return s;
}
static long long jint(const char *line, const char *key) {
    char pat[64]; snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(line, pat);
    return p ? atoll(p + strlen(pat)) : -1;
}
static void *unhex(const char *h, size_t *n) {
    size_t len = strlen(h) / 2; unsigned char *b = malloc(len + 1);
    for (size_t i = 0; i < len; i++) sscanf(h + 2 * i, "%2hhx", &b[i]);
    if (n) *n = len;
    return b;
}
static void puthex(const void *p, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%02x", ((const unsigned char *)p)[i]);
}
static void putstr(const char *s) {           /* a JSON string */
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}
static int type_id(const char *name) {
    for (int i = 0; i < NTYPES; i++) {
        const struct traits *t = get_traits(i);
        if (t->name && t->blck && !strcasecmp(t->name, name)) return i;
    }
    return -1;
}
static bool can_deq(int i) { return get_traits(i)->to_float || i == Q8_K; }
static bool can_q(int i) { return get_traits(i)->quantized || i == 0 || i == 1 || i == 30; } /* F32 F16 BF16 */

static void hello(void) {
    printf("{\"hello\": \"ggspec-exec/1\", \"name\": \"c-client\", \"supports\": [[\"gguf\", \"*\", \"*\"]");
    for (int i = 0; i < NTYPES; i++) {
        const struct traits *t = get_traits(i);
        if (!t->name || !t->blck) continue;
        char up[32]; size_t k = 0;
        for (; t->name[k] && k < 31; k++) up[k] = (t->name[k] >= 'a' && t->name[k] <= 'z') ? t->name[k] - 32 : t->name[k];
        up[k] = 0;
        if (can_deq(i)) printf(", [\"codec\", \"dequantize\", \"%s\"]", up);
        if (can_q(i)) printf(", [\"codec\", \"quantize\", \"%s\"]", up);
        if (can_q(i) && i != Q8_1 && i != Q8_K) printf(", [\"codec\", \"quantize+imatrix\", \"%s\"]", up);
    }
    printf("]}\n");
}

static void scalar(int vt, const unsigned char *p) {
    switch (vt) {
    case 0: printf("%u", *p); break;             case 1: printf("%d", *(const int8_t *)p); break;
    case 2: printf("%u", *(const uint16_t *)p); break; case 3: printf("%d", *(const int16_t *)p); break;
    case 4: printf("%u", *(const uint32_t *)p); break; case 5: printf("%d", *(const int32_t *)p); break;
    case 7: printf(*p ? "true" : "false"); break;
    case 10: printf("\"%llu\"", (unsigned long long)*(const uint64_t *)p); break;
    case 11: printf("\"%lld\"", (long long)*(const int64_t *)p); break;
    default: putchar('"'); puthex(p, VSIZE[vt]); putchar('"');   /* FLOAT32, FLOAT64: the bits */
    }
}

static void gguf(long long id, const char *path) {
    void *mem = NULL;
    void *g = g_init(path, (struct gguf_params){false, &mem});
    if (!g) { printf("{\"id\": %lld, \"reject\": \"gguf_init_from_file failed\"}\n", id); return; }
    printf("{\"id\": %lld, \"result\": {\"version\": %u, \"alignment\": %zu, \"data_offset\": %zu, \"kv\": [",
           id, g_version(g), g_alignment(g), g_data_offset(g));
    for (int64_t i = 0; i < g_n_kv(g); i++) {
        int vt = g_kv_type(g, i);
        printf("%s{\"key\": ", i ? ", " : ""); putstr(g_key(g, i));
        printf(", \"type\": \"%s\", ", VT[vt]);
        if (vt == 8) { printf("\"value\": "); putstr(g_val_str(g, i)); }
        else if (vt != 9) { printf("\"value\": "); scalar(vt, g_val_data(g, i)); }
        else {
            int st = g_arr_type(g, i);
            printf("\"item_type\": \"%s\", \"value\": [", VT[st]);
            for (size_t j = 0; j < g_arr_n(g, i); j++) {
                if (j) printf(", ");
                if (st == 8) putstr(g_arr_str(g, i, j));
                else scalar(st, (const unsigned char *)g_arr_data(g, i) + j * VSIZE[st]);
            }
            printf("]");
        }
        printf("}");
    }
    printf("], \"tensors\": [");
    for (int64_t i = 0; i < g_n_tensors(g); i++) {
        const struct tensor_head *t = get_tensor(mem, g_tensor_name(g, i));
        printf("%s{\"name\": ", i ? ", " : ""); putstr(g_tensor_name(g, i));
        printf(", \"type\": %d, \"ne\": [%lld, %lld, %lld, %lld], \"offset\": %zu}", g_tensor_type(g, i),
               (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
               g_tensor_offset(g, i));
    }
    printf("]}}\n");
    g_free(g);
    if (mem) ggml_free(mem);
}

static void codec(long long id, const char *line, const char *op) {
    char *tn = jstr(line, "type");
    int t = type_id(tn);
    const struct traits *tr = get_traits(t);
    if (!strcmp(op, "dequantize")) {
        int64_t n = jint(line, "n");
        char *h = jstr(line, "input_hex"); void *raw = unhex(h, NULL);
        float *y = malloc(n * sizeof(float) + 1);
        (t == Q8_K ? deq_q8_K : tr->to_float)(raw, y, n);
        printf("{\"id\": %lld, \"f32_hex\": \"", id); puthex(y, n * sizeof(float)); printf("\"}\n");
        free(h); free(raw); free(y);
    } else {
        int64_t rows = jint(line, "rows"), k = jint(line, "n_per_row");
        char *h = jstr(line, "input_f32_hex"), *ih = jstr(line, "imatrix_f32_hex");
        float *x = unhex(h, NULL), *im = ih ? unhex(ih, NULL) : NULL;
        size_t nb = rows * k / tr->blck * tr->size;
        void *out = calloc(nb + 1, 1);
        if (t == Q8_1) tr->from_float_ref(x, out, rows * k);
        else if (t == Q8_K) q_q8_K(x, out, rows * k);
        else quantize_chunk(t, x, out, 0, rows, k, im);
        printf("{\"id\": %lld, \"hex\": \"", id); puthex(out, nb); printf("\"}\n");
        free(h); free(ih); free(x); free(im); free(out);
    }
    free(tn);
}

#define SYM(var, name) *(void **)&var = dlsym(lib, name)
int main(int argc, char **argv) {
    void *lib = dlopen(argc > 1 ? argv[1] : "libggml-base.so", RTLD_NOW);
    if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    SYM(get_traits, "ggml_get_type_traits"); SYM(quantize_chunk, "ggml_quantize_chunk");
    SYM(deq_q8_K, "dequantize_row_q8_K"); SYM(q_q8_K, "quantize_row_q8_K_ref");
    SYM(g_init, "gguf_init_from_file"); SYM(g_free, "gguf_free"); SYM(ggml_free, "ggml_free");
    SYM(get_tensor, "ggml_get_tensor"); SYM(g_n_kv, "gguf_get_n_kv"); SYM(g_key, "gguf_get_key");
    SYM(g_kv_type, "gguf_get_kv_type"); SYM(g_arr_type, "gguf_get_arr_type"); SYM(g_arr_n, "gguf_get_arr_n");
    SYM(g_arr_data, "gguf_get_arr_data"); SYM(g_arr_str, "gguf_get_arr_str"); SYM(g_val_str, "gguf_get_val_str");
    SYM(g_val_data, "gguf_get_val_data"); SYM(g_n_tensors, "gguf_get_n_tensors");
    SYM(g_tensor_name, "gguf_get_tensor_name"); SYM(g_tensor_type, "gguf_get_tensor_type");
    SYM(g_tensor_offset, "gguf_get_tensor_offset"); SYM(g_alignment, "gguf_get_alignment");
    SYM(g_data_offset, "gguf_get_data_offset"); SYM(g_version, "gguf_get_version");
    hello();
    fflush(stdout);
    char *line = NULL; size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        long long id = jint(line, "id");
        char *suite = jstr(line, "suite"), *op = jstr(line, "op");
        if (suite && !strcmp(suite, "gguf")) { char *p = jstr(line, "path"); gguf(id, p); free(p); }
        else if (suite && !strcmp(suite, "codec")) codec(id, line, op);
        else printf("{\"id\": %lld, \"error\": \"unsupported\"}\n", id);
        fflush(stdout);
        free(suite); free(op);
    }
    return 0;
}
