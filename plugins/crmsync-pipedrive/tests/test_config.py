"""What a Pipedrive connection takes, checked by its own models with crmsync's set-up
helpers (``connectors.setup``), as ``crmsync connections add pipedrive`` and the console do."""

from __future__ import annotations

import pytest
from crmsync_pipedrive import PipedriveConnector
from crmsync_pipedrive.config import PipedriveCredentials

from connectors.errors import ConfigError
from connectors.setup import check_config, option_fields

SETTINGS = {"company_url": "https://acme.pipedrive.com/", "external_id_key": "a" * 40}


def test_the_api_token_is_asked_for_and_the_webhook_password_with_a_webhook_user() -> None:
    assert PipedriveCredentials.to_prompt({}) == ["api_token"]
    assert PipedriveCredentials.to_prompt({"api_token": "t"}) == []
    assert PipedriveCredentials.to_prompt({"api_token": "t", "webhook_user": "crmsync"}) == [
        "webhook_password"
    ]
    given = {"api_token": "t", "webhook_user": "crmsync", "webhook_password": "pw"}
    assert PipedriveCredentials.to_prompt(given) == []


def test_a_webhook_user_without_a_password_is_refused_in_the_models_words() -> None:
    with pytest.raises(ConfigError, match="--webhook-user and --webhook-password together"):
        check_config(PipedriveConnector, SETTINGS, {"api_token": "t", "webhook_user": "crmsync"})
    with pytest.raises(ConfigError, match="--webhook-user and --webhook-password together"):
        check_config(PipedriveConnector, SETTINGS, {"api_token": "t", "webhook_password": "pw"})


def test_what_is_stored_settings_plain_and_secrets_as_text() -> None:
    settings, credentials = check_config(
        PipedriveConnector,
        SETTINGS,
        {"api_token": "t", "webhook_user": "crmsync", "webhook_password": "pw"},
    )
    assert settings == {**SETTINGS, "company_url": "https://acme.pipedrive.com"}
    assert credentials == {"api_token": "t", "webhook_user": "crmsync", "webhook_password": "pw"}
    with pytest.raises(ConfigError) as refused:
        check_config(PipedriveConnector, {**SETTINGS, "company_url": "acme"}, {"api_token": "t"})
    assert "--company-url: not an http(s) URL: 'acme'" in str(refused.value)


def test_the_options_and_form_fields_come_from_the_models() -> None:
    fields = {f.name: f for f in option_fields(PipedriveConnector)}
    assert fields["company_url"].required and not fields["company_url"].credential
    assert fields["api_token"].kind == "secret" and fields["api_token"].credential
    assert fields["webhook_password"].kind == "secret" and not fields["webhook_password"].required
    assert fields["webhook_user"].kind == "text" and fields["webhook_user"].credential
    assert fields["api_token"].envvar("pipedrive") == "PIPEDRIVE_API_TOKEN"
