/* common/yaml.c — loads a YAML document with libyaml into a small tree whose
 * nodes remember their line and column, so every later error can point at the
 * exact place in the user's file. Aliases are resolved by libyaml; duplicate
 * mapping keys are rejected (YAML forbids them, libyaml does not check). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "common/hlab.h"

static void node_free(hlab_yaml_node *n) {
    if (!n) return;
    int count = n->kind == HLAB_YAML_MAP ? 2 * n->n : n->n;
    for (int i = 0; i < count; i++) node_free(n->items[i]);
    free(n->items);
    free(n->scalar);
    free(n);
}

void hlab_yaml_free(hlab_yaml_doc *doc) {
    if (!doc) return;
    node_free(doc->root);
    doc->root = NULL;
}

/* Converts libyaml node `id`; depth guards against pathological nesting. */
static hlab_yaml_node *convert(const char *name, yaml_document_t *d, int id, int depth, hlab_err *err) {
    yaml_node_t *y = yaml_document_get_node(d, id);
    if (!y) {
        hlab_fail(err, HLAB_EPARSE, "%s: malformed YAML document", name);
        return NULL;
    }
    int line = (int)y->start_mark.line + 1, col = (int)y->start_mark.column + 1;
    if (depth > 64) {
        hlab_fail(err, HLAB_EPARSE, "%s:%d:%d: nesting deeper than 64 levels", name, line, col);
        return NULL;
    }
    hlab_yaml_node *n = calloc(1, sizeof *n);
    if (!n) {
        hlab_fail(err, HLAB_ENOMEM, "%s: out of memory", name);
        return NULL;
    }
    n->line = line;
    n->col = col;
    if (y->type == YAML_SCALAR_NODE) {
        n->kind = HLAB_YAML_SCALAR;
        n->scalar = malloc(y->data.scalar.length + 1);
        if (!n->scalar) goto oom;
        memcpy(n->scalar, y->data.scalar.value, y->data.scalar.length);
        n->scalar[y->data.scalar.length] = 0;
        n->quoted = y->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                    y->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        return n;
    }
    if (y->type == YAML_SEQUENCE_NODE) {
        n->kind = HLAB_YAML_SEQ;
        int count = (int)(y->data.sequence.items.top - y->data.sequence.items.start);
        n->items = calloc((size_t)count + 1, sizeof *n->items);
        if (!n->items) goto oom;
        for (int i = 0; i < count; i++) {
            n->items[i] = convert(name, d, y->data.sequence.items.start[i], depth + 1, err);
            if (!n->items[i]) goto fail;
            n->n = i + 1;
        }
        return n;
    }
    n->kind = HLAB_YAML_MAP;
    int count = (int)(y->data.mapping.pairs.top - y->data.mapping.pairs.start);
    n->items = calloc(2 * (size_t)count + 1, sizeof *n->items);
    if (!n->items) goto oom;
    for (int i = 0; i < count; i++) {
        yaml_node_pair_t *p = &y->data.mapping.pairs.start[i];
        hlab_yaml_node *k = convert(name, d, p->key, depth + 1, err);
        if (!k) goto fail;
        hlab_yaml_node *v = convert(name, d, p->value, depth + 1, err);
        if (!v) {
            node_free(k);
            goto fail;
        }
        n->items[2 * i] = k;
        n->items[2 * i + 1] = v;
        n->n = i + 1;
        if (k->kind != HLAB_YAML_SCALAR) {
            hlab_fail(err, HLAB_EPARSE, "%s:%d:%d: expected a plain key, found a %s", name, k->line, k->col,
                      k->kind == HLAB_YAML_MAP ? "mapping" : "sequence");
            goto fail;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(n->items[2 * j]->scalar, k->scalar)) {
                hlab_fail(err, HLAB_EPARSE, "%s:%d:%d: duplicate key '%s' (first given at line %d)", name,
                          k->line, k->col, k->scalar, n->items[2 * j]->line);
                goto fail;
            }
    }
    return n;
oom:
    hlab_fail(err, HLAB_ENOMEM, "%s: out of memory", name);
fail:
    node_free(n);
    return NULL;
}

static int load(const char *name, yaml_parser_t *parser, hlab_yaml_doc *doc, hlab_err *err) {
    yaml_document_t d;
    if (!yaml_parser_load(parser, &d)) {
        const char *ctx = parser->context ? parser->context : "";
        return hlab_fail(err, HLAB_EPARSE, "%s:%d:%d: %s%s%s", name, (int)parser->problem_mark.line + 1,
                         (int)parser->problem_mark.column + 1, parser->problem ? parser->problem : "invalid YAML",
                         *ctx ? " " : "", ctx);
    }
    yaml_node_t *root = yaml_document_get_root_node(&d);
    int rc = HLAB_OK;
    if (!root) {
        rc = hlab_fail(err, HLAB_EPARSE, "%s:1:1: the file is empty; expected a YAML mapping", name);
    } else {
        doc->root = convert(name, &d, 1, 0, err);
        if (!doc->root) rc = err ? err->code : HLAB_EPARSE;
    }
    yaml_document_delete(&d);
    return rc;
}

