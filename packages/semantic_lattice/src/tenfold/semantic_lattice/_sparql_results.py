"""SPARQL 1.1 result formats: JSON, XML, CSV and TSV for SELECT and ASK; N-Triples for graphs.

The writers follow the W3C recommendations "SPARQL 1.1 Query Results JSON
Format", "SPARQL Query Results XML Format (Second Edition)" and "SPARQL 1.1
Query Results CSV and TSV Formats". Terms come in canonical N-Triples form.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from tenfold.semantic_lattice._sparql_eval import XSD_STRING, lit_parts

__all__ = ["MEDIA_TYPES", "serialize_result"]

MEDIA_TYPES = {
    "json": "application/sparql-results+json",
    "xml": "application/sparql-results+xml",
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "nt": "application/n-triples",
}


def _json_term(t: str) -> dict[str, str]:
    if t[0] == "<":
        return {"type": "uri", "value": t[1:-1]}
    if t[0] == "_":
        return {"type": "bnode", "value": t[2:]}
    lex, dt, lang = lit_parts(t)
    out = {"type": "literal", "value": lex}
    if lang:
        out["xml:lang"] = lang
    elif dt != XSD_STRING:
        out["datatype"] = dt[1:-1]
    return out


def to_json(
    variables: Sequence[str], rows: Sequence[Sequence[str | None]], boolean: bool | None = None
) -> str:
    if boolean is not None:
        return json.dumps({"head": {}, "boolean": boolean})
    bindings = [
        {v: _json_term(t) for v, t in zip(variables, row, strict=True) if t is not None}
        for row in rows
    ]
    return json.dumps({"head": {"vars": list(variables)}, "results": {"bindings": bindings}})


def _xml_term(t: str) -> str:
    if t[0] == "<":
        return f"<uri>{escape(t[1:-1])}</uri>"
    if t[0] == "_":
        return f"<bnode>{escape(t[2:])}</bnode>"
    lex, dt, lang = lit_parts(t)
    if lang:
        return f"<literal xml:lang={quoteattr(lang)}>{escape(lex)}</literal>"
    if dt != XSD_STRING:
        return f"<literal datatype={quoteattr(dt[1:-1])}>{escape(lex)}</literal>"
    return f"<literal>{escape(lex)}</literal>"


def to_xml(
    variables: Sequence[str], rows: Sequence[Sequence[str | None]], boolean: bool | None = None
) -> str:
    head = '<?xml version="1.0"?>\n<sparql xmlns="http://www.w3.org/2005/sparql-results#">\n'
    if boolean is not None:
        return head + f"<head/>\n<boolean>{'true' if boolean else 'false'}</boolean>\n</sparql>\n"
    parts = [head, "<head>"]
    parts += [f"<variable name={quoteattr(v)}/>" for v in variables]
    parts.append("</head>\n<results>\n")
    for row in rows:
        parts.append("<result>")
        for v, t in zip(variables, row, strict=True):
            if t is not None:
                parts.append(f"<binding name={quoteattr(v)}>{_xml_term(t)}</binding>")
        parts.append("</result>\n")
    parts.append("</results>\n</sparql>\n")
    return "".join(parts)


def _csv_field(t: str | None) -> str:
    if t is None:
        return ""
    if t[0] == "<":
        text = t[1:-1]
    elif t[0] == "_":
        text = t
    else:
        text = lit_parts(t)[0]
    if any(c in text for c in '",\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def to_csv(variables: Sequence[str], rows: Sequence[Sequence[str | None]]) -> str:
    lines = [",".join(variables)]
    lines += [",".join(_csv_field(t) for t in row) for row in rows]
    return "\r\n".join(lines) + "\r\n"


def _tsv_field(t: str | None) -> str:
    if t is None:
        return ""
    return t.replace("\t", "\\t")


def to_tsv(variables: Sequence[str], rows: Sequence[Sequence[str | None]]) -> str:
    lines = ["\t".join(f"?{v}" for v in variables)]
    lines += ["\t".join(_tsv_field(t) for t in row) for row in rows]
    return "\n".join(lines) + "\n"


def serialize_result(
    fmt: str,
    variables: Sequence[str],
    rows: Sequence[Sequence[str | None]],
    boolean: bool | None = None,
) -> str:
    """A SELECT or ASK result in ``json``, ``xml``, ``csv`` or ``tsv``."""
    if fmt == "json":
        return to_json(variables, rows, boolean)
    if fmt == "xml":
        return to_xml(variables, rows, boolean)
    if boolean is not None:
        rows = [
            (f'"{"true" if boolean else "false"}"^^<http://www.w3.org/2001/XMLSchema#boolean>',)
        ]
        variables = ["_askResult"]
    if fmt == "csv":
        return to_csv(variables, rows)
    if fmt == "tsv":
        return to_tsv(variables, rows)
    raise ValueError(f"unknown result format {fmt!r}")
