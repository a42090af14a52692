"""The `rental` command loads and lists every sub-command (an import error shows up here first)."""

from typer.testing import CliRunner

from rental.cli import app


def test_every_command_group_has_help():
    runner = CliRunner()
    for group in ("services", "simulate", "history", "features"):
        result = runner.invoke(app, [group, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_a_shift_with_an_unknown_category_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(
        app, ["simulate", "history", "--items", "50", "--bookings", "500", "--trend-category", "hats",
              "--shift-start", "2026-01-01", "--out", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "unknown category 'hats'" in result.output
