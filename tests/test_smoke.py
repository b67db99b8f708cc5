"""The quickest end-to-end check: a sample model, the real command, parsed output."""

import csv
import io

from conftest import SAMPLES, run_cli


def test_weights_csv_on_sample_model():
    result = run_cli("weights", SAMPLES / "single_lstm.h5", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
    # LSTM(4) over 3 features: (3 + 4 + 1) * 16 values.
    assert len(rows) == (3 + 4 + 1) * 16
    assert list(rows[0])[:6] == ["layer", "tensor", "gate", "unit", "source", "value"]
