/* db/db_internal.h — what db.c and db_query.c share; not part of the public
 * interface (other modules include db/db.h only). */
#ifndef HLAB_DB_INTERNAL_H
#define HLAB_DB_INTERNAL_H

#include <sqlite3.h>

#include "db/db.h"

/* ISO-8601 UTC with milliseconds, as SQL: "2026-11-23T12:34:56.789Z". */
#define DB_NOW "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

struct hlab_db {
    sqlite3 *conn;
    char path[1024];
    char host[256];          /* recorded with each run so a later start can tell whose process it was */
    char process_start[96];  /* this process's start signature (see db.c); "" where /proc is absent */
};

/* Fill err with "db PATH: what: sqlite message"; return HLAB_EDB. */
int db_fail(hlab_db *db, hlab_err *err, const char *what);
int db_prepare(hlab_db *db, const char *sql, sqlite3_stmt **st, const char *what, hlab_err *err);
int db_exec(hlab_db *db, const char *sql, const char *what, hlab_err *err);
int db_begin(hlab_db *db, hlab_err *err); /* BEGIN IMMEDIATE */
int db_commit(hlab_db *db, hlab_err *err);
void db_rollback(hlab_db *db); /* no-op outside a transaction */

/* Binding: NULL text, non-finite doubles and negative integers become SQL NULL. */
void db_bind_text(sqlite3_stmt *st, int i, const char *s);
void db_bind_double(sqlite3_stmt *st, int i, double v);
void db_bind_int64(sqlite3_stmt *st, int i, int64_t v);
/* Reading: SQL NULL becomes NULL (malloc'ed copy otherwise), NaN, -1. */
char *db_col_text(sqlite3_stmt *st, int i);
double db_col_double(sqlite3_stmt *st, int i);
int64_t db_col_int64(sqlite3_stmt *st, int i);
void db_col_copy(sqlite3_stmt *st, int i, char *dst, size_t cap);
hlab_db_status db_col_status(sqlite3_stmt *st, int i);

#endif
