"""An LUBM-like data generator (the official UBA generator is Java and not installable here).

Seeded and deterministic. Per department it follows the published univ-bench
counts (Guo, Pan, Heflin, "LUBM: A benchmark for OWL knowledge base systems",
2005, table of the data generator): 7-10 full, 10-14 associate and 8-11
assistant professors, 5-7 lecturers; 8-14 undergraduates and 3-4 graduate
students per faculty member; 10-20 research groups; each faculty member teaches
1-2 courses and 1-2 graduate courses; undergraduates take 2-4 courses, graduate
students 1-3 graduate courses; a fifth of the undergraduates have an advisor,
every graduate student has one; a quarter to a fifth of graduate students are
teaching assistants, a quarter to a third research assistants; publications:
15-20 per full, 10-18 per associate, 5-10 per assistant professor, 0-5 per
lecturer; one full professor heads the department. The ontology (``TBOX``) is
our own Turtle rendering of univ-bench's class and property axioms.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from tenfold.semantic_lattice._rdf import RDF, Triple, literal, parse_turtle

__all__ = ["TBOX", "UB", "generate_lubm", "lubm_tbox"]

UB = "http://swat.cse.lehigh.edu/onto/univ-bench.owl#"

TBOX = """
@prefix ub: <http://swat.cse.lehigh.edu/onto/univ-bench.owl#> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .

ub:Organization a owl:Class .
ub:University a owl:Class ; rdfs:subClassOf ub:Organization .
ub:College a owl:Class ; rdfs:subClassOf ub:Organization .
ub:Department a owl:Class ; rdfs:subClassOf ub:Organization .
ub:Institute a owl:Class ; rdfs:subClassOf ub:Organization .
ub:Program a owl:Class ; rdfs:subClassOf ub:Organization .
ub:ResearchGroup a owl:Class ; rdfs:subClassOf ub:Organization .
ub:Person a owl:Class .
ub:Employee a owl:Class ; owl:intersectionOf ( ub:Person
    [ a owl:Restriction ; owl:onProperty ub:worksFor ; owl:someValuesFrom ub:Organization ] ) .
ub:Faculty a owl:Class ; rdfs:subClassOf ub:Employee .
ub:Professor a owl:Class ; rdfs:subClassOf ub:Faculty .
ub:FullProfessor a owl:Class ; rdfs:subClassOf ub:Professor .
ub:AssociateProfessor a owl:Class ; rdfs:subClassOf ub:Professor .
ub:AssistantProfessor a owl:Class ; rdfs:subClassOf ub:Professor .
ub:VisitingProfessor a owl:Class ; rdfs:subClassOf ub:Professor .
ub:Lecturer a owl:Class ; rdfs:subClassOf ub:Faculty .
ub:PostDoc a owl:Class ; rdfs:subClassOf ub:Faculty .
ub:Chair a owl:Class ; rdfs:subClassOf ub:Professor ; owl:intersectionOf ( ub:Person
    [ a owl:Restriction ; owl:onProperty ub:headOf ; owl:someValuesFrom ub:Department ] ) .
ub:Dean a owl:Class ; rdfs:subClassOf ub:Professor ; owl:intersectionOf ( ub:Person
    [ a owl:Restriction ; owl:onProperty ub:headOf ; owl:someValuesFrom ub:College ] ) .
ub:Director a owl:Class ; owl:intersectionOf ( ub:Person
    [ a owl:Restriction ; owl:onProperty ub:headOf ; owl:someValuesFrom ub:Program ] ) .
ub:AdministrativeStaff a owl:Class ; rdfs:subClassOf ub:Employee .
ub:ClericalStaff a owl:Class ; rdfs:subClassOf ub:AdministrativeStaff .
ub:SystemsStaff a owl:Class ; rdfs:subClassOf ub:AdministrativeStaff .
ub:Student a owl:Class ; owl:intersectionOf ( ub:Person
    [ a owl:Restriction ; owl:onProperty ub:takesCourse ; owl:someValuesFrom ub:Course ] ) .
ub:UndergraduateStudent a owl:Class ; rdfs:subClassOf ub:Student .
ub:GraduateStudent a owl:Class ; rdfs:subClassOf ub:Person ,
    [ a owl:Restriction ; owl:onProperty ub:takesCourse ; owl:someValuesFrom ub:GraduateCourse ] .
ub:ResearchAssistant a owl:Class ; rdfs:subClassOf ub:Person ,
    [ a owl:Restriction ; owl:onProperty ub:worksFor ; owl:someValuesFrom ub:ResearchGroup ] .
ub:TeachingAssistant a owl:Class ; owl:intersectionOf ( ub:Person
    [ a owl:Restriction ; owl:onProperty ub:teachingAssistantOf ; owl:someValuesFrom ub:Course ] ) .
