"""Rule packs over ``triple(S, P, O)``: RDFS and OWL 2 RL, written in our Datalog.

The OWL 2 RL pack follows the rule tables of OWL 2 Profiles section 4.3 (eq-,
prp-, cls-, cax-, scm-). Rules that would flood the closure with tautologies
(eq-ref, the axiomatic triples, dt-*) are left out, as the ``reasonable`` and
owlrl defaults also restrict them; ``docs/semantic_lattice.md`` lists what is
left out and why. Inconsistency rules derive
``inconsistent(Rule, S1, P1, O1, S2, P2, O2)``: the rule's name and the two
triples that contradict each other (the same triple twice when one suffices).
"""

from __future__ import annotations

__all__ = ["PACKS", "rule_pack"]

from tenfold.semantic_lattice._datatypes import datatype_facts
from tenfold.semantic_lattice.errors import SchemaError

_DECL = """
.decl triple(s, p, o)
.decl literal_of(l, d)
.decl membership_property(p)
.decl inconsistent(rule, s1, p1, o1, s2, p2, o2)
"""

RDFS_CORE = (
    _DECL
    + """
% RDF 1.1 Semantics, section 9.2 (rdfs2, 3, 5, 7, 9, 11 carry the entailments that matter).
triple(X, rdf:type, C) :- triple(P, rdfs:domain, C), triple(X, P, _).
triple(Y, rdf:type, C) :- triple(P, rdfs:range, C), triple(_, P, Y).
triple(P, rdfs:subPropertyOf, R) :- triple(P, rdfs:subPropertyOf, Q), triple(Q, rdfs:subPropertyOf, R).
triple(X, Q, Y) :- triple(P, rdfs:subPropertyOf, Q), triple(X, P, Y).
triple(X, rdf:type, D) :- triple(C, rdfs:subClassOf, D), triple(X, rdf:type, C).
triple(C, rdfs:subClassOf, E) :- triple(C, rdfs:subClassOf, D), triple(D, rdfs:subClassOf, E).
"""
)

