"""REST routes of pipeline runs: ``/projects/{project}/pipelines`` (check, run, list, show, cancel, retry)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from loopml.auth import User, member
from loopml.paging import MAX_LIMIT, MAX_OFFSET
from loopml.services import Services, services

from .models import PipelineCheck, PipelineRun, PipelineSubmit
from .service import PipelineService

router = APIRouter(tags=["pipelines"])


def pipelines(found: Services = Depends(services)) -> PipelineService:
    return found.pipelines


@router.post("/projects/{project}/pipelines/validate", response_model=PipelineCheck)
def validate_pipeline(project: str, spec: PipelineSubmit, user: User = Depends(member),
                      service: PipelineService = Depends(pipelines)):
    """Check a pipeline and its files, running nothing: 422 naming each bad step and field."""
    return service.check(project, spec.source_name, spec.content, spec.decoded_files())


@router.post("/projects/{project}/pipelines", response_model=PipelineRun, status_code=201)
async def run_pipeline(project: str, spec: PipelineSubmit, user: User = Depends(member),
                       service: PipelineService = Depends(pipelines)):
    """Check the pipeline, then run it: answers once its first steps were submitted."""
    return await service.run(user.name, project, spec.source_name, spec.content, spec.decoded_files(),
                             spec.parameters, spec.no_cache)


@router.get("/projects/{project}/pipelines", response_model=list[PipelineRun])
def list_pipeline_runs(project: str,
                       limit: int = Query(50, ge=1, le=MAX_LIMIT, description=f"Most runs to return (at most {MAX_LIMIT})."),
                       offset: int = Query(0, ge=0, le=MAX_OFFSET, description="Runs to skip first."),
                       user: User = Depends(member), service: PipelineService = Depends(pipelines)):
    """The project's pipeline runs, newest first."""
    return service.list(project, limit, offset)


@router.get("/projects/{project}/pipelines/{run_id}", response_model=PipelineRun)
def get_pipeline_run(project: str, run_id: str, user: User = Depends(member),
                     service: PipelineService = Depends(pipelines)):
    return service.get(project, run_id)


@router.post("/projects/{project}/pipelines/{run_id}/cancel", response_model=PipelineRun)
async def cancel_pipeline_run(project: str, run_id: str, user: User = Depends(member),
                              service: PipelineService = Depends(pipelines)):
    """Cancel a running pipeline run and its running jobs; 409 once it ended."""
    return await service.cancel(user.name, project, run_id)


@router.post("/projects/{project}/pipelines/{run_id}/retry", response_model=PipelineRun)
async def retry_pipeline_run(project: str, run_id: str, user: User = Depends(member),
                             service: PipelineService = Depends(pipelines)):
    """Re-run a failed or cancelled run from its failed steps, keeping what succeeded; 409 otherwise."""
    return await service.retry(user.name, project, run_id)
