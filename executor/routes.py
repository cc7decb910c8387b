"""REST routes of the executor slice: jobs and schedules of a project."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import PlainTextResponse

from loopml.auth import User, member
from loopml.executor.models import Job, JobRequeue, JobStatus, JobSubmit, Schedule, ScheduleCreate
from loopml.executor.schedules import ScheduleService
from loopml.executor.service import JobService
from loopml.paging import MAX_LIMIT, MAX_OFFSET, Page, page
from loopml.services import Services, services

router = APIRouter(tags=["jobs"])


def jobs(found: Services = Depends(services)) -> JobService:
    return found.jobs


def schedules(found: Services = Depends(services)) -> ScheduleService:
    return found.schedules


@router.post("/projects/{project}/jobs", response_model=Job, status_code=201)
def submit_job(project: str, spec: JobSubmit, user: User = Depends(member), service: JobService = Depends(jobs)):
    """Submit a notebook as a job. Parameters are checked against its parameters cell first."""
    return service.submit(user.name, project, spec)


@router.get("/projects/{project}/jobs", response_model=list[Job])
def list_jobs(project: str, status: JobStatus | None = None,
              limit: int = Query(50, ge=1, le=MAX_LIMIT, description=f"Most jobs to return (at most {MAX_LIMIT})."),
              offset: int = Query(0, ge=0, le=MAX_OFFSET, description="Jobs to skip first: page on by adding limit."),
              user: User = Depends(member), service: JobService = Depends(jobs)):
    """The project's jobs, newest first."""
    return service.list(project, status, limit, offset)


@router.get("/projects/{project}/jobs/{job_id}", response_model=Job)
def get_job(project: str, job_id: str, user: User = Depends(member), service: JobService = Depends(jobs)):
    return service.get(project, job_id)


@router.get("/projects/{project}/jobs/{job_id}/logs", response_class=PlainTextResponse)
def job_logs(project: str, job_id: str, user: User = Depends(member), service: JobService = Depends(jobs)):
    """The job's log so far: the kernel's stdout/stderr with a line per cell started."""
    return service.logs(project, job_id)


@router.get("/projects/{project}/jobs/{job_id}/output", response_class=Response, responses={
    200: {"description": "The notebook (nbformat 4 JSON).",
          "content": {"application/x-ipynb+json": {"schema": {"type": "object"}}}}})
def job_output(project: str, job_id: str, user: User = Depends(member), service: JobService = Depends(jobs)):
    """The executed notebook (partial while the job runs)."""
    return Response(service.output(project, job_id), media_type="application/x-ipynb+json")


@router.post("/projects/{project}/jobs/{job_id}/cancel", response_model=Job)
async def cancel_job(project: str, job_id: str, user: User = Depends(member), service: JobService = Depends(jobs)):
    """Cancel a queued or running job; answers once it is CANCELLED (or after 5 s)."""
    return await service.cancel(user.name, project, job_id)


@router.post("/projects/{project}/jobs/{job_id}/requeue", response_model=Job, status_code=201)
def requeue_job(project: str, job_id: str, change: JobRequeue | None = None, user: User = Depends(member),
                service: JobService = Depends(jobs)):
    """Run the job again: same notebook snapshot and parameters, with the given overrides."""
    return service.requeue(user.name, project, job_id, change or JobRequeue())


@router.post("/projects/{project}/schedules", response_model=Schedule, status_code=201, tags=["schedules"])
def create_schedule(project: str, spec: ScheduleCreate, user: User = Depends(member),
                    service: ScheduleService = Depends(schedules)):
    """Submit ``template`` as a job, or run ``pipeline``, at every tick of ``cron``."""
    return service.create(user.name, project, spec)


@router.get("/projects/{project}/schedules", response_model=list[Schedule], tags=["schedules"])
def list_schedules(project: str, window: Page = Depends(page), user: User = Depends(member),
                   service: ScheduleService = Depends(schedules)):
    """The project's schedules, oldest first (``limit`` and ``offset`` page them)."""
    return service.list(project, window)


@router.get("/projects/{project}/schedules/{schedule_id}", response_model=Schedule, tags=["schedules"])
def get_schedule(project: str, schedule_id: str, user: User = Depends(member),
                 service: ScheduleService = Depends(schedules)):
    return service.get(project, schedule_id)


@router.delete("/projects/{project}/schedules/{schedule_id}", status_code=204, tags=["schedules"])
def delete_schedule(project: str, schedule_id: str, user: User = Depends(member),
                    service: ScheduleService = Depends(schedules)):
    service.delete(project, schedule_id)
    return Response(status_code=204)