RDFS_FULL = (
    RDFS_CORE
    + """
% rdf1, rdfs1 (datatypes seen), 4a/4b, 6, 8, 10, 12, 13 and the axioms they need.
triple(P, rdf:type, rdf:Property) :- triple(_, P, _).
triple(X, rdf:type, rdfs:Resource) :- triple(X, _, _).
triple(Y, rdf:type, rdfs:Resource) :- triple(_, _, Y).
triple(P, rdfs:subPropertyOf, P) :- triple(P, rdf:type, rdf:Property).
triple(C, rdfs:subClassOf, rdfs:Resource) :- triple(C, rdf:type, rdfs:Class).
triple(C, rdfs:subClassOf, C) :- triple(C, rdf:type, rdfs:Class).
triple(P, rdfs:subPropertyOf, rdfs:member) :- triple(P, rdf:type, rdfs:ContainerMembershipProperty).
triple(C, rdfs:subClassOf, rdfs:Literal) :- triple(C, rdf:type, rdfs:Datatype).
triple(rdf:type, rdfs:domain, rdfs:Resource).
triple(rdf:type, rdfs:range, rdfs:Class).
triple(rdfs:domain, rdfs:domain, rdf:Property).
triple(rdfs:range, rdfs:domain, rdf:Property).
triple(rdfs:domain, rdfs:range, rdfs:Class).
triple(rdfs:range, rdfs:range, rdfs:Class).
triple(rdfs:subPropertyOf, rdfs:domain, rdf:Property).
triple(rdfs:subPropertyOf, rdfs:range, rdf:Property).
triple(rdfs:subClassOf, rdfs:domain, rdfs:Class).
triple(rdfs:subClassOf, rdfs:range, rdfs:Class).
triple(rdf:subject, rdfs:domain, rdf:Statement).
triple(rdf:predicate, rdfs:domain, rdf:Statement).
triple(rdf:object, rdfs:domain, rdf:Statement).
triple(rdf:first, rdfs:domain, rdf:List).
triple(rdf:rest, rdfs:domain, rdf:List).
triple(rdf:rest, rdfs:range, rdf:List).
triple(rdfs:member, rdfs:domain, rdfs:Resource).
triple(rdfs:seeAlso, rdfs:range, rdfs:Resource).
triple(rdfs:isDefinedBy, rdfs:subPropertyOf, rdfs:seeAlso).
triple(rdfs:comment, rdfs:range, rdfs:Literal).
triple(rdfs:label, rdfs:range, rdfs:Literal).
triple(rdf:value, rdfs:domain, rdfs:Resource).
triple(rdf:nil, rdf:type, rdf:List).
triple(rdf:Alt, rdfs:subClassOf, rdfs:Container).
triple(rdf:Bag, rdfs:subClassOf, rdfs:Container).
triple(rdf:Seq, rdfs:subClassOf, rdfs:Container).
triple(rdfs:ContainerMembershipProperty, rdfs:subClassOf, rdf:Property).
triple(rdf:XMLLiteral, rdf:type, rdfs:Datatype).
triple(rdf:langString, rdf:type, rdfs:Datatype).
triple(rdf:HTML, rdf:type, rdfs:Datatype).
triple(rdfs:Datatype, rdfs:subClassOf, rdfs:Class).
% Literal typing over generalised triples (literal subjects stay inside the closure),
% and the container membership properties that occur, plus rdf:_1 .. rdf:_3 as a finite
% prefix of the infinite rdf:_n axioms.
triple(L, rdf:type, rdfs:Literal) :- literal_of(L, _).
triple(L, rdf:type, xsd:string) :- literal_of(L, xsd:string).
triple(L, rdf:type, rdf:langString) :- literal_of(L, rdf:langString).
membership_property(rdf:_1). membership_property(rdf:_2). membership_property(rdf:_3).
triple(P, rdf:type, rdfs:ContainerMembershipProperty) :- membership_property(P).
triple(P, rdfs:domain, rdfs:Resource) :- membership_property(P).
triple(P, rdfs:range, rdfs:Resource) :- membership_property(P).
% D-entailment with the recognized datatypes of ._datatypes (RDF 1.1 Semantics 7 and 9):
% an ill-typed literal, a literal typed with a datatype of another value-space family
% (by rdfs:range, say), and a datatype declared a subclass of one whose value space
% does not contain its own are inconsistencies.
% The store keeps ill_typed(L, D) for every datatype it knows and recognized_datatype(D)
% for those the user recognizes (LatticeStore(datatypes=...), default all).
.decl ill_typed(l, d)
.decl recognized_datatype(d)
.decl datatype_family(d, f)
.decl value_subset(d1, d2)
inconsistent("dt-not-type", S, P, L, S, P, L) :-
    ill_typed(L, D), recognized_datatype(D), triple(S, P, L).
inconsistent("dt-clash", L, rdf:type, D, L, rdf:type, D0) :-
    triple(L, rdf:type, D), literal_of(L, D0), recognized_datatype(D), recognized_datatype(D0),
    datatype_family(D, F), datatype_family(D0, F0), F != F0.
inconsistent("dt-subclass", D1, rdfs:subClassOf, D2, D1, rdfs:subClassOf, D2) :-
    triple(D1, rdfs:subClassOf, D2), recognized_datatype(D1), recognized_datatype(D2),
    !value_subset(D1, D2).
"""
    + datatype_facts()
)

