from pathlib import Path

import pytest

from bulk_pipeline.progress import LOG_INTERVAL_SECONDS, ProgressTracker, read_progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_speed_and_eta_follow_the_simulated_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = ProgressTracker(
        total=1_000, path=tmp_path / "progress.json", clock=clock, batches=5, duplicates=3
    )
    clock.now += 10
    tracker.add(created=150, updated=30, unchanged=10, failed=10)

    snapshot = tracker.snapshot()
    assert snapshot.processed == 200
    assert (snapshot.batch, snapshot.batches) == (1, 5)
    assert snapshot.records_per_second == pytest.approx(20.0)
    assert snapshot.records_per_minute == pytest.approx(1200.0)
    assert snapshot.eta_seconds == pytest.approx(40.0)
    assert "batch 1/5" in snapshot.describe()
    assert "3 duplicates" in snapshot.describe()

    clock.now += 30
    tracker.add(created=600)
    final = tracker.finish()
    assert final.records_per_second == pytest.approx(20.0)
    assert final.eta_seconds == pytest.approx(10.0)
    written = read_progress(tmp_path / "progress.json")
    assert written is not None and written.done and written.processed == 800


def test_eta_is_unknown_before_anything_was_processed() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(total=10, clock=clock)
    clock.now += 3
    assert tracker.snapshot().eta_seconds is None


def test_log_lines_are_spaced_by_the_interval() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(total=10, clock=clock)
    clock.now += LOG_INTERVAL_SECONDS - 0.1
    assert not tracker.due_for_log()
    clock.now += 0.2
    assert tracker.due_for_log()
    assert not tracker.due_for_log()
