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
    "packages": {
        "TokenFunction": {
            "bytes": 31e6,
            "zipped_bytes": 11.04e6,
            "files": 2400,
            "largest": [("cryptography", 15.2e6)],
        },
        "CallWatcherFunction": {"bytes": 15e6, "files": 1200, "largest": [("websockets", 1.7e6)]},
    },
    "watcher_cold": {
        "floor": SUMMARY,
        "import": {"median": 110.0, "p99": 130.0, "min": 100.0, "n": 3},
        "container": {"median": 150.0, "p99": 170.0, "min": 140.0, "n": 3},
        "handler": {"median": 180.0, "p99": 200.0, "min": 170.0, "n": 3},
        "warm_wall": SUMMARY,
        "ratio": 1.8,
        "cpu_ratio": 1.7,
        "round_trips": {
            "cold": {"dynamodb": 2.0, "secretsmanager": 1.0, "sideband": 1.0},
            "warm": {"dynamodb": 2.0, "secretsmanager": 0.0, "sideband": 1.0},
        },
    },
    "watcher_imports": [("websockets", 12.0), ("botocore", 1.0)],
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
    assert "| offer and ICE gathering (in parallel with the token or secret) | 120 | 120 |" in text


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


def test_the_cold_start_shows_both_functions_side_by_side() -> None:
    cold = report.render(results()).split("## 2.")[0]

    assert "| | TokenFunction | CallWatcherFunction |" in cold
    assert (
        "| package, unzipped | 31.0 MB, 2,400 files (11.0 MB zipped) | 15.0 MB, 1,200 files |"
        in cold
    )
    assert "| **ratio, first response / floor** | **1.10x** | **1.80x** |" in cold
    assert "| ... + its container built | (built by the first request) | 150 ms" in cold
    assert "| largest | cryptography 15.2 MB | websockets 1.7 MB |" in cold
    # An import one function has and the other lacks is marked, not dropped.
    assert "| websockets | - | 12.0 |" in cold and "| botocore | 40.0 | 1.0 |" in cold
    # The target is the token function's alone.
    assert "Token function: **1.10x** the floor (target 1.3x: met)" in cold


def test_a_cpu_ratio_is_shown_only_when_measured() -> None:
    assert "| the same ratio in CPU time (less disturbed by other work) | - | 1.70x |" in (
        report.render(results())
    )
    text = report.render(results(cold__cpu_ratio=2.05))
    assert "| the same ratio in CPU time (less disturbed by other work) | 2.05x | 1.70x |" in text


STAGES = {
    "floor": [100.0, 90.0],
    "stages": {
        "import botocore.session (also in the floor)": [80.0, 72.0],
        "import jwt (PyJWT, cryptography)": [20.0, 18.0],
        "container: botocore client `dynamodb`": [40.0, 36.0],
        "first request (a mint: the key set, DynamoDB, the secret, OpenAI)": [12.0, 9.0],
    },
    "runs": 5,
}


def test_the_stages_say_what_the_target_leaves_only_when_it_is_missed() -> None:
    missed = report.render(results(cold__ratio=1.9, stages=STAGES)).split("## 2.")[0]

    assert "| container: botocore client `dynamodb` | 40.0 | 36.0 | 0.40 |" in missed
    assert "| **sum of the stages** | 152.0 | 135.0 | 1.50 |" in missed
    # 1.3 x 90 - 72 = 45 ms left for the 63 ms of the other stages.
    assert "is 1.3 x 90 - 72 = 45 ms of CPU in this run; its other stages took 63 ms" in missed
    assert "the largest: container: botocore client `dynamodb` 36 ms; import jwt" in missed

    met = report.render(results(stages=STAGES)).split("## 2.")[0]
    assert "| **sum of the stages** |" in met and "may spend beyond" not in met
    assert "### Where the token function's cold start goes" not in report.render(results())


def test_the_watch_events_round_trips_are_counted_apart_from_the_mints() -> None:
    section = report.render(results()).split("## 3.")[1].split("## 4.")[0]

    watch = section.split("### A watch event (the call watcher)")[1].split("###")[0]
    assert "| dynamodb | 2 | 2 |" in watch and "| sideband | 1 | 1 |" in watch
    assert "| secretsmanager | 1 | 0 |" in watch
    mint = section.split("### A watch event")[0]
    assert "sideband" not in mint


def test_the_load_over_the_in_process_figures_is_reported_when_measured() -> None:
    text = report.render(
        results(load_average=[2.0, 2.5], load_average_cold=[[2.0, 1.5, 1.0], [2.5, 2.0, 1.2]])
    )

    assert "Over sections 1 to 3 (one, five and fifteen minutes): 2.0, 1.5, 1.0 before," in text
    assert "2.5, 2.0, 1.2 after." in text