OWL_RL_CORE = (
    _DECL
    + """
% -- lists: which cells belong to which OWL list-valued axiom, and their members.
list_head(L) :- triple(_, owl:intersectionOf, L).
list_head(L) :- triple(_, owl:unionOf, L).
list_head(L) :- triple(_, owl:oneOf, L).
list_head(L) :- triple(_, owl:members, L).
list_head(L) :- triple(_, owl:distinctMembers, L).
list_head(L) :- triple(_, owl:propertyChainAxiom, L).
list_cell(H, H) :- list_head(H).
list_cell(H, N) :- list_cell(H, L), triple(L, rdf:rest, N), N != rdf:nil.
member(H, X) :- list_cell(H, L), triple(L, rdf:first, X).

% -- equality (eq-ref is omitted: it adds x sameAs x for every term).
triple(Y, owl:sameAs, X) :- triple(X, owl:sameAs, Y).
triple(X, owl:sameAs, Z) :- triple(X, owl:sameAs, Y), triple(Y, owl:sameAs, Z).
triple(S2, P, O) :- triple(S, owl:sameAs, S2), triple(S, P, O).
triple(S, P2, O) :- triple(P, owl:sameAs, P2), triple(S, P, O).
triple(S, P, O2) :- triple(O, owl:sameAs, O2), triple(S, P, O).
inconsistent("eq-diff1", X, owl:sameAs, Y, X, owl:differentFrom, Y) :-
    triple(X, owl:sameAs, Y), triple(X, owl:differentFrom, Y).
inconsistent("eq-diff2", X, owl:sameAs, Y, A, owl:members, L) :-
    triple(A, rdf:type, owl:AllDifferent), triple(A, owl:members, L),
    member(L, X), member(L, Y), X != Y, triple(X, owl:sameAs, Y).
inconsistent("eq-diff3", X, owl:sameAs, Y, A, owl:distinctMembers, L) :-
    triple(A, rdf:type, owl:AllDifferent), triple(A, owl:distinctMembers, L),
    member(L, X), member(L, Y), X != Y, triple(X, owl:sameAs, Y).

% -- properties
triple(X, rdf:type, C) :- triple(P, rdfs:domain, C), triple(X, P, _).
triple(Y, rdf:type, C) :- triple(P, rdfs:range, C), triple(_, P, Y).
triple(Y1, owl:sameAs, Y2) :- triple(P, rdf:type, owl:FunctionalProperty),
    triple(X, P, Y1), triple(X, P, Y2), Y1 != Y2.
triple(X1, owl:sameAs, X2) :- triple(P, rdf:type, owl:InverseFunctionalProperty),
    triple(X1, P, Y), triple(X2, P, Y), X1 != X2.
inconsistent("prp-irp", X, P, X, P, rdf:type, owl:IrreflexiveProperty) :-
    triple(P, rdf:type, owl:IrreflexiveProperty), triple(X, P, X).
triple(Y, P, X) :- triple(P, rdf:type, owl:SymmetricProperty), triple(X, P, Y).
inconsistent("prp-asyp", X, P, Y, Y, P, X) :-
    triple(P, rdf:type, owl:AsymmetricProperty), triple(X, P, Y), triple(Y, P, X).
triple(X, P, Z) :- triple(P, rdf:type, owl:TransitiveProperty), triple(X, P, Y), triple(Y, P, Z).
triple(X, P2, Y) :- triple(P1, rdfs:subPropertyOf, P2), triple(X, P1, Y).
triple(X, P, Z) :- triple(P, owl:propertyChainAxiom, L), triple(L, rdf:first, P1),
    triple(L, rdf:rest, L2), triple(L2, rdf:first, P2), triple(L2, rdf:rest, rdf:nil),
    triple(X, P1, Y), triple(Y, P2, Z).
triple(X, P2, Y) :- triple(P1, owl:equivalentProperty, P2), triple(X, P1, Y).
triple(X, P1, Y) :- triple(P1, owl:equivalentProperty, P2), triple(X, P2, Y).
inconsistent("prp-pdw", X, P1, Y, X, P2, Y) :-
    triple(P1, owl:propertyDisjointWith, P2), triple(X, P1, Y), triple(X, P2, Y).
triple(Y, P2, X) :- triple(P1, owl:inverseOf, P2), triple(X, P1, Y).
triple(Y, P1, X) :- triple(P1, owl:inverseOf, P2), triple(X, P2, Y).

% -- classes
inconsistent("cls-nothing2", X, rdf:type, owl:Nothing, X, rdf:type, owl:Nothing) :-
    triple(X, rdf:type, owl:Nothing).
int_ok(Y, L) :- list_cell(H, L), triple(_, owl:intersectionOf, H),
    triple(L, rdf:rest, rdf:nil), triple(L, rdf:first, C), triple(Y, rdf:type, C).
int_ok(Y, L) :- int_ok(Y, N), triple(L, rdf:rest, N), list_cell(_, L),
    triple(L, rdf:first, C), triple(Y, rdf:type, C).
triple(Y, rdf:type, C) :- triple(C, owl:intersectionOf, L), int_ok(Y, L).
triple(Y, rdf:type, M) :- triple(C, owl:intersectionOf, L), member(L, M), triple(Y, rdf:type, C).
triple(Y, rdf:type, C) :- triple(C, owl:unionOf, L), member(L, M), triple(Y, rdf:type, M).
inconsistent("cls-com", X, rdf:type, C1, X, rdf:type, C2) :-
    triple(C1, owl:complementOf, C2), triple(X, rdf:type, C1), triple(X, rdf:type, C2).
triple(U, rdf:type, X) :- triple(X, owl:someValuesFrom, Y), triple(X, owl:onProperty, P),
    triple(U, P, V), triple(V, rdf:type, Y).
triple(U, rdf:type, X) :- triple(X, owl:someValuesFrom, owl:Thing), triple(X, owl:onProperty, P),
    triple(U, P, _).
triple(V, rdf:type, Y) :- triple(X, owl:allValuesFrom, Y), triple(X, owl:onProperty, P),
    triple(U, rdf:type, X), triple(U, P, V).
triple(U, P, Y) :- triple(X, owl:hasValue, Y), triple(X, owl:onProperty, P), triple(U, rdf:type, X).
triple(U, rdf:type, X) :- triple(X, owl:hasValue, Y), triple(X, owl:onProperty, P), triple(U, P, Y).
inconsistent("cls-maxc1", U, P, Y, U, rdf:type, X) :-
    triple(X, owl:maxCardinality, "0"^^xsd:nonNegativeInteger), triple(X, owl:onProperty, P),
    triple(U, rdf:type, X), triple(U, P, Y).
triple(Y1, owl:sameAs, Y2) :-
    triple(X, owl:maxCardinality, "1"^^xsd:nonNegativeInteger), triple(X, owl:onProperty, P),
    triple(U, rdf:type, X), triple(U, P, Y1), triple(U, P, Y2), Y1 != Y2.
inconsistent("cls-maxqc1", U, P, Y, Y, rdf:type, C) :-
    triple(X, owl:maxQualifiedCardinality, "0"^^xsd:nonNegativeInteger),
    triple(X, owl:onProperty, P), triple(X, owl:onClass, C),
    triple(U, rdf:type, X), triple(U, P, Y), triple(Y, rdf:type, C).
inconsistent("cls-maxqc2", U, P, Y, U, rdf:type, X) :-
    triple(X, owl:maxQualifiedCardinality, "0"^^xsd:nonNegativeInteger),
    triple(X, owl:onProperty, P), triple(X, owl:onClass, owl:Thing),
    triple(U, rdf:type, X), triple(U, P, Y).
triple(Y1, owl:sameAs, Y2) :-
    triple(X, owl:maxQualifiedCardinality, "1"^^xsd:nonNegativeInteger),
    triple(X, owl:onProperty, P), triple(X, owl:onClass, C), triple(U, rdf:type, X),
    triple(U, P, Y1), triple(Y1, rdf:type, C), triple(U, P, Y2), triple(Y2, rdf:type, C), Y1 != Y2.
triple(Y, rdf:type, C) :- triple(C, owl:oneOf, L), member(L, Y).

% -- class axioms
triple(X, rdf:type, C2) :- triple(C1, rdfs:subClassOf, C2), triple(X, rdf:type, C1).
triple(X, rdf:type, C2) :- triple(C1, owl:equivalentClass, C2), triple(X, rdf:type, C1).
triple(X, rdf:type, C1) :- triple(C1, owl:equivalentClass, C2), triple(X, rdf:type, C2).
inconsistent("cax-dw", X, rdf:type, C1, X, rdf:type, C2) :-
    triple(C1, owl:disjointWith, C2), triple(X, rdf:type, C1), triple(X, rdf:type, C2).
inconsistent("cax-adc", X, rdf:type, C1, X, rdf:type, C2) :-
    triple(A, rdf:type, owl:AllDisjointClasses), triple(A, owl:members, L),
    member(L, C1), member(L, C2), C1 != C2, triple(X, rdf:type, C1), triple(X, rdf:type, C2).

% -- schema: scm-sco, scm-eqc1, scm-eqc2 (also in the core pack)
triple(C1, rdfs:subClassOf, C3) :- triple(C1, rdfs:subClassOf, C2), triple(C2, rdfs:subClassOf, C3).
triple(C1, rdfs:subClassOf, C2) :- triple(C1, owl:equivalentClass, C2).
triple(C2, rdfs:subClassOf, C1) :- triple(C1, owl:equivalentClass, C2).
"""
)

