"""Symbolic Reduction Modeler: A hash-consed term rewriter checked against SymPy."""

from tenfold.symbolic_modeler._parser import parse_expression as parse_expression
from tenfold.symbolic_modeler._parser import parse_pattern as parse_pattern
from tenfold.symbolic_modeler._printing import to_latex as to_latex
from tenfold.symbolic_modeler._printing import to_text as to_text
from tenfold.symbolic_modeler._reduce import expand as expand
from tenfold.symbolic_modeler._reduce import reduce as reduce
from tenfold.symbolic_modeler._sympy_bridge import from_sympy as from_sympy
from tenfold.symbolic_modeler._sympy_bridge import to_sympy as to_sympy
from tenfold.symbolic_modeler._terms import Term as Term
from tenfold.symbolic_modeler._terms import fn as fn
from tenfold.symbolic_modeler._terms import num as num
from tenfold.symbolic_modeler._terms import sym as sym
from tenfold.symbolic_modeler.errors import SymbolicModelerError as SymbolicModelerError

__all__ = [
    "SymbolicModelerError",
    "Term",
    "expand",
    "fn",
    "from_sympy",
    "num",
    "parse_expression",
    "parse_pattern",
    "reduce",
    "sym",
    "to_latex",
    "to_sympy",
    "to_text",
]
