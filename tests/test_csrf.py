"""Form posts from real browsers under `Referrer-Policy: no-referrer` (Origin: null)."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.fixture
def browser_client(db):
    client = Client(enforce_csrf_checks=True)
    client.get("/")  # sets the CSRF cookie, as the browser's first visit does
    return client


def post_join(client: Client, token: str | None, **headers: str):
    data = {"name": "Erika Mustermann", "code": "0000-0000-0000", "consent": "on"}
    if token is not None:
        data["csrfmiddlewaretoken"] = token
    return client.post("/", data, **headers)


def test_same_origin_post_with_null_origin_passes_csrf(browser_client):
    token = browser_client.cookies["csrftoken"].value
    response = post_join(
        browser_client, token, HTTP_ORIGIN="null", HTTP_SEC_FETCH_SITE="same-origin"
    )
    assert response.status_code == 200  # the form answers (invalid code), no CSRF 403


def test_cross_site_post_with_null_origin_is_refused(browser_client):
    token = browser_client.cookies["csrftoken"].value
    response = post_join(
        browser_client, token, HTTP_ORIGIN="null", HTTP_SEC_FETCH_SITE="cross-site"
    )
    assert response.status_code == 403


def test_null_origin_without_fetch_metadata_is_refused(browser_client):
    token = browser_client.cookies["csrftoken"].value
    assert post_join(browser_client, token, HTTP_ORIGIN="null").status_code == 403


def test_null_origin_still_needs_the_csrf_token(browser_client):
    response = post_join(
        browser_client, None, HTTP_ORIGIN="null", HTTP_SEC_FETCH_SITE="same-origin"
    )
    assert response.status_code == 403
