"""One tiny model trained once for the whole serving suite, served with a 200 KB body limit and
the table's folder as the data folder."""

import pytest
from fastapi.testclient import TestClient

from polymodal import Predictor
from polymodal.serving.app import create_app
from tests.tables import config_for, make_table


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    frame = make_table(folder, n=36)
    cfg = config_for("concat", epochs=1)
    cfg["outputs"].append({"name": "flag", "task": "binary"})
    model = folder / "model"
    Predictor(cfg).fit(frame.drop(columns=["score"]), base_dir=folder).save(model)
    client = TestClient(create_app(model, data_dir=folder, max_body_bytes=200_000))
    return folder, frame, client
