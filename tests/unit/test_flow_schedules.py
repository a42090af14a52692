"""The served deployments: one per flow, on the settings' cron (UTC), importable from anywhere."""

from __future__ import annotations

import flows  # noqa: F401  (before Prefect: its offline environment)
from flows.environment import offline_environment
from rental.settings import Settings


def test_each_flow_is_served_on_its_settings_cron_in_utc(tmp_path):
    from flows.schedules import deployments

    settings = Settings(data_dir=tmp_path, flow_retrain_cron="0 4 * * 2", flow_monitor_cron="*/5 * * * *")
    served = {d.name: d for d in deployments(settings)}
    assert set(served) == {"retrain-scheduled", "materialize-scheduled", "compact-scheduled", "monitor-scheduled"}
    crons = {name: [(s.schedule.cron, s.schedule.timezone) for s in d.schedules] for name, d in served.items()}
    assert crons["retrain-scheduled"] == [("0 4 * * 2", "UTC")]
    assert crons["monitor-scheduled"] == [("*/5 * * * *", "UTC")]
    assert crons["materialize-scheduled"] == [(settings.flow_materialize_cron, "UTC")]
    assert served["retrain-scheduled"].entrypoint == "flows.retrain.retrain"  # a module path, not a file


def test_prefect_runs_offline_with_its_home_under_the_data_dir(tmp_path):
    env = offline_environment(Settings(data_dir=tmp_path))
    assert env["PREFECT_HOME"] == str(tmp_path / "flows" / "prefect")
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and env["DO_NOT_TRACK"] == "1"
