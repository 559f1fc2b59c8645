/* search/expr.c — the constraint language of study files: a hand-written
 * tokenizer, a recursive-descent parser into a small tree, and an evaluator.
 * Grammar: search/search.h. Evaluated here, never by a shell.
 * Conventions: columns are 1-based byte offsets into the expression text;
 * every node remembers its column so evaluation errors can point at it.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/search.h"

typedef enum { T_END, T_NUM, T_STR, T_IDENT, T_OP, T_LPAREN, T_RPAREN, T_LBRACK, T_RBRACK, T_COMMA } tok_kind;

typedef struct {
    tok_kind kind;
    int col;
    char text[256]; /* IDENT/STR/OP text */
    double num;
} token;

typedef enum { E_NUM, E_STR, E_BOOL, E_FIELD, E_NEG, E_NOT, E_AND, E_OR, E_CMP, E_IN } node_kind;
typedef enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE } cmp_op;

struct hlab_expr {
    node_kind kind;
    int col;
    cmp_op op;
    double num;
    char *str;            /* STR literal or FIELD name */
    hlab_expr *a, *b;     /* operands */
    hlab_expr **list;     /* IN: candidates */
    int n_list;
};

typedef struct {
    const char *text;
    size_t pos;
    token tok;            /* current token */
    const char *const *known;
    hlab_err *err;
    int err_col;
} parser;

static int fail_at(parser *p, int col, const char *fmt, const char *arg) {
    if (p->err_col) return HLAB_EPARSE; /* keep the first error */
    p->err_col = col;
    char what[512];
    snprintf(what, sizeof what, fmt, arg);
    return hlab_fail(p->err, HLAB_EPARSE, "column %d: %s", col, what);
}

static const char *tok_desc(const token *t) {
    switch (t->kind) {
    case T_END: return "the end of the expression";
    case T_LPAREN: return "'('";
    case T_RPAREN: return "')'";
    case T_LBRACK: return "'['";
    case T_RBRACK: return "']'";
    case T_COMMA: return "','";
    default: return t->text;
    }
}

static int next(parser *p) {
    const char *s = p->text;
    while (s[p->pos] == ' ' || s[p->pos] == '\t') p->pos++;
    token *t = &p->tok;
    memset(t, 0, sizeof *t);
    t->col = (int)p->pos + 1;
    char c = s[p->pos];
    if (!c) {
        t->kind = T_END;
        return HLAB_OK;
    }
    if (isdigit((unsigned char)c) || (c == '.' && isdigit((unsigned char)s[p->pos + 1]))) {
        char *end;
        t->num = strtod(s + p->pos, &end);
        size_t n = (size_t)(end - (s + p->pos));
        snprintf(t->text, sizeof t->text, "%.*s", (int)n, s + p->pos);
        p->pos += n;
        if (isalpha((unsigned char)s[p->pos]) || s[p->pos] == '_')
            return fail_at(p, t->col, "malformed number '%s'", t->text);
        t->kind = T_NUM;
        return HLAB_OK;
    }
    if (c == '\'' || c == '"') {
        size_t i = p->pos + 1, n = 0;
        while (s[i] && s[i] != c) {
            if (n + 1 < sizeof t->text) t->text[n++] = s[i];
            i++;
        }
        if (!s[i]) return fail_at(p, t->col, "unterminated string: expected a closing %s", c == '\'' ? "'" : "\"");
        t->text[n] = 0;
        p->pos = i + 1;
        t->kind = T_STR;
        return HLAB_OK;
    }
    if (isalpha((unsigned char)c) || c == '_') {
        size_t i = p->pos, n = 0;
        while (isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.') {
            if (n + 1 < sizeof t->text) t->text[n++] = s[i];
            i++;
        }
        t->text[n] = 0;
        p->pos = i;
        t->kind = T_IDENT;
        return HLAB_OK;
    }
    static const char *const ops[] = {"==", "!=", "<=", ">=", "<", ">", "-", NULL};
    for (int i = 0; ops[i]; i++) {
        size_t n = strlen(ops[i]);
        if (!strncmp(s + p->pos, ops[i], n)) {
            snprintf(t->text, sizeof t->text, "%s", ops[i]);
            p->pos += n;
            t->kind = T_OP;
            return HLAB_OK;
        }
    }
    p->pos++;
    switch (c) {
    case '(': t->kind = T_LPAREN; return HLAB_OK;
    case ')': t->kind = T_RPAREN; return HLAB_OK;
    case '[': t->kind = T_LBRACK; return HLAB_OK;
    case ']': t->kind = T_RBRACK; return HLAB_OK;
    case ',': t->kind = T_COMMA; return HLAB_OK;
    case '=': return fail_at(p, t->col, "unexpected '=': did you mean '=='%s?", "");
    default: {
        char ch[2] = {c, 0};
        return fail_at(p, t->col, "unexpected character '%s'", ch);
    }
    }
}

