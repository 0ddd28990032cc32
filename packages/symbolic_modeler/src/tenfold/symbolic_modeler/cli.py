"""``tenfold symbolic reduce|match|saturate``: the reducer, the matcher and equality saturation."""

from __future__ import annotations

from pathlib import Path

import click

from tenfold.core.cli import Finite, emit, json_option


@click.group("symbolic")
def symbolic() -> None:
    """Symbolic Reduction Modeler: reduce expressions, match patterns, saturate."""


@symbolic.command("reduce")
@click.argument("expr")
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Rules file: one 'lhs -> rhs [if cond]' per line, variables written x_.",
)
@click.option("--nonzero", is_flag=True, help="Allow x/x -> 1 (assume subterms are non-zero).")
@click.option("--no-orient", is_flag=True, help="Keep rules as written (no reduction ordering).")
@click.option("--step-budget", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--latex", is_flag=True, help="Print LaTeX instead of text.")
@json_option
def reduce_command(
    expr: str,
    rules_file: Path | None,
    nonzero: bool,
    no_orient: bool,
    step_budget: int,
    latex: bool,
    as_json: bool,
) -> None:
    """Reduce EXPR to its normal form."""
    from tenfold.symbolic_modeler._parser import parse_expression
    from tenfold.symbolic_modeler._printing import to_latex, to_text
    from tenfold.symbolic_modeler._reduce import reduce
    from tenfold.symbolic_modeler._rules import RuleSet

    rules = RuleSet.from_file(rules_file, orient=not no_orient) if rules_file else None
    term = parse_expression(expr)
    result = reduce(term, rules, assume_nonzero=nonzero, step_budget=step_budget)
    text, tex = to_text(result), to_latex(result)
    doc = {
        "input": expr,
        "result": text,
        "latex": tex,
        "size_before": term.size,
        "size_after": result.size,
    }
    emit(doc, as_json, tex if latex else text)


@symbolic.command("match")
@click.argument("pattern")
@click.argument("expr")
@click.option("--budget", type=click.IntRange(min=1), default=100_000, show_default=True)
@json_option
def match_command(pattern: str, expr: str, budget: int, as_json: bool) -> None:
    """Every substitution making PATTERN (variables x_, x__, x___) equal to EXPR."""
    from tenfold.symbolic_modeler._match import MatchBudget, match
    from tenfold.symbolic_modeler._parser import parse_expression, parse_pattern
    from tenfold.symbolic_modeler._printing import to_text
    from tenfold.symbolic_modeler._reduce import reduce

    p = reduce(parse_pattern(pattern))
    s = reduce(parse_expression(expr))
    found = []
    for subst in match(p, s, MatchBudget(budget)):
        found.append(
            {
                name: ([to_text(v) for v in value] if isinstance(value, tuple) else to_text(value))
                for name, value in sorted(subst.items())
            }
        )

    def text() -> str:
        if not found:
            return "no match"
        return "\n".join(
            ", ".join(f"{k} = {v}" for k, v in sub.items()) or "(matches, no variables)"
            for sub in found
        )

    emit({"pattern": pattern, "subject": expr, "matches": found}, as_json, text)


@symbolic.command("saturate")
@click.argument("expr")
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Rules file (equations 'lhs -> rhs [if cond]'); default: factoring, trig and exp rules.",
)
@click.option("--both-ways", is_flag=True, help="Also apply each rule right to left.")
@click.option("--node-limit", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--iteration-limit", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--time-limit", "time_limit_s", type=Finite(0.001), default=5.0, show_default=True)
@click.option("--strict", is_flag=True, help="Fail (exit 2) when a limit stops the run.")
@json_option
def saturate_command(
    expr: str,
    rules_file: Path | None,
    both_ways: bool,
    node_limit: int,
    iteration_limit: int,
    time_limit_s: float,
    strict: bool,
    as_json: bool,
) -> None:
    """The smallest term equal to EXPR found by equality saturation."""
    from tenfold.symbolic_modeler._parser import parse_expression
    from tenfold.symbolic_modeler._printing import to_text
    from tenfold.symbolic_modeler._rules import RuleSet
    from tenfold.symbolic_modeler._saturate import saturate

    rules = RuleSet.from_file(rules_file, orient=False) if rules_file else None
    result = saturate(
        parse_expression(expr),
        rules,
        node_limit=node_limit,
        iteration_limit=iteration_limit,
        time_limit_s=time_limit_s,
        both_ways=both_ways,
        strict=strict,
    )
    text = to_text(result.term)
    doc = {
        "input": expr,
        "result": text,
        "size_before": result.input_size,
        "size_after": result.size,
        "stop_reason": result.stop_reason.value,
        "iterations": result.iterations,
        "enodes": result.enodes,
        "eclasses": result.eclasses,
    }
    emit(doc, as_json, text)
