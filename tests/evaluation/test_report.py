"""report.html: sections from the saved model alone, sections computed on a table, and the page
as a person sees it in headless Chromium."""

import base64
import json
import re

import pytest

from polymodal import Predictor
from polymodal.evaluation.report import ReportOptions, SavedModel, build_report, pick_examples
from polymodal.utils.browser import find_chromium, render

PNG = b"\x89PNG\r\n\x1a\n"
OPTIONS = ReportOptions(max_rows=40, examples=2, repeats=5, robustness_rows=12)


def images(html: str) -> dict[str, bytes]:
    """``{id: decoded PNG}`` of every embedded plot."""
    found = re.findall(r'<img class="plot" id="([^"]+)" alt="[^"]*" src="data:image/png;base64,([^"]+)"', html)  # fmt: skip
    return {ident: base64.b64decode(data) for ident, data in found}


@pytest.fixture(scope="module")
def report(concat_model, tmp_path_factory):
    """The concat model's report on its config's own test split (the default table)."""
    path = tmp_path_factory.mktemp("report") / "report.html"
    pred = Predictor.load(concat_model)
    pred.report(path, options=OPTIONS)
    return path, pred.report_


def test_report_on_the_default_table(report):
    path, summary = report
    html = path.read_text()
    for heading in ("Model", "Data", "Training", "Metrics", "Robustness", "Modality importance",
                    "Explained examples"):  # fmt: skip
        assert f"<h2>{heading}</h2>" in html or f"<h2>{heading} " in html, heading
    assert "(test split)" in html and "Computed here on" in html
    plots = images(html)
    expected = {"plot-training-curves", "plot-label-confusion-matrix", "plot-label-calibration",
                "plot-flag-roc-and-pr-curves", "plot-flag-calibration", "plot-robustness",
                "plot-modality-importance"}  # fmt: skip
    assert expected <= set(plots), set(plots)
    assert sum(k.startswith("plot-example-") for k in plots) == 2
    assert all(png[:8] == PNG and len(png) > 2000 for png in plots.values())
    assert html.count("<img ") == len(plots)  # nothing else to load
    assert "http://" not in html and "https://" not in html
    assert set(summary["importance"]["modalities"]) == {"review", "photo", "voice", "numeric", "size"}  # fmt: skip
    assert summary["metrics"]["label"]["accuracy"] is not None


def test_report_from_the_saved_model_alone(concat_model, report, tmp_path):
    """No table: config, data summary, curves, saved metrics and saved robustness."""
    (concat_model / "robustness.json").write_text(json.dumps(report[1]["robustness"]))
    try:
        art = Predictor.load(concat_model).artifact_
        saved = SavedModel("m", art.config, art.pipeline, art.model, art.metrics, art.history,
                           art.summary, json.loads((concat_model / "robustness.json").read_text()))  # fmt: skip
    finally:
        (concat_model / "robustness.json").unlink()
    result = build_report(saved, tmp_path / "r.html", None)
    html = (tmp_path / "r.html").read_text()
    assert "No table given" in html and "Saved with the model" in html
    assert "Training table: 38 rows" in html  # the training split, summarised at fit time
    assert set(images(html)) == {"plot-training-curves", "plot-robustness"}
    assert result["importance"] is None and result["n_rows"] == 0


def test_pick_examples_prefers_mistakes():
    import numpy as np

    evaluated = {"y": {"pred": np.array([0, 1, 1, 0, 2]), "y": np.array([0, 1, 0, 0, 1])}}
    assert pick_examples(evaluated, 5, 3) == [0, 2, 4]
    assert pick_examples({}, 5, 2) == [0, 1]
    assert pick_examples(evaluated, 5, 0) == []


@pytest.fixture(scope="module")
def chromium():
    if find_chromium() is None:
        pytest.skip(
            "headless Chromium is not installed, so report.html cannot be rendered here "
            "(Debian: apt-get install -y chromium; .ci/run installs it)"
        )


def test_report_renders_in_chromium(chromium, report, tmp_path):
    path, _ = report
    shot = tmp_path / "report.png"
    page = render(path, shot, width=1280)
    assert page.console_errors == []
    assert page.requests == []  # nothing fetched from the network
    expected = images(path.read_text())
    assert {i["id"] for i in page.images} == set(expected)
    for img in page.images:
        assert img["complete"] and img["naturalWidth"] > 0 and img["naturalHeight"] > 0, img
    assert shot.read_bytes()[:8] == PNG and page.height > 3000


def test_chromium_check_catches_broken_pages(chromium, tmp_path):
    """The checks above can fail: a broken image, a script error and a network fetch (to a
    closed local port, so it fails at once)."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><body><img id="broken" src="data:image/png;base64,AAAA">'
        '<img id="remote" src="http://127.0.0.1:9/x.png">'
        "<script>console.error('boom'); undefined_function();</script></body></html>"
    )
    result = render(page, timeout=60)
    sizes = {i["id"]: i["naturalWidth"] for i in result.images}
    assert sizes == {"broken": 0, "remote": 0}
    assert any("boom" in e for e in result.console_errors)
    assert any("undefined_function" in e for e in result.console_errors)
    assert result.requests == ["http://127.0.0.1:9/x.png"]