static hlab_expr *new_node(node_kind k, int col) {
    hlab_expr *e = calloc(1, sizeof *e);
    if (e) {
        e->kind = k;
        e->col = col;
    }
    return e;
}

void hlab_expr_free(hlab_expr *e) {
    if (!e) return;
    hlab_expr_free(e->a);
    hlab_expr_free(e->b);
    for (int i = 0; i < e->n_list; i++) hlab_expr_free(e->list[i]);
    free(e->list);
    free(e->str);
    free(e);
}

/* Hands e to the caller after moving past its last token; on a tokenizer
 * error e is freed here, so callers never own a node on failure. */
static int take(parser *p, hlab_expr *e, hlab_expr **out) {
    int rc = next(p);
    if (rc) {
        hlab_expr_free(e);
        *out = NULL;
        return rc;
    }
    *out = e;
    return HLAB_OK;
}

static int is_kw(const token *t, const char *kw) { return t->kind == T_IDENT && !strcmp(t->text, kw); }

static int parse_or(parser *p, hlab_expr **out);

static int oom(parser *p) { return hlab_fail(p->err, HLAB_ENOMEM, "out of memory parsing a constraint"); }

static int parse_value(parser *p, hlab_expr **out) {
    token t = p->tok;
    hlab_expr *e = NULL;
    int rc;
    if (t.kind == T_LPAREN) {
        if ((rc = next(p)) || (rc = parse_or(p, &e))) return rc;
        if (p->tok.kind != T_RPAREN) {
            hlab_expr_free(e);
            return fail_at(p, p->tok.col, "expected ')' to close the '(', found %s", tok_desc(&p->tok));
        }
        return take(p, e, out);
    }
    if (t.kind == T_OP && !strcmp(t.text, "-")) {
        if ((rc = next(p)) || (rc = parse_value(p, &e))) return rc;
        hlab_expr *n = new_node(E_NEG, t.col);
        if (!n) return hlab_expr_free(e), oom(p);
        n->a = e;
        *out = n;
        return HLAB_OK;
    }
    if (t.kind == T_NUM) {
        if (!(e = new_node(E_NUM, t.col))) return oom(p);
        e->num = t.num;
    } else if (t.kind == T_STR) {
        if (!(e = new_node(E_STR, t.col)) || !(e->str = strdup(t.text))) return hlab_expr_free(e), oom(p);
    } else if (is_kw(&t, "true") || is_kw(&t, "false")) {
        if (!(e = new_node(E_BOOL, t.col))) return oom(p);
        e->num = is_kw(&t, "true");
    } else if (t.kind == T_IDENT && !is_kw(&t, "and") && !is_kw(&t, "or") && !is_kw(&t, "not") && !is_kw(&t, "in")) {
        if (p->known) {
            int found = 0;
            for (int i = 0; p->known[i] && !found; i++) found = !strcmp(p->known[i], t.text);
            if (!found) {
                const char *near = hlab_did_you_mean(t.text, p->known);
                char what[512];
                if (near) snprintf(what, sizeof what, "unknown field '%s' (did you mean '%s'?)", t.text, near);
                else snprintf(what, sizeof what, "unknown field '%s' (expected a dotted key such as model.ratio)", t.text);
                return fail_at(p, t.col, "%s", what);
            }
        }
        if (!(e = new_node(E_FIELD, t.col)) || !(e->str = strdup(t.text))) return hlab_expr_free(e), oom(p);
    } else {
        return fail_at(p, t.col, "expected a value (number, 'string', field or '('), found %s", tok_desc(&t));
    }
    return take(p, e, out);
}

