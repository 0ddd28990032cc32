"""Symbolic Reduction Modeler: A hash-consed term rewriter checked against SymPy."""

from typing import TYPE_CHECKING

from tenfold.core.exports import lazy_exports

if TYPE_CHECKING:
    from tenfold.symbolic_modeler._batch import reduce_many as reduce_many
    from tenfold.symbolic_modeler._match import ManyToOneMatcher as ManyToOneMatcher
    from tenfold.symbolic_modeler._match import MatchBudget as MatchBudget
    from tenfold.symbolic_modeler._match import match as match
    from tenfold.symbolic_modeler._numeric import compile_native as compile_native
    from tenfold.symbolic_modeler._numeric import emit_llvm as emit_llvm
    from tenfold.symbolic_modeler._numeric import lambdify as lambdify
    from tenfold.symbolic_modeler._parser import parse_expression as parse_expression
    from tenfold.symbolic_modeler._parser import parse_pattern as parse_pattern
    from tenfold.symbolic_modeler._printing import to_latex as to_latex
    from tenfold.symbolic_modeler._printing import to_text as to_text
    from tenfold.symbolic_modeler._reduce import expand as expand
    from tenfold.symbolic_modeler._reduce import reduce as reduce
    from tenfold.symbolic_modeler._rules import EXP_RULES as EXP_RULES
    from tenfold.symbolic_modeler._rules import TRIG_RULES as TRIG_RULES
    from tenfold.symbolic_modeler._rules import Rule as Rule
    from tenfold.symbolic_modeler._rules import RuleSet as RuleSet
    from tenfold.symbolic_modeler._rules import parse_rules as parse_rules
    from tenfold.symbolic_modeler._saturate import ALGEBRA_RULES as ALGEBRA_RULES
    from tenfold.symbolic_modeler._saturate import SaturationResult as SaturationResult
    from tenfold.symbolic_modeler._saturate import StopReason as StopReason
    from tenfold.symbolic_modeler._saturate import saturate as saturate
    from tenfold.symbolic_modeler._sympy_bridge import from_sympy as from_sympy
    from tenfold.symbolic_modeler._sympy_bridge import to_sympy as to_sympy
    from tenfold.symbolic_modeler._terms import Term as Term
    from tenfold.symbolic_modeler._terms import fn as fn
    from tenfold.symbolic_modeler._terms import num as num
    from tenfold.symbolic_modeler._terms import sym as sym
    from tenfold.symbolic_modeler.errors import SymbolicModelerError as SymbolicModelerError

__all__ = [
    "ALGEBRA_RULES",
    "EXP_RULES",
    "TRIG_RULES",
    "ManyToOneMatcher",
    "MatchBudget",
    "Rule",
    "RuleSet",
    "SaturationResult",
    "StopReason",
    "SymbolicModelerError",
    "Term",
    "compile_native",
    "emit_llvm",
    "expand",
    "fn",
    "from_sympy",
    "lambdify",
    "match",
    "num",
    "parse_expression",
    "parse_pattern",
    "parse_rules",
    "reduce",
    "reduce_many",
    "saturate",
    "sym",
    "to_latex",
    "to_sympy",
    "to_text",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._batch": ["reduce_many"],
        "._match": ["ManyToOneMatcher", "MatchBudget", "match"],
        "._numeric": ["compile_native", "emit_llvm", "lambdify"],
        "._parser": ["parse_expression", "parse_pattern"],
        "._printing": ["to_latex", "to_text"],
        "._reduce": ["expand", "reduce"],
        "._rules": ["EXP_RULES", "Rule", "RuleSet", "TRIG_RULES", "parse_rules"],
        "._saturate": ["ALGEBRA_RULES", "SaturationResult", "StopReason", "saturate"],
        "._sympy_bridge": ["from_sympy", "to_sympy"],
        "._terms": ["Term", "fn", "num", "sym"],
        ".errors": ["SymbolicModelerError"],
    },
    __all__,
)
