"""Timer functions: one logs each firing to TIMER_LOG, one is misconfigured (in error)."""

import os
import time

import azure.functions as func

bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%")
def tick(timer: func.TimerRequest) -> None:
    with open(os.environ["TIMER_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{time.time():.6f} {timer.past_due}\n")


@bp.timer_trigger(arg_name="timer", schedule="%SAMPLE_UNSET_SCHEDULE%")
def misconfigured(timer: func.TimerRequest) -> None:
    """Its setting is never set: the host reports it in error and serves the rest."""
    raise AssertionError("must never run")
