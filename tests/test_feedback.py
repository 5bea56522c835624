"""The one-line feedback of a failure, and how failures are grouped into causes."""

from types import SimpleNamespace
from typing import cast

import pytest

from shared.grading.plugin import feedback_line
from shared.grading.results import cause_key


def report(message: str) -> pytest.TestReport:
    crash = SimpleNamespace(message=message)
    return cast(pytest.TestReport, SimpleNamespace(longrepr=SimpleNamespace(reprcrash=crash)))


def test_a_quoted_log_gives_its_last_error_as_the_reason() -> None:
    message = (
        "the notifications service exited with code 1 before consuming from the queue q.\n"
        "Its log (/tmp/x/notifications.log):\n"
        "Traceback (most recent call last):\n"
        '  File "notifications/__main__.py", line 3, in <module>\n'
        "NotImplementedError: TODO(lab 5): the consumer loop"
    )
    line = feedback_line(report(message))
    assert line.startswith("the notifications service exited with code 1")
    assert line.endswith("the last error: NotImplementedError: TODO(lab 5): the consumer loop")


def test_an_empty_quoted_log_is_said_to_be_empty_not_pytests_explanation() -> None:
    message = (
        "AssertionError: the app must log a WARNING; the log ends with:\n"
        "assert False\n"
        " +  where False = any(<generator object at 0x7f>)"
    )
    line = feedback_line(report(message))
    assert line == "the app must log a WARNING; the log ends with: | (the log is empty)"


def test_a_message_without_a_log_is_its_first_line() -> None:
    line = feedback_line(report("AssertionError: GET /items must answer 200\nassert 404 == 200"))
    assert line == "GET /items must answer 200"


def test_one_cause_in_different_test_runs_queues_and_answer_shapes_is_one_key() -> None:
    exited = "exited before consuming from the queue hl_test.{}.{}.notifications. | NotImplemented"
    keys = {
        cause_key(exited.format(run, name))
        for run, name in [("e4957be28c", "main"), ("0a1b2c3d4e", "race")]
    }
    assert len(keys) == 1, keys
    plain = 'POST /orders must answer 201: POST /orders answered 501: \'{"detail":"TODO"}\''
    listed = "40 orders must answer 201; 3 did not, first: POST /orders answered 501: '{...}'"
    assert cause_key(plain) == cause_key(listed) == "POST /orders answered 501"
    crash = cause_key("POST /orders answered 500: boom")
    assert crash != cause_key(plain), "a crash and a missing route are different causes"


def test_a_quote_without_an_error_adds_nothing_and_an_empty_one_says_so() -> None:
    stats = "locust said:\nType Name # reqs\nAggregated 2000 2000 2000 21"
    assert feedback_line(report(f"the run failed. Exit code 1; {stats}")) == (
        "the run failed. Exit code 1; locust said: (see the traceback)"
    )
    assert feedback_line(report("the run failed. Exit code 1; locust said:")).endswith(
        "said: | (empty)"
    )


def test_a_quote_with_a_stub_warning_and_no_error_names_the_stub() -> None:
    message = (
        "the run failed. Output ends:\n"
        "[2026-12-02 00:40:11] WARNING/slo: TODO(lab 7): the SLO check is not written yet\n"
        "Type Name # reqs\n"
        "Aggregated 2000 2000 2000 21"
    )
    assert feedback_line(report(message)) == (
        "the run failed. Output ends: | not written yet: [2026-12-02 00:40:11] WARNING/slo: "
        "TODO(lab 7): the SLO check is not written yet"
    )
