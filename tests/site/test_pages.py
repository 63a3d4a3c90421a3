import pytest

from apps.catalog.selectors import catalog_models


@pytest.mark.parametrize("path", ["/", "/pricing/", "/docs/"])
def test_public_pages_render_for_anyone(client, db, path):
    response = client.get(path)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Plugsky" in page
    assert 'name="viewport"' in page
    assert 'lang="en"' in page


def test_the_landing_page_lists_the_catalog_with_prices(client, db):
    page = client.get("/").content.decode()
    for entry in catalog_models():
        assert entry.id in page
    # plugsky-nano: $0.02 in, $0.04 out per million tokens
    assert "$0.02" in page and "$0.04" in page


def test_the_snippets_use_this_servers_base_url(client, db):
    page = client.get("/", HTTP_HOST="api.example.test").content.decode()
    assert 'base_url=<span class="tok-s">"http://api.example.test/v1"</span>' in page
    docs = client.get("/docs/", HTTP_HOST="api.example.test").content.decode()
    assert 'base_url="http://api.example.test/v1"' in docs
    assert 'baseURL: "http://api.example.test/v1"' in docs
    assert "curl http://api.example.test/v1/chat/completions" in docs


def test_a_configured_public_url_wins_over_the_host_header(client, db, settings):
    settings.PLUGSKY_PUBLIC_URL = "https://api.plugsky.example"
    docs = client.get("/docs/", HTTP_HOST="evil.example").content.decode()
    assert "https://api.plugsky.example/v1" in docs
    assert "evil.example" not in docs


def test_docs_cover_quickstart_endpoints_errors_and_rate_limits(client, db):
    docs = client.get("/docs/").content.decode()
    for anchor in ["quickstart", "chat", "embeddings", "errors", "rate-limits", "streaming"]:
        assert f'id="{anchor}"' in docs
    for code in ["invalid_api_key", "model_not_allowed", "insufficient_quota",
                 "rate_limit_exceeded", "spend_limit_exceeded"]:  # fmt: skip
        assert code in docs


def test_signed_in_visitors_see_a_dashboard_link(client, owner):
    client.force_login(owner)
    page = client.get("/").content.decode()
    assert "/dashboard/" in page
    assert "Log in" not in page
