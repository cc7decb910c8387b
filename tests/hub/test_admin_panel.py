"""The admin panel through the hub, as a browser uses it: hub login, the service's OAuth
session, pages and forms (XSRF included) behind the proxy."""

from __future__ import annotations

import re
import secrets

import httpx
import pytest

from tests.integration.notebooks import SLOW, TRAIN_AND_LOG, notebook

pytestmark = pytest.mark.integration

XSRF = re.compile(r'name="_xsrf" value="([^"]+)"')
PROJECT_ROWS = re.compile(r'<tr data-project="([^"]+)"')
SECTIONS = {"loop": 'id="loop"', "jobs": 'id="jobs"', "pipelines": 'id="pipeline-runs"', "models": "<h1>Models</h1>",
            "endpoints": 'id="endpoints"', "alerts": 'id="alerts"', "cluster": 'id="nodes"',
            "errors": 'id="failed-jobs"'}


@pytest.fixture(scope="module")
def carol(hub) -> httpx.Client:
    """Carol (a hub admin) logged in to the hub and, through its OAuth, to the panel."""
    client = hub.login("carol")
    page = client.get(f"{hub.platform_url}/admin")
    assert page.status_code == 200, (page.status_code, str(page.url), page.text[:500])
    return client


@pytest.fixture
def admin(hub):
    return hub.client(hub.admin_token)


def xsrf(hub, client: httpx.Client) -> str:
    """The session's XSRF token, from the forms of the projects page."""
    found = XSRF.search(client.get(f"{hub.platform_url}/admin").text)
    assert found, "no form with an XSRF token on the projects page"
    return found.group(1)


def post(client: httpx.Client, url: str, **fields: str) -> httpx.Response:
    return client.post(url, data=fields, follow_redirects=False)


def test_an_admin_sees_every_project_with_its_members(hub, carol, admin):
    for user in ("alice", "bob"):  # the hub learns their groups from the identity provider at login
        hub.login(user)
    page = carol.get(f"{hub.platform_url}/admin")
    assert page.headers["cache-control"] == "no-store"
    assert set(PROJECT_ROWS.findall(page.text)) == {p.name for p in admin.projects()} >= {"demo", "fraud"}
    demo_row = page.text.split('<tr data-project="demo">')[1].split("</tr>")[0]
    assert "group loopml-demo" in demo_row
    assert 'data-group-member="alice"' in demo_row and 'data-group-member="bob"' in demo_row


def test_a_member_is_refused_with_a_way_back_to_the_hub(hub):
    page = hub.login("alice").get(f"{hub.platform_url}/admin")
    assert page.status_code == 403
    assert "admin panel is for hub admins" in page.text and 'href="/hub/home"' in page.text


