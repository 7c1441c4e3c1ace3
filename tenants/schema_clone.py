"""Fast copy of the template schema into a new tenant schema.

django-tenants' `clone_schema` SQL function is generic (views, functions, triggers, sequences,
ownership...) and costs ~140 ms even for a handful of tables, which is most of what running
the migrations costs. Tenant schemas here hold only tables with identity keys, constraints and
indexes, so the copy is built from the catalog instead:

1. each table with `CREATE TABLE ... (LIKE template.t INCLUDING ALL EXCLUDING INDEXES)`
   (columns, defaults, NOT NULL/CHECK constraints, identity, generated columns, storage);
2. primary key, unique and exclusion constraints, then the remaining indexes (HNSW, GIN, ...),
   under their exact names, so later migrations that drop or rename them by name still work;
3. the template's rows (migration history, content types) and identity sequence positions;
4. foreign keys last.

Anything else in the template (a view, function, trigger, type or free-standing sequence)
makes `schema_clone` fall back to django-tenants' generic clone, so a schema is never copied
partially.
"""

from __future__ import annotations

import re

from django.db import connection
from django_tenants.clone import CloneSchema
from django_tenants.utils import schema_exists


class SchemaExists(Exception):
    pass


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


_UNSUPPORTED = """
SELECT
  (SELECT count(*) FROM pg_class c
     WHERE c.relnamespace = %(ns)s AND c.relkind IN ('v', 'm', 'f')) +
  (SELECT count(*) FROM pg_class s
     WHERE s.relnamespace = %(ns)s AND s.relkind = 'S'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                       WHERE d.objid = s.oid AND d.deptype IN ('a', 'i'))) +
  (SELECT count(*) FROM pg_proc p WHERE p.pronamespace = %(ns)s) +
  (SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace = %(ns)s AND NOT t.tgisinternal) +
  (SELECT count(*) FROM pg_type ty
     WHERE ty.typnamespace = %(ns)s AND ty.typtype IN ('e', 'd', 'r', 'm')) +
  (SELECT count(*) FROM pg_class c
     WHERE c.relnamespace = %(ns)s AND c.relkind = 'r' AND c.relrowsecurity)
"""

_TABLES = """
SELECT c.relname FROM pg_class c
WHERE c.relnamespace = %(ns)s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname
"""

# Key constraints first (they create their own indexes), foreign keys kept for the end.
_CONSTRAINTS = """
SELECT cl.relname, con.conname, con.contype, pg_get_constraintdef(con.oid)
FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid
WHERE cl.relnamespace = %(ns)s AND con.contype IN ('p', 'u', 'x', 'f')
ORDER BY position(con.contype::text in 'puxf'), con.conname
"""

_INDEXES = """
SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
JOIN pg_class t ON t.oid = i.indrelid
WHERE t.relnamespace = %(ns)s
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid
                  AND c.contype IN ('p', 'u', 'x'))
ORDER BY i.indexrelid
"""

# Stored generated columns are computed again on insert, so they are left out of the row copy.
_COPIED_COLUMNS = """
SELECT c.relname, string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = %(ns)s AND c.relkind IN ('r', 'p') AND a.attnum > 0
  AND NOT a.attisdropped AND a.attgenerated = ''
GROUP BY c.relname
"""

_IDENTITY_COLUMNS = """
SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = %(ns)s AND c.relkind IN ('r', 'p') AND a.attidentity <> ''
"""


def _namespace_oid(cursor, schema: str) -> int:
    cursor.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", [schema])
    return cursor.fetchone()[0]


def schema_clone(*, source: str, target: str) -> None:
    """Create schema `target` as a copy of `source` (structure and rows). Run it inside a
    transaction: a failure leaves nothing behind."""
    if schema_exists(target):
        raise SchemaExists(target)
    with connection.cursor() as cursor:
        ns = {"ns": _namespace_oid(cursor, source)}
        cursor.execute(_UNSUPPORTED, ns)
        if cursor.fetchone()[0]:
            CloneSchema().clone_schema(source, target, "DATA", set_connection=False)
            return
        # With only the source on the search path, definitions name its objects unqualified
        # (and anything elsewhere, such as public, qualified), so they replay in the target.
        cursor.execute(f"SET search_path = {_quote(source)}")
        cursor.execute(_TABLES, ns)
        tables = [row[0] for row in cursor.fetchall()]
        cursor.execute(_CONSTRAINTS, ns)
        constraints = cursor.fetchall()
        src, dst = _quote(source), _quote(target)
        cursor.execute(_INDEXES, ns)
        # pg_get_indexdef always qualifies the table: point it at the target schema.
        on_source = re.compile(
            rf"^(CREATE (?:UNIQUE )?INDEX \S+ ON (?:ONLY )?)\"?{re.escape(source)}\"?\."
        )
        indexes = [on_source.sub(rf"\g<1>{dst}.", row[0], count=1) for row in cursor.fetchall()]
        cursor.execute(_COPIED_COLUMNS, ns)
        columns = dict(cursor.fetchall())
        cursor.execute(_IDENTITY_COLUMNS, ns)
        identity_columns = cursor.fetchall()

        statements = [f"CREATE SCHEMA {dst}", f"SET search_path = {dst}, public"]
        statements += [
            f"CREATE TABLE {dst}.{_quote(t)} (LIKE {src}.{_quote(t)} "
            "INCLUDING ALL EXCLUDING INDEXES)"
            for t in tables
        ]
        statements += [
            f"ALTER TABLE {dst}.{_quote(t)} ADD CONSTRAINT {_quote(name)} {definition}"
            for t, name, kind, definition in constraints
            if kind != "f"
        ]
        statements += indexes
        # Identifiers below come from the catalog and are quoted; schema names are validated.
        statements += [
            f"INSERT INTO {dst}.{_quote(t)} ({columns[t]}) OVERRIDING SYSTEM VALUE "  # noqa: S608
            f"SELECT {columns[t]} FROM {src}.{_quote(t)}"
            for t in tables
        ]
        statements += [
            f"SELECT setval(pg_get_serial_sequence('{dst}.{_quote(t)}', '{column}'), "  # noqa: S608
            f"coalesce(max({_quote(column)}), 0) + 1, false) FROM {dst}.{_quote(t)}"
            for t, column in identity_columns
        ]
        statements += [
            f"ALTER TABLE {dst}.{_quote(t)} ADD CONSTRAINT {_quote(name)} {definition}"
            for t, name, kind, definition in constraints
            if kind == "f"
        ]
        cursor.execute(";\n".join(statements))