static int parse_cmp(parser *p, hlab_expr **out) {
    hlab_expr *lhs = NULL;
    int rc = parse_value(p, &lhs);
    if (rc) return rc;
    token t = p->tok;
    static const char *const names[] = {"==", "!=", "<", "<=", ">", ">="};
    if (t.kind == T_OP && strcmp(t.text, "-")) {
        hlab_expr *e = new_node(E_CMP, t.col);
        if (!e) return hlab_expr_free(lhs), oom(p);
        for (int i = 0; i < 6; i++)
            if (!strcmp(t.text, names[i])) e->op = (cmp_op)i;
        e->a = lhs;
        if ((rc = next(p)) || (rc = parse_value(p, &e->b))) return hlab_expr_free(e), rc;
        *out = e;
        return HLAB_OK;
    }
    if (is_kw(&t, "in")) {
        hlab_expr *e = new_node(E_IN, t.col);
        if (!e) return hlab_expr_free(lhs), oom(p);
        e->a = lhs;
        if ((rc = next(p))) return hlab_expr_free(e), rc;
        if (p->tok.kind != T_LBRACK) {
            hlab_expr_free(e);
            return fail_at(p, p->tok.col, "expected '[' after 'in', found %s", tok_desc(&p->tok));
        }
        if ((rc = next(p))) return hlab_expr_free(e), rc;
        for (;;) {
            hlab_expr *v = NULL;
            if ((rc = parse_value(p, &v))) return hlab_expr_free(e), rc;
            hlab_expr **grown = realloc(e->list, (size_t)(e->n_list + 1) * sizeof *grown);
            if (!grown) return hlab_expr_free(v), hlab_expr_free(e), oom(p);
            e->list = grown;
            e->list[e->n_list++] = v;
            if (p->tok.kind == T_COMMA) {
                if ((rc = next(p))) return hlab_expr_free(e), rc;
                continue;
            }
            if (p->tok.kind == T_RBRACK) break;
            hlab_expr_free(e);
            return fail_at(p, p->tok.col, "expected ',' or ']' in the list after 'in', found %s", tok_desc(&p->tok));
        }
        return take(p, e, out);
    }
    *out = lhs;
    return HLAB_OK;
}

static int parse_not(parser *p, hlab_expr **out) {
    if (is_kw(&p->tok, "not")) {
        int col = p->tok.col, rc;
        hlab_expr *e = new_node(E_NOT, col);
        if (!e) return oom(p);
        if ((rc = next(p)) || (rc = parse_not(p, &e->a))) return hlab_expr_free(e), rc;
        *out = e;
        return HLAB_OK;
    }
    return parse_cmp(p, out);
}

static int parse_binary(parser *p, hlab_expr **out, const char *kw, node_kind kind,
                        int (*sub)(parser *, hlab_expr **)) {
    hlab_expr *lhs = NULL;
    int rc = sub(p, &lhs);
    if (rc) return rc;
    while (is_kw(&p->tok, kw)) {
        hlab_expr *e = new_node(kind, p->tok.col);
        if (!e) return hlab_expr_free(lhs), oom(p);
        e->a = lhs;
        lhs = e;
        if ((rc = next(p)) || (rc = sub(p, &e->b))) return hlab_expr_free(lhs), rc;
    }
    *out = lhs;
    return HLAB_OK;
}
static int parse_and(parser *p, hlab_expr **out) { return parse_binary(p, out, "and", E_AND, parse_not); }
static int parse_or(parser *p, hlab_expr **out) { return parse_binary(p, out, "or", E_OR, parse_and); }

int hlab_expr_parse(const char *text, const char *const *known, hlab_expr **out, int *err_col, hlab_err *err) {
    parser p = {.text = text, .known = known, .err = err};
    hlab_expr *e = NULL;
    *out = NULL;
    int rc = next(&p);
    if (!rc && p.tok.kind == T_END) rc = fail_at(&p, p.tok.col, "%s", "expected an expression, found nothing");
    if (!rc) rc = parse_or(&p, &e);
    if (!rc && p.tok.kind != T_END)
        rc = fail_at(&p, p.tok.col, "expected 'and', 'or' or the end of the expression, found %s", tok_desc(&p.tok));
    if (rc) {
        hlab_expr_free(e);
        if (err_col) *err_col = p.err_col;
        return rc;
    }
    *out = e;
    return HLAB_OK;
}

/* ---- evaluation -------------------------------------------------------------- */
static int truthy(const hlab_value *v) {
    if (v->kind == HLAB_VAL_STR) return v->str[0] != 0;
    return v->num != 0;
}

static const char *kind_name(hlab_val_kind k) {
    return k == HLAB_VAL_NUM ? "a number" : k == HLAB_VAL_STR ? "a string" : "a boolean";
}