def test_anonymous_browsers_are_sent_to_login_and_back(hub):
    response = httpx.get(f"{hub.platform_url}/admin/jobs", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "/services/loopml/login?next=%2Fservices%2Floopml%2Fadmin%2Fjobs"


def test_the_service_root_sends_an_admin_to_the_panel(hub, carol):
    response = carol.get(f"{hub.platform_url}/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (302, "/services/loopml/admin")


def test_an_admin_creates_a_project_and_sets_its_quota_and_members(hub, carol, admin):
    name = f"panel-{secrets.token_hex(3)}"
    panel = f"{hub.platform_url}/admin"
    token = xsrf(hub, carol)

    created = post(carol, f"{panel}/projects", name=name, max_concurrent_jobs="", _xsrf=token)
    assert created.status_code == 303 and created.headers["location"].startswith("/services/loopml/admin?done=")
    assert f'<tr data-project="{name}">' in carol.get(hub.hub_url + created.headers["location"]).text
    assert admin.project(name).max_concurrent_jobs is None

    assert post(carol, f"{panel}/projects/{name}/quota", max_concurrent_jobs="3", _xsrf=token).status_code == 303
    assert admin.project(name).max_concurrent_jobs == 3
    added = post(carol, f"{panel}/projects/{name}/members", user="dave", _xsrf=token)
    assert added.status_code == 303
    assert admin.project(name).members == ["dave"]
    page = carol.get(hub.hub_url + added.headers["location"]).text
    assert f"added dave to {name}" in page and 'data-member="dave"' in page

    assert post(carol, f"{panel}/projects/{name}/members/remove", user="dave", _xsrf=token).status_code == 303
    assert post(carol, f"{panel}/projects/{name}/quota", clear="1", _xsrf=token).status_code == 303
    project = admin.project(name)
    assert (project.members, project.max_concurrent_jobs) == ([], None)


@pytest.mark.parametrize("fields", [{}, {"_xsrf": "forged"}], ids=["no-xsrf", "wrong-xsrf"])
def test_a_form_without_the_sessions_xsrf_changes_nothing(hub, carol, admin, fields):
    name = f"forged-{secrets.token_hex(3)}"
    refused = post(carol, f"{hub.platform_url}/admin/projects", name=name, **fields)
    assert refused.status_code == 403 and "XSRF" in refused.text
    assert name not in {p.name for p in admin.projects()}
    quota = admin.project("demo").max_concurrent_jobs
    assert post(carol, f"{hub.platform_url}/admin/projects/demo/quota", max_concurrent_jobs="7",
                **fields).status_code == 403
    assert admin.project("demo").max_concurrent_jobs == quota


def test_an_admin_token_reads_pages_but_cannot_act(hub, admin):
    bearer = {"Authorization": f"Bearer {hub.admin_token}"}
    assert httpx.get(f"{hub.platform_url}/admin", headers=bearer).status_code == 200
    name = f"bearer-{secrets.token_hex(3)}"
    refused = httpx.post(f"{hub.platform_url}/admin/projects", headers=bearer, data={"name": name, "_xsrf": "x"})
    assert refused.status_code == 403
    assert name not in {p.name for p in admin.projects()}


@pytest.mark.parametrize(
    "path, fields, status, says",
    [
        ("projects", {"name": "Bad Name!"}, 422, "invalid project name &#39;Bad Name!&#39;"),
        ("projects", {"name": "demo"}, 409, "project &#39;demo&#39; exists already"),
        ("projects/demo/quota", {"max_concurrent_jobs": "0"}, 422, "invalid max_concurrent_jobs &#39;0&#39;"),
        ("projects/demo/members/remove", {"user": "alice"}, 422, "through the hub group loopml-demo"),
        ("projects/nope/members", {"user": "dave"}, 404, "project &#39;nope&#39; does not exist"),
    ],
    ids=["bad-name", "existing-project", "zero-quota", "group-member", "unknown-project"],
)
def test_a_refused_action_reads_as_an_error_on_the_page(hub, carol, path, fields, status, says):
    token = xsrf(hub, carol)
    page = post(carol, f"{hub.platform_url}/admin/{path}", _xsrf=token, **fields)
    assert page.status_code == status, page.text[:500]
    assert 'id="error"' in page.text and says in page.text
    assert "Traceback" not in page.text and 'id="projects"' in page.text


@pytest.mark.parametrize("section", list(SECTIONS))
def test_every_section_renders(hub, carol, section):
    page = carol.get(f"{hub.platform_url}/admin/{section}")
    assert page.status_code == 200, page.text[:500]
    assert SECTIONS[section] in page.text and 'id="error"' not in page.text


def test_the_cluster_section_lists_the_ray_nodes(hub, carol):
    page = carol.get(f"{hub.platform_url}/admin/cluster").text
    assert len(re.findall(r'<tr data-node="', page)) >= 1 and "CPU 2" in page


def test_an_admin_cancels_a_job_from_the_panel(hub, carol, admin):
    job = admin.submit("demo", SLOW, parameters={"seconds": 120}, name="panel-cancel")
    jobs = f"{hub.platform_url}/admin/jobs"
    listed = carol.get(jobs, params={"project": "demo", "user": "admin"}).text
    assert f'data-job="{job.id}"' in listed
    done = post(carol, f"{jobs}/demo/{job.id}/cancel", _xsrf=xsrf(hub, carol))
    assert done.status_code == 303, done.text[:500]
    assert admin.wait("demo", job.id, timeout=30).status.value == "CANCELLED"
    cancelled = carol.get(jobs, params={"status": "CANCELLED"}).text
    assert f'data-job="{job.id}"' in cancelled
    again = post(carol, f"{jobs}/demo/{job.id}/cancel", _xsrf=xsrf(hub, carol))
    assert again.status_code == 409 and "already ended" in again.text


def test_a_failed_job_shows_among_the_recent_errors(hub, carol, admin):
    failing = notebook("raise ValueError('panel boom')")
    job = admin.wait("demo", admin.submit("demo", failing, name="panel-fails").id, timeout=120)
    assert job.status.value == "FAILED"
    page = carol.get(f"{hub.platform_url}/admin/errors").text
    row = page.split(f'<tr data-job="{job.id}">')[1].split("</tr>")[0]
    assert "ValueError: panel boom" in row
    assert 'id="logs"' in page  # the service keeps its recent warnings since it started


def test_an_admin_sees_a_model_and_manages_its_endpoint_from_the_panel(hub, carol, admin):
    job = admin.wait("demo", admin.submit("demo", TRAIN_AND_LOG, parameters={"model_name": "panel-iris"}).id,
                     timeout=180)
    assert job.status.value == "SUCCEEDED", job.message
    version = job.models[0].version
    models = carol.get(f"{hub.platform_url}/admin/models").text
    table = models.split('data-model="demo.panel-iris"')[1].split("</table>")[0]
    assert f'<tr data-version="{version}">' in table and job.id in table
    admin.deploy("demo", f"panel-iris/{version}", "panel-ep", public=True)
    page = carol.get(f"{hub.platform_url}/admin/endpoints").text
    row = page.split('<tr data-endpoint="demo/panel-ep">')[1].split("</tr>")[0]
    assert f"v{version}: 100%" in row and "RUNNING" in row
    loop = carol.get(f"{hub.platform_url}/admin/loop").text  # demo's newest of each: this test's
    demo = loop.split('<tr data-project="demo">')[1].split("</tr>")[0]
    for stage, reached_by in [("trained", f"job:{job.id}"), ("versioned", f"model_version:panel-iris/{version}"),
                              ("live", "endpoint:panel-ep")]:
        assert f'data-stage="{stage}" data-reached="yes" data-object="{reached_by}"' in demo, stage

    endpoints = f"{hub.platform_url}/admin/endpoints/demo/panel-ep"
    nothing_to_undo = post(carol, f"{endpoints}/rollback", _xsrf=xsrf(hub, carol))
    assert nothing_to_undo.status_code == 409 and "nothing to roll back to" in nothing_to_undo.text
    deleted = post(carol, f"{endpoints}/delete", _xsrf=xsrf(hub, carol))
    assert deleted.status_code == 303, deleted.text[:500]
    assert "panel-ep" not in {e.name for e in admin.endpoints("demo")}
