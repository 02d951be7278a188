"""`polymodal explain` and `polymodal report` as a user runs them."""

import json

from typer.testing import CliRunner

from polymodal.cli import app

runner = CliRunner()


def test_explain_rows_and_importance(five_table, concat_model, tmp_path):
    folder, _ = five_table
    out = tmp_path / "why"
    args = ["explain", str(concat_model), str(folder / "table.csv"), "--rows", "0,5,9"]
    res = runner.invoke(app, [*args, "--importance", "--repeats", "3", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "row 5: label =" in res.output and "| review | label | ablation |" in res.output
    for r in (0, 5, 9):
        assert json.loads((out / f"row_{r}.json").read_text())["row"] == r
        assert (out / f"row_{r}.png").stat().st_size > 5000
    result = json.loads((out / "importance.json").read_text())
    assert set(result["metric"]) == {"label", "flag"} and result["repeats"] == 3
    assert (out / "importance.png").stat().st_size > 5000 and (out / "importance.md").exists()


def test_explain_errors_exit_2_with_the_reason(five_table, concat_model):
    table = str(five_table[0] / "table.csv")
    res = runner.invoke(app, ["explain", str(concat_model), table, "--rows", "3,100"])
    assert res.exit_code == 2 and "rows [100] are out of range" in res.output
    res = runner.invoke(app, ["explain", str(concat_model), table])
    assert res.exit_code == 2 and "pass --rows 0,5,9 and/or --importance" in res.output
    res = runner.invoke(app, ["explain", str(concat_model), table, "--rows", "a,b"])
    assert res.exit_code == 2 and "row positions like 0,5,9" in res.output
    res = runner.invoke(app, ["report", str(concat_model / "nope")])
    assert res.exit_code == 2 and "not a polymodal model directory" in res.output


def test_report_command(five_table, concat_model, tmp_path):
    folder, _ = five_table
    html = tmp_path / "r" / "report.html"
    args = ["report", str(concat_model), "--data", str(folder / "table.csv"), "-o", str(html)]
    args += ["--max-rows", "12", "--examples", "1", "--repeats", "2", "--robustness-rows", "4"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert f"wrote {html} (12 rows" in res.output, res.output
    text = html.read_text()
    assert "table.csv (sample): 12 rows" in text and 'id="plot-example-' in text
