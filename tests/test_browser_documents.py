"""The knowledge base's live progress in a real browser: an upload's row moves from queued to
ready in place, its progress bar advancing as a real Celery worker embeds it, pushed over the
documents websocket (retrieval.events -> retrieval.consumers -> static/js/app.js) by daphne
serving the real ASGI app. No mocks and no page reloads."""

from __future__ import annotations

import random
import uuid

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from retrieval.services import EMBED_BATCH
from tests.conftest import PASSWORD, World, host_of
from tests.live import CHROMIUM, celery_worker, log_tail, watch_problems

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed"),
    pytest.mark.django_db(transaction=True),
]

# A safety net for a broken build on a loaded machine, not a timing goal (about 5 s here).
INGESTION_DEADLINE_MS = 90_000

# Records every value a progress bar is set to in place (app.js sets `bar.value` when a
# progress event arrives; re-rendered rows are new elements, not attribute changes), from
# before the page's own scripts run.
RECORD_PROGRESS = """
window.__progress = [];
new MutationObserver((mutations) => {
  for (const mutation of mutations) {
    const row = mutation.target.closest && mutation.target.closest("[data-document-id]");
    if (mutation.target instanceof HTMLProgressElement && row) {
      window.__progress.push([row.dataset.documentId, mutation.target.value]);
    }
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["value"] });
"""

WORDS = (
    "billing", "tenant", "administrator", "ledger", "support", "invoice", "audit", "member",
    "retention", "contract", "refund", "usage", "backup", "vendor", "incident", "forecast",
    "export", "region", "release", "quarter", "review", "policy", "escalation", "archive",
)  # fmt: skip


def _handbook(nonce: str, sections: int = 128) -> bytes:
    """Markdown of a few hundred short, distinct paragraphs, two under each heading: one small
    chunk per section (chunks never cross a heading), so about four embedding batches, each a
    progress event, of a fraction of a second each. `nonce` makes every paragraph new to the
    knowledge base (uploads and embeddings are deduplicated by content)."""
    rng = random.Random(nonce)
    lines = [f"# Operations handbook {nonce}", ""]
    for section in range(1, sections + 1):
        lines += [f"## Procedure {nonce}-{section}", ""]
        for step in (1, 2):
            words = " ".join(rng.choice(WORDS) for _ in range(20))
            lines += [f"Step {step}: the {words}.", ""]
    return "\n".join(lines).encode()


@pytest.fixture
def ingestion_worker(transactional_db, tmp_path, live_env):
    """A real worker process on the ingestion queue, on the test database."""
    # The per-tenant cap is not under test: a slot left taken by another test must not defer
    # the task for seconds.
    env = {"RETRIEVAL_TENANT_CONCURRENCY": "1000", **live_env}
    with celery_worker(log=tmp_path / "worker.log", queues=("ingestion",), env=env) as worker:
        yield worker


def test_it_shows_an_uploads_progress_live_until_it_is_ready(
    world: World, ingestion_worker, daphne_live_server, page
):
    acme = daphne_live_server.url(host_of(world.acme), "")
    problems = watch_problems(page)

    # The server's first request imports the app's views (the provider SDKs): seconds.
    page.goto(f"{acme}/accounts/login/", timeout=60_000)
    page.fill("input[name=login]", world.alice.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{acme}/")
    ingestion_worker.wait_ready()

    page.add_init_script(RECORD_PROGRESS)
    page.goto(f"{acme}/documents/")
    nonce = uuid.uuid4().hex[:8]
    filename = f"handbook-{nonce}.md"
    page.set_input_files(
        "#upload-form input[type=file]",
        files=[{"name": filename, "mimeType": "text/markdown", "buffer": _handbook(nonce)}],
    )
    page.click("#upload-form button[type=submit]")  # a normal POST, redirected to the list
    page.wait_for_selector("text=1 file(s) uploaded; indexing has started.")
    row = page.locator("tr[data-document-id]", has_text=filename)
    status = row.locator("td").nth(1).inner_text()
    assert "Queued" in status or "Processing" in status, (
        f"the document was {status!r} when the list loaded: make it bigger to watch it progress"
    )
    document_id = row.get_attribute("data-document-id")
    # From here on, only the websocket may change the page: a reload would drop this.
    page.evaluate("window.__marker = 1")

    try:
        row.locator(".badge.ok", has_text="Ready").wait_for(timeout=INGESTION_DEADLINE_MS)
    except PlaywrightTimeout as error:
        raise AssertionError(
            f"not ready: {row.inner_text()!r}\n--- worker\n{log_tail(ingestion_worker.log)}"
            f"\n--- daphne\n{log_tail(daphne_live_server.log)}"
        ) from error

    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    seen = [value for row_id, value in page.evaluate("window.__progress") if row_id == document_id]
    assert any(0 < value < 100 for value in seen), f"no progress pushed in place: {seen}"
    assert seen == sorted(seen) and len(set(seen)) > 1, f"the bar did not advance: {seen}"
    assert int(row.locator("td").nth(2).inner_text()) > 2 * EMBED_BATCH  # several batches
    assert problems == []