ub:Work a owl:Class .
ub:Course a owl:Class ; rdfs:subClassOf ub:Work .
ub:GraduateCourse a owl:Class ; rdfs:subClassOf ub:Course .
ub:Research a owl:Class ; rdfs:subClassOf ub:Work .
ub:Publication a owl:Class .
ub:Article a owl:Class ; rdfs:subClassOf ub:Publication .
ub:ConferencePaper a owl:Class ; rdfs:subClassOf ub:Article .
ub:JournalArticle a owl:Class ; rdfs:subClassOf ub:Article .
ub:TechnicalReport a owl:Class ; rdfs:subClassOf ub:Article .
ub:Book a owl:Class ; rdfs:subClassOf ub:Publication .
ub:Manual a owl:Class ; rdfs:subClassOf ub:Publication .
ub:Software a owl:Class ; rdfs:subClassOf ub:Publication .
ub:Specification a owl:Class ; rdfs:subClassOf ub:Publication .
ub:UnofficialPublication a owl:Class ; rdfs:subClassOf ub:Publication .
ub:Schedule a owl:Class .

ub:advisor a owl:ObjectProperty ; rdfs:domain ub:Person ; rdfs:range ub:Professor .
ub:degreeFrom a owl:ObjectProperty ; rdfs:domain ub:Person ; rdfs:range ub:University ;
    owl:inverseOf ub:hasAlumnus .
ub:hasAlumnus a owl:ObjectProperty ; rdfs:domain ub:University ; rdfs:range ub:Person .
ub:doctoralDegreeFrom a owl:ObjectProperty ; rdfs:subPropertyOf ub:degreeFrom .
ub:mastersDegreeFrom a owl:ObjectProperty ; rdfs:subPropertyOf ub:degreeFrom .
ub:undergraduateDegreeFrom a owl:ObjectProperty ; rdfs:subPropertyOf ub:degreeFrom .
ub:memberOf a owl:ObjectProperty ; owl:inverseOf ub:member .
ub:member a owl:ObjectProperty ; rdfs:domain ub:Organization ; rdfs:range ub:Person .
ub:worksFor a owl:ObjectProperty ; rdfs:subPropertyOf ub:memberOf .
ub:headOf a owl:ObjectProperty ; rdfs:subPropertyOf ub:worksFor .
ub:subOrganizationOf a owl:TransitiveProperty ; rdfs:domain ub:Organization ;
    rdfs:range ub:Organization .
ub:takesCourse a owl:ObjectProperty .
ub:teacherOf a owl:ObjectProperty ; rdfs:domain ub:Faculty ; rdfs:range ub:Course .
ub:teachingAssistantOf a owl:ObjectProperty ; rdfs:domain ub:TeachingAssistant ;
    rdfs:range ub:Course .
