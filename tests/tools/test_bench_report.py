"""The bench's report says only what its run measured: conclusions follow the numbers."""

from __future__ import annotations

import copy
from typing import Any

from bench import report

SUMMARY = {"median": 100.0, "p99": 120.0, "min": 90.0, "n": 3}
RESULTS: dict[str, Any] = {
    "machine": "test machine",
    "python": "3.13.0",
    "cold": {
        "floor": SUMMARY,
        "import": SUMMARY,
        "handler": SUMMARY,
        "warm_wall": SUMMARY,
        "ratio": 1.1,
        "round_trips": {
            "cold": {"dynamodb": 1.0, "jwks": 1.0, "openai": 1.0, "secretsmanager": 1.0},
            "warm": {"dynamodb": 1.0, "jwks": 0.0, "openai": 1.0, "secretsmanager": 0.0},
        },
    },
    "imports": [("botocore", 40.0)],
    "choices": {},
    "warm": {
        "request_us": 100.0,
        "reference_us": 50.0,
        "ratio": 2.0,
        "verify_us": 20.0,
        "sign_us": 30.0,
        "parts": {"quota": 40.0, "mint": 30.0},
        "runs": 5,
    },
    "package": {"bytes": 1e6, "source": "test", "largest": [("x", 1e6)]},
    "browser": None,
    "load": None,
}


def results(**changes: Any) -> dict[str, Any]:
    r = copy.deepcopy(RESULTS)
    for path, value in changes.items():
        target = r
        *parents, last = path.split("__")
        for name in parents:
            target = target[name]
        target[last] = value
    return r


def test_targets_met_print_no_explanation_of_a_miss() -> None:
    text = report.render(results())

    assert "target 1.3x: met" in text and "target 3.0x: met" in text
    assert "not met" not in text and report.NOT_MEASURED not in text.split("## 3.")[0]


def test_a_missed_cold_target_is_explained_and_the_explanation_is_marked() -> None:
    text = report.render(results(cold__ratio=1.9))

    cold = text.split("## 2.")[0]
    assert "target 1.3x: **not met**" in cold
    assert f"{report.NOT_MEASURED} why the target is not met" in cold


def test_a_missed_warm_target_names_the_largest_part_and_its_measured_cost() -> None:
    r = results(warm__ratio=8.0, warm__parts={"quota": 200.0, "mint": 30.0})

    warm = report.render(r).split("## 2.")[1].split("## 3.")[0]

    assert "The largest part, quota, costs 200 us alone: 4.0x the whole reference." in warm
    # 200 us is above 3x the 50 us reference: only then is the target called unreachable.
    assert "cannot be met while that client stays" in warm


def test_the_round_trip_conclusion_follows_the_counts_of_the_run() -> None:
    assert "So a cold request makes 4 and a warm one 2 in this run." in report.render(results())

    uneven = results(
        cold__round_trips={
            "cold": {"dynamodb": 1.0, "jwks": 0.5, "openai": 1.0},
            "warm": {"dynamodb": 1.0, "openai": 1.0},
        }
    )
    text = report.render(uneven)
    assert "So a cold request makes" not in text
    assert "no single count is given" in text


def test_flat_throughput_is_reported_only_when_it_did_not_grow() -> None:
    def rows(rps_at_4: float) -> dict[str, Any]:
        row = {"p50_ms": 1, "p99_ms": 2, "statuses": {"200": 300}}
        return {
            "many users": [
                {"concurrency": 1, "rps": 100.0, **row},
                {"concurrency": 4, "rps": rps_at_4, **row},
            ]
        }

    flat = "raised throughput by at most 5% in this run (100.0 req/s at 1, at most 105.0 above"
    assert flat in report.render(results(load=rows(105.0)))
    assert "raised throughput by at most" not in report.render(results(load=rows(300.0)))


def test_the_machine_load_of_the_run_is_reported_when_measured() -> None:
    assert "load average" not in report.render(results())

    text = report.render(results(load_average=[6.5, 7.25]))

    assert "load average was 6.5 when the run started and 7.2 when it ended" in text


