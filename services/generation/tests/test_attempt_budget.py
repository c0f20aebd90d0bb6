import pytest
from generation_service.attempt_budget import CALLER_DEADLINE_BACKUP_SECONDS, AttemptBudget
from generation_service.routing_config import Timeouts

TIMEOUTS = Timeouts(connect=2, read=30, total=100)


def test_without_a_caller_deadline_the_deployments_timeouts_bound_the_attempt():
    budget = AttemptBudget(TIMEOUTS, None)
    assert not budget.callers_deadline
    timeout = budget.client_timeout(streamed=True)
    assert (timeout.total, timeout.connect, timeout.sock_connect, timeout.sock_read) == (100, 2, 2, 30)
    assert budget.timeout_error().code == "upstream_timeout"


def test_a_caller_deadline_before_the_total_timeout_bounds_it_a_moment_after_grpc_does():
    budget = AttemptBudget(TIMEOUTS, 5.0)
    assert budget.callers_deadline
    assert budget.client_timeout(streamed=True).total == 5.0 + CALLER_DEADLINE_BACKUP_SECONDS
    # The caller's time ran out: no retry can help, and the upstream is not to blame.
    assert budget.timeout_error().code == "timeout"


@pytest.mark.parametrize("remaining", [100.0, 500.0])
def test_a_caller_deadline_past_the_total_timeout_changes_nothing(remaining):
    budget = AttemptBudget(TIMEOUTS, remaining)
    assert not budget.callers_deadline
    assert budget.client_timeout(streamed=False).total == 100
    assert budget.timeout_error().code == "upstream_timeout"


def test_a_whole_answer_has_no_read_timeout():
    # Silent while the model generates all of it: only the total timeout and the deadline bound that.
    assert AttemptBudget(TIMEOUTS, None).client_timeout(streamed=False).sock_read is None
