"""Poll timing that learns, on a fake clock: a simulated key with many tasks in flight."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field

from airflow_provider_nanobanana.api import TaskState, TaskStatus
from airflow_provider_nanobanana.scheduling import MIN_SAMPLES, DurationEstimates, PollTicket, ReadPlanner

INITIAL_DELAY, POLL_INTERVAL = 5.0, 3.0
MODEL = "nano-banana"


@dataclass
class Run:
    delays: list[float] = field(default_factory=list)
    reads: int = 0
    early_reads: int = 0
    """Reads of a task younger than the shortest task: they cannot succeed."""
    gaps: list[float] = field(default_factory=list)
    """Time between a task's reads (and from submission to its first read)."""

    def quantile(self, q: float) -> float:
        return statistics.quantiles(self.delays, n=100)[round(q * 100) - 1]

    @property
    def reads_per_task(self) -> float:
        return self.reads / len(self.delays)


def simulate(
    *,
    learns: bool = True,
    tasks: int = 1000,
    reads_per_second: float = 100.0,
    seconds: float = 240.0,
    warmup: float = 60.0,
    shortest: float = 10.0,
    longest: float = 20.0,
) -> Run:
    """Tasks take ``shortest`` to ``longest`` seconds and are replaced the moment they are seen done;
    the budget grants ``reads_per_second`` reads at an even pace, as the scheduler does. Without
    ``learns`` the planner never learns durations: today's cadence, stalest first."""
    rng = random.Random(7)
    durations = DurationEstimates(min_samples=MIN_SAMPLES if learns else 10**9)
    planner = ReadPlanner(durations)
    finishes: dict[PollTicket, float] = {}
    last_seen: dict[PollTicket, float] = {}
    run = Run()

    def submit(at: float) -> None:
        ticket = PollTicket(MODEL, at, INITIAL_DELAY, POLL_INTERVAL)
        finishes[ticket] = at + rng.uniform(shortest, longest)
        last_seen[ticket] = at
        planner.add(ticket)

    for number in range(tasks):
        submit(number * 15.0 / tasks)
    now = 0.0
    while now < seconds:
        now += 1.0 / reads_per_second
        ticket = planner.pop(now)
        if ticket is None:
            continue
        counted = now >= warmup
        if counted:
            run.reads += 1
            run.early_reads += now - ticket.created_at < shortest
            run.gaps.append(now - last_seen[ticket])
        last_seen[ticket] = now
        if finishes[ticket] <= now:
            finished = finishes.pop(ticket)
            durations.observe(MODEL, finished - ticket.created_at)
            if counted:
                run.delays.append(now - finished)
            submit(now)
        else:
            ticket.read(now)
            planner.add(ticket)
    return run


def test_a_binding_budget_is_spent_where_tasks_can_have_finished() -> None:
    learned, unlearned = simulate(), simulate(learns=False)

    assert learned.early_reads == 0
    assert learned.quantile(0.99) < unlearned.quantile(0.99) - 1.0
    assert learned.quantile(0.50) < unlearned.quantile(0.50)
    assert len(learned.delays) > len(unlearned.delays)


def test_reads_are_spread_so_the_worst_delay_stays_near_the_bound() -> None:
    """100 reads/s for ~58 tasks/s is ~1.7 reads per task, the detecting read included. Tasks finish
    anywhere in 10 s, so even gaps of 10 / (2 * 1.7 - 1) ~ 4.2 s are the best such a budget allows."""
    run = simulate()

    assert 1.6 < run.reads_per_task < 1.8
    assert run.quantile(0.99) < 4.8
    assert max(run.delays) < 5.5  # nobody starves
    assert len(run.delays) / 180 > 55  # tasks per second


def test_with_budget_to_spare_it_keeps_the_cadence() -> None:
    run, unlearned = (
        simulate(tasks=100, reads_per_second=1000),
        simulate(tasks=100, reads_per_second=1000, learns=False),
    )

    assert run.quantile(0.99) <= POLL_INTERVAL
    assert unlearned.quantile(0.99) <= POLL_INTERVAL
    assert run.early_reads == 0 < unlearned.early_reads  # learning only drops reads that cannot succeed
    first_reads = [gap for gap in run.gaps if gap > POLL_INTERVAL + 0.01]
    assert min(first_reads) >= 10.0 - 0.01  # the first read waits for the shortest task...
    assert min(gap for gap in run.gaps if gap not in first_reads) >= POLL_INTERVAL - 0.01  # ...then cadence


def test_before_anything_is_learned_the_first_read_follows_initial_delay() -> None:
    planner = ReadPlanner(DurationEstimates())
    ticket = PollTicket(MODEL, 1000.0, INITIAL_DELAY, POLL_INTERVAL)
    planner.add(ticket)

    assert planner.pop(1004.9) is None
    assert planner.next_ready(1004.9) == 1005.0
    assert planner.pop(1005.0) is ticket


def test_once_learned_the_first_read_waits_for_the_shortest_task() -> None:
    durations = DurationEstimates()
    for seconds in range(MIN_SAMPLES):
        durations.observe(MODEL, 12.0 + seconds / 10)
    planner = ReadPlanner(durations)
    ticket = PollTicket(MODEL, 1000.0, INITIAL_DELAY, POLL_INTERVAL)
    planner.add(ticket)

    assert durations.earliest(MODEL) == 12.0
    assert durations.earliest("seedream-4-5") is None
    assert planner.pop(1011.9) is None
    assert planner.pop(1012.0) is ticket


def test_a_wait_on_a_task_of_unknown_age_reads_it_first_and_learns_its_age() -> None:
    """A sensor does not know when its task was submitted: it may be done already."""
    durations = DurationEstimates()
    for _ in range(MIN_SAMPLES):
        durations.observe(MODEL, 12.0)
    planner = ReadPlanner(durations)
    ticket = PollTicket(MODEL, 1000.0, 0.0, POLL_INTERVAL, created_known=False)
    planner.add(ticket)

    assert planner.pop(1000.0) is ticket
    ticket.read(1000.0, created_at=995.0)  # APIXO's createTime: five seconds old
    planner.add(ticket)
    assert planner.pop(1003.0) is None  # the cadence would allow it; the learned 12 s do not
    assert planner.pop(1007.0) is ticket


def test_a_removed_ticket_is_never_granted() -> None:
    planner = ReadPlanner(DurationEstimates())
    gone, kept = (PollTicket(MODEL, 1000.0, 0.0, POLL_INTERVAL) for _ in range(2))
    planner.add(gone)
    planner.add(kept)
    planner.remove(gone)

    assert len(planner) == 1
    assert planner.pop(1001.0) is kept
    assert planner.pop(1001.0) is None
    assert planner.next_ready(1001.0) is None


def test_durations_come_from_the_task_times() -> None:
    durations = DurationEstimates(min_samples=2)
    finished = TaskStatus("t", TaskState.SUCCESS, create_time=1_000, complete_time=14_500, cost_time=9_000)
    without_times = TaskStatus("t", TaskState.SUCCESS, cost_time=11_000)

    durations.observe_task(MODEL, finished)
    durations.observe_task(MODEL, without_times)

    assert sorted(durations.samples(MODEL)) == [11.0, 13.5]