_OWL_RL_SCHEMA = """
% -- the rest of the schema rules (scm-cls, scm-op, scm-dp, scm-eqc2, scm-spo, scm-eqp,
% scm-dom, scm-rng, scm-hv, scm-svf, scm-avf, scm-int, scm-uni)
triple(C, rdfs:subClassOf, C) :- triple(C, rdf:type, owl:Class).
triple(C, owl:equivalentClass, C) :- triple(C, rdf:type, owl:Class).
triple(C, rdfs:subClassOf, owl:Thing) :- triple(C, rdf:type, owl:Class).
triple(owl:Nothing, rdfs:subClassOf, C) :- triple(C, rdf:type, owl:Class).
triple(C1, owl:equivalentClass, C2) :- triple(C1, rdfs:subClassOf, C2), triple(C2, rdfs:subClassOf, C1).
triple(P, rdfs:subPropertyOf, P) :- triple(P, rdf:type, owl:ObjectProperty).
triple(P, owl:equivalentProperty, P) :- triple(P, rdf:type, owl:ObjectProperty).
triple(P, rdfs:subPropertyOf, P) :- triple(P, rdf:type, owl:DatatypeProperty).
triple(P, owl:equivalentProperty, P) :- triple(P, rdf:type, owl:DatatypeProperty).
triple(P1, rdfs:subPropertyOf, P3) :-
    triple(P1, rdfs:subPropertyOf, P2), triple(P2, rdfs:subPropertyOf, P3).
triple(P1, rdfs:subPropertyOf, P2) :- triple(P1, owl:equivalentProperty, P2).
triple(P2, rdfs:subPropertyOf, P1) :- triple(P1, owl:equivalentProperty, P2).
triple(P1, owl:equivalentProperty, P2) :-
    triple(P1, rdfs:subPropertyOf, P2), triple(P2, rdfs:subPropertyOf, P1).
triple(P, rdfs:domain, C2) :- triple(P, rdfs:domain, C1), triple(C1, rdfs:subClassOf, C2).
triple(P1, rdfs:domain, C) :- triple(P2, rdfs:domain, C), triple(P1, rdfs:subPropertyOf, P2).
triple(P, rdfs:range, C2) :- triple(P, rdfs:range, C1), triple(C1, rdfs:subClassOf, C2).
triple(P1, rdfs:range, C) :- triple(P2, rdfs:range, C), triple(P1, rdfs:subPropertyOf, P2).
triple(C1, rdfs:subClassOf, C2) :- triple(C1, owl:hasValue, I), triple(C1, owl:onProperty, P1),
    triple(C2, owl:hasValue, I), triple(C2, owl:onProperty, P2), triple(P1, rdfs:subPropertyOf, P2).
triple(C1, rdfs:subClassOf, C2) :- triple(C1, owl:someValuesFrom, Y1), triple(C1, owl:onProperty, P),
    triple(C2, owl:someValuesFrom, Y2), triple(C2, owl:onProperty, P), triple(Y1, rdfs:subClassOf, Y2).
triple(C1, rdfs:subClassOf, C2) :- triple(C1, owl:someValuesFrom, Y), triple(C1, owl:onProperty, P1),
    triple(C2, owl:someValuesFrom, Y), triple(C2, owl:onProperty, P2),
    triple(P1, rdfs:subPropertyOf, P2).
triple(C1, rdfs:subClassOf, C2) :- triple(C1, owl:allValuesFrom, Y1), triple(C1, owl:onProperty, P),
    triple(C2, owl:allValuesFrom, Y2), triple(C2, owl:onProperty, P), triple(Y1, rdfs:subClassOf, Y2).
triple(C2, rdfs:subClassOf, C1) :- triple(C1, owl:allValuesFrom, Y), triple(C1, owl:onProperty, P1),
    triple(C2, owl:allValuesFrom, Y), triple(C2, owl:onProperty, P2),
    triple(P1, rdfs:subPropertyOf, P2).
triple(C, rdfs:subClassOf, M) :- triple(C, owl:intersectionOf, L), member(L, M).
triple(M, rdfs:subClassOf, C) :- triple(C, owl:unionOf, L), member(L, M).
"""

OWL_RL = OWL_RL_CORE + _OWL_RL_SCHEMA

PACKS = {
    "rdfs": RDFS_CORE,
    "rdfs-full": RDFS_FULL,
    "owl-rl": OWL_RL,
    "owl-rl-core": OWL_RL_CORE,
}


def rule_pack(name: str) -> str:
    """The Datalog text of a named pack (``rdfs``, ``rdfs-full``, ``owl-rl``, ``owl-rl-core``)."""
    try:
        return PACKS[name]
    except KeyError:
        raise SchemaError(f"unknown rule pack {name!r} (known: {', '.join(PACKS)})") from None
