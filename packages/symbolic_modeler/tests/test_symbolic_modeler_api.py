import tenfold.symbolic_modeler as api
from tenfold.symbolic_modeler import EXP_RULES, TRIG_RULES, RuleSet, parse_rules


def test_rule_sets_and_saturation_are_public() -> None:
    for name in ["RuleSet", "Rule", "parse_rules", "TRIG_RULES", "EXP_RULES", "ALGEBRA_RULES"]:
        assert name in api.__all__
    for name in ["saturate", "SaturationResult", "StopReason"]:
        assert name in api.__all__
    # the shipped rule sets are rule texts that compile, alone or together
    assert len(RuleSet.of(TRIG_RULES, EXP_RULES)) == len(TRIG_RULES) + len(EXP_RULES)
    assert [str(r.lhs) for r in parse_rules("\n".join(TRIG_RULES))] == [
        str(api.Rule.parse(t).lhs) for t in TRIG_RULES
    ]
