"""Server credentials: flags over environment variables, URL user info moved out, secrets never logged.

Client options checked against the clients' documentation:
- elasticsearch-py: https://www.elastic.co/docs/reference/elasticsearch/clients/python/configuration and
  https://www.elastic.co/docs/reference/elasticsearch/clients/python/connecting (basic_auth, api_key, ca_certs,
  verify_certs)
- opensearch-py: https://pypi.org/project/opensearch-py/ (sample code: http_auth, use_ssl, verify_certs, ca_certs,
  ssl_show_warn); API keys: https://docs.opensearch.org/latest/security/access-control/api-keys/
  ("Authorization: ApiKey <token>", OpenSearch >= 3.7)
- qdrant-client: https://qdrant.tech/documentation/guides/security (QdrantClient(url=..., api_key=...))
"""

from __future__ import annotations

import argparse
import logging

import pytest

from hybrid_search.index import IndexMeta
from indexers import parse_location
from indexers.credentials import (
    Credentials,
    add_arguments,
    env_name,
    from_arguments,
    parse_bool,
    split_userinfo,
)

SECRET = "s3cr3t-Pa55"
KEY = "k3y-0f-the-api"


def env(engine: str, **values: str) -> dict[str, str]:
    return {env_name(engine, k): v for k, v in values.items()}


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch", "qdrant"])
def test_environment_variables_per_engine(engine):
    creds = Credentials.resolve(
        engine,
        environ=env(
            engine,
            url="https://db:9200",
            user="alice",
            password=SECRET,
            api_key=KEY,
            ca_certs="/etc/ca.pem",
            verify="false",
        ),
    )
    assert creds == Credentials("https://db:9200", "alice", SECRET, KEY, "/etc/ca.pem", False)
    assert env_name(engine, "api_key") == f"HYBRID_SEARCH_{engine.upper()}_API_KEY"


def test_flags_win_over_the_environment_and_engines_do_not_mix():
    environ = {**env("opensearch", user="env-user", password="env-pass", verify="0"), **env("elasticsearch", user="x")}
    creds = Credentials.resolve("opensearch", username="flag-user", verify=True, environ=environ)
    assert (creds.username, creds.password, creds.verify) == ("flag-user", "env-pass", True)
    assert Credentials.resolve("qdrant", environ=environ) == Credentials()


def test_user_and_password_in_the_url_move_out_of_it():
    creds = Credentials.resolve("elasticsearch", url=f"https://bob:{SECRET}@es.local:9243", environ={})
    assert creds.url == "https://es.local:9243" and (creds.username, creds.password) == ("bob", SECRET)
    # an explicit user wins over the URL's
    creds = Credentials.resolve("elasticsearch", url=f"https://bob:{SECRET}@es.local", username="carol", environ={})
    assert (creds.username, creds.password) == ("carol", None)
    assert split_userinfo("http://[::1]:9200/idx") == ("http://[::1]:9200/idx", None, None)
    assert split_userinfo("http://a%40b:p%3Aw@[::1]:9200/i") == ("http://[::1]:9200/i", "a@b", "p:w")


@pytest.mark.parametrize("text,value", [("1", True), ("Yes", True), ("on", True), ("false", False), ("0", False)])
def test_verify_flag_parsing(text, value):
    assert parse_bool(text) is value


def test_a_bad_verify_value_names_the_variable():
    with pytest.raises(ValueError, match="HYBRID_SEARCH_QDRANT_VERIFY"):
        Credentials.resolve("qdrant", environ=env("qdrant", verify="maybe"))


def test_repr_masks_secrets():
    creds = Credentials("https://h:1", "u", SECRET, KEY, None, True)
    for text in (repr(creds), str(creds), f"{creds}", f"{creds!r}"):
        assert SECRET not in text and KEY not in text and "***" in text
    assert "password=None" in repr(Credentials("http://h:1"))


