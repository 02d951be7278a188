"""The training-table summary saved with a model, and the token strings explanations show."""

import numpy as np
import pandas as pd

from polymodal.config import load_config
from polymodal.data.preprocess.text import TextPreprocessor
from polymodal.data.summary import table_summary
from polymodal.encoders.hf import minilm_path


def test_table_summary_roles_missing_rates_and_targets():
    frame = pd.DataFrame(
        {
            "review": ["good", " ", None, "bad"],
            "age": [1.0, np.nan, 3.0, 4.0],
            "label": ["a", "b", "a", "a"],
            "extra": [1, 2, 3, 4],
        }
    )
    cfg = load_config(
        {
            "inputs": [
                {"name": "review", "type": "text"},
                {"name": "numeric", "type": "numeric", "columns": ["age"]},
            ],
            "outputs": [{"name": "label", "task": "multiclass"}],
        }
    )
    summary = table_summary(frame, cfg.inputs, cfg.outputs)
    cols = {c["column"]: c for c in summary["columns"]}
    assert summary["n_rows"] == 4
    assert cols["review"]["role"] == "input review (text)" and cols["review"]["missing_rate"] == 0.5
    assert cols["age"]["role"] == "input numeric (numeric)" and cols["age"]["missing_rate"] == 0.25
    assert cols["label"]["role"] == "target (multiclass)" and cols["extra"]["role"] == "unused"
    assert cols["review"]["example"] == "good" and cols["review"]["n_unique"] == 2
    assert summary["targets"] == {"label": {"a": 3, "b": 1}}


def test_tokens_match_the_ids():
    words = TextPreprocessor(max_length=3)
    assert words.tokens("Hello, big world") == ["hello", ",", "big"]
    hf = TextPreprocessor(tokenizer=minilm_path(), max_length=16)
    tokens = hf.tokens("Lovely dresses!")
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "dresses" in tokens
    assert len(tokens) == len(hf.encode(["Lovely dresses!"])[0])