int hlab_yaml_load(const char *path, hlab_yaml_doc *doc, hlab_err *err) {
    memset(doc, 0, sizeof *doc);
    snprintf(doc->path, sizeof doc->path, "%s", path);
    FILE *f = fopen(path, "rb");
    if (!f) return hlab_fail(err, HLAB_EIO, "%s: cannot open (%s)", path, strerror(errno));
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return hlab_fail(err, HLAB_ENOMEM, "%s: cannot start the YAML parser", path);
    }
    yaml_parser_set_input_file(&parser, f);
    int rc = load(path, &parser, doc, err);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

int hlab_yaml_load_string(const char *name, const char *text, hlab_yaml_doc *doc, hlab_err *err) {
    memset(doc, 0, sizeof *doc);
    snprintf(doc->path, sizeof doc->path, "%s", name);
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return hlab_fail(err, HLAB_ENOMEM, "%s: cannot start the YAML parser", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    int rc = load(name, &parser, doc, err);
    yaml_parser_delete(&parser);
    return rc;
}

const hlab_yaml_node *hlab_yaml_get(const hlab_yaml_node *map, const char *key) {
    if (!map || map->kind != HLAB_YAML_MAP) return NULL;
    for (int i = 0; i < map->n; i++)
        if (!strcmp(map->items[2 * i]->scalar, key)) return map->items[2 * i + 1];
    return NULL;
}

int hlab_yaml_fail(const hlab_yaml_doc *doc, const hlab_yaml_node *node, hlab_err *err, const char *fmt, ...) {
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    int line = node ? node->line : 1, col = node ? node->col : 1;
    return hlab_fail(err, HLAB_EPARSE, "%s:%d:%d: %s", doc ? doc->path : "<yaml>", line, col, what);
}

static const char *kind_name(const hlab_yaml_node *n) {
    return n->kind == HLAB_YAML_MAP ? "a mapping" : n->kind == HLAB_YAML_SEQ ? "a list" : "a scalar";
}

int hlab_yaml_int(const hlab_yaml_doc *doc, const hlab_yaml_node *n, long long *out, hlab_err *err) {
    if (n->kind != HLAB_YAML_SCALAR) return hlab_yaml_fail(doc, n, err, "expected an integer, found %s", kind_name(n));
    char *end;
    errno = 0;
    long long v = strtoll(n->scalar, &end, 10);
    if (*end) { /* also accept 25e6-style integers written as floats, when exact */
        double d = strtod(n->scalar, &end);
        if (!*end && n->scalar[0] && d == (double)(long long)d && d > -9e18 && d < 9e18) {
            *out = (long long)d;
            return HLAB_OK;
        }
    }
    if (n->quoted || !n->scalar[0] || *end || errno)
        return hlab_yaml_fail(doc, n, err, "expected an integer, got '%s'", n->scalar);
    *out = v;
    return HLAB_OK;
}

int hlab_yaml_double(const hlab_yaml_doc *doc, const hlab_yaml_node *n, double *out, hlab_err *err) {
    if (n->kind != HLAB_YAML_SCALAR) return hlab_yaml_fail(doc, n, err, "expected a number, found %s", kind_name(n));
    char *end;
    errno = 0;
    double v = strtod(n->scalar, &end);
    if (n->quoted || !n->scalar[0] || *end || errno)
        return hlab_yaml_fail(doc, n, err, "expected a number, got '%s'", n->scalar);
    *out = v;
    return HLAB_OK;
}

int hlab_yaml_bool(const hlab_yaml_doc *doc, const hlab_yaml_node *n, int *out, hlab_err *err) {
    if (n->kind == HLAB_YAML_SCALAR && !n->quoted) {
        const char *s = n->scalar;
        if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on") || !strcmp(s, "1")) {
            *out = 1;
            return HLAB_OK;
        }
        if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off") || !strcmp(s, "0")) {
            *out = 0;
            return HLAB_OK;
        }
    }
    return hlab_yaml_fail(doc, n, err, "expected true or false, got %s",
                          n->kind == HLAB_YAML_SCALAR ? n->scalar : kind_name(n));
}

static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
            int best = diag + cost;
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *hlab_did_you_mean(const char *word, const char *const *candidates) {
    const char *best = NULL;
    int best_d = 4;
    for (; candidates && *candidates; candidates++) {
        int d = edit_distance(word, *candidates);
        if (d < best_d) {
            best_d = d;
            best = *candidates;
        }
    }
    return best;
}