def test_secrets_never_reach_the_logs_or_the_location(caplog):
    caplog.set_level(logging.DEBUG)
    environ = env("opensearch", password=SECRET, api_key=KEY)
    creds = Credentials.resolve("opensearch", url=f"https://admin:{SECRET}@localhost:9200", environ=environ)
    logging.getLogger("hybrid_search.test").info("connecting with %s / %r", creds, creds)

    from opensearchpy import OpenSearch

    from indexers.opensearch import OpenSearchIndex
    from tests.lucene_fakes import FakeServer, opensearch_client

    OpenSearch(**creds.client_kwargs("opensearch")).close()  # building the real client logs nothing secret
    _, target = parse_location(f"opensearch+https://admin:{SECRET}@localhost:9200/docs")
    server = FakeServer({"version": {"distribution": "opensearch", "number": "2.19.2"}})
    index = OpenSearchIndex.create(target, IndexMeta(engine=""), credentials=creds, client=opensearch_client(server))
    logging.getLogger("hybrid_search.test").info("index %s at %s", index.name, index.location)
    assert index.location == "opensearch+https://localhost:9200/docs"
    assert SECRET not in caplog.text and KEY not in caplog.text
    assert "***" in caplog.text and "created opensearch+https://localhost:9200/docs" in caplog.text


def test_elasticsearch_client_options():
    basic = Credentials("https://es:9243", "elastic", SECRET, None, "/ca.pem", True).elasticsearch_kwargs()
    assert basic["basic_auth"] == ("elastic", SECRET) and basic["ca_certs"] == "/ca.pem" and basic["verify_certs"]
    keyed = Credentials("https://es:9243", "elastic", SECRET, KEY, None, False).elasticsearch_kwargs()
    assert keyed["api_key"] == KEY and "basic_auth" not in keyed and keyed["verify_certs"] is False
    plain = Credentials("http://localhost:9201").elasticsearch_kwargs()
    assert plain["hosts"] == ["http://localhost:9201"] and "verify_certs" not in plain
    # bounded retries, none after a read timeout (tests/indexers/test_lucene_server_errors.py)
    assert plain["max_retries"] >= 1 and not plain["retry_on_timeout"] and plain["request_timeout"] > 0
    from elasticsearch import Elasticsearch

    Elasticsearch(**keyed).close()  # the client accepts every option (no request is made)


def test_opensearch_client_options():
    basic = Credentials("https://os:9200", "admin", SECRET, None, "/ca.pem", False).opensearch_kwargs()
    assert basic["http_auth"] == ("admin", SECRET) and basic["use_ssl"] and basic["verify_certs"] is False
    assert basic["ca_certs"] == "/ca.pem" and basic["ssl_show_warn"] is False
    keyed = Credentials("https://os:9200", api_key=KEY).opensearch_kwargs()
    assert keyed["headers"] == {"Authorization": f"ApiKey {KEY}"} and "http_auth" not in keyed
    from opensearchpy import OpenSearch

    OpenSearch(**Credentials("http://localhost:9200", "u", SECRET).opensearch_kwargs()).close()


def test_qdrant_client_options():
    kwargs = Credentials("https://qdrant.example:6333", api_key=KEY, verify=False).qdrant_kwargs()
    assert kwargs == {"url": "https://qdrant.example:6333", "timeout": 10, "api_key": KEY, "verify": False}
    assert "verify" not in Credentials("http://localhost:6333").qdrant_kwargs()


def test_command_line_flags():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--user", "u", "--ca-certs", "/ca.pem", "--no-verify"])
    creds = from_arguments("elasticsearch", args, url="https://es:9243")
    assert (creds.url, creds.username, creds.ca_certs, creds.verify) == ("https://es:9243", "u", "/ca.pem", False)
    assert from_arguments("elasticsearch", parser.parse_args([])).verify is True


def test_qdrant_api_key_from_the_environment_reaches_the_client(monkeypatch):
    from indexers import _qdrant_server_kwargs

    monkeypatch.setenv("HYBRID_SEARCH_QDRANT_API_KEY", KEY)
    assert _qdrant_server_kwargs("http://localhost:6333", {}) == {"api_key": KEY, "timeout": 10}
    assert _qdrant_server_kwargs(":memory:", {}) == {}
