"""The Reconstruct page's one job model (images and videos), without Qt: the transition table, the queue
that feeds the worker one job at a time, cancel and "Apply to all", and that importing it loads no Qt."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.models.jobs import (
    ALLOWED,
    CANCELLED,
    CHECKING,
    DONE,
    ERROR,
    LOADING,
    QUEUED,
    RUNNING,
    IllegalTransition,
    ImageJob,
    JobQueue,
    JobState,
    VideoJob,
    counts,
    finished_count,
)


def test_a_job_walks_queued_checking_running_done_and_keeps_its_progress_until_done() -> None:
    job = ImageJob("/photos/cat.png")
    assert job.state == QUEUED and job.name == "cat.png" and not job.finished
    job.move(CHECKING)
    job.move(RUNNING)
    job.report(3, 8, "decoding")
    assert job.progress() == pytest.approx(3 / 8) and job.status_text() == "decoding"
    job.move(DONE)
    assert job.finished and (job.done, job.total) == (0, 0) and job.status_text() == "done"


@pytest.mark.parametrize(
    ("start", "target"),
    [(QUEUED, RUNNING), (QUEUED, DONE), (DONE, RUNNING), (CANCELLED, DONE), (ERROR, CHECKING), (RUNNING, QUEUED)],
)
def test_steps_outside_the_table_are_refused_and_leave_the_job_as_it_was(start: JobState, target: JobState) -> None:
    job = VideoJob("clip.mp4", state=start)
    with pytest.raises(IllegalTransition, match=f"{start} → {target}"):
        job.move(target)
    assert job.state == start


def test_every_state_is_in_the_table_and_every_finished_state_can_only_be_queued_again() -> None:
    assert set(ALLOWED) == set(JobState)
    for state in (DONE, ERROR, CANCELLED):
        assert ALLOWED[state] == {QUEUED}
    assert LOADING in ALLOWED[RUNNING] and LOADING not in ALLOWED[CHECKING]


def test_failing_records_the_error_and_requeueing_forgets_it() -> None:
    job = ImageJob("/photos/broken.png")
    job.move(CHECKING)
    job.move(ERROR, error="/photos/broken.png: the file is empty")
    assert job.message() == "the file is empty" and job.status_text() == "the file is empty"
    job.move(QUEUED)
    assert job.error is None and job.state == QUEUED


def test_the_queue_runs_one_job_at_a_time_in_order_and_skips_jobs_no_longer_queued() -> None:
    queue: JobQueue[ImageJob] = JobQueue()
    a, b, c = (ImageJob(f"{n}.png") for n in "abc")
    queue.add([a, b, c])
    assert queue.start_next() is a and queue.current is a
    assert queue.start_next() is None  # one in flight at a time
    b.move(CANCELLED)  # e.g. finished elsewhere meanwhile
    a.move(CHECKING)
    queue.finish(a, DONE)
    assert queue.current is None and queue.start_next() is c
    c.move(CHECKING)
    queue.put_back(c)  # no model yet: c waits at the front
    assert c.state == QUEUED and queue.current is None and queue.waiting[0] is c and queue.busy()


def test_cancel_marks_the_waiting_jobs_and_the_running_one_ends_cancelled_not_failed() -> None:
    queue: JobQueue[VideoJob] = JobQueue()
    jobs = queue.add([VideoJob(f"v{i}.mp4") for i in range(4)])
    running = queue.start_next()
    assert running is jobs[0]
    running.move(CHECKING)
    dropped = queue.cancel()
    assert dropped == jobs[1:] and all(j.state == CANCELLED for j in dropped)
    assert queue.cancel_requested and queue.busy() and not queue.waiting
    queue.finish(running, CANCELLED)
    assert not queue.busy() and counts(jobs)[CANCELLED] == 4 and finished_count(jobs) == 4


def test_requeue_takes_every_finished_job_but_not_the_one_in_flight() -> None:
    queue: JobQueue[ImageJob] = JobQueue()
    jobs = queue.add([ImageJob(f"{i}.png") for i in range(3)])
    for job, end in zip(jobs[:2], (DONE, ERROR), strict=True):
        assert queue.start_next() is job
        job.move(CHECKING)
        queue.finish(job, end, error="bad" if end == ERROR else None)
    assert queue.start_next() is jobs[2]
    jobs[2].move(CHECKING)
    queue.cancel()
    again = queue.requeue(jobs)
    assert again == jobs[:2] and all(j.state == QUEUED and j.error is None for j in again)
    assert not queue.cancel_requested and jobs[2].state == CHECKING and list(queue.waiting) == again


def test_video_and_image_jobs_describe_themselves_in_one_line() -> None:
    video = VideoJob("run.mp4")
    video.move(CHECKING)
    assert video.status_text() == "checking…"
    video.move(RUNNING)
    video.report(2, 5, "decoding")
    assert video.status_text() == "reconstructing 2/5 decoding"
    video.move(LOADING)
    video.result = {"psnr": 21.5, "frames": 12}
    video.move(DONE)
    assert video.status_text() == "21.50 dB · 12 frames"
    image = ImageJob("a.png", state=DONE, entry={"ok": True, "cached": True, "notices": ["padded from 1×1"]})
    assert image.cached and image.status_text() == "cached · 1 notice"


def test_the_job_model_loads_without_qt() -> None:
    code = "import sys, app.models.jobs, app.models.reconstructions; print(sorted(m for m in sys.modules if "
    code += "m.startswith(('PySide6', 'torch'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_refused_job_ends_cancelled_only_when_asked_and_its_error_names_the_file_once() -> None:
    queue: JobQueue[ImageJob] = JobQueue()
    assert queue.failure("cancelled", "a.png") == (ERROR, "a.png: cancelled")  # nobody asked: a failure
    assert queue.failure("a.png: cannot read", "a.png") == (ERROR, "a.png: cannot read")
    queue.cancel()
    assert queue.failure("cancelled by the user", "a.png") == (CANCELLED, None)
    assert queue.failure("out of memory", "a.png") == (ERROR, "a.png: out of memory")
