"""Recognized datatypes for D-entailment: lexical spaces, value-space families, derivation.

RDF 1.1 Semantics (sections 7 and 9) makes a graph inconsistent when it holds an
ill-typed literal of a recognized datatype, or when the class extension of a
recognized datatype (its value space) is forced to hold a value it cannot hold.
This module gives the store what the ``rdfs-full`` pack needs to detect both:

* :func:`is_well_typed`: the lexical-space check (XML Schema 1.1 Part 2 for the
  ``xsd:`` types, well-balanced XML for ``rdf:XMLLiteral``). No whitespace
  normalisation: RDF literals carry the lexical form itself, so ``" 3 "^^xsd:int``
  is ill-typed (W3C test xmlsch-02-whitespace-facet-*).
* :func:`datatype_facts`: ``datatype_family(D, F)`` (XSD 1.1 primitive value
  spaces are pairwise disjoint; a family is a primitive type with the types
  derived from it) and ``value_subset(D1, D2)`` (the value space of D1 is a
  subset of D2's, from the derivation tree), as Datalog facts.

Within a family the facets of derived types (``xsd:byte``'s range, integrality of
``xsd:integer``) are not compared against values typed by a rule; only the lexical
check applies them to a literal's own datatype.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from xml.etree import ElementTree

from tenfold.semantic_lattice._rdf import RDF, XSD

__all__ = ["RECOGNIZED", "datatype_facts", "is_well_typed", "lexical_form"]

_INT = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?INF|NaN")
_TZ = r"(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))?"
_YEAR = r"-?([1-9][0-9]{3,}|0[0-9]{3})"
_MONTH = r"(0[1-9]|1[0-2])"
_DAY = r"(0[1-9]|[12][0-9]|3[01])"
_TIME = r"(([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?|24:00:00(\.0+)?)"
_PATTERNS = {
    "boolean": r"true|false|1|0",
    "dateTime": f"{_YEAR}-{_MONTH}-{_DAY}T{_TIME}{_TZ}",
    "dateTimeStamp": f"{_YEAR}-{_MONTH}-{_DAY}T{_TIME}(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))",
    "date": f"{_YEAR}-{_MONTH}-{_DAY}{_TZ}",
    "time": f"{_TIME}{_TZ}",
    "gYear": f"{_YEAR}{_TZ}",
    "gYearMonth": f"{_YEAR}-{_MONTH}{_TZ}",
    "gMonth": f"--{_MONTH}{_TZ}",
    "gMonthDay": f"--{_MONTH}-{_DAY}{_TZ}",
    "gDay": f"---{_DAY}{_TZ}",
    "duration": r"-?P(?=.)([0-9]+Y)?([0-9]+M)?([0-9]+D)?(T(?=.)([0-9]+H)?([0-9]+M)?([0-9]+(\.[0-9]+)?S)?)?",
    "dayTimeDuration": r"-?P(?=.)([0-9]+D)?(T(?=.)([0-9]+H)?([0-9]+M)?([0-9]+(\.[0-9]+)?S)?)?",
    "yearMonthDuration": r"-?P(?=.)([0-9]+Y)?([0-9]+M)?",
    "hexBinary": r"([0-9a-fA-F]{2})*",
    "base64Binary": r"(([A-Za-z0-9+/] ?){4})*(([A-Za-z0-9+/] ?){3}[A-Za-z0-9+/]|([A-Za-z0-9+/] ?){2}[AEIMQUYcgkosw048] ?=|[A-Za-z0-9+/] ?[AQgw] ?= ?=)?",
    "language": r"[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*",
    "NMTOKEN": r"[\w.:-]+",
    "Name": r"[^\W\d.-][\w.:-]*",
    "NCName": r"[^\W\d.-][\w.-]*",
    "token": r"([^\s]+( [^\s]+)*)?",
    "normalizedString": r"[^\r\n\t]*",
}
# Integer types: (min, max), None for unbounded.
_INTEGER_BOUNDS: dict[str, tuple[int | None, int | None]] = {
    "integer": (None, None),
    "nonPositiveInteger": (None, 0),
    "negativeInteger": (None, -1),
    "nonNegativeInteger": (0, None),
    "positiveInteger": (1, None),
    "long": (-(2**63), 2**63 - 1),
    "int": (-(2**31), 2**31 - 1),
    "short": (-(2**15), 2**15 - 1),
    "byte": (-(2**7), 2**7 - 1),
    "unsignedLong": (0, 2**64 - 1),
    "unsignedInt": (0, 2**32 - 1),
    "unsignedShort": (0, 2**16 - 1),
    "unsignedByte": (0, 2**8 - 1),
}
# Each recognized datatype: (family, the type it derives from or None).
_TREE: dict[str, tuple[str, str | None]] = {
    XSD + "decimal": ("decimal", None),
    XSD + "integer": ("decimal", XSD + "decimal"),
    XSD + "nonPositiveInteger": ("decimal", XSD + "integer"),
    XSD + "negativeInteger": ("decimal", XSD + "nonPositiveInteger"),
    XSD + "long": ("decimal", XSD + "integer"),
    XSD + "int": ("decimal", XSD + "long"),
    XSD + "short": ("decimal", XSD + "int"),
    XSD + "byte": ("decimal", XSD + "short"),
    XSD + "nonNegativeInteger": ("decimal", XSD + "integer"),
    XSD + "positiveInteger": ("decimal", XSD + "nonNegativeInteger"),
    XSD + "unsignedLong": ("decimal", XSD + "nonNegativeInteger"),
    XSD + "unsignedInt": ("decimal", XSD + "unsignedLong"),
    XSD + "unsignedShort": ("decimal", XSD + "unsignedInt"),
    XSD + "unsignedByte": ("decimal", XSD + "unsignedShort"),
    XSD + "float": ("float", None),
    XSD + "double": ("double", None),
    XSD + "boolean": ("boolean", None),
    XSD + "string": ("string", None),
    XSD + "normalizedString": ("string", XSD + "string"),
    XSD + "token": ("string", XSD + "normalizedString"),
    XSD + "language": ("string", XSD + "token"),
    XSD + "NMTOKEN": ("string", XSD + "token"),
    XSD + "Name": ("string", XSD + "token"),
    XSD + "NCName": ("string", XSD + "Name"),
    XSD + "dateTime": ("dateTime", None),
    XSD + "dateTimeStamp": ("dateTime", XSD + "dateTime"),
    XSD + "date": ("date", None),
    XSD + "time": ("time", None),
    XSD + "gYear": ("gYear", None),
    XSD + "gYearMonth": ("gYearMonth", None),
    XSD + "gMonth": ("gMonth", None),
    XSD + "gMonthDay": ("gMonthDay", None),
    XSD + "gDay": ("gDay", None),
    XSD + "duration": ("duration", None),
    XSD + "dayTimeDuration": ("duration", XSD + "duration"),
    XSD + "yearMonthDuration": ("duration", XSD + "duration"),
    XSD + "hexBinary": ("binary", None),
    XSD + "base64Binary": ("binary", None),  # the same value space: octet sequences
    XSD + "anyURI": ("anyURI", None),
    RDF + "langString": ("langString", None),
    RDF + "XMLLiteral": ("XMLLiteral", None),
    RDF + "HTML": ("HTML", None),
}
RECOGNIZED = frozenset(_TREE)


def _xml_literal(lexical: str) -> bool:
    try:
        ElementTree.fromstring(f"<r>{lexical}</r>")
    except ElementTree.ParseError:
        return False
    return True


def _validator(iri: str) -> Callable[[str], bool]:
    local = iri.removeprefix(XSD)
    if local in _INTEGER_BOUNDS:
        lo, hi = _INTEGER_BOUNDS[local]

        def integer(lex: str) -> bool:
            if not _INT.fullmatch(lex):
                return False
            value = int(lex)
            return (lo is None or value >= lo) and (hi is None or value <= hi)

        return integer
    if local == "decimal":
        return lambda lex: _DECIMAL.fullmatch(lex) is not None
    if local in ("float", "double"):
        return lambda lex: _FLOAT.fullmatch(lex) is not None
    if local in _PATTERNS:
        pattern = re.compile(_PATTERNS[local])
        return lambda lex: pattern.fullmatch(lex) is not None
    if iri == RDF + "XMLLiteral":
        return _xml_literal
    return lambda lex: True  # xsd:string, anyURI, rdf:HTML, rdf:langString: any form


_VALIDATORS = {iri: _validator(iri) for iri in _TREE}


def is_well_typed(lexical: str, datatype: str) -> bool:
    """Whether ``lexical`` is in the lexical space of ``datatype`` (an IRI, no brackets).

    Datatypes outside :data:`RECOGNIZED` are not checked (always True).
    """
    check = _VALIDATORS.get(datatype)
    return check is None or check(lexical)


def datatype_facts() -> str:
    """Datalog facts ``datatype_family(D, F)`` and ``value_subset(D1, D2)``."""

    def name(iri: str) -> str:
        return iri.replace(XSD, "xsd:").replace(RDF, "rdf:")

    lines = []
    for iri, (family, _) in _TREE.items():
        lines.append(f'datatype_family({name(iri)}, "{family}").')
    for iri in _TREE:
        node: str | None = iri
        while node is not None:
            lines.append(f"value_subset({name(iri)}, {name(node)}).")
            node = _TREE[node][1]
    lines.append("value_subset(xsd:hexBinary, xsd:base64Binary).")
    lines.append("value_subset(xsd:base64Binary, xsd:hexBinary).")
    return "\n".join(lines) + "\n"


def lexical_form(term: str) -> str:
    """The lexical form of a canonical literal term (see :func:`._rdf.literal`)."""
    body = term[1 : term.rindex('"')]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m[1], m[1]), body, flags=re.S)
