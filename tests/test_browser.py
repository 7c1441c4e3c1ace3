"""The signup -> tenant -> invite flow in a real browser (headless Debian Chromium), against a
live server: catches what the test client cannot (CSP, cross-host redirects, htmx swaps)."""

from __future__ import annotations

import os
import re
import shutil

import pytest
from django.core import mail
from django.db import connections

from tenants.models import Membership, Role
from tests.conftest import ensure_world

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def new_page():
    """Opens a page in a fresh browser profile (its own cookies), like a separate person."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip

        def open_page():
            context = chromium.new_context()
            context.set_default_timeout(10_000)
            return context.new_page()

        yield open_page
        # ORM calls made while Playwright's loop runs get a connection of their own (Django
        # keys connections by async context); close it before the test database is dropped.
        connections.close_all()
        chromium.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


def watch_csp(page) -> list[str]:
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return violations


def test_it_signs_up_lands_on_the_tenant_and_invites_a_colleague(live_server, settings, new_page):
    ensure_world()
    port = live_server.url.rsplit(":", 1)[1]
    settings.SITE_PORT = int(port)

    page = new_page()
    violations = watch_csp(page)
    page.goto(f"http://localhost:{port}/accounts/signup/")
    page.fill("input[name=email]", "zoe@example.test")
    page.fill("input[name=organization_name]", "Zoe Labs")
    page.fill("input[name=slug]", "zoe-labs")
    page.fill("input[name=password1]", "Zoe-strong-pass-77")
    page.click("button[type=submit]")
    page.wait_for_url(f"http://zoe-labs.localhost:{port}/")
    assert page.locator("h1").inner_text() == "Zoe Labs"

    page.click("text=Members")
    page.fill("input[name=email]", "yan@example.test")
    page.select_option("#id_role", "admin")
    page.click("text=Send invitation")
    page.wait_for_selector("text=Invitation sent to yan@example.test.")
    assert page.locator("#members-panel").get_by_text("yan@example.test").count() == 1

    link = re.search(r"http://\S+/invitations/\S+/", mail.outbox[-1].body)[0]
    guest = new_page()
    violations += watch_csp(guest)
    guest.goto(link)
    guest.fill("input[name=password]", "Yans-strong-pass-88")
    guest.click("text=Create account and join")
    guest.wait_for_url(f"http://zoe-labs.localhost:{port}/")
    assert "Welcome to Zoe Labs!" in guest.content()
    assert Membership.objects.get(user__email="yan@example.test").role == Role.ADMIN
    assert violations == []
