"""`rental train` on bad input: a clear message and exit code 2, not a traceback."""

from typer.testing import CliRunner

from rental.cli import app


def test_train_without_a_history_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("RENTAL_DATA_DIR", str(tmp_path))
    from rental.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["train"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert "rental simulate history" in " ".join(result.output.split())  # rich wraps long lines
