"""The API's pages work on a network without internet: nothing they load comes from outside."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from hhforecast.serving import create_app

from .conftest import Project

PAGES = ("/", "/docs", "/docs/oauth2-redirect", "/openapi.json")
OUTSIDE = re.compile(r"""(?:https?:)?//(?!testserver[/:"'])[\w.-]+\.[a-z]{2,}""", re.IGNORECASE)
LINKS = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")


def test_no_page_references_an_outside_host(trained_project: Project) -> None:
    client = TestClient(create_app(trained_project.settings, follow_production=False))
    for page in PAGES:
        response = client.get(page)
        assert response.status_code == 200, page
        assert OUTSIDE.findall(response.text) == [], page


def test_docs_assets_are_served_by_the_api(trained_project: Project) -> None:
    client = TestClient(create_app(trained_project.settings, follow_production=False))
    loaded = []
    for page in ("/docs",):
        for link in (a or b for a, b in LINKS.findall(client.get(page).text)):
            assert link.startswith("/"), (page, link)
            asset = client.get(link)
            assert asset.status_code == 200 and asset.content, link
            loaded.append(link)
            if link.endswith(".css"):  # a stylesheet could pull fonts from outside
                assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", asset.text), link
    assert {"swagger-ui-bundle.js", "swagger-ui.css"} <= {
        link.rsplit("/", 1)[-1] for link in loaded
    }
    docs = client.get("/docs").text
    assert '"validatorUrl": null' in docs  # no validity badge fetched from outside
    # ReDoc's bundle fetches its vendor's logo from outside whatever the options: not served.
    assert client.get("/redoc").status_code == 404
