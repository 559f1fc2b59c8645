/* tests/common/test_common.c — the shared helpers: YAML positions and errors,
 * did-you-mean, text escaping, RNG determinism and distribution, atomic files. */
#include <string.h>
#include <unistd.h>

#include "test.h"

static void test_yaml(void) {
    hlab_yaml_doc doc;
    hlab_err err = {0};
    int rc = hlab_yaml_load_string("s.yaml", "name: x\nmodel:\n  d_model: 64\n  ratio: \"1:5\"\nlist: [1, 2.5, abc]\n",
                                   &doc, &err);
    CHECK(rc == HLAB_OK, "load: %s", err.msg);
    if (rc) return;
    const hlab_yaml_node *model = hlab_yaml_get(doc.root, "model");
    CHECK(model && model->kind == HLAB_YAML_MAP && model->line == 3 && model->col == 3, "model node position");
    const hlab_yaml_node *d = hlab_yaml_get(model, "d_model");
    long long v = 0;
    CHECK(d && hlab_yaml_int(&doc, d, &v, &err) == HLAB_OK && v == 64, "d_model int");
    CHECK(d && d->line == 3 && d->col == 12, "d_model at 3:12, got %d:%d", d ? d->line : 0, d ? d->col : 0);
    const hlab_yaml_node *ratio = hlab_yaml_get(model, "ratio");
    CHECK(ratio && ratio->quoted && !strcmp(ratio->scalar, "1:5"), "quoted ratio kept as text");
    CHECK(hlab_yaml_int(&doc, ratio, &v, &err) != HLAB_OK && strstr(err.msg, "s.yaml:4:10: expected an integer"),
          "quoted scalar is not an integer: %s", err.msg);
    const hlab_yaml_node *list = hlab_yaml_get(doc.root, "list");
    double x;
    CHECK(list && list->kind == HLAB_YAML_SEQ && list->n == 3, "list of 3");
    CHECK(hlab_yaml_double(&doc, list->items[1], &x, &err) == HLAB_OK && x == 2.5, "2.5");
    CHECK(hlab_yaml_double(&doc, list->items[2], &x, &err) != HLAB_OK && strstr(err.msg, "s.yaml:5:16:"),
          "abc not a number, position: %s", err.msg);
    CHECK(hlab_yaml_get(doc.root, "missing") == NULL, "missing key");
    hlab_yaml_free(&doc);

    /* 25e6 accepted as an integer when exact */
    rc = hlab_yaml_load_string("t.yaml", "target: 25e6\n", &doc, &err);
    CHECK(rc == HLAB_OK && hlab_yaml_int(&doc, hlab_yaml_get(doc.root, "target"), &v, &err) == HLAB_OK && v == 25000000,
          "25e6 as integer");
    hlab_yaml_free(&doc);

    rc = hlab_yaml_load_string("bad.yaml", "a: [1, 2\nb: 3\n", &doc, &err);
    CHECK(rc == HLAB_EPARSE && !strncmp(err.msg, "bad.yaml:", 9), "syntax error names the file: %s", err.msg);
    hlab_yaml_free(&doc);
    rc = hlab_yaml_load_string("dup.yaml", "a: 1\nb: 2\na: 3\n", &doc, &err);
    CHECK(rc == HLAB_EPARSE && strstr(err.msg, "dup.yaml:3:1: duplicate key 'a'"), "duplicate key: %s", err.msg);
    hlab_yaml_free(&doc);
    rc = hlab_yaml_load("/nonexistent/x.yaml", &doc, &err);
    CHECK(rc == HLAB_EIO && strstr(err.msg, "/nonexistent/x.yaml: cannot open"), "missing file: %s", err.msg);
    hlab_yaml_free(&doc);
}

static void test_text(void) {
    static const char *const keys[] = {"d_model", "n_layers", "vocab_size", NULL};
    const char *s = hlab_did_you_mean("d_modle", keys);
    CHECK(s && !strcmp(s, "d_model"), "did you mean d_model");
    CHECK(hlab_did_you_mean("zzzzzzzz", keys) == NULL, "no suggestion for garbage");

    hlab_buf b;
    hlab_buf_init(&b);
    hlab_buf_csv_field(&b, "a,b \"c\"");
    hlab_buf_puts(&b, "|");
    hlab_buf_csv_field(&b, "plain");
    CHECK(!strcmp(b.data, "\"a,b \"\"c\"\"\"|plain"), "csv quoting: %s", b.data);
    hlab_buf_reset(&b);
    hlab_buf_json_string(&b, "q\"\\\n\x01");
    CHECK(!strcmp(b.data, "\"q\\\"\\\\\\n\\u0001\""), "json escaping: %s", b.data);
    hlab_buf_reset(&b);
    hlab_buf_xml_text(&b, "<a & 'b'>");
    CHECK(!strcmp(b.data, "&lt;a &amp; &apos;b&apos;&gt;"), "xml escaping: %s", b.data);
    hlab_buf_reset(&b);
    for (int i = 0; i < 1000; i++) hlab_buf_printf(&b, "%d,", i);
    CHECK(b.len == 3890 && hlab_buf_status(&b, NULL) == HLAB_OK, "printf growth: %zu", b.len);
    hlab_buf_free(&b);

    hlab_err err = {0};
    hlab_fail(&err, HLAB_EINVAL, "inner %d", 7);
    hlab_err_prefix(&err, "outer");
    CHECK(err.code == HLAB_EINVAL && !strcmp(err.msg, "outer: inner 7"), "prefix: %s", err.msg);
}

static void test_rng(void) {
    hlab_rng a, b;
    hlab_rng_seed(&a, 42);
    hlab_rng_seed(&b, 42);
    int same = 1;
    for (int i = 0; i < 100; i++) same &= hlab_rng_u64(&a) == hlab_rng_u64(&b);
    CHECK(same, "same seed, same stream");
    hlab_rng_seed(&b, 43);
    CHECK(hlab_rng_u64(&a) != hlab_rng_u64(&b), "different seeds differ");
    double s = 0, s2 = 0;
    int n = 200000, inrange = 1;
    for (int i = 0; i < n; i++) {
        double x = hlab_rng_normal(&a);
        s += x;
        s2 += x * x;
        uint64_t k = hlab_rng_below(&a, 7);
        inrange &= k < 7;
    }
    CHECK(fabs(s / n) < 0.01 && fabs(s2 / n - 1) < 0.02, "normal moments %.4f %.4f", s / n, s2 / n);
    CHECK(inrange, "below(7) in range");
}

static void test_files(void) {
    char path[] = "/tmp/hlab_test_atomicXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    hlab_err err = {0};
    CHECK(hlab_write_file_atomic(path, "hello", 5, &err) == HLAB_OK, "atomic write: %s", err.msg);
    char *data = NULL;
    size_t n = 0;
    CHECK(hlab_read_file(path, &data, &n, &err) == HLAB_OK && n == 5 && !strcmp(data, "hello"), "read back");
    free(data);
    unlink(path);
    CHECK(hlab_read_file(path, &data, &n, &err) == HLAB_EIO, "missing file is an error");
}

int main(void) {
    test_yaml();
    test_text();
    test_rng();
    test_files();
    return test_summary();
}