static int eval(const hlab_expr *e, hlab_expr_lookup lookup, void *user, hlab_value *out, hlab_err *err);

static int compare(const hlab_expr *at, cmp_op op, const hlab_value *a, const hlab_value *b, int *res, hlab_err *err) {
    int c;
    if (a->kind == HLAB_VAL_STR && b->kind == HLAB_VAL_STR) {
        c = strcmp(a->str, b->str);
    } else if (a->kind != HLAB_VAL_STR && b->kind != HLAB_VAL_STR) {
        c = a->num < b->num ? -1 : a->num > b->num ? 1 : 0;
    } else {
        if (op == OP_EQ || op == OP_NE) {
            *res = op == OP_NE;
            return HLAB_OK;
        }
        return hlab_fail(err, HLAB_EINVAL, "column %d: cannot order %s and %s", at->col, kind_name(a->kind),
                         kind_name(b->kind));
    }
    switch (op) {
    case OP_EQ: *res = c == 0; break;
    case OP_NE: *res = c != 0; break;
    case OP_LT: *res = c < 0; break;
    case OP_LE: *res = c <= 0; break;
    case OP_GT: *res = c > 0; break;
    case OP_GE: *res = c >= 0; break;
    }
    return HLAB_OK;
}

static int eval(const hlab_expr *e, hlab_expr_lookup lookup, void *user, hlab_value *out, hlab_err *err) {
    hlab_value a, b;
    int rc, r = 0;
    memset(out, 0, sizeof *out);
    switch (e->kind) {
    case E_NUM: out->kind = HLAB_VAL_NUM, out->num = e->num; return HLAB_OK;
    case E_BOOL: out->kind = HLAB_VAL_BOOL, out->num = e->num; return HLAB_OK;
    case E_STR:
        out->kind = HLAB_VAL_STR;
        snprintf(out->str, sizeof out->str, "%s", e->str);
        return HLAB_OK;
    case E_FIELD:
        if ((rc = lookup(user, e->str, out, err))) return hlab_err_prefix(err, "column %d", e->col);
        return HLAB_OK;
    case E_NEG:
        if ((rc = eval(e->a, lookup, user, &a, err))) return rc;
        if (a.kind != HLAB_VAL_NUM)
            return hlab_fail(err, HLAB_EINVAL, "column %d: '-' expects a number, got %s", e->col, kind_name(a.kind));
        out->kind = HLAB_VAL_NUM, out->num = -a.num;
        return HLAB_OK;
    case E_NOT:
        if ((rc = eval(e->a, lookup, user, &a, err))) return rc;
        out->kind = HLAB_VAL_BOOL, out->num = !truthy(&a);
        return HLAB_OK;
    case E_AND:
    case E_OR:
        if ((rc = eval(e->a, lookup, user, &a, err))) return rc;
        out->kind = HLAB_VAL_BOOL;
        if (truthy(&a) == (e->kind == E_OR)) {
            out->num = e->kind == E_OR;
            return HLAB_OK;
        }
        if ((rc = eval(e->b, lookup, user, &b, err))) return rc;
        out->num = truthy(&b);
        return HLAB_OK;
    case E_CMP:
        if ((rc = eval(e->a, lookup, user, &a, err)) || (rc = eval(e->b, lookup, user, &b, err))) return rc;
        if ((rc = compare(e, e->op, &a, &b, &r, err))) return rc;
        out->kind = HLAB_VAL_BOOL, out->num = r;
        return HLAB_OK;
    case E_IN:
        if ((rc = eval(e->a, lookup, user, &a, err))) return rc;
        out->kind = HLAB_VAL_BOOL;
        for (int i = 0; i < e->n_list && !r; i++) {
            if ((rc = eval(e->list[i], lookup, user, &b, err)) || (rc = compare(e, OP_EQ, &a, &b, &r, err))) return rc;
        }
        out->num = r;
        return HLAB_OK;
    }
    return hlab_fail(err, HLAB_EINVAL, "column %d: bad expression node", e->col);
}

int hlab_expr_eval(const hlab_expr *e, hlab_expr_lookup lookup, void *user, int *result, hlab_err *err) {
    hlab_value v;
    int rc = eval(e, lookup, user, &v, err);
    if (rc) return rc;
    *result = truthy(&v);
    return HLAB_OK;
}
