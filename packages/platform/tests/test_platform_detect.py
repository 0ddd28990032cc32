"""The learned detector: an auto-learner model behind the autoblocker's detector hook."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenfold.auto_learner import Model
from tenfold.autoblocker_ledger import Autoblocker, EmbeddedLedger, SecurityEvent, load_rules
from tenfold.pipeline_engine import Batch
from tenfold.platform import PlatformError
from tenfold.platform._detect import FEATURES, LearnedDetector, train_detector, training_frame
from tenfold.platform._transport import LedgerSink

# A rule that would need 1000 failures: every ban below is the model's.
RULES = """
[[rule]]
name = "sshd"
domain = "auth"
kind = "ssh_failed_login"
max_retry = 1000
find_time_s = 60
ban_time_s = 600
"""


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "detector.json"
    report = train_detector(out, n_sources=600, budget_s=2.0)
    assert report["rows"] > 1000 and report["validation"] > 0.9  # roc_auc on held-out rows
    return out


def _ev(n: int, subject: str, t_ms: int, port: int = 22) -> SecurityEvent:
    return SecurityEvent(
        f"e{n}-{subject}",
        "auth",
        "ssh_failed_login",
        subject,
        t_ms,
        {"line": f"Failed password for root from {subject} port {port} ssh2"},
    )


def test_training_rows_are_labelled_features() -> None:
    df = training_frame(50, seed=1)
    assert list(df.columns) == [*FEATURES, "attack"]
    assert set(df["attack"]) == {0, 1}
    assert df.equals(training_frame(50, seed=1))  # generated deterministically


def test_the_model_bans_a_burst_and_not_a_slow_user(model_file: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    det = LearnedDetector(Model.load(model_file))
    blocker = Autoblocker(load_rules(rules), [det])
    t0 = 1_700_000_000_000
    burst = [_ev(i, "203.0.113.9", t0 + 150 * i, 22) for i in range(15)]
    slow = [_ev(i, "192.0.2.10", t0 + 25_000 * i) for i in range(4)]
    made = [d for ev in sorted(burst + slow, key=lambda e: e.time_ms) for d in blocker.observe(ev)]
    assert [(d.action, d.value, d.rule) for d in made] == [("ban", "203.0.113.9", "learned")]
    assert made[0].cause.startswith("e") and "P(attack)" in made[0].reason
    assert det.scored >= 3

    # Through the ledger sink: a restart rebuilds the detector's windows from the
    # ledger and records nothing twice.
    store = tmp_path / "ledger"

    def run(led: EmbeddedLedger) -> LedgerSink:
        blocker = Autoblocker(load_rules(rules), [LearnedDetector(Model.load(model_file))])
        sink = LedgerSink(led, blocker, tmp_path / "p.json")
        sink.open("p")
        sink.write(Batch(burst, 0, {"t/0": 15}))
        return sink

    with EmbeddedLedger(store) as led:
        assert run(led).decisions == 1
        size = led.size
    with EmbeddedLedger(store) as led:
        sink = run(led)
        assert (led.size, sink.decisions, sink.duplicates) == (size, 0, 15)


def test_a_model_of_other_features_is_refused(tmp_path: Path) -> None:
    import pandas as pd

    from tenfold.auto_learner import AutoLearner

    df = pd.DataFrame({"x": [float(i % 7) for i in range(200)], "y": [i % 2 for i in range(200)]})
    model = AutoLearner().fit(df, "y", budget_s=1.0, families=("linear",)).model
    with pytest.raises(PlatformError, match="must take features among"):
        LearnedDetector(model)