ub:publicationAuthor a owl:ObjectProperty ; rdfs:domain ub:Publication ; rdfs:range ub:Person .
ub:researchProject a owl:ObjectProperty ; rdfs:domain ub:ResearchGroup ; rdfs:range ub:Research .
ub:name a owl:DatatypeProperty .
ub:emailAddress a owl:DatatypeProperty .
ub:telephone a owl:DatatypeProperty .
ub:researchInterest a owl:DatatypeProperty .
"""


def lubm_tbox() -> list[Triple]:
    """The univ-bench ontology as triples."""
    return parse_turtle(TBOX, source="univ-bench", bnode_prefix="tbox")


def _iri(text: str) -> str:
    return f"<{text}>"


def generate_lubm(n_triples: int, seed: int = 0) -> list[Triple]:
    """Exactly ``n_triples`` LUBM-like instance triples (the ABox), departments in order."""
    out: list[Triple] = []
    for triple in _departments(seed):
        out.append(triple)
        if len(out) >= n_triples:
            break
    return out


def _departments(seed: int) -> Iterator[Triple]:
    rng = random.Random(seed)
    rdf_type = _iri(RDF + "type")

    def ub(local: str) -> str:
        return _iri(UB + local)

    n_universities = 1000
    for univ in range(10**6):
        u_iri = _iri(f"http://www.University{univ}.edu")
        yield (u_iri, rdf_type, ub("University"))
        for dept in range(rng.randint(15, 25)):
            yield from _department(rng, univ, dept, u_iri, rdf_type, ub, n_universities)


def _department(
    rng: random.Random,
    univ: int,
    dept: int,
    u_iri: str,
    rdf_type: str,
    ub: object,
    n_universities: int,
) -> Iterator[Triple]:
    assert callable(ub)
    base = f"http://www.Department{dept}.University{univ}.edu"
    d_iri = _iri(base)
    yield (d_iri, rdf_type, ub("Department"))
    yield (d_iri, ub("subOrganizationOf"), u_iri)
    faculty: list[tuple[str, str]] = []
    for kind, lo, hi in (
        ("FullProfessor", 7, 10),
        ("AssociateProfessor", 10, 14),
        ("AssistantProfessor", 8, 11),
        ("Lecturer", 5, 7),
    ):
        for i in range(rng.randint(lo, hi)):
            faculty.append((kind, _iri(f"{base}/{kind}{i}")))
    courses: list[str] = []
    grad_courses: list[str] = []
    professors = [iri for kind, iri in faculty if kind != "Lecturer"]
    publications = {
        "FullProfessor": (15, 20),
        "AssociateProfessor": (10, 18),
        "AssistantProfessor": (5, 10),
        "Lecturer": (0, 5),
    }
    for f_index, (kind, person) in enumerate(faculty):
        yield (person, rdf_type, ub(kind))
        yield (person, ub("worksFor"), d_iri)
        yield (person, ub("name"), literal(f"{kind}{f_index}"))
        yield (person, ub("emailAddress"), literal(f"{kind}{f_index}@Department{dept}.edu"))
        yield (person, ub("telephone"), literal(f"xxx-xxx-{rng.randint(0, 9999):04d}"))
        yield (person, ub("researchInterest"), literal(f"Research{rng.randint(0, 29)}"))
        for prop in ("undergraduateDegreeFrom", "mastersDegreeFrom", "doctoralDegreeFrom"):
            other = _iri(f"http://www.University{rng.randrange(n_universities)}.edu")
            yield (person, ub(prop), other)
        for _ in range(rng.randint(1, 2)):
            course = _iri(f"{base}/Course{len(courses)}")
            courses.append(course)
            yield (course, rdf_type, ub("Course"))
            yield (course, ub("name"), literal(f"Course{len(courses) - 1}"))
            yield (person, ub("teacherOf"), course)
        for _ in range(rng.randint(1, 2)):
            course = _iri(f"{base}/GraduateCourse{len(grad_courses)}")
            grad_courses.append(course)
            yield (course, rdf_type, ub("GraduateCourse"))
            yield (course, ub("name"), literal(f"GraduateCourse{len(grad_courses) - 1}"))
            yield (person, ub("teacherOf"), course)
        for p in range(rng.randint(*publications[kind])):
            pub = _iri(f"{person[1:-1]}/Publication{p}")
            yield (pub, rdf_type, ub("Publication"))
            yield (pub, ub("name"), literal(f"Publication{p}"))
            yield (pub, ub("publicationAuthor"), person)
    head = next(iri for kind, iri in faculty if kind == "FullProfessor")
    yield (head, ub("headOf"), d_iri)
    n_faculty = len(faculty)
    for i in range(n_faculty * rng.randint(8, 14)):
        student = _iri(f"{base}/UndergraduateStudent{i}")
        yield (student, rdf_type, ub("UndergraduateStudent"))
        yield (student, ub("memberOf"), d_iri)
        yield (student, ub("name"), literal(f"UndergraduateStudent{i}"))
        yield (student, ub("emailAddress"), literal(f"UndergraduateStudent{i}@d{dept}.edu"))
        for course in rng.sample(courses, min(len(courses), rng.randint(2, 4))):
            yield (student, ub("takesCourse"), course)
        if rng.random() < 0.2:
            yield (student, ub("advisor"), rng.choice(professors))
    for i in range(n_faculty * rng.randint(3, 4)):
        student = _iri(f"{base}/GraduateStudent{i}")
        yield (student, rdf_type, ub("GraduateStudent"))
        yield (student, ub("memberOf"), d_iri)
        yield (student, ub("name"), literal(f"GraduateStudent{i}"))
        yield (student, ub("emailAddress"), literal(f"GraduateStudent{i}@d{dept}.edu"))
        other = _iri(f"http://www.University{rng.randrange(n_universities)}.edu")
        yield (student, ub("undergraduateDegreeFrom"), other)
        for course in rng.sample(grad_courses, min(len(grad_courses), rng.randint(1, 3))):
            yield (student, ub("takesCourse"), course)
        yield (student, ub("advisor"), rng.choice(professors))
        if rng.random() < 0.22:
            yield (student, rdf_type, ub("TeachingAssistant"))
            yield (student, ub("teachingAssistantOf"), rng.choice(courses))
        if rng.random() < 0.29:
            yield (student, rdf_type, ub("ResearchAssistant"))
    for g in range(rng.randint(10, 20)):
        group = _iri(f"{base}/ResearchGroup{g}")
        yield (group, rdf_type, ub("ResearchGroup"))
        yield (group, ub("subOrganizationOf"), d_iri)