def test_the_live_section_reports_the_runs_figures_and_both_usage_cadences() -> None:
    from bench import live_cost

    measured = {
        "sessions": 10,
        "api_ms": {"p50": 101.0, "p90": 140.0},
        "started_ms": {"p50": 150.0, "p90": 190.0},
        "watched": {
            "seconds": 60.0,
            "turns": 12,
            "cpu_seconds": 0.6,
            "cpu_share": 0.01,
            "peak_rss_mb": 80.0,
            "usage_updates": 60,
            "sideband_audio_bytes": 8e6,
        },
        "audio": {"message_bytes": 6500, "parse_cpu_per_s": 1e-4, "drop_cpu_per_s": 1e-5},
        "per_session_hour": {
            "1/s": {"128": live_cost.per_session_hour(128, 3600)},
            "1/min": {"128": live_cost.per_session_hour(128, 60)},
        },
        "live_active_per_hour": 3.0,
    }
    text = "\n".join(live_cost.render(measured))
    assert (
        "| our 201 (JWT, admission, create, schedules, 15 s charge, watcher attached) | 101 | 140 |"
        in text
    )
    assert "| 1/s | 128 MB |" in text and "| 1/min | 128 MB |" in text
    assert "$3.00" in text and "1.00 % of one core" in text
    # Per usage update a read and a transaction: the faster cadence costs more in DynamoDB.
    fast, slow = (live_cost.per_session_hour(128, n)["dynamodb"] for n in (3600, 60))
    assert fast > slow > 0
    assert live_cost.render(None) == []


# --- section 10: the connect time per network profile (bench/network.py) --------------------


def setup(runs: list[float], **parts: float) -> dict[str, Any]:
    from bench import network

    return network.summarize([{"connectMs": ms, **parts} for ms in runs])


def network_results(calls: list[float], secrets: list[float]) -> dict[str, Any]:
    return {
        "runs": len(calls),
        "cold_runs": 2,
        "load_average": [0.5, 0.7],
        "profiles": {
            "mobile": {
                "links": "browser -> api RTT 70 ms",
                "setups": {
                    "calls/same/warm": setup(calls, tokenMs=0.1, apiMs=300),
                    "calls/cross/warm": setup([c + 150 for c in calls], apiMs=450),
                    "client_secrets/same/warm": setup(secrets, tokenMs=200, openaiMs=250),
                    "calls/same/cold": setup([c + 120 for c in calls[:2]]),
                },
            }
        },
    }


def test_the_network_section_renders_each_profile_with_median_p90_and_parts() -> None:
    from bench import network

    r = results(network=network_results([800, 820, 840, 860, 900], [950, 960, 990, 1000, 1100]))
    text = report.render(r)
    section = text.split(network.SECTION)[1]
    assert "### mobile" in section
    assert "| server-owned call, page's origin | **840** | 900 |" in section
    assert "| client secret, page's origin | **990** | 1100 |" in section
    assert "One-minute load average 0.5 before, 0.7 after." in section
    # Computed from the numbers: the flows separate, the API's own origin costs its 150 ms.
    assert "The server-owned call is 150 ms faster than the client secret" in section
    assert "the runs separate" in section
    assert "the API's own origin costs 150 ms at the median" in section
    assert "a cold function adds 90 ms at the median (2 runs)" in section


def test_overlapping_runs_are_said_not_to_separate_the_flows() -> None:
    from bench import network

    overlapping = network_results([800, 900, 1000, 1100, 1200], [850, 950, 1050, 1150, 1250])
    section = network.render(overlapping)
    verdict = next(line for line in section if "than the client secret" in line)
    assert "50 ms faster" in verdict and "not separated" in verdict


def test_no_network_measurement_renders_nothing_and_a_section_is_replaced_in_place() -> None:
    from bench import network

    assert network.render(None) == [] and network.render({"profiles": {}}) == []
    assert network.SECTION not in report.render(results())
    old = f"# Performance\n\n## 9. Live\n\nlive\n\n{network.SECTION}\n\nold figures\n"
    new = network.replace_section(old, [network.SECTION, "", "new figures"])
    assert new == f"# Performance\n\n## 9. Live\n\nlive\n\n{network.SECTION}\n\nnew figures\n"
    following = old + "\n## 11. Later\n\nstays\n"
    replaced = network.replace_section(following, [network.SECTION, "", "new figures"])
    assert "old figures" not in replaced and replaced.endswith("## 11. Later\n\nstays\n")
    appended = network.replace_section("# Performance\n", [network.SECTION, "", "x"])
    assert appended == f"# Performance\n\n{network.SECTION}\n\nx\n"


def test_percentiles_are_nearest_rank() -> None:
    from bench import network

    assert network.percentile([5, 1, 4, 2, 3], 0.9) == 5
    assert network.percentile(list(range(1, 11)), 0.9) == 9
    assert network.percentile([7], 0.9) == 7