def test_a_bytecode_saving_is_claimed_only_when_the_run_measured_one() -> None:
    def choices(source: float, built: float) -> dict[str, float]:
        return {
            "handler import, sources compiled at every start": source,
            "handler import, built package with unchecked-hash .pyc": built,
        }

    assert "Shipping bytecode saved 40 ms" in report.render(results(choices=choices(140, 100)))
    text = report.render(results(choices=choices(185, 376)))
    assert "saved" not in text and "no saving measured" in text


def flows(calls: list[float], secrets: list[float]) -> dict[str, Any]:
    def flow(runs: list[float]) -> dict[str, Any]:
        ordered = sorted(runs)
        parts = {"offerMs": 120.0, "sdpMs": 50.0}
        return {"runs": len(runs), "connect_ms": runs, "median_ms": ordered[len(runs) // 2],
                "parts_median_ms": parts}  # fmt: skip

    return {"calls": flow(calls), "client_secrets": flow(secrets)}


def test_the_flows_verdict_follows_the_runs() -> None:
    results = copy.deepcopy(RESULTS)
    results["browser_flows"] = flows([200.0, 210.0, 220.0], [230.0, 240.0, 250.0])
    faster = "The server-owned call's median is 30 ms faster than the client secret's, and no"
    assert faster in report.render(results)
    results["browser_flows"] = flows([260.0, 270.0, 280.0], [230.0, 240.0, 250.0])
    assert "median is 30 ms slower than the client secret's, and no" in report.render(results)
    results["browser_flows"] = flows([200.0, 255.0, 260.0], [230.0, 240.0, 250.0])
    text = report.render(results)
    assert "median is 15 ms slower than the client secret's; their runs overlap" in text
    assert "(200-260 vs 230-250 ms)" in text
    assert "| offer and ICE gathering | 120 | 120 |" in text


CALL_SETUP: dict[str, Any] = {
    "cold": {"dynamodb": 4.0, "jwks": 1.0, "lambda": 1.0, "openai": 1.0, "scheduler": 1.0},
    "warm": {"dynamodb": 4.0, "jwks": 0.0, "lambda": 1.0, "openai": 1.0, "scheduler": 1.0},
    "steps": [[["dynamodb", "dynamodb"], ["dynamodb"], ["openai"], ["dynamodb", "lambda"]]] * 3,
    "hold_ms": 50,
}


def test_steps_group_what_was_sent_together_and_follow_what_had_answered() -> None:
    spans = [
        ("dynamodb", 0.00, 0.05),  # the spend read...
        ("dynamodb", 0.001, 0.052),  # ...beside the quota
        ("dynamodb", 0.053, 0.10),  # the admission, after the quota answered
        ("openai", 0.11, 0.16),
        ("scheduler", 0.161, 0.21),
        ("dynamodb", 0.162, 0.215),
        ("lambda", 0.160, 0.20),
    ]

    assert report.steps(spans) == [
        ["dynamodb", "dynamodb"],
        ["dynamodb"],
        ["openai"],
        ["dynamodb", "lambda", "scheduler"],
    ]
    assert report.steps([]) == []


def test_the_call_setup_section_reports_the_counts_and_steps_of_the_run() -> None:
    text = report.render(results(call_setup=CALL_SETUP))

    section = text.split("### A call setup")[1].split("## 4.")[0]
    assert "| dynamodb | 4 | 4 |" in section and "| lambda | 1 | 1 |" in section
    assert "3. openai" in section
    assert "So a warm call setup makes 7 round trips in 4 steps of wall" in section


def test_call_setups_that_differ_between_processes_get_no_conclusion() -> None:
    differing = copy.deepcopy(CALL_SETUP)
    differing["steps"][1] = [["dynamodb"], ["dynamodb"], ["dynamodb"], ["openai"]]

    section = report.render(results(call_setup=differing)).split("### A call setup")[1]

    assert "differ between processes" in section and "So a warm call setup" not in section
    assert "Not measured in this run." in report.render(results()).split("### A call setup")[1]
