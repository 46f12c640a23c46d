"""Configuration from the environment and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bulk_pipeline.sandbox.__main__ import main as sandbox_main
from bulk_pipeline.sandbox.ratelimit import RateLimit
from bulk_pipeline.sandbox.server import RATE_LIMIT_ENV, SEARCH_RATE_LIMIT_ENV, SandboxConfig


def test_rate_limit_spec() -> None:
    assert RateLimit.parse("100/10000") == RateLimit(100, 10_000)
    assert RateLimit.parse("0") is None
    for bad in ("100", "x/10", "5/0", "-1/100"):
        with pytest.raises(ValueError):
            RateLimit.parse(bad)


def test_defaults_are_hubspots() -> None:
    config = SandboxConfig.from_env({})
    assert config.rate_limit == RateLimit(100, 10_000)
    assert config.search_rate_limit == RateLimit(4, 1_000)
    assert config.daily_limit == 250_000
    assert (config.error_rate, config.drop_rate, config.latency_ms) == (0.0, 0.0, 0.0)


def test_environment_sets_the_limits() -> None:
    config = SandboxConfig.from_env({RATE_LIMIT_ENV: "190/10000", SEARCH_RATE_LIMIT_ENV: "10/1000"})
    assert config.rate_limit == RateLimit(190, 10_000)
    assert config.search_rate_limit == RateLimit(10, 1_000)
    unlimited = SandboxConfig.from_env({RATE_LIMIT_ENV: "0"})
    assert unlimited == SandboxConfig.unlimited()


def test_command_line_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RATE_LIMIT_ENV, "50/1000")
    seen: dict[str, object] = {}
    monkeypatch.setattr(
        "bulk_pipeline.sandbox.__main__.serve",
        lambda port, host, *, db_path, config: seen.update(port=port, config=config),
    )
    sandbox_main(["--port", "0", "--error-rate", "0.1", "--daily-limit", "0", "--seed", "3"])
    config = seen["config"]
    assert isinstance(config, SandboxConfig)
    assert seen["port"] == 0
    assert config.rate_limit == RateLimit(50, 1000), "the environment is the starting point"
    assert config.daily_limit is None
    assert (config.error_rate, config.seed) == (0.1, 3)
    with pytest.raises(SystemExit):
        sandbox_main(["--drop-rate", "3"])


def test_pipedrive_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}
    monkeypatch.setattr(
        "bulk_pipeline.sandbox.__main__.serve",
        lambda port, host, *, db_path, config: seen.update(config=config),
    )
    sandbox_main(
        ["--pipedrive-plan", "premium", "--pipedrive-seats", "2", "--pipedrive-search-lag", "1.5"]
    )
    config = seen["config"]
    assert isinstance(config, SandboxConfig)
    assert config.pipedrive.daily_budget == 30_000 * 5 * 2
    assert config.pipedrive.burst_limit == RateLimit(100, 2_000)
    assert config.pipedrive.search_lag_s == 1.5
    sandbox_main(["--pipedrive-daily-budget", "0"])
    assert (
        isinstance(seen["config"], SandboxConfig) and seen["config"].pipedrive.daily_budget is None
    )
    sandbox_main(["--rate-limit", "0"])
    assert seen["config"] == SandboxConfig.unlimited(), "0 turns off every dialect's limits"


def test_default_pipedrive_limits_are_a_growth_plan() -> None:
    pipedrive = SandboxConfig.from_env({}).pipedrive
    assert pipedrive.daily_budget == 30_000 * 2 * 3
    assert pipedrive.burst_limit == RateLimit(40, 2_000)
    assert pipedrive.oauth_burst_limit == RateLimit(160, 2_000)
    assert pipedrive.search_limit == RateLimit(10, 2_000)
    assert SandboxConfig.unlimited().pipedrive.daily_budget is None


def test_hubspot_pipelines_flag_reads_a_json_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, object] = {}
    monkeypatch.setattr(
        "bulk_pipeline.sandbox.__main__.serve",
        lambda port, host, *, db_path, config: seen.update(config=config),
    )
    pipelines = tmp_path / "pipelines.json"
    stages = [{"id": "new", "label": "New", "probability": 0.1}]
    pipelines.write_text(json.dumps([{"id": "renewals", "label": "Renewals", "stages": stages}]))
    sandbox_main(["--hubspot-pipelines", str(pipelines), "--rate-limit", "0"])
    config = seen["config"]
    assert isinstance(config, SandboxConfig)
    assert [p.id for p in config.deal_pipelines] == ["renewals"]
    assert config.deal_pipelines[0].stages[0].probability == 0.1
    assert config.rate_limit is None, "and the other flags still apply"
    pipelines.write_text("[{")
    with pytest.raises(SystemExit):
        sandbox_main(["--hubspot-pipelines", str(pipelines)])


def test_attio_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}
    monkeypatch.setattr(
        "bulk_pipeline.sandbox.__main__.serve",
        lambda port, host, *, db_path, config: seen.update(config=config),
    )
    sandbox_main(["--attio-write-limit", "5/1000"])
    config = seen["config"]
    assert isinstance(config, SandboxConfig)
    assert config.attio.write_limit == RateLimit(5, 1_000)
    assert config.attio.read_limit == RateLimit(100, 1_000), "Attio's documented read limit"
    sandbox_main(["--attio-read-limit", "0"])
    assert isinstance(seen["config"], SandboxConfig) and seen["config"].attio.read_limit is None
