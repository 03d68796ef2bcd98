"""The simulated cluster's map from job id to the job as the trace drew it (what its handler does),
kept compact: it holds every job of the run, and a long run submits millions.

A draw that is only a job type and a duration (every other field at its default, as in a plain
open-loop workload) is held as its duration in one column per job type (sim/idcolumns.py: 8 bytes a
job, where a dict slot and a boxed float cost about 70 and kept the id string alive), and read back
as an equal JobDraw. Any other draw is held as it is. Reading gives equal values either way.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping

from model.workload import JobDraw
from sim.idcolumns import JobFloats


class Draws(MutableMapping[str, JobDraw]):
    """job id -> JobDraw; plain draws held as their durations (see the module docstring)."""

    __slots__ = ("_full", "_plain")

    def __init__(self) -> None:
        self._full: dict[str, JobDraw] = {}
        self._plain: dict[str, JobFloats] = {}  # job type -> job id -> duration

    def __setitem__(self, job_id: str, draw: JobDraw) -> None:
        self._discard(job_id)
        if draw == JobDraw(draw.job_type, draw.duration):
            durations = self._plain.get(draw.job_type)
            if durations is None:
                durations = self._plain[draw.job_type] = JobFloats()
            durations[job_id] = draw.duration
        else:
            self._full[job_id] = draw

    def __getitem__(self, job_id: str) -> JobDraw:
        draw = self._full.get(job_id)
        if draw is not None:
            return draw
        for job_type, durations in self._plain.items():
            duration = durations.get(job_id)
            if duration is not None:
                return JobDraw(job_type, duration)
        raise KeyError(job_id)

    def _discard(self, job_id: str) -> bool:
        if self._full.pop(job_id, None) is not None:
            return True
        return any(durations.pop(job_id, None) is not None for durations in self._plain.values())

    def __delitem__(self, job_id: str) -> None:
        if not self._discard(job_id):
            raise KeyError(job_id)

    def __iter__(self) -> Iterator[str]:
        yield from self._full
        for durations in self._plain.values():
            yield from durations

    def __len__(self) -> int:
        return len(self._full) + sum(len(durations) for durations in self._plain.values())

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._full or any(job_id in durations for durations in self._plain.values())
